"""How a stage's learning rate moves over its steps: constant, cosine with warm-up, one-cycle.

``cosine`` warms up linearly from (nearly) zero to the stage's rate over ``warmup_fraction``
of the stage's steps, then decays along half a cosine to about zero. ``one_cycle`` follows
fastai's ``fit_one_cycle``: it rises along half a cosine from ``rate / ONE_CYCLE_DIV`` to the
rate over the first :data:`ONE_CYCLE_WARMUP` of the steps, then falls along half a cosine to
``rate / (ONE_CYCLE_DIV * ONE_CYCLE_FINAL_DIV)``. fastai also cycles Adam's momentum the
other way; here only the rate moves, so one_cycle works the same with every optimizer.

One formula (:func:`_rates`) serves both :class:`WarmupCosine`, the Keras schedule the
optimizer evaluates at every step inside the compiled training loop (also when a call into
TensorFlow runs a whole epoch), and :func:`schedule_curve`, the NumPy curve the UI draws
before training, so the plot is the schedule.

The optimizer's step counter restarts with every compile, and a resumed run recompiles: the
schedule's ``offset`` (the stage's steps finished before) keeps it where the stopped run was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tlcore.config import SCHEDULES, TrainSpec
from tlcore.training.model import FreezePolicy

ONE_CYCLE_WARMUP = 0.25
"""Share of a one_cycle stage's steps spent rising (fastai's ``pct_start``)."""
ONE_CYCLE_DIV = 25.0
"""A one_cycle stage starts at its rate divided by this (fastai's ``div``)."""
ONE_CYCLE_FINAL_DIV = 1e4
"""... and ends at its starting rate divided by this (fastai's ``div_final``)."""


@dataclass(frozen=True)
class CurveShape:
    """A warm-up then a cosine decay: where the rate starts, peaks and ends, and when.

    Attributes:
        peak: The stage's learning rate, reached at step ``warmup_steps``.
        start: The rate the warm-up rises from (it is never used itself: the first step
            already has risen by one step).
        end: The rate the cosine decays towards.
        warmup_steps: Steps before the peak.
        total_steps: The stage's steps, every epoch.
        cosine_warmup: Rise along half a cosine (one_cycle) instead of a straight line.
    """

    peak: float
    start: float
    end: float
    warmup_steps: int
    total_steps: int
    cosine_warmup: bool = False


def curve_shape(kind: str, base_lr: float, total_steps: int, warmup_fraction: float) -> CurveShape | None:
    """The shape of a non-constant schedule; None for ``constant``.

    Raises:
        ValueError: ``kind`` is not one of :data:`~tlcore.config.SCHEDULES` (the spec's
            validation refuses such names before training).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"Unknown schedule {kind!r}; expected one of {SCHEDULES}.")
    steps = max(1, int(total_steps))
    if kind == "cosine":
        return CurveShape(base_lr, 0.0, 0.0, round(warmup_fraction * steps), steps)
    if kind == "one_cycle":
        start = base_lr / ONE_CYCLE_DIV
        return CurveShape(base_lr, start, start / ONE_CYCLE_FINAL_DIV, round(ONE_CYCLE_WARMUP * steps),
                          steps, cosine_warmup=True)
    return None


def _rates(steps: Any, shape: CurveShape, xp: Any) -> Any:
    """The rate at each (0-based) step; ``xp`` is ``numpy`` or ``keras.ops``, which share names.

    The warm-up reaches the peak at step ``warmup_steps`` exactly; the decay's last step is
    one step short of ``end``, so no step of the stage is spent at rate zero.
    """
    warmup, total = shape.warmup_steps, shape.total_steps
    rise = xp.minimum((steps + 1.0) / (warmup + 1.0), 1.0)
    if shape.cosine_warmup:
        rise = (1.0 - xp.cos(math.pi * rise)) / 2.0
    warm = shape.start + (shape.peak - shape.start) * rise
    fall = xp.clip((steps - warmup) / max(total - warmup, 1), 0.0, 1.0)
    cool = shape.end + (shape.peak - shape.end) * (1.0 + xp.cos(math.pi * fall)) / 2.0
    return xp.where(steps < warmup, warm, cool)


@keras.saving.register_keras_serializable(package="tlcore")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """A warm-up then a cosine decay (:class:`CurveShape`), as a Keras schedule.

    Registered with Keras, so a saved model whose optimizer uses it loads again once this
    module is imported. ``offset`` is added to the optimizer's step: the steps of the stage
    that were trained before this optimizer was created (a resumed run).
    """

    def __init__(self, peak: float, start: float, end: float, warmup_steps: int, total_steps: int,
                 cosine_warmup: bool = False, offset: int = 0) -> None:
        super().__init__()
        self.shape = CurveShape(float(peak), float(start), float(end), int(warmup_steps), int(total_steps),
                                bool(cosine_warmup))
        self.offset = int(offset)

    @classmethod
    def of(cls, shape: CurveShape, offset: int = 0) -> WarmupCosine:
        return cls(shape.peak, shape.start, shape.end, shape.warmup_steps, shape.total_steps,
                   shape.cosine_warmup, offset)

    def __call__(self, step: Any) -> Any:
        steps = keras.ops.cast(step, "float32") + float(self.offset)
        return keras.ops.cast(_rates(steps, self.shape, keras.ops), "float32")

    def get_config(self) -> dict[str, Any]:
        shape = self.shape
        return {"peak": shape.peak, "start": shape.start, "end": shape.end,
                "warmup_steps": shape.warmup_steps, "total_steps": shape.total_steps,
                "cosine_warmup": shape.cosine_warmup, "offset": self.offset}


def learning_rate(
    kind: str, base_lr: float, total_steps: int, warmup_fraction: float, done_steps: int = 0
) -> float | WarmupCosine:
    """What the optimizer is given: the plain rate for ``constant`` (the optimizer is then the
    same as before schedules existed, bit for bit), else a :class:`WarmupCosine` that starts
    at step ``done_steps`` of the stage's ``total_steps``."""
    shape = curve_shape(kind, base_lr, total_steps, warmup_fraction)
    return float(base_lr) if shape is None else WarmupCosine.of(shape, done_steps)


def schedule_curve(kind: str, base_lr: float, total_steps: int, warmup_fraction: float) -> list[float]:
    """The rate of each of a stage's ``total_steps`` steps, for drawing before training.

    ``warmup_fraction`` applies to ``cosine`` only; ``one_cycle`` always rises over
    :data:`ONE_CYCLE_WARMUP` of the steps.
    """
    shape = curve_shape(kind, base_lr, total_steps, warmup_fraction)
    if shape is None:
        return [float(base_lr)] * max(0, int(total_steps))
    return [float(rate) for rate in _rates(np.arange(shape.total_steps, dtype=np.float64), shape, np)]


def trains_backbone(policy: FreezePolicy) -> bool:
    """Whether a stage fine-tunes pretrained backbone layers: some are unfrozen, not all.

    A frozen stage and a scratch stage (every layer, random weights) train at the head's rate
    (``learning_rate``) and so follow ``schedule``; fine-tuning stages train at
    ``fine_tune_learning_rate`` and follow ``fine_tune_schedule``.
    """
    return bool(policy.trainable_top)


def schedule_kind(train: TrainSpec, policy: FreezePolicy) -> str:
    """The schedule a stage with this freezing policy follows (see :func:`trains_backbone`)."""
    return train.fine_tune_schedule if trains_backbone(policy) else train.schedule


def describe_schedule(kind: str, total_steps: int, warmup_fraction: float) -> str:
    """The schedule in a few words for the run's log (empty for ``constant``)."""
    shape = curve_shape(kind, 1.0, total_steps, warmup_fraction)
    if shape is None:
        return ""
    name = "one-cycle" if shape.cosine_warmup else "cosine"
    rising = f", rising for {shape.warmup_steps}" if shape.warmup_steps else ""
    return f"{name} over {shape.total_steps} steps{rising}"


@dataclass(frozen=True)
class StageCurve:
    """One stage's planned rates, for drawing a run's schedule before it trains."""

    stage: str
    kind: str
    rates: list[float]


def planned_curves(train: TrainSpec, train_images: int) -> list[StageCurve]:
    """Each stage's rate per step, from the strategy alone (no model is built).

    The ``auto`` strategy's head rate comes out of its search, so its head stage is drawn at
    the spec's rate as a stand-in, followed by the fine-tuning it plans.
    """
    steps = max(1, math.ceil(train_images / train.batch_size))
    if train.strategy == "auto":
        train = train.auto_plan()
    head = StageCurve("frozen" if train.strategy != "scratch" else "scratch", train.schedule, [])
    tune = StageCurve("finetune", train.fine_tune_schedule, [])
    plan = {"scratch": [(head, train.learning_rate, train.epochs)],
            "frozen": [(head, train.learning_rate, train.epochs)],
            "finetune": [(tune, train.fine_tune_learning_rate, train.epochs)],
            "frozen_then_finetune": [(head, train.learning_rate, train.epochs),
                                     (tune, train.fine_tune_learning_rate, train.fine_tune_epochs)]}
    return [StageCurve(curve.stage, curve.kind,
                       schedule_curve(curve.kind, rate, steps * epochs, train.warmup_fraction))
            for curve, rate, epochs in plan[train.strategy] if epochs > 0]
