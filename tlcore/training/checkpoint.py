"""Per-epoch checkpoints, so a run whose worker died resumes from its last finished epoch.

Only weights are kept (the optimizer's moments restart on resume, which the run log says):
small enough to write every epoch, and written atomically so a crash mid-write leaves the
previous checkpoint intact. :class:`CheckpointCallback` writes them from inside ``fit``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras

from tlcore.files import atomic_write

WEIGHTS_FILE = "checkpoint.weights.h5"
STATE_FILE = "checkpoint.json"


@dataclass(frozen=True)
class Checkpoint:
    """The last finished epoch (1-based, numbered on across stages) of a run."""

    folder: Path
    epoch: int

    @classmethod
    def load(cls, folder: Path) -> Checkpoint | None:
        try:
            state = json.loads((folder / STATE_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not (folder / WEIGHTS_FILE).exists():
            return None
        return cls(folder, int(state["epoch"]))

    def restore(self, model: keras.Model) -> None:
        model.load_weights(self.folder / WEIGHTS_FILE)


def save_checkpoint(folder: Path, model: keras.Model, epoch: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / WEIGHTS_FILE, model.save_weights, keep_suffix=True)
    atomic_write(folder / STATE_FILE, json.dumps({"epoch": epoch}))


class CheckpointCallback(keras.callbacks.Callback):
    """Saves the classifier's weights after every finished epoch.

    Put it after the callback that records epochs (:class:`~tlcore.training.reporting.ObserverCallback`):
    recorded first, a kill in between redoes the epoch instead of leaving a gap in the history.
    An epoch that a stop request cut short (``stop_training`` already set when it ends) is not
    finished, so it is not saved.

    Args:
        folder: Where the checkpoint goes (created when missing).
        classifier: The model whose weights are saved: the whole classifier, also when ``fit``
            trains only its upper part on cached features.
    """

    def __init__(self, folder: Path, classifier: keras.Model) -> None:
        super().__init__()
        self.folder = folder
        self.classifier = classifier

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.model.stop_training:
            return
        save_checkpoint(self.folder, self.classifier, epoch + 1)


HEAD_SEARCH_FILE = "head_search.json"
"""The ``auto`` strategy's chosen head settings: a resumed run trains the head it searched."""


def clear_checkpoint(folder: Path) -> None:
    for name in (WEIGHTS_FILE, STATE_FILE, HEAD_SEARCH_FILE):
        (folder / name).unlink(missing_ok=True)
