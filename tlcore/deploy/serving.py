"""Load a finished run's model once per process and classify images with it.

Models are cached by file path and modification time, so a retrained run is reloaded; a lock
serialises predictions because one Keras model is shared by every session of the app.

A model file is data from disk, not trusted code: it is only ever loaded with Keras' safe
mode, which refuses the Python bytecode a ``Lambda`` layer would carry, and whatever goes
wrong while loading is reported as an :class:`~tlcore.errors.ArtifactError`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from numbers import Real
from pathlib import Path

import keras

import tlcore.backbones  # noqa: F401 - registers the custom layers that saved models use
from tlcore.errors import ArtifactError, ConfigError, RunStateError, brief_reason
from tlcore.records import RunArtifacts, RunStatus
from tlcore.report.evaluate import ImageInput, Prediction, predict
from tlcore.runs.store import RunStore, missing_files_error

SERVABLE = frozenset({RunStatus.FINISHED, RunStatus.STOPPED})
"""Statuses whose saved model is final (a stopped run keeps the epochs it finished)."""
NOT_SURE = "not sure"
"""The answer when no class reaches the confidence threshold."""


def check_threshold(threshold: float | None) -> float | None:
    """Refuse a confidence threshold outside 0 to 1; None means off (always name a class).

    The CLI's ``--threshold`` and the Compare page's slider both pass through here.

    Raises:
        ConfigError: ``threshold`` is not a number from 0 to 1.
    """
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 <= threshold <= 1:
        raise ConfigError(
            f"The confidence threshold must be a number from 0 to 1; got {threshold!r}.",
            "Use e.g. 0.6 to answer “not sure” when no class reaches 60 %, or leave it out.",
        )
    return float(threshold)


@dataclass(frozen=True)
class Answer:
    """A model's top predictions for one image, and what it answers given a threshold.

    A classifier always has a most likely class, even for an image of none of its classes; with
    a threshold it says "not sure" instead when no class is at least that likely.
    """

    predictions: list[Prediction]
    threshold: float | None = None

    @property
    def sure(self) -> bool:
        best = max((p.probability for p in self.predictions), default=math.nan)
        return self.threshold is None or best >= self.threshold

    @property
    def label(self) -> str | None:
        """The most likely class, or None when not sure (see :data:`NOT_SURE`)."""
        if not self.sure or not self.predictions:
            return None
        return max(self.predictions, key=lambda p: p.probability).label

    def describe(self) -> str:
        """The answer as people read it: the class, or "not sure"."""
        return self.label if self.label is not None else NOT_SURE


@dataclass
class LoadedRun:
    run_id: str
    model: keras.Model
    class_names: list[str]
    image_size: int
    lock: threading.Lock

    def predict(self, images: Sequence[ImageInput], top_k: int | None = None) -> list[list[Prediction]]:
        """Top-k labels per image; ``top_k`` outside 1 to the number of classes is a ConfigError."""
        with self.lock:
            return predict(self.model, self.class_names, images, self.image_size, top_k)

    def classify(
        self, images: Sequence[ImageInput], top_k: int | None = None, threshold: float | None = None
    ) -> list[Answer]:
        """:meth:`predict`, plus each image's answer: "not sure" below ``threshold`` (0 to 1).

        Raises:
            ConfigError: ``threshold`` is outside 0 to 1, or ``top_k`` outside 1 to the classes.
        """
        threshold = check_threshold(threshold)
        return [Answer(predictions, threshold) for predictions in self.predict(images, top_k)]


@lru_cache(maxsize=8)
def _load(model_path: str, mtime: float) -> keras.Model:
    # Uncompiled: serving never trains, and a run's optimizer (per-block rates, a schedule)
    # then needs no registering in every process that classifies with it.
    return keras.saving.load_model(model_path, safe_mode=True, compile=False)


def load_model_safely(path: Path, run_id: str) -> keras.Model:
    """Load ``path`` in safe mode (cached by path and mtime); any failure is an ArtifactError.

    Raises:
        ArtifactError: The file holds code (a ``Lambda`` layer), is damaged, or was written
            by an incompatible version.
    """
    try:
        return _load(str(path), path.stat().st_mtime)
    except Exception as exc:  # noqa: BLE001 - Keras reports bad files with many exception types
        text = str(exc)
        if "Lambda" in text or "safe_mode" in text:
            raise ArtifactError(
                f"The saved model of run {run_id} contains Python code (a Lambda layer) and "
                "was not loaded.",
                "Models are only loaded in safe mode, which never runs code from a file; "
                "retrain the run here or replace the layer with a registered Keras layer.",
            ) from exc
        raise ArtifactError(
            f"The saved model of run {run_id} could not be loaded "
            f"({type(exc).__name__}: {brief_reason(exc)}).",
            "The file may be damaged or from another version; resume or retrain the run.",
        ) from exc


def load_run(run_id: str, store: RunStore | None = None) -> LoadedRun:
    """The run's model, loaded in safe mode (no arbitrary code from the file).

    Raises:
        RunNotFoundError: No such run (or a malformed id).
        RunStateError: The run is not finished or stopped, or stopped before saving a model.
        ArtifactError: The model or its class names cannot be loaded safely, or the files of
            a finished run are missing.
    """
    store = store or RunStore()
    run = store.get(run_id)
    if run.status not in SERVABLE:
        raise RunStateError(
            f"Run {run_id} is {run.status}; only finished or stopped runs can classify images.",
            "Wait until it finishes." if run.is_active else "Resume it, or pick another run.",
        )
    path: Path = store.model_path(run_id)
    missing = store.missing_results(run, only=(path.name, RunArtifacts.CLASS_NAMES))
    if missing:
        raise missing_files_error(run, missing)
    if not path.exists():  # a run stopped before its first epoch ended
        raise RunStateError(
            f"Run {run_id} has no saved model (status: {run.status}).",
            "Only runs that finished (or stopped after at least one epoch) can classify images.",
        )
    class_names = store.read_json(run_id, RunArtifacts.CLASS_NAMES)
    model = load_model_safely(path, run_id)
    shape = getattr(model, "output_shape", None)
    outputs = shape[-1] if isinstance(shape, tuple) and shape else None
    if not isinstance(class_names, list) or (outputs is not None and outputs != len(class_names)):
        raise ArtifactError(
            f"Run {run_id}'s class names do not match its model's outputs ({outputs}).",
            "Resume or retrain the run to write its results again.",
        )
    return LoadedRun(
        run_id=run_id,
        model=model,
        class_names=[str(name) for name in class_names],
        image_size=run.spec.dataset.image_size,
        lock=_lock_for(str(path)),
    )


@cache
def _lock_for(model_path: str) -> threading.Lock:
    return threading.Lock()
