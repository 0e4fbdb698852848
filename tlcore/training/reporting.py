"""The Keras callback that reports a stage's epochs and batches to the run's observer."""

from __future__ import annotations

import time

import keras
import numpy as np

from tlcore.records import EpochRecord
from tlcore.training.observer import BatchProgress, TrainingObserver


class ObserverCallback(keras.callbacks.Callback):
    """Turns Keras' logs into :class:`EpochRecord` events and honours stop requests.

    A stop request is checked after every training step, so a run stops within one step, by
    setting ``model.stop_training``. Keras still calls ``on_epoch_end`` for the cut-short
    epoch; that epoch is not reported, so the history only holds finished epochs.

    Each record's learning rate is the rate of the epoch's last step: with a schedule, the
    optimizer's own ``learning_rate`` already reads the next step's rate when the epoch ends.

    Args:
        stage: The stage's name, written into every record.
        images_per_epoch: Training images per epoch, for the throughput in each record.
        observer: Who hears about epochs and batches, and is asked whether to stop.
        schedule: The schedule the stage's optimizer follows (evaluated at the step it last
            took), or None when its rate is a plain number.
    """

    def __init__(
        self,
        stage: str,
        images_per_epoch: int,
        observer: TrainingObserver,
        schedule: keras.optimizers.schedules.LearningRateSchedule | None = None,
    ) -> None:
        super().__init__()
        self.stage = stage
        self.images_per_epoch = images_per_epoch
        self.observer = observer
        self.schedule = schedule
        self.stopped = False
        self.history: list[EpochRecord] = []
        self._epoch_start = 0.0
        self._steps = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._steps = self.params.get("steps") or 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.observer.on_batch(BatchProgress(batch + 1, self._steps))
        if self.observer.should_stop():
            self.stopped = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.stopped:
            return
        logs = logs or {}
        seconds = time.perf_counter() - self._epoch_start
        record = EpochRecord(
            epoch=epoch + 1,
            stage=self.stage,
            loss=float(logs.get("loss", np.nan)),
            accuracy=float(logs.get("accuracy", np.nan)),
            val_loss=float(logs.get("val_loss", np.nan)),
            val_accuracy=float(logs.get("val_accuracy", np.nan)),
            learning_rate=self.last_step_rate(),
            seconds=seconds,
            images_per_second=self.images_per_epoch / seconds if seconds > 0 else 0.0,
        )
        self.history.append(record)
        self.observer.on_epoch(record)

    def last_step_rate(self) -> float:
        """The learning rate the optimizer's latest step used (the head's, with per-layer rates)."""
        optimizer = self.model.optimizer
        if self.schedule is None:
            rate = optimizer.learning_rate
        else:
            rate = self.schedule(max(int(optimizer.iterations.numpy()) - 1, 0))
        return float(keras.ops.convert_to_numpy(rate))
