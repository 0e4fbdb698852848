"""Training on cached frozen-part outputs equals training on images, and the feature store behaves."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
from calibrated import calibrated_weights
from folders import add_images
from homes import studio_home
from notes import feature_passes
from rowstores import age_chunks
from specs import tiny_spec

from tlcore.config import BackboneSpec, DatasetSpec
from tlcore.data import Split, load_dataset
from tlcore.data.rows import RowLayout, RowStore
from tlcore.report.evaluate import predict_probabilities
from tlcore.training.cached_stage import (
    FEATURE_BATCH,
    CutPlan,
    StageFeatures,
    _padded_call,
    last_single_tensor_cut,
    views_dataset,
)
from tlcore.training.features import feature_store
from tlcore.training.loop import train


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    with studio_home(tmp_path_factory.mktemp("cached")):
        return load_dataset(tiny_spec().dataset)


@pytest.fixture(scope="module")
def calibrated(bundle, tmp_path_factory):
    return calibrated_weights(bundle.train.images[:128], tmp_path_factory.mktemp("weights"))


@pytest.fixture
def weights(calibrated, isolated_home, monkeypatch):
    """The module's weights file; its folder is outside each test's own, so it is allowed too."""
    allowed = os.pathsep.join([os.environ["TL_DATA_ROOT"], str(calibrated.parent)])
    monkeypatch.setenv("TL_DATA_ROOT", allowed)
    return calibrated


def spec_for(weights, strategy, cache, **train):
    spec = tiny_spec(strategy, feature_cache=cache, **train)
    return dataclasses.replace(spec, backbone=BackboneSpec("mobilenet_v2", 0.35, str(weights)))


def assert_same_training(cached, uncached, bundle):
    """Equal within float tolerance.

    The fine-tuning cases run with SGD and without dropout. Computed eagerly, both paths give
    bit-identical losses and gradients; inside the compiled training step, TensorFlow fuses the
    frozen convolutions with their BatchNorm and rounds differently in the last bits. Adam
    scales every update to about the learning rate and so turns that rounding into whole steps,
    and the split graph draws dropout masks in another order: noise, not a difference between
    the paths, which these settings keep out of the comparison.
    """
    assert [e.loss for e in cached.history] == pytest.approx([e.loss for e in uncached.history], rel=1e-4)
    assert [e.val_accuracy for e in cached.history] == pytest.approx(
        [e.val_accuracy for e in uncached.history], abs=1e-6)
    for a, b in zip(cached.model.weights, uncached.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, err_msg=a.path)
    np.testing.assert_allclose(predict_probabilities(cached.model, bundle.test.images),
                               predict_probabilities(uncached.model, bundle.test.images), atol=1e-3)


@pytest.mark.parametrize("strategy,overrides", [
    ("frozen", {"epochs": 2}),
    ("frozen", {"epochs": 2, "head_hidden_units": 16, "weight_decay": 1e-3, "optimizer": "adamw"}),
    ("finetune", {"epochs": 2, "fine_tune_layers": 30, "fine_tune_learning_rate": 1e-3,
                  "dropout": 0.0, "optimizer": "sgd"}),
    ("frozen_then_finetune", {"epochs": 1, "fine_tune_epochs": 1, "fine_tune_layers": 30,
                              "dropout": 0.0, "optimizer": "sgd"}),
])
def test_cached_path_trains_the_same_model_as_the_image_path(bundle, weights, strategy, overrides):
    cached = train(spec_for(weights, strategy, True, **overrides), bundle=bundle)
    uncached = train(spec_for(weights, strategy, False, **overrides), bundle=bundle)
    assert any("cached features" in n for n in cached.notes)
    assert not any("cached features" in n for n in uncached.notes)
    assert_same_training(cached, uncached, bundle)
    assert uncached.test_probabilities is None
    np.testing.assert_allclose(cached.test_probabilities,
                               predict_probabilities(cached.model, bundle.test.images), atol=1e-4)
    assert cached.test_report().accuracy == uncached.test_report().accuracy
    # Train and val per stage; test only in the last stage, whose features it is evaluated on.
    train_and_val, test = len(bundle.train) + len(bundle.val), len(bundle.test)
    assert feature_passes(cached.notes) == {
        "frozen": [(train_and_val + test, 0)],
        "finetune": [(train_and_val + test, 0)],
        "frozen_then_finetune": [(train_and_val, 0), (train_and_val + test, 0)],
    }[strategy]


def test_the_test_split_is_computed_on_another_thread_while_the_head_trains(
    bundle, weights, monkeypatch
):
    on_main_thread = {}
    compute = StageFeatures.compute
    names = {tuple(split.ids): name for name, split in bundle.splits().items()}

    def recording(self, split, view=None):
        on_main_thread[names[tuple(split.ids)]] = threading.current_thread() is threading.main_thread()
        return compute(self, split, view)

    monkeypatch.setattr(StageFeatures, "compute", recording)
    result = train(spec_for(weights, "frozen", True, epochs=1), bundle=bundle)
    assert on_main_thread == {"train": True, "val": True, "test": False}
    everything = len(bundle.train) + len(bundle.val) + len(bundle.test)
    assert any(re.search(rf"{everything} image\(s\) forwarded, 0 read .*s of it while the head trained", n)
               for n in result.notes), result.notes


def test_a_second_run_reuses_the_features(bundle, weights):
    everything = len(bundle.train) + len(bundle.val) + len(bundle.test)
    first = train(spec_for(weights, "frozen", True, epochs=1), bundle=bundle)
    assert feature_passes(first.notes) == [(everything, 0)]
    second = train(spec_for(weights, "frozen", True, epochs=2, learning_rate=5e-3), bundle=bundle)
    assert feature_passes(second.notes) == [(0, everything)], second.notes


def test_augmentation_uses_cached_views_or_falls_back_to_images(bundle, weights):
    views = train(spec_for(weights, "frozen", True, epochs=3, augmentations=("flip",), augment_views=2),
                  bundle=bundle)
    # Two augmented views of each training image, then validation and test once each.
    assert feature_passes(views.notes) == [(2 * len(bundle.train) + len(bundle.val) + len(bundle.test), 0)]
    on_the_fly = train(spec_for(weights, "frozen", True, epochs=1, augmentations=("flip",)), bundle=bundle)
    assert not any("cached features" in n for n in on_the_fly.notes)


def test_padded_call_runs_one_batch_shape_and_drops_the_padding():
    shapes = []

    def row_sums(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return batch.sum(axis=1)

    for count in (5, FEATURE_BATCH):
        images = np.arange(count, dtype=np.float32).reshape(-1, 1) * np.ones((1, 3), np.float32)
        np.testing.assert_array_equal(_padded_call(row_sums, images), images.sum(axis=1))
    assert shapes == [(FEATURE_BATCH, 3)] * 2


@pytest.mark.parametrize("on_disk", [False, True])
def test_views_dataset_switches_view_each_epoch(tmp_path, on_disk):
    views = [np.zeros((5, 2), "float32"), np.ones((5, 2), "float32")]
    if on_disk:
        store = RowStore(tmp_path / "views", RowLayout((2,), "float32"))
        with store.writer() as writer:
            for v, view in enumerate(views):
                for i, row in enumerate(view):
                    writer.add(f"view{v}-{i}", row)
        views = [store.array([f"view{v}-{i}" for i in range(5)]) for v in range(2)]
    ds, steps = views_dataset(views, np.arange(5), batch_size=2, seed=0, first_epoch=0, epochs=3)
    batches = list(ds.as_numpy_iterator())
    assert steps == 3 and len(batches) == 9
    per_epoch = [np.concatenate([b[0] for b in batches[i * 3:(i + 1) * 3]]) for i in range(3)]
    assert [float(e.mean()) for e in per_epoch] == [0.0, 1.0, 0.0]
    assert sorted(np.concatenate([b[1] for b in batches[:3]]).tolist()) == [0, 1, 2, 3, 4]


def test_cut_is_the_last_single_tensor_below_the_trainable_part():
    inputs = keras.Input((4,))
    a = keras.layers.Dense(4, name="a")(inputs)
    b = keras.layers.Dense(4, name="b")(a)
    c = keras.layers.Add(name="c")([a, b])
    d = keras.layers.Dense(4, name="d")(c)
    model = keras.Model(inputs, d)
    names = [layer.name for layer in model.layers]
    # 'b' cannot be the cut: 'c' also reads 'a'. The cut before 'c' is therefore 'a'.
    assert names[last_single_tensor_cut(model, names.index("c"))] == "a"
    assert names[last_single_tensor_cut(model, names.index("d"))] == "c"




# ---- the feature store -------------------------------------------------------------------

def small_split(numbers, prefix: str = "img") -> Split:
    """Images ``4x4x3`` whose pixels say their number, with identities made from it."""
    images = np.stack([np.full((4, 4, 3), n % 200, np.uint8) + np.arange(3, dtype=np.uint8) for n in numbers])
    identities = [f"{prefix}{n}" for n in numbers]
    return Split(images, np.zeros(len(numbers), np.int32), [f"{prefix}/{n}.png" for n in numbers], identities)


class CountingFeatures:
    """A StageFeatures on a pooling 'network', counting the images it forwards for real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.forwarded = 0
        self.batch_shapes: list[tuple[int, ...]] = []
        inputs = keras.Input((4, 4, 3))
        lower = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
        self.plan = CutPlan("pool", lower, lower)

        counted = threading.Lock()  # the feature pass calls it from two threads at once

        def pooled(batch: np.ndarray) -> np.ndarray:
            with counted:
                self.batch_shapes.append(batch.shape)
                self.forwarded += int(np.any(batch != 0, axis=(1, 2, 3)).sum())  # padding rows are zeros
            return batch.mean(axis=(1, 2))

        monkeypatch.setattr(StageFeatures, "_frozen_forward", lambda features: pooled)

    def run(self) -> StageFeatures:
        """The features of a new run (nothing carried over in memory)."""
        return StageFeatures(tiny_spec(), self.plan, "none")


def pooled(split: Split) -> np.ndarray:
    return split.images.astype(np.float32).mean(axis=(1, 2))


def test_features_are_forwarded_once_per_image_and_read_back_by_later_runs(monkeypatch):
    counting, split = CountingFeatures(monkeypatch), small_split(range(1, 41))
    first = counting.run()
    rows = first.compute(split)
    assert counting.forwarded == 40 and (first.computed, first.reused) == (40, 0)
    assert counting.batch_shapes == [(FEATURE_BATCH, 4, 4, 3)] * 3  # one traced shape, padded
    np.testing.assert_allclose(np.asarray(rows), pooled(split))

    second = counting.run()
    again = second.compute(split)
    assert counting.forwarded == 40 and (second.computed, second.reused) == (0, 40)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(rows))
    assert "0 image(s) forwarded, 40 read from the feature store" in second.summary()


def test_a_grown_or_edited_split_forwards_only_its_new_images(monkeypatch):
    counting = CountingFeatures(monkeypatch)
    counting.run().compute(small_split(range(1, 21)))
    before = counting.forwarded
    grown = small_split([*range(1, 8), 150, *range(8, 21), 151])
    edited = grown.take(range(len(grown)))
    edited.identities[3] = "img4-edited"  # the same file with new content has a new identity
    edited.images[3] = 99
    features = counting.run()
    rows = features.compute(edited)
    assert counting.forwarded - before == 3 and (features.computed, features.reused) == (3, 19)
    np.testing.assert_allclose(np.asarray(rows), pooled(edited))


def test_copies_of_one_image_are_forwarded_once(monkeypatch):
    counting = CountingFeatures(monkeypatch)
    split = small_split([5, 6, 5, 5, 7])
    rows = counting.run().compute(split)
    assert counting.forwarded == 3
    np.testing.assert_allclose(np.asarray(rows), pooled(split))


def test_the_store_is_kept_under_its_cap_without_evicting_what_the_run_reads(monkeypatch, isolated_home):
    monkeypatch.setenv("TL_FEATURE_CACHE_MB", "0")
    counting = CountingFeatures(monkeypatch)
    old, new = small_split(range(1, 11)), small_split(range(11, 21))
    old_rows = counting.run().compute(old)  # over the cap at once, but in use: kept
    (root,) = (isolated_home / "features").iterdir()
    store = RowStore(root, RowLayout((3,), "float32"))
    assert store.missing(old.identities) == []
    age_chunks(root, 100)
    counting.run().compute(new)
    assert store.missing(old.identities) == old.identities  # least recently used, not in use: gone
    assert store.missing(new.identities) == []
    np.testing.assert_allclose(np.asarray(old_rows), pooled(old))  # still readable by its run
    forwarded = counting.forwarded
    counting.run().compute(old)
    assert counting.forwarded - forwarded == 10


def test_feature_stores_are_separate_per_namespace_and_row_shape():
    namespace = {"backbone": "mobilenet_v2", "cut": "pool", "weights": "none"}
    store = feature_store(namespace, (3,))
    assert store.layout == RowLayout((3,), "float32")
    assert feature_store(dict(namespace), (3,)).root == store.root
    assert feature_store({**namespace, "weights": "imagenet"}, (3,)).root != store.root
    assert feature_store({**namespace, "cut": "block_3_add"}, (3,)).root != store.root
    assert feature_store(namespace, (4,)).root != store.root


# ---- a growing folder --------------------------------------------------------------------

def test_a_grown_folder_forwards_only_its_new_images(tmp_path: Path):
    root = tmp_path / "animals"
    add_images(root / "cats", 12, ".png", seed=1, size=24)
    add_images(root / "dogs", 12, ".jpg", seed=2, size=24)
    spec = dataclasses.replace(tiny_spec("frozen", epochs=1),
                               dataset=DatasetSpec(source=f"folder:{root}", image_size=48))
    first = train(spec)
    assert feature_passes(first.notes) == [(24, 0)]
    second = train(spec)
    assert feature_passes(second.notes) == [(0, 24)], second.notes
    add_images(root / "cats", 1, ".png", seed=3, first=12, size=24)
    add_images(root / "dogs", 1, ".jpg", seed=4, first=12, size=24)
    grown = train(spec)
    assert feature_passes(grown.notes) == [(2, 24)], grown.notes
