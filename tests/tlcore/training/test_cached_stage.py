"""Training on cached frozen-part outputs equals training on images, and the cache behaves."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time

import keras
import numpy as np
import pytest
from calibrated import calibrated_weights
from specs import tiny_spec

from tlcore.config import BackboneSpec
from tlcore.data import load_dataset
from tlcore.report.evaluate import predict_probabilities
from tlcore.training.cached_stage import (
    FEATURE_BATCH,
    StageFeatures,
    _batched,
    last_single_tensor_cut,
    views_dataset,
)
from tlcore.training.features import FeatureCache
from tlcore.training.loop import train


@pytest.fixture(scope="module")
def bundle():
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
    computed = [int(m.group(1)) for n in cached.notes
                if (m := re.search(r"(\d+) feature set\(s\) computed", n))]
    assert computed == {"frozen": [3], "finetune": [3], "frozen_then_finetune": [2, 3]}[strategy]


def test_the_test_split_is_computed_on_another_thread_while_the_head_trains(
    bundle, weights, monkeypatch
):
    on_main_thread = {}
    compute = StageFeatures.compute

    def recording(self, split_name, split, view=None):
        on_main_thread[split_name] = threading.current_thread() is threading.main_thread()
        return compute(self, split_name, split, view)

    monkeypatch.setattr(StageFeatures, "compute", recording)
    result = train(spec_for(weights, "frozen", True, epochs=1), bundle=bundle)
    assert on_main_thread == {"train": True, "val": True, "test": False}
    assert any(re.search(r"3 feature set\(s\) computed.*s of it while the head trained", n)
               for n in result.notes), result.notes


def test_a_second_run_reuses_the_features(bundle, weights):
    train(spec_for(weights, "frozen", True, epochs=1), bundle=bundle)
    second = train(spec_for(weights, "frozen", True, epochs=2, learning_rate=5e-3), bundle=bundle)
    assert any("0 feature set(s) computed, 3 reused" in n for n in second.notes), second.notes


def test_augmentation_uses_cached_views_or_falls_back_to_images(bundle, weights):
    views = train(spec_for(weights, "frozen", True, epochs=3, augmentations=("flip",), augment_views=2),
                  bundle=bundle)
    assert any("4 feature set(s) computed" in n for n in views.notes), views.notes
    on_the_fly = train(spec_for(weights, "frozen", True, epochs=1, augmentations=("flip",)), bundle=bundle)
    assert not any("cached features" in n for n in on_the_fly.notes)


def test_feature_pass_runs_one_batch_shape_and_drops_the_padding():
    images = np.arange(2 * FEATURE_BATCH + 5, dtype=np.uint8).reshape(-1, 1) * np.ones((1, 3), np.uint8)
    shapes = []

    def row_sums(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return batch.sum(axis=1)

    features = _batched(row_sums, images)
    assert shapes == [(FEATURE_BATCH, 3)] * 3
    np.testing.assert_array_equal(features, images.sum(axis=1).astype(np.float32))


def test_views_dataset_switches_view_each_epoch():
    views = np.stack([np.zeros((5, 2)), np.ones((5, 2))]).astype("float32")
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


def test_cache_evicts_least_recently_used_first(tmp_path):
    cache = FeatureCache(tmp_path, max_bytes=3 * 8000 + 500)
    for key in ("a", "b", "c"):
        cache.put(key, np.zeros(1000))
    assert cache.get("a") is not None  # 'a' is now the most recently used
    os.utime(cache.path("b"), (time.time() - 100, time.time() - 100))
    cache.put("d", np.zeros(1000))
    assert cache.get("b") is None
    assert all(cache.get(k) is not None for k in ("a", "c", "d"))
    assert cache.size_bytes() <= cache.max_bytes


def test_cache_computes_once(tmp_path):
    cache, calls = FeatureCache(tmp_path), []
    for _ in range(2):
        array, hit = cache.get_or_compute("k", lambda: calls.append(1) or np.arange(3.0))
    assert hit and calls == [1] and array.tolist() == [0.0, 1.0, 2.0]
