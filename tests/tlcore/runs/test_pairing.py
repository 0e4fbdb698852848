"""Disagreements drawn as thumbnails: which stored test ids still name an image file, safely."""

from __future__ import annotations

from imagegen import encode, random_pixels

from tlcore.config import DatasetSpec, RunSpec
from tlcore.runs.pairing import image_files
from tlcore.runs.store import RunStore


def test_only_folder_images_inside_the_data_roots_map_to_files(tmp_path, monkeypatch) -> None:
    root = tmp_path / "data" / "pets"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "a.png").write_bytes(encode(random_pixels(1)))
    (tmp_path / "secret.png").write_bytes(encode(random_pixels(2)))
    monkeypatch.setenv("TL_DATA_ROOT", str(tmp_path / "data"))
    store = RunStore()
    folder_run, _ = store.create_run(RunSpec(dataset=DatasetSpec(source=f"folder:{root}")))
    ids = ["cat/a.png", "cat/gone.png", "../../secret.png", "cat"]
    assert image_files(folder_run, ids) == {"cat/a.png": (root / "cat" / "a.png").resolve()}

    builtin_run, _ = store.create_run(RunSpec())
    assert image_files(builtin_run, ["cat/a.png"]) == {}, "builtin images have no file"
    moved, _ = store.create_run(RunSpec(dataset=DatasetSpec(source=f"folder:{tmp_path / 'data' / 'gone'}")))
    assert image_files(moved, ["cat/a.png"]) == {}, "a dataset that moved away is named, not drawn"
