"""What a stage fits on: seeded tf.data batches, one-hot targets and class weights.

Images and features may live on disk (:class:`tlcore.data.rows.RowArray`): the pipeline
shuffles row indices, not rows, and reads each batch's rows as it needs them, ahead of the
step that uses them, so a dataset's pixels or features never have to fit in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from tlcore.data.rows import RowArray

Rows = np.ndarray | RowArray


def as_tf_dataset(
    inputs: Rows, targets: np.ndarray, batch_size: int, shuffle_seed: int | None
) -> tf.data.Dataset:
    """Float batches of images or features; reshuffled each epoch when a seed is given.

    A fresh dataset per stage restarts the shuffle sequence, so training on images and on
    cached features sees the same batches.
    """
    count = len(inputs)
    order = tf.data.Dataset.range(count)
    if shuffle_seed is not None:
        order = order.shuffle(max(count, 1), seed=shuffle_seed, reshuffle_each_iteration=True)
    targets_tensor = tf.constant(targets)
    read = row_reader(inputs)
    batches = order.batch(batch_size).map(
        lambda index: (read(index), tf.gather(targets_tensor, index)), num_parallel_calls=tf.data.AUTOTUNE
    )
    return batches.prefetch(tf.data.AUTOTUNE)


def row_reader(inputs: Rows) -> Callable[[tf.Tensor], tf.Tensor]:
    """A graph function from a batch of row indices to those rows as float32."""
    if isinstance(inputs, np.ndarray):
        constant = tf.constant(inputs)
        return lambda index: tf.cast(tf.gather(constant, index), tf.float32)
    shape = (None, *inputs.shape[1:])

    def read(index: np.ndarray) -> np.ndarray:
        return inputs.read(index).astype(np.float32, copy=False)

    return lambda index: tf.ensure_shape(tf.numpy_function(read, [index], tf.float32, stateful=False), shape)


def views_reader(views: Sequence[Rows]) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """A graph function from (view, row indices) to those rows of that view as float32."""
    shape = (None, *views[0].shape[1:])

    def read(view: np.ndarray, index: np.ndarray) -> np.ndarray:
        return np.asarray(views[int(view)][index], dtype=np.float32)

    return lambda view, index: tf.ensure_shape(
        tf.numpy_function(read, [view, index], tf.float32, stateful=False), shape)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Weights inversely proportional to class frequency, averaging 1 over the images."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    counts[counts == 0] = 1.0
    return {i: float(len(labels) / (num_classes * c)) for i, c in enumerate(counts)}
