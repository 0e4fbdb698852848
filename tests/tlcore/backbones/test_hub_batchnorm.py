"""Fine-tuning a TF Hub model keeps its BatchNorm statistics, on SavedModels written here."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from savedmodels import IMAGES

from tlcore.backbones import HubBackbone, build_backbone
from tlcore.backbones.hub import writes_in_inference
from tlcore.config import BackboneSpec, TrainSpec
from tlcore.training.model import backbone_of, build_classifier
from tlcore.training.stages import plan_stages

SIZE = 8


class ConvBatchNorm(tf.Module):
    """A reusable SavedModel: a convolution, a Keras BatchNormalization layer, mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")
        self.norm = keras.layers.BatchNormalization(momentum=0.5, name="norm")
        self.conv.build((None, None, None, 3))
        self.norm.build((None, None, None, 4))

    @tf.function
    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.reduce_mean(self.norm(self.conv(images), training=training), axis=[1, 2])


class AlwaysTraining(ConvBatchNorm):
    """A badly made SavedModel: no training argument, and its BatchNorm always updates."""

    @tf.function(input_signature=[IMAGES])
    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return self.pooled(images)

    @tf.function(input_signature=[IMAGES])
    def pooled(self, images: tf.Tensor) -> tf.Tensor:
        # A function of its own, so the update sits in a function the call invokes.
        return tf.reduce_mean(self.norm(self.conv(images), training=True), axis=[1, 2])


def save(module: tf.Module, path: Path) -> Path:
    tf.saved_model.save(module, str(path))
    return path


@pytest.fixture
def batchnorm_model(tmp_path: Path) -> Path:
    module = ConvBatchNorm()
    for training in (False, True):  # as TF Hub's reusable SavedModels trace both modes
        module.__call__.get_concrete_function(IMAGES, training=training)
    return save(module, tmp_path / "conv_batchnorm")


def hub_layer(model: keras.Model) -> HubBackbone:
    return next(layer for layer in backbone_of(model).layers if isinstance(layer, HubBackbone))


def by_name(layer: HubBackbone) -> dict[str, np.ndarray]:
    return {variable.name.split("_")[-1]: variable.numpy().copy() for variable in layer.hub_variables}


def fine_tuned_classifier(path: Path) -> keras.Model:
    """A two-class classifier on the Hub model, with the fine-tune stage's policy applied."""
    train = TrainSpec(strategy="finetune", fine_tune_fraction=1.0)
    resolved = build_backbone(BackboneSpec(f"hub:{path}"), SIZE)
    model = build_classifier(resolved, 2, SIZE, train)
    stage = plan_stages(train, backbone_of(model), f"hub:{path}")[0]
    stage.policy.apply(backbone_of(model))
    assert hub_layer(model).trainable
    return model


def test_fine_tuning_trains_the_weights_and_keeps_the_moving_statistics(batchnorm_model: Path) -> None:
    model = fine_tuned_classifier(batchnorm_model)
    layer = hub_layer(model)
    before = by_name(layer)
    assert {v.name.split("_")[-1]: v.trainable for v in layer.hub_variables} == {
        "kernel": True, "bias": True, "gamma": True, "beta": True, "mean": False, "variance": False,
    }

    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (16, SIZE, SIZE, 3)).astype("float32")
    model.fit(images, np.arange(16) % 2, batch_size=4, epochs=1, verbose=0)

    after = by_name(layer)
    for trained in ("kernel", "gamma", "beta"):
        assert not np.array_equal(before[trained], after[trained]), trained
    np.testing.assert_array_equal(before["mean"], after["mean"])
    np.testing.assert_array_equal(before["variance"], after["variance"])

    # The same SavedModel in training mode does move them: what the fit above avoided.
    layer._call_fn(tf.constant(images / 255.0), training=True)
    assert not np.array_equal(after["mean"], by_name(layer)["mean"])


def test_the_build_note_says_what_fine_tuning_does(batchnorm_model: Path) -> None:
    resolved = build_backbone(BackboneSpec(f"hub:{batchnorm_model}"), SIZE)
    layer = next(layer for layer in resolved.model.layers if isinstance(layer, HubBackbone))
    assert writes_in_inference(layer) == 0
    assert any("called in inference mode" in note and "BatchNorm statistics stay as trained" in note
               for note in resolved.notes)


def test_a_model_that_updates_its_statistics_in_inference_mode_is_named(tmp_path: Path) -> None:
    path = save(AlwaysTraining(), tmp_path / "always_training")
    resolved = build_backbone(BackboneSpec(f"hub:{path}"), SIZE)
    layer = next(layer for layer in resolved.model.layers if isinstance(layer, HubBackbone))
    assert writes_in_inference(layer) == 2  # moving mean and moving variance
    assert any("cannot keep its BatchNorm statistics frozen" in note for note in resolved.notes)

    before = by_name(layer)
    resolved.model(np.full((2, SIZE, SIZE, 3), 0.5, "float32"))
    assert not np.array_equal(before["mean"], by_name(layer)["mean"])  # the note is right
