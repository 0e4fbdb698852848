"""The pixel store: each image decoded once per content identity, and datasets that know their data."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from folders import DecodeCounter, add_images, count_decodes, rewrite_image
from rowstores import age_chunks

import tlcore.data.assemble
from tlcore.config import DatasetSpec
from tlcore.data import DatasetBundle, load_dataset
from tlcore.data.catalogue import data_change
from tlcore.data.pixels import pixel_store
from tlcore.data.preview import preview_dataset
from tlcore.data.registry import list_dataset
from tlcore.data.rows import RowStore
from tlcore.errors import StorageError
from tlcore.images import load_image

SIZE = 16
PER_CLASS = 30


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Two classes of small images, PNG roses and JPEG tulips."""
    folder = tmp_path / "flowers"
    add_images(folder / "roses", PER_CLASS, ".png", seed=1)
    add_images(folder / "tulips", PER_CLASS, ".jpg", seed=2)
    return folder


@pytest.fixture
def decodes(root: Path, monkeypatch: pytest.MonkeyPatch) -> DecodeCounter:
    return count_decodes(monkeypatch, root)


def spec_of(root: Path, size: int = SIZE) -> DatasetSpec:
    return DatasetSpec(source=f"folder:{root}", image_size=size)


def all_ids(bundle: DatasetBundle) -> list[str]:
    return sorted(i for split in bundle.splits().values() for i in split.ids)


def split_by_id(bundle: DatasetBundle) -> dict[str, str]:
    return {image_id: name for name, split in bundle.splits().items() for image_id in split.ids}


def pixels_by_id(bundle: DatasetBundle) -> dict[str, np.ndarray]:
    return {image_id: split.images[k]
            for split in bundle.splits().values() for k, image_id in enumerate(split.ids)}


# ---- decoded once ------------------------------------------------------------------------

def test_a_second_load_decodes_nothing_and_reads_the_same_pixels(root: Path, decodes: DecodeCounter) -> None:
    first = load_dataset(spec_of(root))
    assert decodes.take() == all_ids(first) and len(all_ids(first)) == 2 * PER_CLASS
    second = load_dataset(spec_of(root))
    assert decodes.take() == []
    assert split_by_id(second) == split_by_id(first)
    again = pixels_by_id(second)
    for image_id, pixels in pixels_by_id(first).items():
        np.testing.assert_array_equal(again[image_id], pixels)
        np.testing.assert_array_equal(pixels, load_image(root / image_id, SIZE))


def test_adding_an_image_decodes_only_that_image(root: Path, decodes: DecodeCounter) -> None:
    load_dataset(spec_of(root))
    decodes.take()
    (new,) = add_images(root / "roses", 1, ".png", seed=9, first=PER_CLASS)
    grown = load_dataset(spec_of(root))
    assert decodes.take() == ["roses/img030.png"]
    np.testing.assert_array_equal(pixels_by_id(grown)["roses/img030.png"], load_image(new, SIZE))
    assert len(all_ids(grown)) == 2 * PER_CLASS + 1


def test_an_image_edited_in_place_is_decoded_again_and_its_new_pixels_are_read(
    root: Path, decodes: DecodeCounter
) -> None:
    edited = root / "tulips" / "img007.jpg"
    old_pixels = pixels_by_id(load_dataset(spec_of(root)))["tulips/img007.jpg"]
    decodes.take()
    rewrite_image(edited, seed=4242)
    new_pixels = pixels_by_id(load_dataset(spec_of(root)))["tulips/img007.jpg"]
    assert decodes.take() == ["tulips/img007.jpg"]
    np.testing.assert_array_equal(new_pixels, load_image(edited, SIZE))
    assert not np.array_equal(new_pixels, old_pixels)


def test_a_moved_image_keeps_its_pixels_and_its_split(root: Path, decodes: DecodeCounter) -> None:
    before = split_by_id(load_dataset(spec_of(root)))
    decodes.take()
    (root / "roses" / "img005.png").rename(root / "tulips" / "moved.png")
    after = load_dataset(spec_of(root))
    assert decodes.take() == []
    assert split_by_id(after)["tulips/moved.png"] == before["roses/img005.png"]
    assert "tulips/moved.png" in after.splits()[before["roses/img005.png"]].ids


def test_each_image_size_has_its_own_pixels(root: Path, decodes: DecodeCounter) -> None:
    load_dataset(spec_of(root, SIZE))
    decodes.take()
    larger = load_dataset(spec_of(root, 2 * SIZE))
    assert len(decodes.take()) == 2 * PER_CLASS
    assert larger.train.images.shape[1:] == (2 * SIZE, 2 * SIZE, 3)
    load_dataset(spec_of(root, SIZE))
    assert decodes.take() == []


# ---- unreadable files --------------------------------------------------------------------

def test_an_unreadable_file_is_decoded_once_and_listed_on_every_later_load(
    root: Path, decodes: DecodeCounter
) -> None:
    broken = root / "roses" / "broken.png"
    broken.write_bytes(b"this is not a png")
    unseen = preview_dataset(spec_of(root))
    assert unseen.skipped == [] and unseen.unchecked == 2 * PER_CLASS + 1  # no run has looked yet
    decodes.take()

    first = load_dataset(spec_of(root))
    assert decodes.take().count("roses/broken.png") == 1
    assert [s.id for s in first.skipped] == ["roses/broken.png"] and first.skipped[0].reason
    assert "roses/broken.png" not in all_ids(first)

    second = load_dataset(spec_of(root))
    assert decodes.take() == []  # remembered as unreadable, not tried again
    assert second.skipped == first.skipped
    assert any("could not be read" in w for w in second.warnings)

    preview = preview_dataset(spec_of(root))
    assert preview.skipped == first.skipped and preview.unchecked == 0
    assert preview.counts == second.counts()
    assert preview.to_dict()["skipped"] == [{"id": "roses/broken.png", "reason": first.skipped[0].reason}]
    assert any("could not be read" in w for w in preview.warnings)


def test_a_repaired_file_is_read_again(root: Path, decodes: DecodeCounter) -> None:
    broken = root / "roses" / "broken.png"
    broken.write_bytes(b"this is not a png")
    load_dataset(spec_of(root))
    decodes.take()
    rewrite_image(broken, seed=77)
    repaired = load_dataset(spec_of(root))
    assert decodes.take() == ["roses/broken.png"]
    assert repaired.skipped == []
    np.testing.assert_array_equal(pixels_by_id(repaired)["roses/broken.png"], load_image(broken, SIZE))


# ---- fingerprints and what changed -------------------------------------------------------

def test_the_fingerprint_changes_with_the_data_and_only_with_it(root: Path) -> None:
    original = list_dataset(spec_of(root)).fingerprint
    assert list_dataset(spec_of(root)).fingerprint == original
    bundle = load_dataset(spec_of(root))
    assert bundle.fingerprint == original == preview_dataset(spec_of(root)).fingerprint

    (added,) = add_images(root / "roses", 1, ".png", seed=5, first=PER_CLASS)
    grown = list_dataset(spec_of(root)).fingerprint
    added.unlink()
    assert list_dataset(spec_of(root)).fingerprint == original  # the same files again
    rewrite_image(root / "tulips" / "img003.jpg", seed=6)
    changed = list_dataset(spec_of(root)).fingerprint
    (root / "roses" / "img004.png").unlink()
    removed = list_dataset(spec_of(root)).fingerprint
    assert len({original, grown, changed, removed}) == 4


def test_data_change_counts_what_was_added_changed_and_removed_per_class(root: Path) -> None:
    before = load_dataset(spec_of(root)).manifest
    assert not data_change(before, list_dataset(spec_of(root)).manifest()).any

    add_images(root / "roses", 3, ".png", seed=3, first=PER_CLASS)
    rewrite_image(root / "tulips" / "img001.jpg", seed=11)
    change = data_change(before, list_dataset(spec_of(root)).manifest())
    assert change.any
    assert (change.added, change.changed, change.removed) == (Counter(roses=3), Counter(tulips=1), Counter())
    assert change.describe() == "3 images added to 'roses', 1 image changed in 'tulips', 0 removed"

    add_images(root / "tulips", 2, ".jpg", seed=4, first=PER_CLASS)
    for name in ("img010.png", "img011.png"):
        (root / "roses" / name).unlink()
    (root / "tulips" / "img012.jpg").unlink()
    change = data_change(before, list_dataset(spec_of(root)).manifest())
    assert change.added == Counter(roses=3, tulips=2)
    assert change.removed == Counter(roses=2, tulips=1)
    assert change.describe() == "5 added, 1 image changed in 'tulips', 3 removed"


def test_splits_stay_put_when_the_folder_grows_or_shrinks(root: Path) -> None:
    """Every image keeps its split. Identities include modification times, so the files get
    fixed ones: with times of the moment, a class of 30 sometimes has no image whose hash falls
    in validation, one is moved there to keep every split stratified, and growing the class can
    undo that move (the documented exception for classes too small for their share)."""
    def settle() -> None:
        for path in root.rglob("*.*"):
            os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))

    settle()
    before = split_by_id(load_dataset(spec_of(root)))
    add_images(root / "roses", 25, ".png", seed=21, first=PER_CLASS)
    add_images(root / "tulips", 15, ".jpg", seed=22, first=PER_CLASS)
    (root / "tulips" / "img002.jpg").unlink()
    settle()
    after = split_by_id(load_dataset(spec_of(root)))
    moved = {i: (before[i], after[i]) for i in before.keys() & after.keys() if before[i] != after[i]}
    assert not moved
    new = [after[i] for i in after.keys() - before.keys()]
    assert len(new) == 40 and {"train", "val", "test"} <= set(new)


# ---- the preview -------------------------------------------------------------------------

def test_the_preview_decodes_only_its_samples_and_counts_like_a_load(
    root: Path, decodes: DecodeCounter
) -> None:
    preview = preview_dataset(spec_of(root), per_class=2)
    decoded = decodes.take()
    assert len(decoded) == 4 and Counter(path.split("/")[0] for path in decoded) == Counter(roses=2, tulips=2)
    assert {name: len(images) for name, images in preview.samples.items()} == {"roses": 2, "tulips": 2}
    assert all(image.shape == (SIZE, SIZE, 3) for images in preview.samples.values() for image in images)

    bundle = load_dataset(spec_of(root))
    decodes.take()
    assert preview.counts == bundle.counts()
    assert preview.total_images == 2 * PER_CLASS
    train_ids = set(bundle.train.ids)
    assert all(path in train_ids for path in decoded)  # samples are training images
    again = preview_dataset(spec_of(root), per_class=2)
    assert len(decodes.take()) == 4 and again.counts == bundle.counts() and again.unchecked == 0


def test_copies_of_one_file_are_decoded_once_and_share_a_split(root: Path, decodes: DecodeCounter) -> None:
    before = split_by_id(load_dataset(spec_of(root)))
    decodes.take()
    for k in range(3):  # same bytes, same modification time: the same content identity
        shutil.copy2(root / "roses" / "img000.png", root / "roses" / f"copy{k}.png")
    after = split_by_id(load_dataset(spec_of(root)))
    assert decodes.take() == []
    assert {after[f"roses/copy{k}.png"] for k in range(3)} == {before["roses/img000.png"]}  # no leak


def test_the_pixel_cap_evicts_other_data_but_never_the_data_being_loaded(
    root: Path, tmp_path: Path, decodes: DecodeCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_PIXEL_CACHE_MB", "0")
    other = tmp_path / "other"
    add_images(other / "a", 5, ".png", seed=7)
    add_images(other / "b", 5, ".png", seed=8)
    first = load_dataset(spec_of(root))
    assert len(decodes.take()) == 2 * PER_CLASS
    load_dataset(spec_of(root))
    assert decodes.take() == []  # over the cap, but it is the data in use
    age_chunks(pixel_store(SIZE).root, 100)
    load_dataset(spec_of(other))
    assert len(decodes.take()) == 10
    load_dataset(spec_of(root))
    assert len(decodes.take()) == 2 * PER_CLASS  # evicted by the other load: decoded again
    for image_id, pixels in pixels_by_id(first).items():  # the first bundle still reads its rows
        np.testing.assert_array_equal(pixels, load_image(root / image_id, SIZE))


def test_a_load_survives_another_process_evicting_its_rows_before_it_reads_them(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another job over the cap may evict chunks this load found stored a moment ago.

    The store is a cache: rows that vanish between "is it stored?" and "read it" must be
    decoded again (or the load fail with a typed error), not crash with a KeyError.
    """
    load_dataset(spec_of(root))
    real_decode_missing = tlcore.data.assemble.decode_missing
    evictions = []

    def then_evicted_elsewhere(*args, **kwargs):
        store = real_decode_missing(*args, **kwargs)
        if len(evictions) < evict_times:
            age_chunks(store.root, 100)
            evictions.append(RowStore(store.root, store.layout).evict(max_bytes=0, keep_since=time.time()))
        return store

    monkeypatch.setattr(tlcore.data.assemble, "decode_missing", then_evicted_elsewhere)
    evict_times = 1
    bundle = load_dataset(spec_of(root))
    assert evictions and evictions[0] > 0
    for image_id, pixels in pixels_by_id(bundle).items():
        np.testing.assert_array_equal(pixels, load_image(root / image_id, SIZE))

    evictions.clear()
    evict_times = 99  # a store so full that other jobs evict everything, every time
    with pytest.raises(StorageError, match="TL_PIXEL_CACHE_MB"):
        load_dataset(spec_of(root))


def test_the_preview_works_where_the_pixel_store_cannot_be_made(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home that is a file (or read-only): the preview still counts, and knows no bad files yet."""
    home = tmp_path / "home-is-a-file"
    home.write_text("not a folder")
    monkeypatch.setenv("TL_HOME", str(home))
    preview = preview_dataset(spec_of(root))
    assert preview.total_images > 0 and preview.unchecked == preview.total_images and not preview.skipped
