"""Rules of thumb for how long training takes on this machine, before anything runs.

The numbers are anchored at measurements on the studio's 2-core CPU server: MobileNetV2 (alpha
1.0) at 160 px pushes about 70 images/s through a forward pass and about 16 images/s through a
full training step (forward, backward, update); at 224 px both rates roughly halve, i.e. they
scale with the image area. Other backbones are scaled by their parameter count relative to
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

import time
from typing import Sequence

from tlcore.backbones.catalogue import CATALOGUE
from tlcore.config import RunSpec

ANCHOR_BACKBONE = "mobilenet_v2"
ANCHOR_SIZE = 160
ANCHOR_FORWARD_IPS = 70.0
"""Images per second, forward pass only, MobileNetV2 alpha 1.0 at 160 px, 2 CPU cores."""
ANCHOR_TRAIN_IPS = 16.0
"""Images per second, full training step, same configuration."""
EPOCH_OVERHEAD_S = 1.0
"""Fixed cost per epoch (pipeline start, validation set-up, callbacks)."""
STAGE_START_S = 8.0
"""Extra cost of the first epoch of each stage: building and tracing the training graph
(measured at about 8 s for MobileNetV2 on this machine, for a frozen and a fine-tune stage)."""
TYPICAL_LAYERS = 150
"""Layers of a typical catalogue backbone, to turn ``fine_tune_layers`` into a share."""


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


def images_per_second(spec: RunSpec, training: bool) -> float:
    """Estimated throughput of a forward pass (``training=False``) or a full training step."""
    anchor = ANCHOR_TRAIN_IPS if training else ANCHOR_FORWARD_IPS
    return anchor / relative_cost(spec)


def stage_epochs(spec: RunSpec) -> list[tuple[str, int]]:
    """The run's stages as (stage name, epochs), mirroring how training plans them."""
    train = spec.train
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


def _stage_seconds(spec: RunSpec, stage: str, epochs: int, train_images: int) -> float:
    """All epochs of one stage (without the graph-tracing start-up)."""
    split = spec.dataset
    train_share = max(1.0 - split.val_fraction - split.test_fraction, 0.1)
    val_images = train_images * split.val_fraction / train_share
    forward, step = images_per_second(spec, False), images_per_second(spec, True)
    if not _uses_cache(spec, stage):
        fit = train_images / (step if stage != "frozen" else forward)
        return epochs * (fit + val_images / forward + EPOCH_OVERHEAD_S)
    trained = _trained_share(spec, stage)
    views = max(1, getattr(spec.train, "augment_views", 0) if spec.train.augmentations else 1)
    once = (1.0 - trained) * (views * train_images + val_images) / forward
    per_epoch = trained * (train_images / step + val_images / forward) + EPOCH_OVERHEAD_S
    return once + epochs * per_epoch


def estimate_epoch_seconds(spec: RunSpec, train_images: int) -> float:
    """Estimated seconds per epoch on this machine, averaged over the run.

    Args:
        spec: The run; backbone, alpha, image size, strategy, split fractions and the feature
            cache matter.
        train_images: Images in the training split (validation is derived from the fractions).

    Returns:
        Seconds per epoch: the run's training time (without graph start-up) over its epochs.
        For ``frozen_then_finetune`` that averages the cheap frozen epochs and the dearer
        fine-tune epochs; with the feature cache it spreads the one-off pass of the frozen
        part over the stage's epochs.
    """
    stages = [(stage, epochs) for stage, epochs in stage_epochs(spec) if epochs > 0]
    total = sum(_stage_seconds(spec, stage, epochs, train_images) for stage, epochs in stages)
    return total / max(sum(epochs for _, epochs in stages), 1)


def estimate_run_seconds(spec: RunSpec, train_images: int) -> float:
    """Estimated seconds for the whole training, graph tracing included (data loading not)."""
    stages = [stage for stage, epochs in stage_epochs(spec) if epochs > 0]
    return (estimate_epoch_seconds(spec, train_images) * spec.train.total_epochs
            + STAGE_START_S * len(stages))


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



def augmentation_costs(spec: RunSpec, train_images: int, views: int = 4) -> str:
    """What augmentation costs with each option, in words for the Configure page.

    Augmenting on the fly defeats the feature cache (every epoch pays the frozen forward pass);
    cached views pay it once per view, and give less variety than fresh augmentation.
    """
    views = spec.train.augment_views or views
    on_the_fly = dataclasses.replace(spec.train, augment_views=0)
    cached = dataclasses.replace(spec.train, augment_views=views, feature_cache=True)
    fly_s = estimate_run_seconds(dataclasses.replace(spec, train=on_the_fly), train_images)
    views_s = estimate_run_seconds(dataclasses.replace(spec, train=cached), train_images)
    return (
        f"Augmentation: on the fly (views 0) ≈ {format_seconds(fly_s)} for the run, a fresh variant "
        f"every epoch; {views} cached views ≈ {format_seconds(views_s)}, each image seen in "
        f"{views} fixed variants."
    )
