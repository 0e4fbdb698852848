"""How a training run talks to the outside: one observer object instead of loose callables.

Whoever starts training (the runner writing to the run store, the CLI's progress bar, a test)
subclasses :class:`TrainingObserver` and overrides what it cares about; the loop calls it
through a Keras callback (:class:`tlcore.training.reporting.ObserverCallback`), as keras-tuner
reports trials through its ``TunerCallback``. Every method is a no-op by default, so an
observer that only wants epochs is three lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


@dataclass(frozen=True)
class PassProgress:
    """Where a pass over the images before training is (decoding, computing features).

    Attributes:
        name: What the pass does, as shown ("Decoding images").
        done: Images handled so far, those found already done included.
        total: Images in the pass.
        rate: Images per second of those actually processed, 0 before the first.
        seconds_left: Estimated time to finish, None while unknown.
    """

    name: str
    done: int
    total: int
    rate: float = 0.0
    seconds_left: float | None = None

    def describe(self) -> str:
        text = f"{self.name}: {self.done:,} of {self.total:,}"
        if self.rate:
            text += f" · {self.rate:,.0f} images/s"
        if self.seconds_left is not None and self.done < self.total:
            text += f" · about {self.seconds_left:,.0f} s left"
        return text


class PassTimer:
    """Turns ``(done, total)`` calls into :class:`PassProgress` with a rate and an ETA."""

    def __init__(self, name: str, report: Callable[[PassProgress], None]) -> None:
        self.name = name
        self.report = report
        self._start: tuple[float, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self._start is None:
            self._start = (now, done)
        started, first = self._start
        elapsed, processed = now - started, done - first
        rate = processed / elapsed if elapsed > 0 and processed > 0 else 0.0
        left = (total - done) / rate if rate else None
        self.report(PassProgress(self.name, done, total, rate, left))


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

    def on_pass(self, progress: PassProgress) -> None:
        """Called while images are decoded or their features computed, before training."""

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
