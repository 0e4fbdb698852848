"""Per-epoch checkpoints, so a run whose worker died resumes from its last finished epoch.

Only weights are kept (the optimizer's moments restart on resume, which the run log says):
small enough to write every epoch, and written atomically so a crash mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import keras

WEIGHTS_FILE = "checkpoint.weights.h5"
STATE_FILE = "checkpoint.json"


@dataclass(frozen=True)
class Checkpoint:
    """The last finished epoch (1-based, numbered on across stages) of a run."""

    folder: Path
    epoch: int

    @classmethod
    def load(cls, folder: Path) -> "Checkpoint | None":
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
    partial = folder / ("partial." + WEIGHTS_FILE)
    model.save_weights(partial)
    os.replace(partial, folder / WEIGHTS_FILE)
    state = folder / (STATE_FILE + ".partial")
    state.write_text(json.dumps({"epoch": epoch}))
    os.replace(state, folder / STATE_FILE)


def clear_checkpoint(folder: Path) -> None:
    for name in (WEIGHTS_FILE, STATE_FILE):
        (folder / name).unlink(missing_ok=True)
