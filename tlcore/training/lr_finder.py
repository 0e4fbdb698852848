"""The LR range test: one short run whose learning rate rises exponentially, step by step.

Leslie Smith's test (fastai's ``lr_find``): the rate starts far too low to change anything
and ends far too high to train; in between, the loss falls, fastest somewhere, and then blows
up. The test trains what the spec's first stage trains, on what it trains on: a fresh head on
the frozen backbone's cached features when that stage has the backbone frozen (seconds), else
the classifier with the stage's freezing policy applied, on images or on the cached outputs of
its frozen part as the run would (slower). The spec's optimizer, batch size, label smoothing,
weight decay and discriminative rates are used; the model is thrown away afterwards.

One step's loss depends on its batch as much as on the rate, so the curve read is the
exponentially weighted mean of the losses, bias-corrected (Adam's correction: early steps are
not pulled towards zero). The suggestion is the rate where that curve falls fastest against
the log of the rate, before its minimum: at the minimum itself the rate is already close to
diverging. The minimum's rate divided by ten, the other usual reading, is reported beside it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tlcore.config import RunSpec, TrainSpec, setting
from tlcore.errors import ConfigError
from tlcore.training.compiling import make_optimizer
from tlcore.training.datasets import as_tf_dataset, one_hot
from tlcore.training.frozen_features import FrozenFeatures, frozen_features
from tlcore.training.head_search import FeatureData, feature_head
from tlcore.training.layer_rates import stage_rate_multipliers
from tlcore.training.loop import stage_kind, start_run
from tlcore.training.model import backbone_of
from tlcore.training.observer import BatchProgress, TrainingObserver
from tlcore.training.stages import StageInputs, plan_stages

START_RATE = 1e-7
END_RATE = 10.0
STEPS = 100
MIN_STEPS = 10
SMOOTHING = 0.9
"""Weight of the past in the smoothed loss: about the last ten steps count, so the curve lags
the rate by a few steps only (fastai's 0.98 averages over about fifty of its hundred)."""
DIVERGED = 4.0
"""The test stops once the smoothed loss exceeds this many times its lowest value so far."""
SKIP_START = 10
"""Steps left out of the search for the steepest descent: their average rests on few losses."""
SLOPE_HALF_WIDTH = 3
"""The slope at a step is taken between the steps this far before and after it (half a decade of
rates at 100 steps): from one step to the next, what is left of the batches' noise in the
smoothed loss would pick a random dip on the flat start."""
STARTS_TRAINING_BACKBONE = ("scratch", "finetune")
"""Strategies whose first stage trains backbone layers; every other one starts with it frozen."""
RULE = "steepest descent of the smoothed loss (most negative slope against log rate, before its minimum)"
NO_FALL_RULE = "minimum / 10 (the smoothed loss did not fall)"


@dataclass(frozen=True)
class LRFinding:
    """What an LR range test found.

    Attributes:
        rates: The learning rate of each step taken.
        losses: Each step's training loss (NaN or infinite where it diverged).
        smoothed: The exponentially weighted, bias-corrected mean of the losses up to each step.
        suggestion: The suggested learning rate, by ``rule`` (at most the spec's largest rate).
        rule: How ``suggestion`` was chosen, in words.
        min_over_ten: The rate of the lowest smoothed loss, divided by ten.
        seconds: Wall time of the test, loading data and features included.
        on_features: Whether it trained on cached outputs of the frozen part (else images).
    """

    rates: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float
    rule: str
    min_over_ten: float
    seconds: float
    on_features: bool

    def to_dict(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}


def rate_field(train: TrainSpec) -> str:
    """The :class:`TrainSpec` field the suggestion is for: the first stage's learning rate."""
    return "fine_tune_learning_rate" if train.strategy == "finetune" else "learning_rate"


def rate_at(step: int, steps: int, start: float = START_RATE, end: float = END_RATE) -> float:
    """The rate of step ``step`` of ``steps``: ``start`` at the first, ``end`` at the last."""
    return start * (end / start) ** (step / max(1, steps - 1))


def smooth(losses: Sequence[float], beta: float = SMOOTHING) -> list[float]:
    """The exponentially weighted mean of each loss and those before it, bias-corrected."""
    average, smoothed = 0.0, []
    for step, loss in enumerate(losses, 1):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** step))
    return smoothed


def suggest(rates: Sequence[float], smoothed: Sequence[float]) -> tuple[float, str, float]:
    """The suggested rate, its rule and the minimum's rate / 10, from a finished curve.

    Only the finite start of the curve counts. The steepest descent is looked for between
    step :data:`SKIP_START` and the minimum; with fewer than three steps there, the curve
    never really fell and the minimum / 10 is suggested instead.
    """
    values = np.asarray(smoothed, dtype=float)
    finite = len(values) if np.all(np.isfinite(values)) else int(np.argmin(np.isfinite(values)))
    if finite == 0:
        raise ConfigError("The loss was not finite from the first step of the LR range test.",
                          "Check the data and settings: even the smallest learning rate diverged.")
    lowest = int(np.argmin(values[:finite]))
    min_over_ten = float(rates[lowest]) / 10
    first = min(SKIP_START, lowest)
    if lowest - first < 2:
        return min_over_ten, NO_FALL_RULE, min_over_ten
    steepest = first + int(np.argmin(slopes(rates, values, first, lowest)))
    highest = setting(TrainSpec, "learning_rate").bound.high
    return min(float(rates[steepest]), highest), RULE, min_over_ten


def slopes(rates: Sequence[float], values: np.ndarray, first: int, lowest: int) -> np.ndarray:
    """The slope of ``values`` against log10 of the rate at each step from ``first`` up to (not
    including) ``lowest``, over :data:`SLOPE_HALF_WIDTH` steps each side, never past ``lowest``."""
    steps = np.arange(first, lowest)
    before, after = np.maximum(steps - SLOPE_HALF_WIDTH, 0), np.minimum(steps + SLOPE_HALF_WIDTH, lowest)
    logs = np.log10(np.asarray(rates, dtype=float))
    return (values[after] - values[before]) / (logs[after] - logs[before])


def sweep(
    model: keras.Model,
    batches: Iterator[tuple[tf.Tensor, tf.Tensor]],
    train: TrainSpec,
    steps: int = STEPS,
    observer: TrainingObserver | None = None,
    multipliers: dict[str, float] | None = None,
) -> tuple[list[float], list[float]]:
    """Train ``model`` one batch per step at rising rates until the end or divergence.

    Returns:
        The rate and the training loss of every step taken.
    """
    observer = observer or TrainingObserver()
    model.compile(optimizer=make_optimizer(train, rate_at(0, steps), multipliers),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing))
    rates: list[float] = []
    losses: list[float] = []
    average, lowest = 0.0, math.inf
    for step in range(steps):
        rate = rate_at(step, steps)
        model.optimizer.learning_rate.assign(rate)
        images, targets = next(batches)
        loss = float(model.train_on_batch(images, targets))
        rates.append(rate)
        losses.append(loss)
        observer.on_batch(BatchProgress(step + 1, steps))
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smoothed = average / (1 - SMOOTHING ** (step + 1))
        lowest = min(lowest, smoothed)
        if not math.isfinite(smoothed) or smoothed > DIVERGED * lowest or observer.should_stop():
            break
    return rates, losses


def lr_range_test(
    spec: RunSpec,
    observer: TrainingObserver | None = None,
    features: FrozenFeatures | None = None,
    steps: int = STEPS,
) -> LRFinding:
    """Run the LR range test for ``spec``'s first stage (see the module's docstring).

    Args:
        spec: The run. Validated here.
        observer: Hears the decode and feature passes and each step (as a batch); its
            ``should_stop`` ends the test early, with the steps taken so far.
        features: The spec's frozen features, already loaded (used when the first stage has
            the backbone frozen).
        steps: Steps from :data:`START_RATE` to :data:`END_RATE`.

    Raises:
        ConfigError: The spec is impossible, ``steps`` is below :data:`MIN_STEPS`, or the
            loss was not finite even at the smallest rate.
    """
    spec.validate()
    if steps < MIN_STEPS:
        raise ConfigError(f"An LR range test needs at least {MIN_STEPS} steps, got {steps}.",
                          f"Use the default of {STEPS}.")
    started = time.perf_counter()
    observer = observer or TrainingObserver()
    keras.utils.set_random_seed(spec.train.seed)
    if spec.train.strategy in STARTS_TRAINING_BACKBONE:
        model, dataset, on_features, multipliers = _first_stage(spec, observer)
    else:
        model, dataset = _feature_head(spec, features or frozen_features(spec, observer))
        on_features, multipliers = True, None
    rates, losses = sweep(model, iter(dataset.repeat()), spec.train, steps, observer, multipliers)
    smoothed = smooth(losses)
    suggestion, rule, min_over_ten = suggest(rates, smoothed)
    return LRFinding(tuple(rates), tuple(losses), tuple(smoothed), suggestion, rule, min_over_ten,
                     time.perf_counter() - started, on_features)


def _feature_head(spec: RunSpec, features: FrozenFeatures) -> tuple[keras.Model, tf.data.Dataset]:
    """A fresh head of the spec's shape, and batches of the training features."""
    train, data = spec.train, FeatureData.of(features)
    keras.utils.set_random_seed(train.seed)
    model = feature_head(data.width, data.classes, train.dropout, train.head_hidden_units)
    dataset = as_tf_dataset(data.train, one_hot(data.train_labels, data.classes), train.batch_size,
                            shuffle_seed=train.seed)
    return model, dataset


def _first_stage(
    spec: RunSpec, observer: TrainingObserver
) -> tuple[keras.Model, tf.data.Dataset, bool, dict[str, float] | None]:
    """The first stage as the training loop prepares it: the fresh classifier, frozen by the
    stage's policy, and what it trains on (images, or the frozen part's cached outputs)."""
    run = start_run(spec, observer, None, None)
    stage = plan_stages(spec.train, backbone_of(run.model))[0]
    stage.policy.apply(backbone_of(run.model))
    inputs = StageInputs(spec, run.bundle, run.model, stage, 0, stage.epochs, is_last=False,
                         note=run.note, on_pass=observer.on_pass)
    prepared = stage_kind(run, stage).prepare(inputs)
    multipliers = stage_rate_multipliers(spec, run.model, stage.policy)
    return prepared.model, prepared.train_data, prepared.trained_on is not None, multipliers
