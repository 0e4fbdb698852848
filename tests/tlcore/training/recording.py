"""An observer that records what training reports, shared by the training tests."""

from __future__ import annotations

from collections.abc import Callable

from tlcore.records import EpochRecord
from tlcore.training.observer import BatchProgress, PassProgress, TrainingObserver


class RecordingObserver(TrainingObserver):
    """Keeps every epoch, batch and note; stops once ``stop_when(self)`` is true."""

    def __init__(self, stop_when: Callable[[RecordingObserver], bool] = lambda _: False) -> None:
        self.epochs: list[EpochRecord] = []
        self.batches: list[BatchProgress] = []
        self.notes: list[str] = []
        self.passes: list[PassProgress] = []
        self.stop_when = stop_when

    def on_epoch(self, record: EpochRecord) -> None:
        self.epochs.append(record)

    def on_batch(self, progress: BatchProgress) -> None:
        self.batches.append(progress)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def on_pass(self, progress: PassProgress) -> None:
        self.passes.append(progress)

    def should_stop(self) -> bool:
        return self.stop_when(self)
