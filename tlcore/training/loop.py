"""Training: ``train(spec, on_epoch, should_stop) -> RunResult``.

Every strategy is a list of stages (frozen head training, fine-tuning); each stage sets a
freezing policy, recompiles with its own learning rate and fits, with epochs numbered on
across stages. Where the bottom of the network is frozen, the stage trains only the part above
it on cached features (:mod:`tlcore.training.cached_stage`). Progress leaves through a Keras callback,
as in keras-tuner.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tlcore.training.allocator import keep_freed_memory
from tlcore.backbones import ResolvedBackbone, build_backbone
from tlcore.training.cached_stage import StageFeatures, can_cache, plan_cut, views_dataset
from tlcore.training.checkpoint import Checkpoint, save_checkpoint
from tlcore.config import RunSpec, TrainSpec
from tlcore.data import DatasetBundle, load_dataset
from tlcore.report.evaluate import EvalReport, evaluate, predict_probabilities, report_from_probabilities
from tlcore.training.features import FeatureCache
from tlcore.training.model import FreezePolicy, backbone_of, build_classifier, count_params
from tlcore.records import EpochRecord

EpochCallback = Callable[[EpochRecord], None]
BatchCallback = Callable[[int, int], None]
StopCheck = Callable[[], bool]

OPTIMIZER_FACTORIES: dict[str, Callable[[float], keras.optimizers.Optimizer]] = {
    "adam": lambda lr: keras.optimizers.Adam(lr),
    "adamw": lambda lr: keras.optimizers.AdamW(lr),
    "sgd": lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
    "rmsprop": lambda lr: keras.optimizers.RMSprop(lr),
}


@dataclass(frozen=True)
class Stage:
    """One fit call: a name, how many epochs, what trains, at which learning rate."""

    name: str
    epochs: int
    policy: FreezePolicy
    learning_rate: float


@dataclass
class RunResult:
    """What training produced; ``status`` is ``finished`` or ``stopped``."""

    status: str
    model: keras.Model
    bundle: DatasetBundle
    history: list[EpochRecord]
    notes: list[str] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    seconds: float = 0.0
    test_probabilities: np.ndarray | None = None
    """Class probabilities of the test split, when the last stage computed them from cached
    features; None means evaluate the model on the test images."""

    def test_report(self) -> EvalReport:
        """Test metrics of the trained model.

        From cached features, evaluation costs the trainable part only (and no new graph for
        the full model), so a warm run evaluates in a fraction of a second.
        """
        split, names = self.bundle.test, self.bundle.class_names
        if self.test_probabilities is None:
            return evaluate(self.model, split, names)
        return report_from_probabilities(self.test_probabilities, split, names)


def plan_stages(train: TrainSpec, backbone: keras.Model) -> list[Stage]:
    """The strategy as stages; fine-tuning always uses the lower learning rate."""
    finetune = FreezePolicy.for_finetune(backbone, train.fine_tune_layers, train.fine_tune_fraction)
    frozen = FreezePolicy(trainable_top=0)
    plans = {
        "scratch": [Stage("scratch", train.epochs, FreezePolicy(None), train.learning_rate)],
        "frozen": [Stage("frozen", train.epochs, frozen, train.learning_rate)],
        "finetune": [Stage("finetune", train.epochs, finetune, train.fine_tune_learning_rate)],
        "frozen_then_finetune": [
            Stage("frozen", train.epochs, frozen, train.learning_rate),
            Stage("finetune", train.fine_tune_epochs, finetune, train.fine_tune_learning_rate),
        ],
    }
    return plans[train.strategy]


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Weights inversely proportional to class frequency, averaging 1 over the images."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    counts[counts == 0] = 1.0
    return {i: float(len(labels) / (num_classes * c)) for i, c in enumerate(counts)}


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


class ProgressReporter(keras.callbacks.Callback):
    """Turns Keras' logs into :class:`EpochRecord` events and honours stop requests.

    A stop request is checked after every batch, so a run stops within one batch. Keras still
    calls ``on_epoch_end`` for the cut-short epoch; that epoch is not reported, so the history
    only holds finished epochs.
    """

    def __init__(
        self,
        stage: str,
        images_per_epoch: int,
        on_epoch: EpochCallback | None,
        should_stop: StopCheck | None,
        on_batch: BatchCallback | None,
    ) -> None:
        super().__init__()
        self.stage = stage
        self.images_per_epoch = images_per_epoch
        self.on_epoch = on_epoch
        self.should_stop = should_stop
        self.on_batch = on_batch
        self.stopped = False
        self.history: list[EpochRecord] = []
        self._epoch_start = 0.0
        self._steps = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._steps = self.params.get("steps") or 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.on_batch is not None:
            self.on_batch(batch + 1, self._steps)
        if self.should_stop is not None and self.should_stop():
            self.stopped = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.stopped:
            return
        logs = logs or {}
        seconds = time.perf_counter() - self._epoch_start
        record = EpochRecord(
            epoch=epoch + 1,
            stage=self.stage,
            loss=float(logs.get("loss", np.nan)),
            accuracy=float(logs.get("accuracy", np.nan)),
            val_loss=float(logs.get("val_loss", np.nan)),
            val_accuracy=float(logs.get("val_accuracy", np.nan)),
            learning_rate=float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            seconds=seconds,
            images_per_second=self.images_per_epoch / seconds if seconds > 0 else 0.0,
        )
        self.history.append(record)
        if self.on_epoch is not None:
            self.on_epoch(record)


def compile_for_stage(
    model: keras.Model, train: TrainSpec, learning_rate: float, steps_per_execution: int = 1
) -> None:
    model.compile(
        optimizer=OPTIMIZER_FACTORIES[train.optimizer](learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    build_training_state(model)


def build_training_state(model: keras.Model) -> None:
    """Create the optimizer's slots and the metrics' totals of a compiled model before ``fit``.

    Without a distribution strategy Keras creates them while tracing the first training step,
    and TensorFlow traces a function that creates variables twice: once to create them, once
    more without. Created here, the step is traced once: in alternating cold runs with the
    benchmarks' settings the first epoch went from 4.5-5.4 s to 3.4-4.1 s when fine-tuning
    the top quarter, and from 1.2-2.0 s to 0.8-1.1 s for a frozen head, with bit-for-bit equal
    weights. ``fit`` resets the metrics before its first epoch.
    """
    model.optimizer.build(model.trainable_variables)
    targets = np.zeros((1, *model.output_shape[1:]), dtype=np.float32)
    model.compute_metrics(None, targets, targets)
    model.reset_metrics()


def steps_per_call(stage: Stage, cached: bool, train_images: int, batch_size: int) -> int:
    """Training steps per call into TensorFlow: a whole epoch when only the head trains on
    cached features, else one.

    A dense head's step over cached features costs microseconds, so Keras' per-step Python
    work made up most of such an epoch (about 0.3 s of a 10-epoch run measured by
    bench/frozen_vs_recipe.py). The weights come out the same; progress and stop requests
    then move once per epoch, which for such a stage takes milliseconds per thousand images.
    Stages that train backbone layers keep per-batch progress and stops.
    """
    if cached and stage.policy.trainable_top == 0:
        return max(1, math.ceil(train_images / batch_size))
    return 1


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


def weights_identity(resolved: ResolvedBackbone) -> str:
    """What the backbone's weights are, for feature-cache keys: a changed file is a new key."""
    loaded = resolved.weights_loaded
    source = loaded[len("hub:"):] if loaded.startswith("hub:") else loaded
    path = Path(source)
    if path.exists():
        stat = path.stat()
        return f"{loaded}|{stat.st_size}|{stat.st_mtime_ns}"
    return loaded


def train(
    spec: RunSpec,
    on_epoch: EpochCallback | None = None,
    should_stop: StopCheck | None = None,
    on_batch: BatchCallback | None = None,
    bundle: DatasetBundle | None = None,
    on_note: Callable[[str], None] | None = None,
    checkpoint_dir: Path | None = None,
) -> RunResult:
    """Train the classifier that ``spec`` describes.

    Args:
        spec: The run. Validated here.
        on_epoch: Called with each finished epoch.
        should_stop: Polled after every batch; returning True ends the run as ``stopped``.
        on_batch: Called with (batches done, batches per epoch) for progress bars.
        bundle: Already loaded data, to skip loading (the caller loaded it for a preview).
        on_note: Called with remarks worth keeping in the run's log (weight fallbacks, ...).
        checkpoint_dir: Where to save weights after every epoch; a checkpoint already there
            is resumed from (its finished epochs are skipped).

    Returns:
        The trained model, its history and the data it was trained on.
    """
    spec.validate()
    started = time.perf_counter()
    keep_freed_memory()
    keras.utils.set_random_seed(spec.train.seed)
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        if on_note is not None:
            on_note(text)

    if bundle is None:
        bundle = load_dataset(spec.dataset)
    for warning in bundle.warnings:
        note(warning)
    resolved = build_backbone(spec.backbone, spec.dataset.image_size)
    for remark in resolved.notes:
        note(remark)

    num_classes = len(bundle.class_names)
    model = build_classifier(resolved, num_classes, spec.dataset.image_size, spec.train)
    backbone = backbone_of(model)
    train_targets = one_hot(bundle.train.labels, num_classes)
    val_targets = one_hot(bundle.val.labels, num_classes)
    class_weight = (
        balanced_class_weights(bundle.train.labels, num_classes) if spec.train.class_weights else None
    )
    cache = FeatureCache()
    resume = Checkpoint.load(checkpoint_dir) if checkpoint_dir else None
    done = 0
    if resume is not None:
        resume.restore(model)
        done = resume.epoch
        note(f"Resumed after epoch {done} from its checkpoint (optimizer state restarts).")

    def checkpoint(record: EpochRecord) -> None:
        # Recorded first: a kill in between redoes the epoch instead of leaving a gap.
        if on_epoch is not None:
            on_epoch(record)
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, model, record.epoch)

    history: list[EpochRecord] = []
    status = "finished"
    stage_end = 0
    test_probabilities = None
    stages = plan_stages(spec.train, backbone)
    for stage in stages:
        first_epoch, stage_end = max(stage_end, done), stage_end + stage.epochs
        if first_epoch >= stage_end:
            continue
        stage.policy.apply(backbone)
        fit_model, train_data, val_data, steps, test_features = model, None, None, None, None
        plan = plan_cut(model, stage.policy) if can_cache(spec, stage.policy) else None
        features = None
        if plan is not None:
            features = StageFeatures(spec, plan, weights_identity(resolved), cache, note)
            views = features.training_views(bundle.train)
            val_data = as_tf_dataset(features.compute("val", bundle.val), val_targets,
                                     spec.train.batch_size, shuffle_seed=None)
            if stage is stages[-1]:  # the test split is evaluated after the last stage only
                test_features = features.compute_beside_training("test", bundle.test)
            if len(views) == 1:
                train_data = as_tf_dataset(views[0], train_targets, spec.train.batch_size,
                                           shuffle_seed=spec.train.seed)
            else:
                train_data, steps = views_dataset(views, train_targets, spec.train.batch_size,
                                                  spec.train.seed, first_epoch,
                                                  stage_end - first_epoch)
            fit_model = plan.upper
        else:
            train_data = as_tf_dataset(bundle.train.images, train_targets, spec.train.batch_size,
                                       shuffle_seed=spec.train.seed)
            val_data = as_tf_dataset(bundle.val.images, val_targets, spec.train.batch_size,
                                     shuffle_seed=None)
        compile_for_stage(fit_model, spec.train, stage.learning_rate, steps_per_call(
            stage, plan is not None, len(bundle.train), spec.train.batch_size))
        note(f"Stage {stage.name}: {stage.policy.describe()}, learning rate {stage.learning_rate:g}, "
             f"{count_params(fit_model.trainable_weights):,} trainable parameters"
             + (" (trained on cached features)." if plan is not None else "."))
        reporter = ProgressReporter(stage.name, len(bundle.train), checkpoint, should_stop, on_batch)
        callbacks: list[keras.callbacks.Callback] = [reporter]
        if spec.train.early_stopping_patience:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=spec.train.early_stopping_patience,
                restore_best_weights=True,
            ))
        fit_model.fit(
            train_data,
            validation_data=val_data,
            epochs=stage_end,
            initial_epoch=first_epoch,
            steps_per_epoch=steps,
            class_weight=class_weight,
            callbacks=callbacks,
            shuffle=False,
            verbose=0,
        )
        history.extend(reporter.history)
        if test_features is not None:
            test_probabilities = predict_probabilities(plan.upper, test_features.result())
        if features is not None:
            note(features.summary())
        if reporter.stopped:
            status = "stopped"
            break

    return RunResult(
        status=status,
        model=model,
        bundle=bundle,
        history=history,
        notes=notes,
        trainable_params=count_params(model.trainable_weights),
        total_params=count_params(model.weights),
        seconds=time.perf_counter() - started,
        test_probabilities=test_probabilities,
    )
