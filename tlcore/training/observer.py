"""How a training run talks to the outside: one observer object instead of loose callables.

Whoever starts training (the runner writing to the run store, the CLI's progress bar, a test)
subclasses :class:`TrainingObserver` and overrides what it cares about; the loop calls it
through a Keras callback (:class:`tlcore.training.reporting.ObserverCallback`), as keras-tuner
reports trials through its ``TunerCallback``. Every method is a no-op by default, so an
observer that only wants epochs is three lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlcore.records import EpochRecord


@dataclass(frozen=True)
class BatchProgress:
    """Where training is inside the current epoch.

    Attributes:
        batch: Batches finished in this epoch, 1-based.
        steps: Batches per epoch; 0 when Keras does not know it.
    """

    batch: int
    steps: int


class TrainingObserver:
    """Receives a run's epochs, batches and notes, and may ask it to stop.

    The base class does nothing and never stops; subclasses override the methods they need.
    """

    def on_epoch(self, record: EpochRecord) -> None:
        """Called after every finished epoch (epochs are numbered on across stages)."""

    def on_batch(self, progress: BatchProgress) -> None:
        """Called after every training step, for progress bars; keep it cheap."""

    def note(self, message: str) -> None:
        """Called with remarks worth keeping in the run's log (weight fallbacks, stages, ...)."""

    def should_stop(self) -> bool:
        """Polled after every training step; True ends the run as ``stopped`` at that step."""
        return False


class NoteKeeper:
    """Keeps a run's notes for its result and passes each one on to the observer."""

    def __init__(self, observer: TrainingObserver) -> None:
        self.observer = observer
        self.notes: list[str] = []

    def __call__(self, message: str) -> None:
        self.notes.append(message)
        self.observer.note(message)
