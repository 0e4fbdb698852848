"""TensorBoard event files for every run, so ``tensorboard --logdir $TL_HOME/runs`` shows them all.

Each run writes, under its own folder's ``tensorboard/``: per-epoch scalars (loss, accuracy, their
validation twins, the learning rate, images/s), its settings through the HParams plugin (with the
test accuracy as the metric, so runs sort by it) and the test confusion matrix as an image.

It lives beside the runner rather than under ``deploy/`` with the other integrations, because
the runner attaches it and lower rooms never import higher ones. A write that fails (a full
disk, a read-only folder) never fails the training: the run notes it once and goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from tlcore.config import RunSpec
from tlcore.records import EpochRecord
from tlcore.report.evaluate import EvalReport
from tlcore.training.observer import TrainingObserver

FOLDER = "tensorboard"
SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "images_per_second")
TEST_METRICS = ("test/accuracy", "test/macro_f1")
CELL_PX = 28


def hparams_of(spec: RunSpec) -> dict[str, Any]:
    """The run's settings as HParams values (numbers, text, booleans; None as text)."""
    values: dict[str, Any] = {}
    for part, settings in spec.to_dict().items():
        if not isinstance(settings, dict):
            continue
        for name, value in settings.items():
            if isinstance(value, (list, tuple)):
                value = ",".join(map(str, value)) or "none"
            values[f"{part}.{name}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return values


def confusion_image(confusion: list[list[int]], class_names: list[str]) -> np.ndarray:
    """The confusion matrix as an RGB picture: rows are true classes, darker cells hold more."""
    counts = np.asarray(confusion, dtype=np.float64)
    size = len(class_names)
    margin = 6
    image = Image.new("RGB", (margin * 2 + CELL_PX * size, margin * 2 + CELL_PX * size), "white")
    draw = ImageDraw.Draw(image)
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    for row in range(size):
        for column in range(size):
            share = counts[row, column] / totals[row, 0]
            shade = int(255 - 200 * share)
            box = (margin + column * CELL_PX, margin + row * CELL_PX,
                   margin + (column + 1) * CELL_PX - 1, margin + (row + 1) * CELL_PX - 1)
            draw.rectangle(box, fill=(shade, shade, 255))
            draw.text((box[0] + 3, box[1] + 8), str(int(counts[row, column])),
                      fill="white" if share > 0.6 else "black")
    return np.asarray(image)[None]


class TensorBoardObserver(TrainingObserver):
    """Writes a run's epochs as they finish; :meth:`close` adds its settings and test results."""

    def __init__(self, run_folder: Path, spec: RunSpec, run_id: str) -> None:
        self.folder = run_folder / FOLDER
        self.spec = spec
        self.run_id = run_id
        self.failure: str | None = None
        self._writer = self._attempt(lambda: tf.summary.create_file_writer(str(self.folder)))

    def _attempt(self, write: Any) -> Any:
        if self.failure is not None:
            return None
        try:
            return write()
        except (OSError, tf.errors.OpError) as exc:
            self.failure = f"TensorBoard logging stopped: {exc}"
            return None

    def on_epoch(self, record: EpochRecord) -> None:
        def write() -> None:
            with self._writer.as_default():
                for name in SCALARS:
                    tf.summary.scalar(f"epoch/{name}", float(getattr(record, name)), step=record.epoch)
            self._writer.flush()

        if self._writer is not None:
            self._attempt(write)

    def close(self, report: EvalReport | None) -> str | None:
        """Write the settings and, for a run with results, the test metrics and the confusion
        matrix; returns why logging stopped, if it did (for the run's notes)."""
        from tensorboard.plugins.hparams import api as hparams

        def write() -> None:
            with self._writer.as_default():
                hparams.hparams(hparams_of(self.spec), trial_id=self.run_id)
                if report is not None:
                    tf.summary.scalar(TEST_METRICS[0], report.accuracy, step=0)
                    tf.summary.scalar(TEST_METRICS[1], float(report.macro["f1"]), step=0)
                    tf.summary.image("test/confusion_matrix", confusion_image(report.confusion,
                                                                                    report.class_names),
                                     step=0, description="rows: true class; columns: predicted")
            self._writer.flush()
            self._writer.close()

        if self._writer is not None:
            self._attempt(write)
        return self.failure
