"""Rules of thumb for how long training takes on this machine, before anything runs.

The numbers are anchored at measurements on the studio's 2-core CPU server: MobileNetV2 (alpha
1.0) at 160 px pushes about 70 images/s through a forward pass and about 16 images/s through a
full training step (forward, backward, update); at 224 px both rates roughly halve, i.e. they
scale with the image area. Other backbones are scaled by their parameter count relative to
MobileNetV2 (a crude stand-in for compute, good to a factor of two for the catalogue), and
MobileNet width multipliers by alpha squared (compute and parameters both grow with alpha^2).

A frozen backbone costs about one forward pass per image; fine-tuning and training from
scratch cost a full step. Validation is always a forward pass. The result is an estimate for
picking settings ("minutes or hours?"), not a promise.
"""

from __future__ import annotations

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

# Stages that update backbone weights need backward passes through it.
_TRAINING_STAGES = ("scratch", "finetune")


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


def _stage_epoch_seconds(spec: RunSpec, stage: str, train_images: int) -> float:
    split = spec.dataset
    train_share = max(1.0 - split.val_fraction - split.test_fraction, 0.1)
    val_images = train_images * split.val_fraction / train_share
    fit = train_images / images_per_second(spec, training=stage in _TRAINING_STAGES)
    validate = val_images / images_per_second(spec, training=False)
    return fit + validate + EPOCH_OVERHEAD_S


def estimate_run_seconds(spec: RunSpec, train_images: int) -> float:
    """Estimated seconds for every epoch of every stage of the run (excluding data loading)."""
    return sum(
        epochs * _stage_epoch_seconds(spec, stage, train_images)
        for stage, epochs in stage_epochs(spec)
    )


def estimate_epoch_seconds(spec: RunSpec, train_images: int) -> float:
    """Estimated seconds per epoch on this machine, averaged over the run's stages.

    Args:
        spec: The run; its backbone, alpha, image size, strategy and split fractions matter.
        train_images: Images in the training split (validation is derived from the fractions).

    Returns:
        Seconds per epoch. For ``frozen_then_finetune`` the mean of the cheap frozen epochs
        and the dearer fine-tune epochs, weighted by their counts.
    """
    return estimate_run_seconds(spec, train_images) / max(spec.train.total_epochs, 1)


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

