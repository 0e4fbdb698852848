"""Training: ``train(spec, observer) -> RunResult``.

Every strategy is a list of stages (frozen head training, fine-tuning); each stage sets a
freezing policy, is prepared by its kind (on images, or on cached features where the bottom
of the network is frozen, see :mod:`tlcore.training.stages`), recompiles with its own
learning rate and is fitted by :func:`fit_stage`, with epochs numbered on across stages.
Progress leaves through Keras callbacks to one observer, as in keras-tuner; checkpoints are a
callback too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from tlcore.backbones import ResolvedBackbone, build_backbone
from tlcore.config import RunSpec
from tlcore.data import DatasetBundle
from tlcore.data.assemble import bundle_from_catalogue
from tlcore.data.catalogue import Catalogue
from tlcore.data.registry import list_dataset
from tlcore.records import EpochRecord, RunStatus
from tlcore.report.evaluate import EvalReport, predict_probabilities, report_from_probabilities
from tlcore.report.paired import TestPredictions
from tlcore.training.allocator import keep_freed_memory
from tlcore.training.auto import resolve_auto
from tlcore.training.cached_stage import CachedFeatureStage, weights_identity
from tlcore.training.checkpoint import Checkpoint, CheckpointCallback
from tlcore.training.compiling import compile_for_stage, stage_rates
from tlcore.training.datasets import balanced_class_weights
from tlcore.training.distribution import choose_placement, detach_from_strategy, steps_per_execution_on
from tlcore.training.model import backbone_of, build_classifier, count_params
from tlcore.training.observer import NoteKeeper, PassTimer, TrainingObserver
from tlcore.training.precision import describe_precision, precision_policy
from tlcore.training.reporting import ObserverCallback
from tlcore.training.stages import ImageStage, PreparedStage, Stage, StageInputs, StageKind, plan_stages


@dataclass
class RunResult:
    """What training produced; ``status`` is finished or stopped."""

    status: RunStatus
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
        """Test metrics of the trained model."""
        return self.test_evaluation()[0]

    def test_evaluation(self) -> tuple[EvalReport, TestPredictions]:
        """Test metrics of the trained model, and its answer for every test image.

        From cached features, evaluation costs the trainable part only (and no new graph for
        the full model), so a warm run evaluates in a fraction of a second.
        """
        split, names = self.bundle.test, self.bundle.class_names
        probabilities = (predict_probabilities(self.model, split.images)
                         if self.test_probabilities is None else self.test_probabilities)
        report = report_from_probabilities(probabilities, split, names)
        predictions = TestPredictions.from_probabilities(
            probabilities, split.identities, split.ids, split.labels, names, report.top_k)
        return report, predictions


@dataclass
class TrainingRun:
    """What every stage of one run shares: its data, classifier, observer and log."""

    spec: RunSpec
    bundle: DatasetBundle
    resolved: ResolvedBackbone
    model: keras.Model
    observer: TrainingObserver
    note: NoteKeeper
    checkpoint_dir: Path | None
    done_epochs: int = 0
    ready_kinds: dict[str, CachedFeatureStage] = field(default_factory=dict)
    """Stage name -> the cached stage already planned for it (the first stage's, whose frozen
    part forwarded images as they were decoded): its cut and traced forward are not made twice."""


@dataclass(frozen=True)
class StageOutcome:
    """What fitting one stage produced."""

    history: list[EpochRecord]
    stopped: bool
    test_probabilities: np.ndarray | None


def train(
    spec: RunSpec,
    observer: TrainingObserver | None = None,
    bundle: DatasetBundle | None = None,
    checkpoint_dir: Path | None = None,
) -> RunResult:
    """Train the classifier that ``spec`` describes.

    Args:
        spec: The run. Validated here.
        observer: Hears about epochs, batches and notes, and is asked after every step
            whether to stop (then the run ends as ``stopped``). None observes nothing.
        bundle: Already loaded data, to skip loading (the caller loaded it for a preview).
        checkpoint_dir: Where to save weights after every epoch; a checkpoint already there
            is resumed from (its finished epochs are skipped).

    Returns:
        The trained model, its history and the data it was trained on.
    """
    spec.validate()
    started = time.perf_counter()
    keep_freed_memory()
    observer = observer or TrainingObserver()
    note = NoteKeeper(observer)
    placement = choose_placement()
    placement.check_batch(spec.train.batch_size)
    mixed = spec.train.mixed_precision
    precision = precision_policy(mixed, placement)
    if spec.train.strategy == "auto":
        spec = resolve_auto(spec, observer, checkpoint_dir, note)
    keras.utils.set_random_seed(spec.train.seed)
    history: list[EpochRecord] = []
    status, test_probabilities = RunStatus.FINISHED, None
    with placement.scope(), precision:
        for remark in (placement.describe(spec.train.batch_size), describe_precision(mixed)):
            if remark:
                note(remark)
        run = start_run(spec, observer, bundle, checkpoint_dir, note)
        for name, split in (("training", run.bundle.train), ("validation", run.bundle.val)):
            placement.check_split(name, len(split), spec.train.batch_size)
        for inputs in stage_inputs(run, plan_stages(spec.train, backbone_of(run.model), spec.backbone.name)):
            outcome = fit_stage(run, inputs, stage_kind(run, inputs.stage).prepare(inputs))
            history.extend(outcome.history)
            test_probabilities = outcome.test_probabilities
            if outcome.stopped:
                status = RunStatus.STOPPED
                break
    return RunResult(
        status=status,
        model=detach_from_strategy(run.model),
        bundle=run.bundle,
        history=history,
        notes=run.note.notes,
        trainable_params=count_params(run.model.trainable_weights),
        total_params=count_params(run.model.weights),
        seconds=time.perf_counter() - started,
        test_probabilities=test_probabilities,
    )


def start_run(
    spec: RunSpec, observer: TrainingObserver, bundle: DatasetBundle | None, checkpoint_dir: Path | None,
    note: NoteKeeper | None = None,
) -> TrainingRun:
    """Load the data, build the classifier and restore its checkpoint, noting what happened."""
    note = note or NoteKeeper(observer)
    catalogue = list_dataset(spec.dataset) if bundle is None else None
    resolved = build_backbone(spec.backbone, spec.dataset.image_size)
    for remark in resolved.notes:
        note(remark)
    classes = len(catalogue.class_names if catalogue is not None else bundle.class_names)
    model = build_classifier(resolved, classes, spec.dataset.image_size, spec.train)
    resume = Checkpoint.load(checkpoint_dir) if checkpoint_dir else None
    ready: dict[str, CachedFeatureStage] = {}
    if catalogue is not None:
        bundle, ready = decode_and_forward(spec, catalogue, model, resolved, observer, note,
                                           fresh=resume is None)
    for warning in bundle.warnings:
        note(warning)
    if bundle.skipped:
        note(skipped_note(bundle))
    run = TrainingRun(spec, bundle, resolved, model, observer, note, checkpoint_dir, ready_kinds=ready)
    if resume is not None:
        resume.restore(model)
        run.done_epochs = resume.epoch
        note(f"Resumed after epoch {resume.epoch} from its checkpoint (optimizer state restarts).")
    return run


def decode_and_forward(
    spec: RunSpec,
    catalogue: Catalogue,
    model: keras.Model,
    resolved: ResolvedBackbone,
    observer: TrainingObserver,
    note: NoteKeeper,
    fresh: bool,
) -> tuple[DatasetBundle, dict[str, CachedFeatureStage]]:
    """Decode what the pixel store lacks; when the first stage trains on cached features (and
    the run starts afresh), forward each image through its frozen part as it is decoded.

    Returns:
        The data, and the first stage's cached stage by its name when one was planned.
    """
    first = plan_stages(spec.train, backbone_of(model), spec.backbone.name)[0]
    cached = (CachedFeatureStage.for_policy(spec, model, first.policy, weights_identity(resolved))
              if fresh and not spec.train.augmentations else None)
    sink = cached.features.sink() if cached is not None else None
    bundle = bundle_from_catalogue(catalogue, spec.dataset, PassTimer("Decoding images", observer.on_pass),
                                   on_decoded=sink.add if sink is not None else None)
    if sink is None:
        return bundle, {}
    summary = sink.close()
    if sink.count:
        note(summary)
    return bundle, {first.name: cached}


SHOWN_SKIPPED = 10


def skipped_note(bundle: DatasetBundle) -> str:
    """The files the decode pass could not read, by name and reason (the first few)."""
    shown = "; ".join(f"{skipped.id} ({skipped.reason})" for skipped in bundle.skipped[:SHOWN_SKIPPED])
    more = len(bundle.skipped) - SHOWN_SKIPPED
    rest = f"; and {more} more (`python -m tlcore show RUN --json` lists them all)." if more > 0 else "."
    return f"Unreadable files left out: {shown}{rest}"


def stage_inputs(run: TrainingRun, stages: list[Stage]) -> Iterator[StageInputs]:
    """Each stage that still has epochs to train, with its freezing policy applied.

    Applied lazily, just before the stage is prepared: a stage's policy must not change the
    classifier while the previous stage trains.
    """
    stage_end = 0
    for stage in stages:
        first_epoch, stage_end = max(stage_end, run.done_epochs), stage_end + stage.epochs
        if first_epoch >= stage_end:
            continue
        stage.policy.apply(backbone_of(run.model))
        yield StageInputs(run.spec, run.bundle, run.model, stage, first_epoch, stage_end,
                          is_last=stage is stages[-1], note=run.note, on_pass=run.observer.on_pass)


def stage_kind(run: TrainingRun, stage: Stage) -> StageKind:
    """On cached features where the stage's frozen part allows it, else on images."""
    cached = run.ready_kinds.pop(stage.name, None) or CachedFeatureStage.for_policy(
        run.spec, run.model, stage.policy, weights_identity(run.resolved))
    return cached if cached is not None else ImageStage()


def fit_stage(run: TrainingRun, inputs: StageInputs, prepared: PreparedStage) -> StageOutcome:
    """Compile and fit a prepared stage over its epochs, whatever kind prepared it.

    The stage's schedule spans all its epochs; a resumed stage starts it at the epochs it had
    finished. With a discriminative floor below 1, the backbone's groups train at their shares.
    """
    train, stage, bundle = run.spec.train, inputs.stage, run.bundle
    steps = prepared.steps_per_epoch or math.ceil(len(bundle.train) / train.batch_size)
    rates = stage_rates(run.spec, run.model, stage, steps,
                        done_epochs=inputs.first_epoch - (inputs.end_epoch - stage.epochs))
    compile_for_stage(prepared.model, train, rates.learning_rate,
                      steps_per_execution_on(prepared.model, prepared.steps_per_execution), rates.multipliers)
    run.note(f"Stage {stage.name}: {stage.policy.describe()}, {rates.description}, "
             f"{count_params(prepared.model.trainable_weights):,} trainable parameters"
             + (f" (trained on {prepared.trained_on})." if prepared.trained_on else "."))
    reporter = ObserverCallback(stage.name, len(bundle.train), run.observer, schedule=rates.schedule)
    callbacks: list[keras.callbacks.Callback] = [reporter]
    if run.checkpoint_dir is not None:  # after the reporter: an epoch is recorded, then saved
        callbacks.append(CheckpointCallback(run.checkpoint_dir, run.model))
    if train.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=train.early_stopping_patience, restore_best_weights=True,
        ))
    class_weight = (balanced_class_weights(bundle.train.labels, len(bundle.class_names))
                    if train.class_weights else None)
    prepared.model.fit(
        prepared.train_data,
        validation_data=prepared.val_data,
        epochs=inputs.end_epoch,
        initial_epoch=inputs.first_epoch,
        steps_per_epoch=prepared.steps_per_epoch,
        class_weight=class_weight,
        callbacks=callbacks,
        shuffle=False,
        verbose=0,
    )
    return StageOutcome(reporter.history, reporter.stopped, prepared.after_fit())
