"""Tiny TF2 SavedModels for tests of TF Hub handles, written by the tests themselves."""

from __future__ import annotations

import tensorflow as tf

IMAGES = tf.TensorSpec([None, None, None, 3], tf.float32)


class MeanColour(tf.Module):
    """The mean colour of each image, times a variable; its call takes no ``training`` argument."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = tf.Variable(2.0)

    @tf.function(input_signature=[IMAGES])
    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(images, axis=[1, 2]) * self.scale
