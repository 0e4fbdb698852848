"""Both kinds of stage hand the loop the same PreparedStage, fed with the same batches."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from homes import studio_home
from notes import feature_passes
from specs import tiny_spec

from tlcore.backbones import build_backbone
from tlcore.data import load_dataset
from tlcore.training.cached_stage import CachedFeatureStage
from tlcore.training.model import backbone_of, build_classifier
from tlcore.training.stages import ImageStage, PreparedStage, StageInputs, plan_stages


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    with studio_home(tmp_path_factory.mktemp("stages")):
        return load_dataset(tiny_spec().dataset)


def frozen_inputs(bundle, notes: list[str], **train) -> StageInputs:
    """The frozen stage of a tiny classifier, as the loop would prepare it."""
    spec = tiny_spec("frozen", epochs=2, **train)
    keras.utils.set_random_seed(spec.train.seed)
    resolved = build_backbone(spec.backbone, spec.dataset.image_size)
    model = build_classifier(resolved, len(bundle.class_names), spec.dataset.image_size, spec.train)
    stage = plan_stages(spec.train, backbone_of(model))[0]
    stage.policy.apply(backbone_of(model))
    return StageInputs(spec, bundle, model, stage, first_epoch=0, end_epoch=2, is_last=True,
                       note=notes.append)


def first_batch(prepared: PreparedStage) -> tuple[np.ndarray, np.ndarray]:
    inputs, targets = next(iter(prepared.train_data))
    return inputs.numpy(), targets.numpy()


def test_image_and_cached_stages_both_prepare_a_prepared_stage(bundle):
    notes: list[str] = []
    inputs = frozen_inputs(bundle, notes)
    cached_kind = CachedFeatureStage.for_policy(inputs.spec, inputs.model, inputs.stage.policy, "none")
    assert cached_kind is not None
    on_images, on_features = ImageStage().prepare(inputs), cached_kind.prepare(inputs)
    assert isinstance(on_images, PreparedStage) and isinstance(on_features, PreparedStage)

    assert on_images.model is inputs.model and on_images.trained_on is None
    assert on_features.model is not inputs.model and on_features.trained_on == "cached features"
    shared = {id(w) for w in inputs.model.trainable_weights}
    assert {id(w) for w in on_features.model.trainable_weights} == shared  # it trains the classifier
    images, image_targets = first_batch(on_images)
    features, feature_targets = first_batch(on_features)
    assert images.shape[1:] == (*bundle.train.images.shape[1:],)
    assert features.shape[0] == images.shape[0] and features.ndim == 2
    np.testing.assert_array_equal(image_targets, feature_targets)  # the same shuffled batches
    assert on_features.steps_per_execution == -(-len(bundle.train) // inputs.spec.train.batch_size)
    assert on_images.steps_per_execution == 1

    assert on_images.after_fit() is None
    probabilities = on_features.after_fit()
    assert probabilities.shape == (len(bundle.test), len(bundle.class_names))
    images = len(bundle.train) + len(bundle.val) + len(bundle.test)
    assert feature_passes(notes) == [(images, 0)]  # every image of the three splits, forwarded once


@pytest.mark.parametrize("train", [{"feature_cache": False}, {"augmentations": ("flip",)}])
def test_a_stage_that_cannot_use_cached_features_trains_on_images(bundle, train):
    inputs = frozen_inputs(bundle, [], **train)
    assert CachedFeatureStage.for_policy(inputs.spec, inputs.model, inputs.stage.policy, "none") is None


def test_stage_inputs_count_the_epochs_left_and_one_hot_the_labels(bundle):
    inputs = dataclasses.replace(frozen_inputs(bundle, []), first_epoch=1, end_epoch=4)
    assert inputs.epochs == 3
    targets = inputs.targets(bundle.val)
    assert targets.shape == (len(bundle.val), len(bundle.class_names))
    np.testing.assert_array_equal(targets.argmax(axis=1), bundle.val.labels)
