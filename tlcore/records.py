"""Records that several rooms share: a run as stored and one finished epoch.

They sit below the store, the training loop, the reports and the pages alike, so none of those
has to import another to speak about a run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tlcore.config import RunSpec

ACTIVE = ("queued", "running")
TERMINAL = ("finished", "failed", "stopped")
STATUSES = ACTIVE + TERMINAL

EPOCH_FIELDS = (
    "epoch", "stage", "loss", "accuracy", "val_loss", "val_accuracy",
    "learning_rate", "seconds", "images_per_second",
)


@dataclass
class EpochRecord:
    """One finished epoch, as the training callback reports it."""

    epoch: int
    stage: str
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    seconds: float
    images_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunRecord:
    """A run as stored; ``summary`` holds the headline test metrics once finished."""

    id: str
    key: str
    name: str
    spec: RunSpec
    status: str
    owner: str | None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    worker_pid: int | None = None
    worker_started: float | None = None
    stop_requested: bool = False
    progress: float = 0.0
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at

    @property
    def label(self) -> str:
        return self.name or f"{self.spec.describe()} ({self.id})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spec"] = self.spec.to_dict()
        data["duration"] = self.duration
        return data
