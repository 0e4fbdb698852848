"""End to end on the builtin shapes: data -> backbone -> model -> train -> evaluate learns.

Generalising from 240 small images needs pretrained features: with the genuine ImageNet
MobileNetV2 from ../shared/assets a frozen backbone scores far above chance on the test split
(skipped when the assets are absent). Offline, with nothing pretrained, a small CNN trained from
scratch through the ``hub:`` path must at least fit its training images: that exercises every
stage of the engine, although it cannot prove generalisation (which is the point of transfer
learning: from scratch, small data stays near chance).
"""

from __future__ import annotations

import dataclasses
import shutil

import tensorflow as tf
from specs import tiny_spec

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec
from tlcore.paths import keras_models_dir
from tlcore.report.evaluate import evaluate
from tlcore.training.loop import train


class SmallCnn(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        init = tf.keras.initializers.HeNormal(seed=3)
        self.k1 = tf.Variable(init([3, 3, 3, 16]), name="k1")
        self.k2 = tf.Variable(init([3, 3, 16, 32]), name="k2")
        self.k3 = tf.Variable(init([3, 3, 32, 32]), name="k3")

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        x = images * 2.0 - 1.0
        for kernel in (self.k1, self.k2, self.k3):
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, 2, "SAME"))
        return tf.reduce_max(x, axis=[1, 2])


def test_the_engine_fits_the_builtin_training_images_offline(tmp_path):
    path = tmp_path / "small_cnn"
    tf.saved_model.save(SmallCnn(), str(path))
    spec = tiny_spec("finetune", epochs=10, fine_tune_learning_rate=3e-3)
    spec = dataclasses.replace(spec, backbone=BackboneSpec(name=f"hub:{path}"))
    result = train(spec)
    fitted = evaluate(result.model, result.bundle.train, result.bundle.class_names)
    chance = 1 / len(result.bundle.class_names)
    assert fitted.accuracy >= chance + 0.35, [round(e.accuracy, 2) for e in result.history]
    assert result.history[-1].loss < result.history[0].loss


def test_pretrained_frozen_backbone_beats_chance_by_far_on_test_images(assets):
    keras_models_dir().mkdir(parents=True, exist_ok=True)
    for weights in (assets / "keras-weights").iterdir():
        shutil.copy(weights, keras_models_dir())
    spec = RunSpec(
        dataset=DatasetSpec(source="builtin:shapes", image_size=96),
        backbone=BackboneSpec(name="mobilenet_v2", alpha=0.35, weights="imagenet"),
        train=TrainSpec(strategy="frozen", epochs=6),
    )
    result = train(spec)
    report = evaluate(result.model, result.bundle.test, result.bundle.class_names)
    chance = 1 / len(result.bundle.class_names)
    assert report.accuracy >= chance + 0.5, [round(e.val_accuracy, 2) for e in result.history]
