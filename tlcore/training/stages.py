"""Stages: what a strategy fits, and the one shape every kind of stage hands to the loop.

A strategy is a list of :class:`Stage` plans (frozen head training, fine-tuning). Before it is
fitted, a stage kind turns a plan into a :class:`PreparedStage`: the model ``fit`` trains and
the datasets it trains and validates on. :class:`ImageStage` trains the whole classifier on
images; :class:`~tlcore.training.cached_stage.CachedFeatureStage` trains the part above the
frozen layers on their cached outputs. The loop fits either the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from tlcore.config import RunSpec, TrainSpec
from tlcore.data import DatasetBundle, Split
from tlcore.training.datasets import as_tf_dataset, one_hot, oversampled_dataset
from tlcore.training.distribution import shuffled_batches
from tlcore.training.model import FreezePolicy
from tlcore.training.observer import PassProgress


@dataclass(frozen=True)
class Stage:
    """One fit call: a name, how many epochs, what trains, at which learning rate."""

    name: str
    epochs: int
    policy: FreezePolicy
    learning_rate: float


def plan_stages(train: TrainSpec, backbone: keras.Model, catalogue_name: str | None = None) -> list[Stage]:
    """The strategy as stages; fine-tuning always uses the lower learning rate.

    Args:
        train: The training settings.
        backbone: The classifier's backbone, whose layers a fine-tune stage unfreezes.
        catalogue_name: The backbone's catalogue name (``spec.backbone.name``), which tells its
            blocks apart when ``train.fine_tune_blocks`` is set; ``None`` for none.

    Raises:
        ConfigError: ``fine_tune_blocks`` asks for more blocks than the backbone has, or for
            blocks of a backbone without known blocks (TF Hub), in a strategy that fine-tunes.
    """
    frozen = FreezePolicy(trainable_top=0)
    if train.strategy == "scratch":
        return [Stage("scratch", train.epochs, FreezePolicy(None), train.learning_rate)]
    if train.strategy == "frozen":
        return [Stage("frozen", train.epochs, frozen, train.learning_rate)]
    # Only strategies that fine-tune resolve the policy: a blocks setting left over from a
    # fine-tuning run must not stop a frozen run of a TF Hub model.
    finetune = FreezePolicy.for_finetune(backbone, train.fine_tune_layers, train.fine_tune_fraction,
                                         train.fine_tune_blocks, catalogue_name)
    plans = {
        "finetune": [Stage("finetune", train.epochs, finetune, train.fine_tune_learning_rate)],
        "frozen_then_finetune": [
            Stage("frozen", train.epochs, frozen, train.learning_rate),
            Stage("finetune", train.fine_tune_epochs, finetune, train.fine_tune_learning_rate),
        ],
    }
    return plans[train.strategy]


@dataclass(frozen=True)
class StageInputs:
    """What preparing one stage needs.

    Attributes:
        spec: The run.
        bundle: Its data.
        model: The whole classifier, with the stage's freezing policy already applied.
        stage: The plan being prepared.
        first_epoch: The first epoch to train, 0-based and numbered on across stages (later
            than the stage's start when a run resumes from a checkpoint).
        end_epoch: The epoch after the stage's last one.
        is_last: Whether this is the strategy's last stage (the test split is evaluated after
            it only).
        note: Where remarks for the run's log go.
        on_pass: Hears how a pass over the images before training (features) is going.
    """

    spec: RunSpec
    bundle: DatasetBundle
    model: keras.Model
    stage: Stage
    first_epoch: int
    end_epoch: int
    is_last: bool
    note: Callable[[str], None]
    on_pass: Callable[[PassProgress], None] = field(default=lambda progress: None)

    @property
    def epochs(self) -> int:
        return self.end_epoch - self.first_epoch

    def targets(self, split: Split) -> np.ndarray:
        return one_hot(split.labels, len(self.bundle.class_names))


def no_test_probabilities() -> np.ndarray | None:
    return None


@dataclass
class PreparedStage:
    """A stage ready to fit; the loop treats every kind of stage alike through it.

    Attributes:
        model: What ``fit`` trains: the classifier, or a part of it that shares its layers.
        train_data: Training batches (shuffled with the run's seed).
        val_data: Validation batches.
        steps_per_epoch: Steps per epoch when ``train_data`` spans all epochs, else None.
        steps_per_execution: Training steps per call into TensorFlow.
        trained_on: What the stage trains on besides images (for the run log), or None.
        after_fit: Called once ``fit`` returns: the test split's class probabilities when the
            stage computed them, None to evaluate the classifier on the test images.
    """

    model: keras.Model
    train_data: tf.data.Dataset
    val_data: tf.data.Dataset
    steps_per_epoch: int | None = None
    steps_per_execution: int = 1
    trained_on: str | None = None
    after_fit: Callable[[], np.ndarray | None] = no_test_probabilities


class StageKind(Protocol):
    """Turns a stage plan into a :class:`PreparedStage`."""

    def prepare(self, inputs: StageInputs) -> PreparedStage: ...


class ImageStage:
    """Trains the whole classifier on images: works for every policy and augmentation."""

    def prepare(self, inputs: StageInputs) -> PreparedStage:
        train, bundle = inputs.spec.train, inputs.bundle
        targets, steps = inputs.targets(bundle.train), None
        if train.oversample:
            train_data, steps = oversampled_dataset([bundle.train.images], targets, bundle.train.labels,
                                                    train.batch_size, train.seed, inputs.first_epoch,
                                                    inputs.epochs)
        else:
            train_data, steps = shuffled_batches(inputs.model, bundle.train.images, targets,
                                                 train.batch_size, train.seed, inputs.epochs)
        return PreparedStage(
            model=inputs.model,
            train_data=train_data,
            val_data=as_tf_dataset(bundle.val.images, inputs.targets(bundle.val),
                                   train.batch_size, shuffle_seed=None),
            steps_per_epoch=steps,
        )
