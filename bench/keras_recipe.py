"""The plain Keras transfer-learning recipe, the baseline the studio is measured against.

Written from the steps of the Keras transfer-learning guide: a ``tf.data`` pipeline over the
image files (read, decode, resize, batch, prefetch: decoded again every epoch), a pretrained
base frozen and called with ``training=False``, global average pooling, dropout and a softmax
layer, ``model.fit``, then ``model.evaluate`` on the test files. For fine-tuning, the top of
the base is unfrozen with its BatchNorm layers kept frozen, at a low learning rate.

MobileNetV2 alpha 0.35 has an ImageNet file for 224 px only in the offline cache; at any other
size Keras would try to download a size-named file. So the base is built without weights and
the 224 px no-top file is loaded into it, exactly what the studio does (without the top the
convolution weights do not depend on the input size).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import tensorflow as tf
from common import ALPHA, FileSplit, epoch_clock


@dataclass
class RecipeResult:
    """What one recipe run produced."""

    accuracy: float
    epoch_seconds: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0
    evaluate_seconds: float = 0.0
    trainable_params: int = 0
    trainable_layers: int = 0


def file_dataset(
    split: FileSplit,
    name: str,
    image_size: int,
    batch_size: int,
    shuffle_seed: int | None = None,
    cache: bool = False,
) -> tf.data.Dataset:
    """Batches of (float pixels in [0, 255], label) read from the split's JPEG files.

    Without ``cache`` every epoch reads and decodes the files again, as a pipeline built by
    ``image_dataset_from_directory`` does; ``cache`` keeps the decoded batches in memory after
    the first epoch, as the guide's ``.cache()`` on its TFDS pipeline does.
    """
    paths = tf.constant(split.paths[name])
    labels = tf.constant(split.labels[name], dtype=tf.int32)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(split.paths[name]), seed=shuffle_seed, reshuffle_each_iteration=True)

    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, (image_size, image_size), method="bilinear")
        return image, label

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.cache() if cache else ds


def build_base(image_size: int, weights_224: Path) -> keras.Model:
    """MobileNetV2 alpha 0.35 without its top, with the 224 px ImageNet no-top weights."""
    base = keras.applications.MobileNetV2(
        alpha=ALPHA, include_top=False, weights=None, input_shape=(image_size, image_size, 3)
    )
    base.load_weights(str(weights_224))
    return base


def build_model(base: keras.Model, image_size: int, num_classes: int, dropout: float) -> keras.Model:
    """Scale pixels as MobileNetV2 expects ([-1, 1]), run the base in inference mode, add a head."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def unfreeze_top(base: keras.Model, fraction: float) -> int:
    """Make the top ``fraction`` of the base's layers trainable, BatchNorm excepted.

    Returns the number of layers in the unfrozen top (BatchNorm included in the count).
    """
    top = max(1, min(len(base.layers), math.ceil(fraction * len(base.layers))))
    first = len(base.layers) - top
    base.trainable = True
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= first and not isinstance(layer, keras.layers.BatchNormalization)
    return top


def run(
    split: FileSplit,
    weights_224: Path,
    image_size: int,
    batch_size: int,
    epochs: int,
    seed: int,
    learning_rate: float,
    dropout: float = 0.2,
    finetune_fraction: float | None = None,
    cache: bool = False,
    jit_compile: bool | str = "auto",
) -> RecipeResult:
    """Build, fit and evaluate the recipe; ``finetune_fraction`` unfreezes the base's top."""
    keras.utils.set_random_seed(seed)
    base = build_base(image_size, weights_224)
    base.trainable = False
    model = build_model(base, image_size, len(split.class_names), dropout)
    layers = unfreeze_top(base, finetune_fraction) if finetune_fraction else 0
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    train = file_dataset(split, "train", image_size, batch_size, shuffle_seed=seed, cache=cache)
    val = file_dataset(split, "val", image_size, batch_size, cache=cache)
    test = file_dataset(split, "test", image_size, batch_size)
    clock = epoch_clock()
    started = time.perf_counter()
    model.fit(train, validation_data=val, epochs=epochs, callbacks=[clock], verbose=0)
    return evaluated(model, test, clock, started, layers)


def evaluated(model: keras.Model, test: tf.data.Dataset, clock, started: float, layers: int) -> RecipeResult:
    """Score a fitted recipe model on the test files; ``started`` is when its fitting began."""
    fitted = time.perf_counter()
    _, accuracy = model.evaluate(test, verbose=0)
    return RecipeResult(
        accuracy=float(accuracy),
        epoch_seconds=clock.seconds,
        fit_seconds=fitted - started,
        evaluate_seconds=time.perf_counter() - fitted,
        trainable_params=int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        trainable_layers=layers,
    )


def decode_pass_seconds(split: FileSplit, image_size: int, batch_size: int) -> float:
    """Seconds for one pass of the pipeline over train and val files, without any model:
    the decoding the recipe repeats every epoch."""
    started = time.perf_counter()
    for name in ("train", "val"):
        for _ in file_dataset(split, name, image_size, batch_size):
            pass
    return time.perf_counter() - started


def run_then_finetune(
    split: FileSplit,
    weights_224: Path,
    image_size: int,
    batch_size: int,
    epochs: tuple[int, int],
    seed: int,
    learning_rates: tuple[float, float],
    finetune_fraction: float,
    dropout: float = 0.2,
) -> RecipeResult:
    """The guide's two steps: fit the head on the frozen base, then unfreeze the base's top
    (BatchNorm kept frozen), recompile at a lower rate and fit on, epochs numbered on."""
    keras.utils.set_random_seed(seed)
    base = build_base(image_size, weights_224)
    base.trainable = False
    model = build_model(base, image_size, len(split.class_names), dropout)
    train = file_dataset(split, "train", image_size, batch_size, shuffle_seed=seed)
    val = file_dataset(split, "val", image_size, batch_size)
    clock = epoch_clock()
    started = time.perf_counter()
    layers = 0
    for stage, (stage_epochs, rate) in enumerate(zip(epochs, learning_rates, strict=True)):
        if stage == 1:
            layers = unfreeze_top(base, finetune_fraction)
        model.compile(optimizer=keras.optimizers.Adam(rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
        model.fit(train, validation_data=val, initial_epoch=epochs[0] * stage,
                  epochs=epochs[0] + stage * stage_epochs, callbacks=[clock], verbose=0)
    return evaluated(model, file_dataset(split, "test", image_size, batch_size), clock, started, layers)
