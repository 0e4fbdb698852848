"""Class imbalance: class weights and oversampling both raise a small class's recall."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from specs import tiny_spec

from tlcore.backbones import build_backbone
from tlcore.config import TrainSpec
from tlcore.data import load_dataset
from tlcore.training.cached_stage import CachedFeatureStage
from tlcore.training.compiling import compile_for_stage
from tlcore.training.datasets import (
    as_tf_dataset,
    balanced_class_weights,
    one_hot,
    oversampled_dataset,
    oversampled_rows,
)
from tlcore.training.loop import train
from tlcore.training.model import backbone_of, build_classifier
from tlcore.training.stages import ImageStage, PreparedStage, StageInputs, plan_stages

EPOCHS = 15


def clusters(counts: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping Gaussian clusters in the plane, ``counts[c]`` points of class ``c``."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [1.5, 1.5]])
    x = np.concatenate([rng.normal(centres[c], 1.0, size=(n, 2)) for c, n in enumerate(counts)])
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return x.astype(np.float32), y.astype(np.int32)


def recalls(weights: bool = False, oversample: bool = False) -> list[float]:
    """Per-class recall on balanced test points of a softmax layer trained on 600 : 30 points."""
    x, y = clusters([600, 30], seed=1)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    compile_for_stage(model, TrainSpec(), 0.05)
    if oversample:
        data, steps = oversampled_dataset([x], one_hot(y, 2), y, 32, seed=0, first_epoch=0, epochs=EPOCHS)
    else:
        data, steps = as_tf_dataset(x, one_hot(y, 2), 32, shuffle_seed=0), None
    model.fit(data, epochs=EPOCHS, steps_per_epoch=steps, shuffle=False, verbose=0,
              class_weight=balanced_class_weights(y, 2) if weights else None)
    test_x, test_y = clusters([400, 400], seed=2)
    predicted = model.predict(test_x, verbose=0).argmax(axis=1)
    return [float(np.mean(predicted[test_y == c] == c)) for c in (0, 1)]


@pytest.fixture(scope="module")
def plain_recalls() -> list[float]:
    return recalls()


def test_class_weights_raise_the_small_class_recall(plain_recalls):
    weighted = recalls(weights=True)
    assert weighted[1] > plain_recalls[1] + 0.2
    assert weighted[0] > 0.8


def test_oversampling_raises_the_small_class_recall(plain_recalls):
    oversampled = recalls(oversample=True)
    assert oversampled[1] > plain_recalls[1] + 0.2
    assert oversampled[0] > 0.8


def test_oversampling_and_class_weights_together_over_correct():
    both = recalls(weights=True, oversample=True)
    assert both[0] < 0.6 < both[1]  # now the large class is the one missed


def test_an_oversampled_epoch_draws_every_class_about_equally_and_reproducibly():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    rows = oversampled_rows(labels, seed=5, epoch=0)
    assert rows.shape == (1000,) and rows.min() >= 0 and rows.max() < 1000
    counts = np.bincount(labels[rows], minlength=3)
    assert np.all(np.abs(counts - 1000 / 3) < 60), counts
    assert len(set(rows[labels[rows] == 2])) == 10  # with replacement: the 10 rows, drawn again and again
    np.testing.assert_array_equal(rows, oversampled_rows(labels, seed=5, epoch=0))
    assert not np.array_equal(rows, oversampled_rows(labels, seed=5, epoch=1))
    assert not np.array_equal(rows, oversampled_rows(labels, seed=6, epoch=0))


@pytest.fixture(scope="module")
def imbalanced():
    """The tiny shapes with every circle but only six images of each other class."""
    bundle = load_dataset(tiny_spec().dataset)
    labels = bundle.train.labels
    keep = np.concatenate([np.flatnonzero(labels == c)[: None if c == 0 else 6] for c in range(5)])
    return dataclasses.replace(bundle, train=bundle.train.take(np.sort(keep)))


def oversampling_inputs(bundle, **train) -> StageInputs:
    spec = tiny_spec("frozen", epochs=2, oversample=True, **train)
    keras.utils.set_random_seed(spec.train.seed)
    model = build_classifier(build_backbone(spec.backbone, spec.dataset.image_size), len(bundle.class_names),
                             spec.dataset.image_size, spec.train)
    stage = plan_stages(spec.train, backbone_of(model))[0]
    stage.policy.apply(backbone_of(model))
    return StageInputs(spec, bundle, model, stage, first_epoch=0, end_epoch=2, is_last=False, note=print)


def epoch_labels(prepared: PreparedStage) -> list[np.ndarray]:
    """The labels of each epoch's batches."""
    batches = [targets.numpy().argmax(axis=1) for _, targets in prepared.train_data]
    steps = prepared.steps_per_epoch
    return [np.concatenate(batches[e * steps:(e + 1) * steps]) for e in range(len(batches) // steps)]


def test_images_and_cached_features_draw_the_same_balanced_epochs(imbalanced):
    inputs = oversampling_inputs(imbalanced)
    cached = CachedFeatureStage.for_policy(inputs.spec, inputs.model, inputs.stage.policy, "none")
    on_images, on_features = ImageStage().prepare(inputs), cached.prepare(inputs)
    count = len(imbalanced.train)
    assert on_images.steps_per_epoch == on_features.steps_per_epoch == -(-count // 32)
    image_epochs, feature_epochs = epoch_labels(on_images), epoch_labels(on_features)
    assert len(image_epochs) == 2 and [len(e) for e in image_epochs] == [count, count]
    for on_images_epoch, on_features_epoch in zip(image_epochs, feature_epochs, strict=True):
        np.testing.assert_array_equal(on_images_epoch, on_features_epoch)
        shares = np.bincount(on_images_epoch, minlength=5) / count
        assert np.all(np.abs(shares - 0.2) < 0.1), shares  # circles are 48 of 72 images otherwise
    assert not np.array_equal(image_epochs[0], image_epochs[1])


@pytest.mark.parametrize("feature_cache,epochs", [(True, 3), (False, 1)])
def test_two_oversampled_runs_with_one_seed_are_identical(imbalanced, feature_cache, epochs):
    spec = tiny_spec("frozen", epochs=epochs, oversample=True, feature_cache=feature_cache)
    first, second = train(spec, bundle=imbalanced), train(spec, bundle=imbalanced)
    assert [e.loss for e in first.history] == [e.loss for e in second.history]
    for a, b in zip(first.model.weights, second.model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
