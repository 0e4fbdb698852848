"""Several accelerators of one machine: which devices a run trains on, and the strategy over them.

With more than one GPU visible, a run trains under ``tf.distribute.MirroredStrategy``: every
device holds a copy of the variables, each step's batch is split between them and the
gradients are summed before the update. The rule for the batch and the learning rate: the
spec's ``batch_size`` stays the *global* batch (each of N devices gets 1/N of it), so the
learning rate stays the spec's (linear scaling with the global batch gives a factor of 1). A
spec then trains the same model on one device or several, within float precision, and a
finished run keeps meaning the same thing when it is reused on another machine. Using the
extra devices for more images per step is a matter of raising ``batch_size`` (and, by linear
scaling, the learning rate) in the spec.

On one device nothing changes: no strategy, no scope, the same code path bit for bit.

``TL_DEVICES`` chooses the devices: ``auto`` (the default: every GPU when there are several,
else the default device), ``gpu:N`` (the first N GPUs) or ``cpu:N`` (N logical CPU devices, for
testing the distributed path without GPUs; TensorFlow must not have started its devices yet).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tlcore.errors import ConfigError
from tlcore.report.evaluate import predict_probabilities
from tlcore.training.datasets import Rows, as_tf_dataset, row_reader

DEVICES_VARIABLE = "TL_DEVICES"
PREDICT_BATCH = 64
"""Rows per predict call, as :func:`tlcore.report.evaluate.predict_probabilities` uses."""


@dataclass(frozen=True)
class Placement:
    """The devices a run trains on.

    Attributes:
        devices: Their names; one device means no strategy.
        strategy: The MirroredStrategy over ``devices`` when there are several, else None.
    """

    devices: tuple[str, ...]
    strategy: tf.distribute.Strategy | None = None

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    @property
    def on_gpu(self) -> bool:
        return all(tf.DeviceSpec.from_string(name).device_type == "GPU" for name in self.devices)

    def scope(self) -> contextlib.AbstractContextManager[object]:
        """Where models, optimizers and metrics must be built to train on every device."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def check_batch(self, batch_size: int) -> None:
        """Raises ConfigError unless every device gets an equal share of a full batch.

        Keras' ``fit`` and ``evaluate`` average the first batch over the devices to build the
        model, which fails on unequal shares ("Inputs to operation AddN ... must have the same
        size and shape").
        """
        if batch_size % self.replicas:
            example = self.replicas * max(1, batch_size // self.replicas)
            raise ConfigError(
                f"Batch size {batch_size} cannot be split evenly over {self.replicas} devices.",
                f"Use a multiple of {self.replicas} (for example {example}), "
                f"or set {DEVICES_VARIABLE}=gpu:1 to train on one device.",
            )

    def check_split(self, name: str, images: int, batch_size: int) -> None:
        """Raises ConfigError when a split smaller than one batch cannot be shared out evenly
        (its only batch is its first, see :meth:`check_batch`)."""
        if images < batch_size and images % self.replicas:
            fits = images - images % self.replicas
            raise ConfigError(
                f"The {name} split has {images} images, one batch that cannot be split evenly over "
                f"{self.replicas} devices.",
                f"Set the batch size to at most {fits} (a multiple of {self.replicas}), or set "
                f"{DEVICES_VARIABLE}=gpu:1 to train on one device.",
            )

    def describe(self, batch_size: int) -> str | None:
        """A line for the run's log when several devices train; None on one device."""
        if self.strategy is None:
            return None
        shares = np.array_split(np.arange(batch_size), self.replicas)
        split = " + ".join(str(len(share)) for share in shares)
        return (f"Training on {self.replicas} devices ({', '.join(self.devices)}) with MirroredStrategy: "
                f"each batch of {batch_size} is split {split}, gradients are summed, and the "
                "learning rate is the spec's (the global batch is the spec's batch size).")


def choose_placement(setting: str | None = None) -> Placement:
    """The devices ``setting`` (default: ``$TL_DEVICES``, else ``auto``) asks for.

    Raises:
        ConfigError: The setting is malformed or asks for more devices than there are.
    """
    setting = (setting if setting is not None else os.environ.get(DEVICES_VARIABLE, "auto")).strip().lower()
    if setting == "auto":
        gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
        return placement_over(tuple(gpus) if gpus else ("/device:CPU:0",))
    kind, _, count_text = setting.partition(":")
    if kind not in ("cpu", "gpu") or not count_text.isdigit() or int(count_text) < 1:
        raise ConfigError(f"{DEVICES_VARIABLE}={setting!r} is not a device setting.",
                          f"Write {DEVICES_VARIABLE}=auto, gpu:N or cpu:N (N at least 1).")
    count = int(count_text)
    if kind == "cpu":
        split_cpu(count)
    found = [device.name for device in tf.config.list_logical_devices(kind.upper())]
    if len(found) < count:
        raise ConfigError(
            f"{DEVICES_VARIABLE}={setting} asks for {count} {kind.upper()} device(s); "
            f"{len(found)} are visible.",
            f"Ask for at most {len(found)}, or {DEVICES_VARIABLE}=auto."
            + (" cpu:N must be set before TensorFlow starts (in the environment of the process)."
               if kind == "cpu" else ""),
        )
    return placement_over(tuple(found[:count]))


def placement_over(devices: tuple[str, ...]) -> Placement:
    if len(devices) == 1:
        return Placement(devices)
    return Placement(devices, tf.distribute.MirroredStrategy(list(devices)))


def split_cpu(count: int) -> None:
    """Make ``count`` logical CPU devices if TensorFlow has not started its devices yet.

    Once it has, the configuration can no longer change; :func:`choose_placement` then finds
    fewer devices than asked for and says so.
    """
    physical = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(physical) or []
    if count <= max(1, len(configured)):
        return
    with contextlib.suppress(RuntimeError):  # devices already started: reported by the caller
        tf.config.set_logical_device_configuration(
            physical, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])


def replicating_strategy(model: keras.Model) -> tf.distribute.Strategy | None:
    """The strategy ``model`` was built under when it spans several devices, else None."""
    strategy = model.distribute_strategy
    return strategy if strategy.num_replicas_in_sync > 1 else None


class ReplicatedForward:
    """Calls a forward function on every replica with its share of the batch, rows kept in order.

    Keras' ``predict_on_batch`` hands every replica the whole batch and concatenates their
    answers (a batch of 5 comes back as 10 rows under two replicas), so a model built under a
    strategy is called through this instead.
    """

    def __init__(self, strategy: tf.distribute.Strategy, forward: Callable[[tf.Tensor], object]) -> None:
        self.strategy = strategy
        # Traced once: an eager ``strategy.run`` costs as much again as the forward pass itself.
        self.step = tf.function(lambda values: strategy.run(forward, args=(values,)))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        shares = np.array_split(np.asarray(batch), self.strategy.num_replicas_in_sync)
        values = self.strategy.experimental_distribute_values_from_function(
            lambda context: shares[context.replica_id_in_sync_group])
        outputs = self.step(values)
        return np.concatenate([keras.ops.convert_to_numpy(part)
                               for part in self.strategy.experimental_local_results(outputs)])


def split_over_replicas(
    model: keras.Model, forward: Callable[[np.ndarray], object] | None = None
) -> Callable[[np.ndarray], object]:
    """``forward`` (default: the model in inference mode) as a batch function for ``model``'s devices.

    On one device it is ``forward`` itself (or ``predict_on_batch``): unchanged, bit for bit.
    """
    strategy = replicating_strategy(model)
    if strategy is None:
        return forward if forward is not None else model.predict_on_batch
    return ReplicatedForward(strategy, forward or tf.function(lambda inputs: model(inputs, training=False)))


def replicated_probabilities(model: keras.Model, rows: Rows) -> np.ndarray:
    """Class probabilities of ``rows`` (an array or on-disk rows) on ``model``'s devices."""
    if replicating_strategy(model) is None:
        return predict_probabilities(model, rows)
    forward = split_over_replicas(model)
    chunks = [np.asarray(forward(np.asarray(rows[start:start + PREDICT_BATCH], np.float32)))
              for start in range(0, len(rows), PREDICT_BATCH)]
    return np.concatenate(chunks) if chunks else np.zeros((0, model.output_shape[-1]), np.float32)


def shuffled_batches(
    model: keras.Model, inputs: Rows, targets: np.ndarray, batch_size: int, seed: int, epochs: int
) -> tuple[tf.data.Dataset, int | None]:
    """:func:`~tlcore.training.datasets.as_tf_dataset`'s training batches, the same on any devices.

    A dataset reshuffled on every iteration gives each ``iter()`` the next order of its seeded
    stream. On one device Keras 3's epoch iterator opens it twice per epoch (once to train,
    once more, unused, when the epoch's batches are done), so epoch ``e`` trains on order
    ``2e + 1``; under a strategy ``fit`` also opens it once more before training to build the
    model, which shifts every epoch onto other orders. So there the orders one device would
    use are drawn up front from the same seeded shuffle, and one dataset spanning all
    ``epochs`` replays them: each epoch sees the batches it sees on one device.

    Returns:
        The dataset, and its steps per epoch when it spans all epochs (None on one device).
    """
    if replicating_strategy(model) is None:
        return as_tf_dataset(inputs, targets, batch_size, shuffle_seed=seed), None
    count = len(inputs)
    shuffled = tf.data.Dataset.range(count).shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)
    orders = np.stack([np.fromiter(shuffled.as_numpy_iterator(), np.int64, count)
                       for _ in range(2 * epochs)][::2])
    targets_tensor = tf.constant(targets)
    read = row_reader(inputs)
    batches = tf.data.Dataset.from_tensor_slices(orders).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
    dataset = batches.map(lambda index: (read(index), tf.gather(targets_tensor, index)),
                          num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE), -(-count // batch_size)


def steps_per_execution_on(model: keras.Model, steps: int) -> int:
    """``steps`` training steps per call into TensorFlow on one device, one under a strategy.

    Keras 3.x's multi-step loop over a distributed iterator fails in TensorFlow 2.21 ("You
    must feed a value for placeholder tensor ... while/cond/Placeholder"); one step per call
    trains the same weights, with Keras' Python work per step.
    """
    return steps if replicating_strategy(model) is None else 1


def detach_from_strategy(model: keras.Model) -> keras.Model:
    """Let a model trained under a strategy predict like any other once training is over.

    Evaluation, the mistakes gallery and Grad-CAM call it outside any strategy; without this,
    its ``predict_on_batch`` would still run once per replica (see :class:`ReplicatedForward`).
    Its variables stay where they are: outside the strategy, reads see the first copy.
    """
    if replicating_strategy(model) is not None:
        model._distribute_strategy = None  # noqa: SLF001 - Keras sets it at construction, no public setter
        model.predict_function = None
    return model
