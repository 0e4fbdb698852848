"""Load a finished run's model once per process and classify images with it.

Models are cached by file path and modification time, so a retrained run is reloaded; a lock
serialises predictions because one Keras model is shared by every session of the app.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import keras

import tlcore.backbones  # noqa: F401 - registers the custom layers that saved models use
from tlcore.errors import RunStateError
from tlcore.evaluate import ImageInput, Prediction, predict
from tlcore.store import RunStore


@dataclass
class LoadedRun:
    run_id: str
    model: keras.Model
    class_names: list[str]
    image_size: int
    lock: threading.Lock

    def predict(self, images: Sequence[ImageInput], top_k: int = 3) -> list[list[Prediction]]:
        with self.lock:
            return predict(self.model, self.class_names, images, self.image_size, top_k)


@lru_cache(maxsize=8)
def _load(model_path: str, mtime: float) -> keras.Model:
    return keras.saving.load_model(model_path, safe_mode=True)


def load_run(run_id: str, store: RunStore | None = None) -> LoadedRun:
    """The run's model, loaded in safe mode (no arbitrary code from the file)."""
    store = store or RunStore()
    run = store.get(run_id)
    path: Path = store.model_path(run_id)
    if not path.exists():
        raise RunStateError(
            f"Run {run_id} has no saved model (status: {run.status}).",
            "Only runs that finished (or stopped after at least one epoch) can classify images.",
        )
    model = _load(str(path), path.stat().st_mtime)
    return LoadedRun(
        run_id=run_id,
        model=model,
        class_names=store.read_json(run_id, "class_names.json"),
        image_size=run.spec.dataset.image_size,
        lock=_lock_for(str(path)),
    )


@lru_cache(maxsize=None)
def _lock_for(model_path: str) -> threading.Lock:
    return threading.Lock()
