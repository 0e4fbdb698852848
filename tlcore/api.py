"""The studio from Python: the few calls a notebook or a script needs, re-exported by ``tlcore``.

Each call does what the app and the CLI do, through the same store under ``TL_HOME``: a run
trained here shows up on the app's pages, and a run queued in the app can be followed here.
``docs/api.md`` walks through them; a test runs every example in it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from tlcore.config import RunSpec
from tlcore.deploy.export import export_run
from tlcore.deploy.serving import LoadedRun, load_run
from tlcore.errors import StorageError
from tlcore.records import EpochRecord, RunRecord
from tlcore.report.paired import PairedComparison
from tlcore.runs.jobs import check_spec, create_for_data, reap
from tlcore.runs.jobs import submit as queue
from tlcore.runs.pairing import pair_runs
from tlcore.runs.runner import execute_run
from tlcore.runs.store import Claimant, RunStore
from tlcore.training.observer import TrainingObserver


def train(spec: RunSpec, force: bool = False, observer: TrainingObserver | None = None) -> RunRecord:
    """Train ``spec`` in this process and return the finished (or stopped, or failed) run.

    A finished run with the same settings on the same data is returned as it is, unless
    ``force``. ``observer`` hears epochs, batches and notes as they happen.

    Example: ``run = tlcore.train(tlcore.RunSpec(tlcore.DatasetSpec("folder:/data/flowers")))``,
    then ``run.summary.test_accuracy``.

    Raises:
        TLError: The settings or the dataset cannot be used (the message says what to do).
    """
    store = RunStore()
    reap(store)
    checked = check_spec(spec.with_absolute_paths())
    stored, reused, _ = create_for_data(store, checked, force=force, claimant=Claimant.current())
    if reused:
        return stored
    return execute_run(store, stored.id, observer=observer, reraise_user_errors=True)


def submit(spec: RunSpec, force: bool = False) -> RunRecord:
    """Queue ``spec`` for a background worker (started now if there is room) and return the run.

    Example: ``run_id = tlcore.submit(spec).id``, then ``tlcore.follow(run_id)``.

    Raises:
        TLError: The settings or the dataset cannot be used.
    """
    return queue(spec.with_absolute_paths(), force=force).run


def follow(run_id: str, poll_seconds: float = 1.0) -> Iterator[EpochRecord]:
    """Each epoch of a queued or running run as it is recorded, until the run ends.

    Epochs already recorded come first, so following a finished run replays it.

    Example: ``for epoch in tlcore.follow(run_id): print(epoch.epoch, epoch.val_accuracy)``.

    Raises:
        RunNotFoundError: No run has that id.
    """
    store = RunStore()
    seen = 0
    while True:
        run = store.get(run_id)
        epochs = store.epochs(run_id)
        yield from epochs[seen:]
        seen = len(epochs)
        if not run.is_active:
            return
        time.sleep(poll_seconds)
        reap(store)


def run(run_id: str) -> RunRecord:
    """The stored run ``run_id``: status, spec, summary, notes.

    Example: ``tlcore.run(run_id).summary.test_accuracy``.

    Raises:
        RunNotFoundError: No run has that id.
    """
    return RunStore().get(run_id)


def load(run_id: str) -> LoadedRun:
    """A finished run's model, loaded once per process, to ``predict`` or ``classify`` images
    (paths, bytes or arrays).

    Example: ``tlcore.load(run_id).classify(["photo.jpg"])[0].label``.

    Raises:
        RunStateError, ArtifactError: The run has no model yet, or its files cannot be loaded safely.
    """
    return load_run(run_id)


def compare(first: str, second: str) -> PairedComparison:
    """Two finished runs image by image on their common test split: accuracy intervals, the
    images each gets right that the other gets wrong, McNemar's exact test and a sentence.

    Example: ``print(tlcore.compare(frozen_id, tuned_id).sentence())``.

    Raises:
        NotPairedError: Their test splits differ (the message says how).
    """
    store = RunStore()
    return pair_runs(store, store.get(first), store.get(second))


def export(run_id: str, format_name: str = "tflite", to: Path | None = None) -> Path:
    """A finished run as a deployable zip (model, ``labels.txt``, ``metadata.json`` with its parity
    check); copied to ``to`` (a file or folder) when given.

    Example: ``tlcore.export(run_id, "tflite", to=Path.home())``.

    Raises:
        ExportError, StorageError: The converter refused the model, or the zip cannot be written.
    """
    built = export_run(run_id, format_name)
    if to is None:
        return built
    target = Path(to) / built.name if Path(to).is_dir() else Path(to)
    try:
        shutil.copyfile(built, target)
    except OSError as exc:
        raise StorageError(f"Could not write {target} ({exc.strerror or exc}).",
                           "Give a folder or file you can write to.") from exc
    return target
