"""How long training takes on this server, before anything runs.

Two sources, best first. Finished runs in the run store recorded how fast each of their stages
went on this very server (``EpochRecord.images_per_second``); a new run of the same backbone,
stage kind and feature-cache use is estimated from those speeds, scaled by image area and width.
Without such a run, a rule of thumb anchored at measurements on a CPU server with
:data:`ANCHOR_CORES` cores is scaled to this server's core count: MobileNetV2 (alpha 1.0) at
160 px pushes about 70 images/s through a forward pass and about 16 images/s through a full
training step (forward, backward, update); at 224 px both rates roughly halve, i.e. they scale
with the image area. Other backbones are scaled by their parameter count relative to
MobileNetV2 (a crude stand-in for compute, good to a factor of two for the catalogue), and
MobileNet width multipliers by alpha squared (compute and parameters both grow with alpha^2).

Without the feature cache, an epoch with a frozen backbone costs about one forward pass per
image and an epoch that trains the backbone (fine-tuning, scratch) a full step. Validation is
always a forward pass. With the feature cache (``TrainSpec.feature_cache``, see
:mod:`tlcore.training.cached_stage`), the frozen part runs once per image and stage, and each epoch only
pays for the part that trains. The result is an estimate for picking settings ("minutes or
hours?"), not a promise.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Collection, Sequence
from typing import Protocol

from tlcore.backbones.catalogue import CATALOGUE
from tlcore.config import RunSpec
from tlcore.records import EpochRecord, RunRecord, RunStatus

ANCHOR_BACKBONE = "mobilenet_v2"
ANCHOR_SIZE = 160
ANCHOR_CORES = 2
"""CPU cores of the server the anchor throughputs below were measured on."""
ANCHOR_FORWARD_IPS = 70.0
"""Images per second, forward pass only, MobileNetV2 alpha 1.0 at 160 px, on ANCHOR_CORES cores."""
ANCHOR_TRAIN_IPS = 16.0
"""Images per second, full training step, same configuration."""
EPOCH_OVERHEAD_S = 1.0
"""Fixed cost per epoch (pipeline start, validation set-up, callbacks)."""
STAGE_START_S = 8.0
"""Extra cost of the first epoch of each stage: building and tracing the training graph
(measured at about 8 s for MobileNetV2 on the anchor server, for a frozen and a fine-tune stage)."""
TYPICAL_LAYERS = 150
"""Layers of a typical catalogue backbone, to turn ``fine_tune_layers`` into a share."""
MEASURED_RUNS = 50
"""Newest finished runs whose epochs :func:`measure_server` reads (older ones add little)."""


# ---- this server: its cores and what its finished runs measured ------------------------


@dataclasses.dataclass(frozen=True)
class SpeedSample:
    """How fast one stage of one finished run trained on this server.

    Attributes:
        backbone: The run's backbone name.
        stage: ``frozen``, ``finetune`` or ``scratch``.
        cached: Whether the stage trained on cached features of the frozen part.
        relative_cost: :func:`relative_cost` of the run, to rescale to other sizes and widths.
        images_per_second: Training images per second of a whole epoch (validation included),
            the median over the stage's epochs after the first, whose time includes tracing.
    """

    backbone: str
    stage: str
    cached: bool
    relative_cost: float
    images_per_second: float


@dataclasses.dataclass(frozen=True)
class ServerProfile:
    """What the estimates know of the server: its cores and its runs' measured speeds."""

    cores: int
    samples: tuple[SpeedSample, ...] = ()

    @property
    def label(self) -> str:
        """``this server, 2 cores``: how the pages name the machine an estimate is for."""
        return f"this server, {self.cores} core{'' if self.cores == 1 else 's'}"


ANCHOR_SERVER = ServerProfile(cores=ANCHOR_CORES)
"""The server of the anchor measurements, with no runs: the rule of thumb unscaled."""


class EpochSource(Protocol):
    """What :func:`measure_server` reads: finished runs and their epochs (a ``RunStore``).

    A protocol, so training (below ``tlcore.runs``) reads the store without importing it.
    """

    def list_runs(self, statuses: Collection[RunStatus] | None = None) -> list[RunRecord]: ...

    def epochs(self, run_id: str) -> list[EpochRecord]: ...


def server_cores() -> int:
    """CPU cores this process may run on (the affinity mask, where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def speed_samples(run: RunRecord, epochs: Sequence[EpochRecord]) -> list[SpeedSample]:
    """One sample per stage of a finished run that recorded a speed."""
    samples = []
    for stage in dict.fromkeys(epoch.stage for epoch in epochs):
        speeds = [e.images_per_second for e in epochs if e.stage == stage and e.images_per_second > 0]
        steady = speeds[1:] or speeds  # the first epoch of a stage also traced the graph
        if steady:
            samples.append(SpeedSample(run.spec.backbone.name, stage, _uses_cache(run.spec, stage),
                                       relative_cost(run.spec), statistics.median(steady)))
    return samples


def measure_server(source: EpochSource, cores: int | None = None,
                   limit: int = MEASURED_RUNS) -> ServerProfile:
    """This server's profile: its cores and the speeds of the newest ``limit`` finished runs.

    Args:
        source: The run store (anything with ``list_runs`` and ``epochs``).
        cores: The core count to record; this process's own when ``None``.
        limit: How many of the newest finished runs to read.
    """
    runs = source.list_runs(statuses=[RunStatus.FINISHED])[:limit]
    samples = [sample for run in runs for sample in speed_samples(run, source.epochs(run.id))]
    return ServerProfile(cores=server_cores() if cores is None else cores, samples=tuple(samples))


def comparable(spec: RunSpec, stage: str, server: ServerProfile) -> list[SpeedSample]:
    """Measured samples that predict ``stage`` of ``spec``: same backbone, stage and cache use."""
    cached = _uses_cache(spec, stage)
    return [s for s in server.samples
            if s.backbone == spec.backbone.name and s.stage == stage and s.cached == cached]


def measured_images_per_second(spec: RunSpec, stage: str, server: ServerProfile) -> float | None:
    """Training images per epoch-second of ``stage`` from comparable runs, ``None`` without any.

    A sample measured at another image size or width is rescaled by :func:`relative_cost`.
    """
    samples = comparable(spec, stage, server)
    if not samples:
        return None
    return statistics.median(s.images_per_second * s.relative_cost for s in samples) / relative_cost(spec)


def estimate_basis(spec: RunSpec, server: ServerProfile) -> str:
    """Where the estimate of ``spec`` comes from, naming the server, for the Configure page."""
    stages = [stage for stage, epochs in stage_epochs(spec) if epochs > 0]
    runs = max((len(comparable(spec, stage, server)) for stage in stages), default=0)
    if not runs:
        return f"Rule of thumb for {server.label}"
    if all(comparable(spec, stage, server) for stage in stages):
        return f"Measured on {server.label}: {runs} finished run(s) like this one"
    return f"Partly measured on {server.label} ({runs} finished run(s) like this one), partly rule of thumb"


# ---- the rule of thumb and the estimates -----------------------------------------------


def relative_cost(spec: RunSpec) -> float:
    """Compute per image relative to the anchor (MobileNetV2, alpha 1.0, 160 px) = 1.0.

    TF Hub backbones and unknown names count as the anchor: their size is not known upfront.
    """
    anchor = CATALOGUE[ANCHOR_BACKBONE]
    info = CATALOGUE.get(spec.backbone.name)
    params_ratio = info.params / anchor.params if info else 1.0
    alpha, default_alpha = spec.backbone.alpha, info.default_alpha if info else None
    alpha_ratio = (alpha / default_alpha) ** 2 if alpha and default_alpha else 1.0
    area_ratio = (spec.dataset.image_size / ANCHOR_SIZE) ** 2
    return params_ratio * alpha_ratio * area_ratio


def images_per_second(spec: RunSpec, training: bool, cores: int = ANCHOR_CORES) -> float:
    """Rule-of-thumb throughput of a forward pass (``training=False``) or a full training step.

    Scaled linearly from the anchor server's cores to ``cores``: convolutions on CPU spread
    over cores well, and the rule is only good to a factor of two anyway.
    """
    anchor = ANCHOR_TRAIN_IPS if training else ANCHOR_FORWARD_IPS
    return anchor * cores / ANCHOR_CORES / relative_cost(spec)


def stage_epochs(spec: RunSpec) -> list[tuple[str, int]]:
    """The run's stages as (stage name, epochs), mirroring how training plans them."""
    train = spec.train.auto_plan() if spec.train.strategy == "auto" else spec.train
    if train.strategy == "frozen_then_finetune":
        return [("frozen", train.epochs), ("finetune", train.fine_tune_epochs)]
    return [(train.strategy, train.epochs)]


def _trained_share(spec: RunSpec, stage: str) -> float:
    """Share of the backbone's compute that trains in a stage (0 frozen, 1 scratch)."""
    if stage == "frozen":
        return 0.0
    if stage == "scratch":
        return 1.0
    layers = spec.train.fine_tune_layers
    return min(1.0, layers / TYPICAL_LAYERS) if layers else spec.train.fine_tune_fraction


def _uses_cache(spec: RunSpec, stage: str) -> bool:
    """Whether training caches the frozen part's outputs in this stage (see cached_stage)."""
    train = spec.train
    return (bool(getattr(train, "feature_cache", False)) and stage != "scratch"
            and (not train.augmentations or getattr(train, "augment_views", 0) > 0))


def _rule_of_thumb(spec: RunSpec, stage: str, train_images: int, cores: int) -> tuple[float, float]:
    """One stage by the rule of thumb: (one-off seconds before its epochs, seconds per epoch)."""
    split = spec.dataset
    train_share = max(1.0 - split.val_fraction - split.test_fraction, 0.1)
    val_images = train_images * split.val_fraction / train_share
    forward, step = images_per_second(spec, False, cores), images_per_second(spec, True, cores)
    if not _uses_cache(spec, stage):
        fit = train_images / (step if stage != "frozen" else forward)
        return 0.0, fit + val_images / forward + EPOCH_OVERHEAD_S
    trained = _trained_share(spec, stage)
    views = max(1, getattr(spec.train, "augment_views", 0) if spec.train.augmentations else 1)
    once = (1.0 - trained) * (views * train_images + val_images) / forward
    return once, trained * (train_images / step + val_images / forward) + EPOCH_OVERHEAD_S


def _stage_seconds(spec: RunSpec, stage: str, epochs: int, train_images: int,
                   server: ServerProfile) -> float:
    """All epochs of one stage (without the graph-tracing start-up), measured speed first."""
    once, per_epoch = _rule_of_thumb(spec, stage, train_images, server.cores)
    measured = measured_images_per_second(spec, stage, server)
    if measured is not None:
        per_epoch = train_images / measured
    return once + epochs * per_epoch


def this_server() -> ServerProfile:
    """This machine's cores, without recorded runs (:func:`measure_server` adds those)."""
    return ServerProfile(cores=server_cores())


def estimate_epoch_seconds(spec: RunSpec, train_images: int, server: ServerProfile | None = None) -> float:
    """Estimated seconds per epoch on the server, averaged over the run.

    Args:
        spec: The run; backbone, alpha, image size, strategy, split fractions and the feature
            cache matter.
        train_images: Images in the training split (validation is derived from the fractions).
        server: Cores and measured speeds (:func:`measure_server`); this machine's cores and
            the rule of thumb alone when ``None``.

    Returns:
        Seconds per epoch: the run's training time (without graph start-up) over its epochs.
        For ``frozen_then_finetune`` that averages the cheap frozen epochs and the dearer
        fine-tune epochs; with the feature cache it spreads the one-off pass of the frozen
        part over the stage's epochs.
    """
    server = this_server() if server is None else server
    stages = [(stage, epochs) for stage, epochs in stage_epochs(spec) if epochs > 0]
    total = sum(_stage_seconds(spec, stage, epochs, train_images, server) for stage, epochs in stages)
    return total / max(sum(epochs for _, epochs in stages), 1)


def estimate_run_seconds(spec: RunSpec, train_images: int, server: ServerProfile | None = None) -> float:
    """Estimated seconds for the whole training, graph tracing (and auto's head search) included,
    data loading not."""
    stages = [stage for stage, epochs in stage_epochs(spec) if epochs > 0]
    search = spec.train.search_budget_seconds if spec.train.strategy == "auto" else 0
    return (estimate_epoch_seconds(spec, train_images, server) * spec.train.total_epochs
            + STAGE_START_S * len(stages) + search)


def eta_seconds(
    progress: float,
    started_at: float | None,
    total_epochs: int,
    epoch_seconds: Sequence[float] = (),
    now: float | None = None,
) -> float | None:
    """Seconds left for a running run.

    From the mean duration of its finished epochs when there are some, else extrapolated from
    the time taken so far; ``None`` while there is nothing to go on (not started, no progress).

    Args:
        progress: Share of the run done, 0..1 (finished epochs plus the current one's batches).
        started_at: When training started (epoch seconds), ``None`` if it has not.
        total_epochs: Epochs the run will train in all.
        epoch_seconds: Durations of the finished epochs.
        now: The current time, for tests.
    """
    remaining = 1.0 - min(max(progress, 0.0), 1.0)
    if epoch_seconds:
        return remaining * total_epochs * sum(epoch_seconds) / len(epoch_seconds)
    if started_at is None or progress <= 0:
        return None
    elapsed = (now if now is not None else time.time()) - started_at
    return max(0.0, elapsed * remaining / progress)


def format_seconds(seconds: float | None) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 12 min``; an em dash for unknown."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def augmentation_costs(spec: RunSpec, train_images: int, views: int = 4,
                       server: ServerProfile | None = None) -> str:
    """What augmentation costs with each option, in words for the Configure page.

    Augmenting on the fly defeats the feature cache (every epoch pays the frozen forward pass);
    cached views pay it once per view, and give less variety than fresh augmentation.
    """
    views = spec.train.augment_views or views
    on_the_fly = dataclasses.replace(spec.train, augment_views=0)
    cached = dataclasses.replace(spec.train, augment_views=views, feature_cache=True)
    fly_s = estimate_run_seconds(dataclasses.replace(spec, train=on_the_fly), train_images, server)
    views_s = estimate_run_seconds(dataclasses.replace(spec, train=cached), train_images, server)
    return (
        f"Augmentation: on the fly (views 0) ≈ {format_seconds(fly_s)} for the run, a fresh variant "
        f"every epoch; {views} cached views ≈ {format_seconds(views_s)}, each image seen in "
        f"{views} fixed variants."
    )
