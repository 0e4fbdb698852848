"""What a stage fits on: seeded tf.data batches, one-hot targets, class weights, oversampling.

Images and features may live on disk (:class:`tlcore.data.rows.RowArray`): the pipeline
shuffles row indices, not rows, and reads each batch's rows as it needs them, ahead of the
step that uses them, so a dataset's pixels or features never have to fit in memory.

Two answers to class imbalance: class weights count a small class's images more in the loss;
oversampling (:func:`oversampled_dataset`) shows them more often. Both aim at the same
balance, so using both over-corrects (a class 10 times smaller then counts about 100 times
more).
"""

from __future__ import annotations

import math
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


def oversampled_rows(labels: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """One epoch's row indices: as many draws as rows, with replacement, every class equally likely.

    A row's chance is inversely proportional to its class's size, so each class present makes
    up about the same share of the epoch. Seeded by ``(seed, epoch)``: the same run draws the
    same epochs, and a run resumed at epoch ``e`` draws what it would have drawn.
    """
    labels = np.asarray(labels)
    chances = 1.0 / np.bincount(labels)[labels]
    rng = np.random.default_rng([seed, epoch])
    return rng.choice(len(labels), size=len(labels), replace=True, p=chances / chances.sum())


def oversampled_dataset(
    views: Sequence[Rows],
    targets: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
) -> tuple[tf.data.Dataset, int]:
    """Batches of :func:`oversampled_rows` for epochs ``first_epoch`` onwards.

    Images or features alike; with several augmented views (cached features), epoch ``e``
    reads view ``e % len(views)``, as without oversampling. Epochs keep their length.

    Returns:
        The dataset, spanning all ``epochs``, and its steps per epoch.
    """
    count = len(labels)
    targets_tensor = tf.constant(targets)
    read = views_reader(views)

    def draw(epoch: np.ndarray) -> np.ndarray:
        return oversampled_rows(labels, seed, int(epoch))

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        rows = tf.ensure_shape(tf.numpy_function(draw, [epoch], tf.int64, stateful=False), [count])
        view = tf.math.floormod(epoch, len(views))
        return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size).map(
            lambda index: (read(view, index), tf.gather(targets_tensor, index)),
            num_parallel_calls=tf.data.AUTOTUNE)

    dataset = tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(one_epoch)
    return dataset.prefetch(tf.data.AUTOTUNE), math.ceil(count / batch_size)
