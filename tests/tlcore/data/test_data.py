"""Dataset sources and splitting: builtin shapes, class folders, TFDS (mocked, offline)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from imagegen import encode, random_pixels, write_class_folders

from tlcore.config import DatasetSpec
from tlcore.data import COMMON_TFDS, DatasetBundle, builtin_datasets, load_dataset
from tlcore.data.builtin import SHAPES_PER_CLASS
from tlcore.data.splits import stratified_partition, stratified_subset
from tlcore.errors import ConfigError, DatasetError
from tlcore.images import load_image

SIZE = 32


def folder_spec(path: Path, **overrides: object) -> DatasetSpec:
    return DatasetSpec(source=f"folder:{path}", image_size=SIZE, **overrides)


def all_ids(bundle: DatasetBundle) -> list[str]:
    return [i for split in (bundle.train, bundle.val, bundle.test) for i in split.ids]


def assert_consistent(bundle: DatasetBundle) -> None:
    """Array shapes, dtypes and ids agree, and no image is in two splits."""
    for split in (bundle.train, bundle.val, bundle.test):
        n = len(split)
        assert split.images.shape[1:] == (SIZE, SIZE, 3) and split.images.dtype == np.uint8
        assert split.images.shape[0] == n and split.labels.shape == (n,)
        assert split.labels.dtype == np.int32
    ids = all_ids(bundle)
    assert len(ids) == len(set(ids))


# --- splitting ----------------------------------------------------------------------------

def labelled(counts: list[int]) -> tuple[list[str], np.ndarray]:
    labels = np.repeat(np.arange(len(counts)), counts)
    return [f"c{label}/{i:03d}" for i, label in enumerate(labels)], labels


def test_partition_is_disjoint_complete_and_stratified() -> None:
    ids, labels = labelled([400, 800])
    train, val, test = stratified_partition(ids, labels, [0.15, 0.25], seed=1)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(1200))
    for part, share in ((val, 0.15), (test, 0.25), (train, 0.60)):
        per_class = np.bincount(labels[part], minlength=2) / np.array([400, 800])
        assert np.all(np.abs(per_class - share) < 0.06), (share, per_class)


def test_an_image_keeps_its_split_when_others_are_added_or_removed() -> None:
    ids, labels = labelled([120, 80])
    before = dict(zip(ids, _part_names(stratified_partition(ids, labels, [0.15, 0.15], seed=4), len(ids)),
                      strict=True))
    grown_ids, grown_labels = labelled([160, 90])  # the first 200 ids again, in another order
    keep = [i for i, name in enumerate(grown_ids) if not name.endswith(("005", "017"))]  # two removed
    grown_ids, grown_labels = [grown_ids[i] for i in keep], grown_labels[keep]
    after = _part_names(stratified_partition(grown_ids, grown_labels, [0.15, 0.15], seed=4), len(grown_ids))
    moved = [name for name, part in zip(grown_ids, after, strict=True)
             if name in before and before[name] != part]
    assert not moved


def _part_names(parts: list[np.ndarray], count: int) -> list[str]:
    names = np.empty(count, dtype=object)
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        names[part] = name
    return names.tolist()


def test_partition_gives_every_split_every_class_from_three_images() -> None:
    ids, labels = labelled([3, 4, 50])
    for part in stratified_partition(ids, labels, [0.15, 0.15], seed=3):
        assert set(labels[part]) == {0, 1, 2}


def test_partition_depends_on_seed_and_ids_not_on_input_order() -> None:
    ids, labels = labelled([30, 30])
    first = stratified_partition(ids, labels, [0.2, 0.2], seed=7)
    again = stratified_partition(ids, labels, [0.2, 0.2], seed=7)
    other = stratified_partition(ids, labels, [0.2, 0.2], seed=8)
    shuffled = np.random.default_rng(0).permutation(len(ids))
    reordered = stratified_partition([ids[i] for i in shuffled], labels[shuffled], [0.2, 0.2], 7)

    def id_sets(parts: list[np.ndarray], names: list[str]) -> list[set[str]]:
        return [{names[i] for i in part} for part in parts]

    assert id_sets(first, ids) == id_sets(again, ids)
    assert id_sets(first, ids) != id_sets(other, ids)
    assert id_sets(first, ids) == id_sets(reordered, [ids[i] for i in shuffled])


def test_subset_is_stratified_and_keeps_three_per_class() -> None:
    ids, labels = labelled([400, 800, 4])
    kept = stratified_subset(ids, labels, 0.5, seed=0)
    counts = np.bincount(labels[kept]).tolist()
    assert abs(counts[0] - 200) < 30 and abs(counts[1] - 400) < 45 and counts[2] == 3
    assert stratified_subset(ids, labels, 1.0, seed=0).tolist() == list(range(1204))
    assert set(kept.tolist()) <= set(stratified_subset(ids, labels, 0.7, seed=0).tolist())


# --- builtin ------------------------------------------------------------------------------

def test_builtin_shapes_is_deterministic_balanced_and_disjoint() -> None:
    spec = DatasetSpec(source="builtin:shapes", image_size=SIZE)
    bundle = load_dataset(spec)
    assert_consistent(bundle)
    assert len(bundle.class_names) >= 4
    assert len(all_ids(bundle)) == SHAPES_PER_CLASS * len(bundle.class_names)
    counts = bundle.counts()
    assert set(counts) == {"train", "val", "test"}
    per_class = zip(*(c.values() for c in counts.values()), strict=True)
    assert all(n == SHAPES_PER_CLASS for n in map(sum, per_class))
    again = load_dataset(spec)
    assert np.array_equal(bundle.train.images, again.train.images)
    assert bundle.train.ids == again.train.ids
    assert not bundle.warnings


def test_builtin_images_differ_between_and_within_classes() -> None:
    bundle = load_dataset(DatasetSpec(source="builtin:shapes", image_size=SIZE))
    samples = bundle.samples(per_class=3)
    assert list(samples) == bundle.class_names
    assert all(len(images) == 3 for images in samples.values())
    firsts = [images[0].astype(int) for images in samples.values()]
    assert all(np.abs(a - b).mean() > 5 for a, b in zip(firsts, firsts[1:], strict=False))


def test_seed_changes_the_split_but_not_the_images() -> None:
    a = load_dataset(DatasetSpec(source="builtin:shapes", image_size=SIZE, seed=1))
    b = load_dataset(DatasetSpec(source="builtin:shapes", image_size=SIZE, seed=2))
    assert set(a.test.ids) != set(b.test.ids)
    assert set(all_ids(a)) == set(all_ids(b))


def test_subset_of_builtin_is_stratified() -> None:
    bundle = load_dataset(DatasetSpec(source="builtin:shapes", image_size=SIZE, subset=0.2))
    per_class = [sum(split[name] for split in bundle.counts().values())
                 for name in bundle.class_names]
    assert all(abs(n - SHAPES_PER_CLASS * 0.2) <= 8 for n in per_class), per_class


def test_unknown_builtin_lists_the_known_ones() -> None:
    assert "shapes" in builtin_datasets()
    with pytest.raises(DatasetError, match="shapes"):
        load_dataset(DatasetSpec(source="builtin:nope"))


def test_invalid_spec_is_refused_before_loading() -> None:
    with pytest.raises(ConfigError):
        load_dataset(DatasetSpec(source="builtin:shapes", subset=0))


# --- folder -------------------------------------------------------------------------------

def test_folder_dataset_reads_nested_mixed_case_files_and_ignores_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    write_class_folders(root, {"cat": 6, "dog": 5}, ext=".png")
    write_class_folders(root, {"dog": 2}, ext=".JPG")
    (root / "cat" / "more").mkdir()
    (root / "cat" / "more" / "deep.jpeg").write_bytes(encode(random_pixels(9), "JPEG"))
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(encode(random_pixels(8)))
    (root / "cat" / ".cache").mkdir()
    (root / "cat" / ".cache" / "x.png").write_bytes(encode(random_pixels(7)))
    (root / ".git").mkdir()
    progress: list[tuple[int, int]] = []

    bundle = load_dataset(folder_spec(root), lambda done, total: progress.append((done, total)))

    assert_consistent(bundle)
    assert bundle.class_names == ["cat", "dog"]
    ids = set(all_ids(bundle))
    assert len(ids) == 14 and "cat/more/deep.jpeg" in ids and "dog/img000.JPG" in ids
    assert not any(".hidden" in i or ".cache" in i or i.endswith(".txt") for i in ids)
    assert progress[-1] == (14, 14) and len(progress) == 14
    assert not bundle.skipped


def test_folder_pixels_are_the_files_pixels(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "d", {"a": 3, "b": 3}, size=SIZE)  # PNG: lossless
    bundle = load_dataset(folder_spec(tmp_path / "d"))
    for split in (bundle.train, bundle.val, bundle.test):
        for image, label, image_id in zip(split.images, split.labels, split.ids, strict=True):
            index = int(image_id.split("/img")[1][:3])
            assert image_id.startswith(bundle.class_names[label] + "/")
            assert np.array_equal(image, random_pixels(1000 * int(label) + index, SIZE, SIZE))


def test_corrupt_files_are_skipped_and_listed(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_class_folders(root, {"a": 4, "b": 4})
    (root / "a" / "broken.png").write_bytes(encode(random_pixels(1))[:100])
    (root / "b" / "empty.jpg").write_bytes(b"")
    bundle = load_dataset(folder_spec(root))
    assert sorted(s.id for s in bundle.skipped) == ["a/broken.png", "b/empty.jpg"]
    assert all(s.reason for s in bundle.skipped)
    assert len(all_ids(bundle)) == 8
    assert any("2 file(s)" in w for w in bundle.warnings)


def test_class_left_too_small_by_skipped_files_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_class_folders(root, {"a": 4, "b": 2})
    (root / "b" / "broken.jpg").write_text("nope")
    with pytest.raises(DatasetError, match="'b' has 2") as caught:
        load_dataset(folder_spec(root))
    assert "skipped" in str(caught.value)


def test_folder_outside_the_data_roots_is_refused(tmp_path: Path, monkeypatch) -> None:
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    write_class_folders(elsewhere, {"a": 3, "b": 3})
    monkeypatch.setenv("TL_DATA_ROOT", str(allowed))
    with pytest.raises(DatasetError, match="TL_DATA_ROOT") as caught:
        load_dataset(folder_spec(elsewhere))
    assert str(allowed) in str(caught.value)
    (allowed / "link").symlink_to(elsewhere)  # a link inside the root does not help
    with pytest.raises(DatasetError, match="outside"):
        load_dataset(folder_spec(allowed / "link"))
    with pytest.raises(DatasetError, match="outside"):
        load_dataset(folder_spec(allowed / ".." / "elsewhere"))


def test_file_links_leading_outside_the_roots_are_skipped(tmp_path: Path, monkeypatch) -> None:
    allowed, secret = tmp_path / "allowed", tmp_path / "secret.png"
    write_class_folders(allowed / "d", {"a": 3, "b": 3})
    secret.write_bytes(encode(random_pixels(2)))
    (allowed / "d" / "a" / "leak.png").symlink_to(secret)
    monkeypatch.setenv("TL_DATA_ROOT", str(allowed))
    bundle = load_dataset(folder_spec(allowed / "d"))
    assert [s.id for s in bundle.skipped] == ["a/leak.png"]
    assert "outside" in bundle.skipped[0].reason


def test_file_links_within_the_roots_are_read_like_files(tmp_path: Path, monkeypatch) -> None:
    allowed = tmp_path / "allowed"
    write_class_folders(allowed / "d", {"a": 3, "b": 3})
    shared = allowed / "shared.png"
    shared.write_bytes(encode(random_pixels(2)))
    (allowed / "d" / "a" / "linked.png").symlink_to(shared)
    monkeypatch.setenv("TL_DATA_ROOT", str(allowed))
    bundle = load_dataset(folder_spec(allowed / "d"))
    assert not bundle.skipped
    [(split, position)] = [(split, split.ids.index("a/linked.png")) for split in bundle.splits().values()
                           if "a/linked.png" in split.ids]
    assert np.array_equal(split.images[position], load_image(shared, SIZE))


def test_missing_folder_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(folder_spec(tmp_path / "missing"))


def test_folder_without_classes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"has no class sub-folders \(no classes\)"):
        load_dataset(folder_spec(tmp_path / "empty"))


def test_single_class_is_refused_with_its_name_and_size(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "d", {"only": 5})
    with pytest.raises(DatasetError) as caught:
        load_dataset(folder_spec(tmp_path / "d"))
    assert caught.value.message == (
        "The dataset has only 1 class, 'only' (5 images); a classifier needs at least 2 classes "
        "to tell apart."
    )
    assert "Add a second class: a folder of its images next to 'only/'" in caught.value.hint


def test_a_class_folder_given_as_the_dataset_says_what_it_holds(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "d", {"cats": 4})
    with pytest.raises(DatasetError) as caught:
        load_dataset(folder_spec(tmp_path / "d" / "cats"))
    assert caught.value.message.startswith(
        f"The folder '{tmp_path / 'd' / 'cats'}' holds 4 image(s) directly but no class sub-folders"
    )
    assert "at least 2 classes" in caught.value.message


def test_class_with_one_image_is_refused_by_name(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "d", {"many": 5, "lonely": 1})
    with pytest.raises(DatasetError, match=r"'lonely' has 1.*at least 3") as caught:
        load_dataset(folder_spec(tmp_path / "d"))
    assert caught.value.hint


def test_non_utf8_file_name_is_loaded_with_a_printable_id(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_class_folders(root, {"a": 3, "b": 3})
    raw_name = os.path.join(os.fsencode(root / "a"), b"caf\xe9.png")
    with open(raw_name, "wb") as handle:
        handle.write(encode(random_pixels(5)))
    bundle = load_dataset(folder_spec(root))
    ids = all_ids(bundle)
    assert "a/caf\\xe9.png" in ids
    for image_id in ids:
        image_id.encode("utf-8")  # would raise for a surrogate-escaped name


def test_strong_imbalance_warns_and_suggests_class_weights(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "d", {"big": 13, "small": 4})
    bundle = load_dataset(folder_spec(tmp_path / "d"))
    assert any("imbalanced" in w and "class weights" in w for w in bundle.warnings)


def test_three_to_one_is_not_called_imbalanced(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "d", {"big": 9, "small": 3})
    assert not load_dataset(folder_spec(tmp_path / "d")).warnings


# --- tfds (mocked: no download, random examples) ------------------------------------------

def test_tfds_flowers_loads_through_the_same_decoder() -> None:
    progress: list[tuple[int, int]] = []
    with tfds.testing.mock_data(num_examples=60):
        bundle = load_dataset(
            DatasetSpec(source="tfds:tf_flowers", image_size=SIZE),
            progress=lambda done, total: progress.append((done, total)),
        )
    assert_consistent(bundle)
    assert bundle.class_names == ["dandelion", "daisy", "tulips", "sunflowers", "roses"]
    assert sorted(all_ids(bundle)) == sorted(f"train/{i}" for i in range(60))
    assert all(len(split) > 0 for split in (bundle.val, bundle.test))
    assert progress[-1] == (60, 60)


def test_tfds_official_splits_are_used_and_only_missing_ones_carved() -> None:
    from tlcore.data.tfds_source import plan_splits

    assert plan_splits(["train", "validation", "test"]) == {
        "train": "train", "val": "validation", "test": "test"}
    assert plan_splits(["train", "test"]) == {"train": "train", "val": None, "test": "test"}
    assert plan_splits([]) == {"train": "train", "val": None, "test": None}
    with pytest.raises(DatasetError, match="no train split"):
        plan_splits(["test"])


def test_tfds_subset_keeps_a_share_of_each_class() -> None:
    with tfds.testing.mock_data(num_examples=200):
        whole = load_dataset(DatasetSpec(source="tfds:tf_flowers", image_size=SIZE))
        part = load_dataset(DatasetSpec(source="tfds:tf_flowers", image_size=SIZE, subset=0.5))
    assert set(all_ids(part)) < set(all_ids(whole))
    assert 70 <= len(all_ids(part)) <= 130

def test_unknown_tfds_name_suggests_common_ones() -> None:
    with pytest.raises(DatasetError, match="tf_flowers"):
        load_dataset(DatasetSpec(source="tfds:tf_flower"))
    assert "tf_flowers" in COMMON_TFDS


def test_tfds_text_dataset_has_no_images() -> None:
    with tfds.testing.mock_data(num_examples=4), pytest.raises(DatasetError, match="has no images"):
        load_dataset(DatasetSpec(source="tfds:imdb_reviews"))


def test_tfds_features_without_class_label_are_refused() -> None:
    from tlcore.data.tfds_source import find_image_and_label

    features = tfds.features.FeaturesDict(
        {"picture": tfds.features.Image(), "caption": tfds.features.Text()})
    with pytest.raises(DatasetError, match="no class label"):
        find_image_and_label(features, "captions")
    features = tfds.features.FeaturesDict(
        {"picture": tfds.features.Image(), "kind": tfds.features.ClassLabel(num_classes=2)})
    assert find_image_and_label(features, "pictures") == ("picture", "kind")


def test_unprepared_tfds_that_cannot_download_names_the_data_dir(tmp_path: Path,
                                                                 monkeypatch) -> None:
    def offline(self, *args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    data_dir = tmp_path / "tfds-data"
    with pytest.raises(DatasetError, match="could not be downloaded") as caught:
        load_dataset(DatasetSpec(source="tfds:tf_flowers", data_dir=str(data_dir)))
    assert str(data_dir) in str(caught.value) and "data_dir" in caught.value.hint
