"""A search of the head's settings on cached features, with Optuna, within a time budget.

A frozen backbone's pooled features are computed once (:mod:`tlcore.training.frozen_features`);
after that a head trains in about a second, so many settings can be tried in the time one
fine-tuning epoch takes. Each trial trains a fresh head (seeded like a run, so a setting scores
the same whenever it is tried) on the training features and is scored by validation accuracy
at its epoch of lowest validation loss, which is the epoch early stopping keeps. The backbone
is never touched, and the test split is never looked at.

Optuna's TPE sampler picks the settings, seeded by the spec's seed, so the same spec and trial
cap give the same trials. The budget is Optuna's ``timeout``: no trial starts after it, so a
search ends within the budget plus the trial that was running. Features are read a batch at a
time from the feature store through tf.data, as a run reads them, so a split never has to fit
in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import optuna
import tensorflow as tf

from tlcore.config import RunSpec, TrainSpec
from tlcore.errors import ConfigError
from tlcore.training.compiling import compile_for_stage
from tlcore.training.datasets import Rows, as_tf_dataset, balanced_class_weights, one_hot
from tlcore.training.frozen_features import FrozenFeatures, frozen_features
from tlcore.training.model import build_head
from tlcore.training.observer import TrainingObserver

MAX_TRIALS = 200
"""Trial cap when none is given: the budget, not the cap, ends a search of 60 s."""
MAX_TRIAL_EPOCHS = 30
"""A trial trains at most this many epochs, however many the spec's run has."""
DEFAULT_PATIENCE = 3
"""Epochs without a better validation loss before a trial stops, when the spec sets none."""
STARTUP_TRIALS = 8
"""Random trials before TPE starts modelling: a 60 s search has a few dozen trials in all."""
SIGNIFICANT_DIGITS = 3
"""Settings are rounded before training (a rate of 0.00316, not 0.0031622776), so what is shown
and saved is exactly what was trained."""

Params = dict[str, float | int]


@dataclass(frozen=True)
class SearchSpace:
    """The settings a head search draws from; each name is a :class:`TrainSpec` field.

    Attributes:
        learning_rate: Lowest and highest rate, drawn on a log scale.
        dropout: Range of the dropout before the head, uniform.
        label_smoothing: Range of the label smoothing, uniform.
        weight_decay: Range of the decoupled weight decay, on a log scale (its low end is
            practically none).
        head_hidden_units: Widths of the optional hidden ReLU layer; 0 is no hidden layer.
    """

    learning_rate: tuple[float, float] = (1e-4, 1e-1)
    dropout: tuple[float, float] = (0.0, 0.6)
    label_smoothing: tuple[float, float] = (0.0, 0.2)
    weight_decay: tuple[float, float] = (1e-6, 1e-2)
    head_hidden_units: tuple[int, ...] = (0, 128, 256, 512)

    def suggest(self, trial: optuna.Trial) -> Params:
        """One trial's settings, rounded to :data:`SIGNIFICANT_DIGITS`."""
        drawn = {
            "learning_rate": trial.suggest_float("learning_rate", *self.learning_rate, log=True),
            "dropout": trial.suggest_float("dropout", *self.dropout),
            "label_smoothing": trial.suggest_float("label_smoothing", *self.label_smoothing),
            "weight_decay": trial.suggest_float("weight_decay", *self.weight_decay, log=True),
        }
        rounded: Params = {name: float(f"{value:.{SIGNIFICANT_DIGITS}g}") for name, value in drawn.items()}
        rounded["head_hidden_units"] = int(trial.suggest_categorical("head_hidden_units",
                                                                     self.head_hidden_units))
        return rounded

    def to_dict(self) -> dict[str, Any]:
        return {name: list(value) for name, value in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Trial:
    """One setting tried.

    Attributes:
        number: Its place in the search, from 0.
        params: The settings, by :class:`TrainSpec` field name.
        val_accuracy: Validation accuracy at the epoch of lowest validation loss.
        val_loss: That lowest validation loss (infinite when every epoch diverged).
        seconds: Wall time the trial took in the search, choosing its settings included.
    """

    number: int
    params: Params
    val_accuracy: float
    val_loss: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "params": dict(self.params)}


@dataclass(frozen=True)
class HeadSearch:
    """A finished search.

    Attributes:
        trials: Every trial, in the order they ran.
        best: The most accurate on validation; among equals, the lower validation loss, then
            the earlier trial.
        budget_seconds: The time the search was given.
        spent_seconds: The time it took (at most the budget plus its last trial).
    """

    trials: tuple[Trial, ...]
    best: Trial
    budget_seconds: float
    spent_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"trials": [trial.to_dict() for trial in self.trials], "best": self.best.to_dict(),
                "budget_seconds": self.budget_seconds, "spent_seconds": self.spent_seconds}


@dataclass(frozen=True)
class FeatureData:
    """What a head trains and is scored on: the pooled features and labels of two splits.

    Attributes:
        train: Training rows (on disk or in memory), one per image.
        train_labels: Class index of each training row.
        val: Validation rows.
        val_labels: Class index of each validation row.
        classes: Number of classes.
    """

    train: Rows
    train_labels: np.ndarray
    val: Rows
    val_labels: np.ndarray
    classes: int

    @classmethod
    def of(cls, features: FrozenFeatures) -> FeatureData:
        bundle = features.bundle
        return cls(features.train, bundle.train.labels, features.val, bundle.val.labels,
                   len(bundle.class_names))

    @property
    def width(self) -> int:
        return int(self.train.shape[1])


def feature_head(width: int, classes: int, dropout: float, hidden_units: int) -> keras.Model:
    """A fresh head on pooled features: the layers a frozen stage trains, on their own."""
    features = keras.Input((width,), name="features")
    return keras.Model(features, build_head(features, classes, dropout, hidden_units), name="head")


def evaluate_setting(
    data: FeatureData, train: TrainSpec, params: Params, epochs: int, patience: int, number: int = 0
) -> Trial:
    """Train a fresh head with ``train`` changed by ``params`` and score it on validation.

    The head is seeded with the spec's seed and trained with its optimizer, batch size and
    class weights, a whole epoch per call into TensorFlow (as a frozen stage trains).
    """
    started = time.perf_counter()
    settings = dataclasses.replace(train, **params)
    keras.utils.set_random_seed(settings.seed)
    model = feature_head(data.width, data.classes, settings.dropout, settings.head_hidden_units)
    steps = max(1, math.ceil(len(data.train) / settings.batch_size))
    compile_for_stage(model, settings, settings.learning_rate, steps_per_execution=steps)
    weights = balanced_class_weights(data.train_labels, data.classes) if settings.class_weights else None
    history = model.fit(
        as_tf_dataset(data.train, one_hot(data.train_labels, data.classes), settings.batch_size,
                      shuffle_seed=settings.seed),
        validation_data=as_tf_dataset(data.val, one_hot(data.val_labels, data.classes),
                                      settings.batch_size, shuffle_seed=None),
        epochs=epochs,
        class_weight=weights,
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience)],
        shuffle=False,
        verbose=0,
    ).history
    losses = np.array(history["val_loss"], dtype=float)
    losses[~np.isfinite(losses)] = np.inf
    kept = int(np.argmin(losses))
    return Trial(number, dict(params), float(history["val_accuracy"][kept]), float(losses[kept]),
                 time.perf_counter() - started)


def best_trial(trials: tuple[Trial, ...] | list[Trial]) -> Trial:
    """The most accurate trial; ties go to the lower validation loss, then the earlier trial."""
    return max(trials, key=lambda trial: (trial.val_accuracy, -trial.val_loss, -trial.number))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without Optuna's line per trial and TensorFlow's warning that new heads retrace."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def search_heads(
    data: FeatureData,
    train: TrainSpec,
    budget_seconds: float,
    max_trials: int = MAX_TRIALS,
    space: SearchSpace = SearchSpace(),
    epochs: int | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> HeadSearch:
    """Search ``space`` for the head that scores best on ``data``'s validation rows.

    Args:
        data: The features and labels.
        train: The run's settings; each trial changes the searched ones.
        budget_seconds: No trial starts after this long.
        max_trials: No more trials than this.
        space: What is searched.
        epochs: Epochs per trial (early stopping may end it sooner); default the spec's
            epochs, at most :data:`MAX_TRIAL_EPOCHS`.
        on_trial: Hears each trial as it finishes (a page shows them).
        should_stop: Asked after each trial; True ends the search there.

    Raises:
        ConfigError: The budget, cap or epochs are not positive.
    """
    epochs = min(train.epochs, MAX_TRIAL_EPOCHS) if epochs is None else epochs
    if not (budget_seconds > 0 and max_trials >= 1 and epochs >= 1):
        raise ConfigError(f"A head search needs a positive budget, trial cap and epochs (got "
                          f"{budget_seconds:g} s, {max_trials} trials, {epochs} epochs).",
                          "Give the search at least a few seconds and one trial.")
    patience = train.early_stopping_patience or DEFAULT_PATIENCE
    trials: list[Trial] = []
    started = time.perf_counter()
    last_end = [started]

    def objective(trial: optuna.Trial) -> float:
        result = evaluate_setting(data, train, space.suggest(trial), epochs, patience, trial.number)
        now = time.perf_counter()
        trials.append(dataclasses.replace(result, seconds=now - last_end[0]))
        last_end[0] = now
        return result.val_accuracy

    def after_trial(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(trials[-1])
        if should_stop is not None and should_stop():
            study.stop()

    with _quiet():
        sampler = optuna.samplers.TPESampler(seed=train.seed, n_startup_trials=STARTUP_TRIALS)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective, n_trials=max_trials, timeout=budget_seconds, callbacks=[after_trial])
    return HeadSearch(tuple(trials), best_trial(trials), float(budget_seconds), time.perf_counter() - started)


def head_search(
    spec: RunSpec,
    budget_seconds: float | None = None,
    max_trials: int = MAX_TRIALS,
    observer: TrainingObserver | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    features: FrozenFeatures | None = None,
    space: SearchSpace = SearchSpace(),
) -> HeadSearch:
    """Search the head settings of ``spec`` on its frozen backbone's cached features.

    Args:
        spec: The run; its strategy does not matter (the backbone is frozen here).
        budget_seconds: Default the spec's ``search_budget_seconds`` (60 s unless set). The
            features are computed (or read back) before the budget starts.
        max_trials: Trial cap.
        observer: Hears the decode and feature passes; its ``should_stop`` ends the search
            after the running trial.
        on_trial: Hears each trial as it finishes.
        features: The spec's features, already loaded (by an LR range test, say).
        space: What is searched.

    Raises:
        ConfigError: The spec is impossible, or the budget or cap is not positive.
    """
    spec.validate()
    observer = observer or TrainingObserver()
    keras.utils.set_random_seed(spec.train.seed)
    features = features or frozen_features(spec, observer)
    budget = spec.train.search_budget_seconds if budget_seconds is None else budget_seconds
    return search_heads(FeatureData.of(features), spec.train, budget, max_trials, space,
                        on_trial=on_trial, should_stop=observer.should_stop)


def best_spec(spec: RunSpec, search: HeadSearch) -> RunSpec:
    """``spec`` with the best trial's head settings; its strategy and everything else stay."""
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **search.best.params))
