"""A finished run that really learns in seconds: a small CNN saved as a TF Hub model, fine-tuned.

A catalogue backbone with random weights answers the same for every image (its features
vanish through the untrained BatchNorms), so export and agreement tests train this instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow as tf
from specs import tiny_spec

from tlcore.config import BackboneSpec
from tlcore.runs import jobs
from tlcore.runs.runner import execute_run
from tlcore.runs.store import RunStore


class SmallCnn(tf.Module):
    """Three strided convolutions and a max over the image: learns the shapes in seconds."""

    def __init__(self, cumulative: bool = False) -> None:
        super().__init__()
        init = tf.keras.initializers.HeNormal(seed=5)
        self.kernels = [tf.Variable(init(shape)) for shape in ([3, 3, 3, 16], [3, 3, 16, 32], [3, 3, 32, 32])]
        self.cumulative = cumulative

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        x = images * 2.0 - 1.0
        for kernel in self.kernels:
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, 2, "SAME"))
        if self.cumulative:  # LiteRT has no integer kernel for a running sum
            x = tf.math.cumsum(x, axis=-1)
        return tf.reduce_max(x, axis=[1, 2])


def train_hub_run(root: Path, cumulative: bool = False, epochs: int = 10) -> tuple[RunStore, str]:
    """A finished run whose backbone is a :class:`SmallCnn` saved under ``root``."""
    folder = root / ("cumulative_cnn" if cumulative else "small_cnn")
    tf.saved_model.save(SmallCnn(cumulative), str(folder))
    store = RunStore(root / "tlhome")
    spec = tiny_spec("finetune", epochs=epochs, fine_tune_learning_rate=3e-3)
    run, _ = store.create_run(dataclasses.replace(spec, backbone=BackboneSpec(name=f"hub:{folder}")))
    jobs.claim_for_this_process(store, run.id)
    finished = execute_run(store, run.id)
    assert finished.status == "finished", finished.error
    return store, run.id
