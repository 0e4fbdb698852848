"""The on-disk cache of decoded dataset bundles: hits, invalidation, damage and the size cap."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from imagegen import encode, random_pixels, write_class_folders

import tlcore.data.folder
from tlcore.config import DatasetSpec
from tlcore.data import DatasetBundle, load_dataset
from tlcore.data.cache import dataset_cache

SIZE = 16


class Loads:
    """Loads a spec while counting decoded files and progress reports."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decoded = 0
        self.progress: list[tuple[int, int]] = []
        real = tlcore.data.folder.load_image

        def counting(*args: object) -> np.ndarray:
            self.decoded += 1
            return real(*args)

        monkeypatch.setattr(tlcore.data.folder, "load_image", counting)

    def __call__(self, spec: DatasetSpec) -> DatasetBundle:
        self.decoded, self.progress = 0, []
        return load_dataset(spec, lambda done, total: self.progress.append((done, total)))

    @property
    def hit(self) -> bool:
        return self.decoded == 0


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Loads:
    return Loads(monkeypatch)


def settle(*paths: Path) -> None:
    """Date files an hour back: files written this instant are loaded without the cache."""
    for path in paths:
        for file in [path] if path.is_file() else path.rglob("*"):
            os.utime(file, (time.time() - 3600,) * 2)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    write_class_folders(root, {"cat": 4, "dog": 4})
    (root / "dog" / "broken.png").write_bytes(encode(random_pixels(1))[:50])
    settle(root)
    return root


def spec_for(root: Path, **overrides: object) -> DatasetSpec:
    return DatasetSpec(**{"source": f"folder:{root}", "image_size": SIZE, **overrides})


def assert_same(a: DatasetBundle, b: DatasetBundle) -> None:
    for name, split in a.splits().items():
        other = b.splits()[name]
        assert np.array_equal(split.images, other.images)
        assert np.array_equal(split.labels, other.labels) and split.labels.dtype == np.int32
        assert split.ids == other.ids
    assert (a.class_names, a.skipped, a.warnings, a.source) == (
        b.class_names, b.skipped, b.warnings, b.source)


def test_second_load_is_a_hit_with_the_same_bundle(folder: Path, loads: Loads) -> None:
    first = loads(spec_for(folder))
    assert loads.decoded == 9 and len(loads.progress) == 9 and first.skipped
    second = loads(spec_for(folder))
    assert loads.hit and loads.progress == [(9, 9)]
    assert_same(first, second)
    assert len(dataset_cache().entries()) == 1


@pytest.mark.parametrize("change", ["touch", "add", "remove"])
def test_a_changed_file_is_a_miss(folder: Path, loads: Loads, change: str) -> None:
    loads(spec_for(folder))
    image = folder / "cat" / "img000.png"
    if change == "touch":
        stat = image.stat()
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    elif change == "add":
        (folder / "cat" / "new.png").write_bytes(encode(random_pixels(77)))
        settle(folder / "cat" / "new.png")
    else:
        image.unlink()
    bundle = loads(spec_for(folder))
    assert not loads.hit
    ids = {i for split in bundle.splits().values() for i in split.ids}
    assert ("cat/new.png" in ids) == (change == "add")
    assert ("cat/img000.png" in ids) == (change != "remove")
    loads(spec_for(folder))
    assert loads.hit


def test_a_folder_with_a_file_written_just_now_is_not_cached(folder: Path, loads: Loads) -> None:
    # A rewrite within the same file-system tick, at the same size, would look unchanged.
    image = folder / "cat" / "img000.png"
    image.write_bytes(image.read_bytes())
    loads(spec_for(folder))
    loads(spec_for(folder))
    assert not loads.hit and not dataset_cache().entries()
    settle(image)
    loads(spec_for(folder))
    loads(spec_for(folder))
    assert loads.hit


def test_another_image_size_or_seed_is_another_entry(folder: Path, loads: Loads) -> None:
    base = loads(spec_for(folder))
    resized = loads(spec_for(folder, image_size=SIZE * 2))
    assert not loads.hit and resized.train.images.shape[1:] == (SIZE * 2, SIZE * 2, 3)
    reseeded = loads(spec_for(folder, seed=7))
    assert not loads.hit and reseeded.test.ids != base.test.ids
    assert len(dataset_cache().entries()) == 3
    assert_same(loads(spec_for(folder, seed=7)), reseeded)
    assert loads.hit


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_a_damaged_entry_is_a_miss_and_is_rewritten(folder: Path, loads: Loads,
                                                     damage: str) -> None:
    first = loads(spec_for(folder))
    [entry] = dataset_cache().entries()
    data = bytearray(entry.read_bytes())
    if damage == "garbage":
        data = bytearray(b"not a zip")
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:  # one bit inside the images: only the zip's CRC notices
        data[len(data) // 3] ^= 0x10
    entry.write_bytes(bytes(data))
    assert_same(loads(spec_for(folder)), first)
    assert not loads.hit
    assert_same(loads(spec_for(folder)), first)
    assert loads.hit


def test_the_size_cap_evicts_the_least_recently_used(folder: Path, loads: Loads,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    loads(spec_for(folder))
    [oldest] = dataset_cache().entries()
    size = oldest.stat().st_size
    monkeypatch.setenv("TL_DATASET_CACHE_MB", str(2.5 * size / 2**20))
    loads(spec_for(folder, seed=1))
    os.utime(oldest, (1, 1))  # long unused
    loads(spec_for(folder, seed=2))
    assert not oldest.exists() and len(dataset_cache().entries()) == 2
    assert dataset_cache().size_bytes() <= 2.5 * size
    loads(spec_for(folder))
    assert not loads.hit


def test_a_zero_cap_turns_the_cache_off(folder: Path, loads: Loads,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TL_DATASET_CACHE_MB", "0")
    loads(spec_for(folder))
    loads(spec_for(folder))
    assert not loads.hit and not dataset_cache().entries()


def test_builtin_is_cached_under_its_generator_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import tlcore.data.builtin as builtin

    spec = DatasetSpec(source="builtin:shapes", image_size=SIZE, subset=0.1)
    first = load_dataset(spec)
    assert_same(load_dataset(spec), first)
    assert len(dataset_cache().entries()) == 1
    monkeypatch.setattr(builtin, "SHAPES_VERSION", builtin.SHAPES_VERSION + 1)
    assert_same(load_dataset(spec), first)
    assert len(dataset_cache().entries()) == 2


def test_tfds_is_cached_under_its_version_and_folder() -> None:
    import tensorflow_datasets as tfds

    spec = DatasetSpec(source="tfds:beans", image_size=SIZE)
    progress: list[tuple[int, int]] = []
    with tfds.testing.mock_data(num_examples=12):
        first = load_dataset(spec)
        second = load_dataset(spec, lambda done, total: progress.append((done, total)))
    assert_same(first, second)
    assert progress == [(12, 12)]  # a hit reports once; mocked metadata lists train only
