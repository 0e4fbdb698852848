"""A finished run is reused only on the same data, and a changed dataset says how it changed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from folders import add_images, rewrite_image
from specs import tiny_spec

from tlcore.config import DatasetSpec
from tlcore.data import load_dataset
from tlcore.records import RunStatus
from tlcore.runs.data_identity import DataIdentity, save_data_record
from tlcore.runs.jobs import create_for_data
from tlcore.runs.store import RunStore


def folder_spec(root: Path):
    spec = tiny_spec("frozen", epochs=1)
    return dataclasses.replace(spec, dataset=DatasetSpec(f"folder:{root}", image_size=16))


def finish(store: RunStore, run_id: str, spec) -> None:
    """What a worker leaves: the data record, then the finished status."""
    save_data_record(store, run_id, load_dataset(spec.dataset))
    store.finish(run_id, RunStatus.FINISHED)


def test_a_finished_run_is_reused_on_the_same_data_and_not_on_changed_data(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    add_images(root / "cat", 5, seed=1)
    add_images(root / "dog", 5, seed=2)
    spec, store = folder_spec(root), RunStore()
    first, reused, change = create_for_data(store, spec)
    assert not reused and change is None
    finish(store, first.id, spec)
    again, reused, _ = create_for_data(store, spec)
    assert reused and again.id == first.id and again.data_fingerprint == DataIdentity.of(spec).fingerprint

    add_images(root / "cat", 3, seed=1, first=5)
    rewrite_image(root / "dog" / "img000.png", seed=77)
    (root / "dog" / "img004.png").unlink()
    second, reused, change = create_for_data(store, spec)
    assert not reused and second.id != first.id
    assert change == (f"The data changed since finished run {first.id}: 3 images added to 'cat', "
                      "1 image changed in 'dog', 1 image removed from 'dog'. Training anew.")
    assert change in store.get(second.id).notes
    assert second.key.startswith(spec.key() + "-") and second.data_fingerprint != first.data_fingerprint
    assert store.latest_with_key(spec.key()).id == second.id
