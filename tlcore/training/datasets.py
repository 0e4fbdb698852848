"""What a stage fits on: seeded tf.data batches, one-hot targets and class weights."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def as_tf_dataset(
    inputs: np.ndarray, targets: np.ndarray, batch_size: int, shuffle_seed: int | None
) -> tf.data.Dataset:
    """Float batches of images or features; reshuffled each epoch when a seed is given.

    A fresh dataset per stage restarts the shuffle sequence, so training on images and on
    cached features sees the same batches.
    """
    ds = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(inputs), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(
        lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Weights inversely proportional to class frequency, averaging 1 over the images."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    counts[counts == 0] = 1.0
    return {i: float(len(labels) / (num_classes * c)) for i, c in enumerate(counts)}
