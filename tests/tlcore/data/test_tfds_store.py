"""TFDS datasets stream from TFDS's own files into the pixel store, each image decoded once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tlcore.data.tfds_source
from tlcore.config import DatasetSpec
from tlcore.data import load_dataset
from tlcore.images import load_image

SIZE = 32
CLASSES = ["dandelion", "daisy", "tulips", "sunflowers", "roses"]


def encoded_examples(positions: set[int]) -> dict[int, tuple[bytes, int]]:
    """The encoded image and label of the mocked ``tf_flowers`` train examples at ``positions``."""
    builder = tfds.builder("tf_flowers")
    raw = builder.as_dataset(split="train", shuffle_files=False,
                             decoders={"image": tfds.decode.SkipDecoding()})
    return {i: (bytes(example["image"]), int(example["label"]))
            for i, example in enumerate(tfds.as_numpy(raw.take(max(positions) + 1))) if i in positions}


@pytest.mark.parametrize("examples", [600, pytest.param(3000, marks=pytest.mark.slow)])
def test_tfds_loads_stratified_splits_and_a_second_load_decodes_nothing(monkeypatch, examples: int) -> None:
    decoded, lock = [], threading.Lock()
    real_load_image = tlcore.data.tfds_source.load_image

    def counting(source, size=None):
        with lock:
            decoded.append(source)
        return real_load_image(source, size)

    monkeypatch.setattr(tlcore.data.tfds_source, "load_image", counting)
    spec = DatasetSpec(source="tfds:tf_flowers", image_size=SIZE)
    with tfds.testing.mock_data(num_examples=examples):
        first = load_dataset(spec)
        assert len(decoded) == examples
        decoded.clear()
        second = load_dataset(spec)
        assert decoded == []
        checked = {0, 1, examples // 2, examples - 1}
        originals = encoded_examples(checked)

    assert first.class_names == CLASSES
    splits = first.splits()
    ids = [image_id for split in splits.values() for image_id in split.ids]
    assert sorted(ids) == sorted(f"train/{i}" for i in range(examples))  # disjoint and complete
    assert all(split.images.shape[1:] == (SIZE, SIZE, 3) for split in splits.values())
    for name, share in (("val", spec.val_fraction), ("test", spec.test_fraction)):
        assert abs(len(splits[name]) / examples - share) < 0.05, (name, len(splits[name]))
    for name, per_class in first.counts().items():
        assert all(count > 0 for count in per_class.values()), (name, per_class)
    all_labels = np.concatenate([split.labels for split in splits.values()])
    for k in range(len(CLASSES)):  # stratified: each class held out at about the same rate
        held_out = sum(int(np.sum(splits[name].labels == k)) for name in ("val", "test"))
        assert abs(held_out / np.sum(all_labels == k) - 0.3) < 0.1

    assert {name: split.ids for name, split in second.splits().items()} == {
        name: split.ids for name, split in splits.items()}
    for split, again in zip(splits.values(), second.splits().values(), strict=True):
        for position in (0, len(split) - 1):
            np.testing.assert_array_equal(again.images[position], split.images[position])
    where = {image_id: (split, k) for split in splits.values() for k, image_id in enumerate(split.ids)}
    for position, (data, label) in originals.items():  # each row holds its own example's pixels
        split, k = where[f"train/{position}"]
        assert int(split.labels[k]) == label
        np.testing.assert_array_equal(split.images[k], load_image(data, SIZE))
