"""Execute one stored run: data -> backbone -> model -> train -> evaluate -> artifacts.

Used by the background worker and by ``python -m tlcore train`` in the foreground, so both
write the same records. A run is marked finished only after its artifacts are completely on
disk; any failure leaves it failed with a reason, never running. A run that was interrupted
(worker killed, stopped) resumes from its last checkpoint when it is executed again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import time
import traceback

import numpy as np
from PIL import Image

from tlcore.errors import StorageError, TLError, brief_reason
from tlcore.files import atomic_write
from tlcore.records import EpochRecord, RunArtifacts, RunRecord, RunStatus, RunSummary
from tlcore.report.evaluate import EvalReport, Mistake
from tlcore.report.explain import explain_batch, overlay
from tlcore.report.paired import TestPredictions
from tlcore.runs import artifact_mirror
from tlcore.runs.auditing import audit_after_run
from tlcore.runs.data_identity import save_data_record, trained_on_other_data
from tlcore.runs.store import RunStore
from tlcore.runs.tracking import RunTrackers
from tlcore.training.checkpoint import Checkpoint, clear_checkpoint
from tlcore.training.loop import RunResult, train
from tlcore.training.observer import BatchProgress, PassProgress, TrainingObserver

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0
STOP_POLL_INTERVAL_S = 0.5

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class _Throttle:
    """Lets a call through at most once per interval, so per-batch hooks stay cheap."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = -float("inf")

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False


class StoreObserver(TrainingObserver):
    """Writes a run's epochs, progress and notes to the run store, and reads its stop flag.

    Per-batch progress writes and stop polls are throttled, so the hooks stay cheap. An
    optional ``watcher`` (the CLI's progress bar) sees the same epochs, batches and notes, and
    may stop the run too.
    """

    def __init__(
        self, store: RunStore, run_id: str, total_epochs: int, done_epochs: int,
        watcher: TrainingObserver | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.total_epochs = total_epochs
        self.done_epochs = done_epochs
        self.watcher = watcher or TrainingObserver()
        self._progress_gate = _Throttle(PROGRESS_INTERVAL_S)
        self._stop_gate = _Throttle(STOP_POLL_INTERVAL_S)
        self._stop_seen = False

    def on_epoch(self, record: EpochRecord) -> None:
        self.done_epochs = record.epoch
        self.store.add_epoch(self.run_id, record)
        self.store.update(self.run_id, progress=self.done_epochs / self.total_epochs)
        self.watcher.on_epoch(record)
        mirror_quietly(self.store, self.run_id)

    def on_batch(self, progress: BatchProgress) -> None:
        self.watcher.on_batch(progress)
        if progress.steps and self._progress_gate.ready():
            done = self.done_epochs + progress.batch / progress.steps
            self.store.update(self.run_id, progress=done / self.total_epochs)

    def note(self, message: str) -> None:
        self.store.add_note(self.run_id, message)
        self.watcher.note(message)

    def on_pass(self, progress: PassProgress) -> None:
        self.watcher.on_pass(progress)
        if progress.done == progress.total or self._progress_gate.ready():
            finished = progress.done >= progress.total
            self.store.set_pass_progress(self.run_id, None if finished else progress.describe())

    def should_stop(self) -> bool:
        if not self._stop_seen and self._stop_gate.ready():
            self._stop_seen = self.store.stop_requested(self.run_id)
        return self._stop_seen or self.watcher.should_stop()


def execute_run(
    store: RunStore,
    run_id: str,
    observer: TrainingObserver | None = None,
    reraise_user_errors: bool = False,
) -> RunRecord:
    """Train the stored run ``run_id`` and record everything in ``store``.

    Args:
        observer: Also sees the run's epochs, batches and notes (a progress bar), besides
            the store.
        reraise_user_errors: After recording a user-caused failure (``TLError``, a full disk
            included), raise it again, so a foreground caller such as the CLI can report it.
    """
    run = store.get(run_id)
    checkpoint_dir = store.artifacts(run_id).checkpoint
    resume = Checkpoint.load(checkpoint_dir)
    done_epochs = resume.epoch if resume else 0
    trackers = RunTrackers(run, store.artifacts(run_id), observer)
    recorder = StoreObserver(store, run_id, run.spec.train.total_epochs, done_epochs, trackers)
    store.clear_epochs(run_id, after=done_epochs)
    status, report = RunStatus.FAILED, None
    try:
        result = train(run.spec, observer=recorder, checkpoint_dir=checkpoint_dir)
        other_data = trained_on_other_data(run, result.bundle)
        if other_data:
            store.add_note(run_id, other_data)
        if store.epochs(run_id):
            report, predictions = result.test_evaluation()
            save_artifacts(store, run_id, result, report, predictions)
        status = result.status
        end_trackers(store, run_id, trackers, status, report)
        mirror_quietly(store, run_id)  # before finish: a node that sees it finished can fetch it
        store.finish(run_id, result.status)
        if result.status == RunStatus.FINISHED:  # after finish: a crash in between loses no work
            clear_checkpoint(checkpoint_dir)
            audit_after_run(store, run_id)
    except Exception as exc:  # noqa: BLE001 - the run must end failed, whatever broke
        if status == RunStatus.FAILED:
            end_trackers(store, run_id, trackers, status, None)
        record_failure(store, run_id, exc, reraise_user_errors)
    finally:
        mirror_quietly(store, run_id)
    return store.get(run_id)


def mirror_quietly(store: RunStore, run_id: str) -> None:
    """Copy what changed in the run's folder to ``TL_ARTIFACTS_URL``, if set. Storage that fails
    costs a note, never the run: its files are still in this node's ``TL_HOME``, and the next
    push copies them."""
    try:
        artifact_mirror.push(store.artifact_dir(run_id))
    except TLError as exc:
        note = f"Copying the run's files to the shared storage failed: {exc}"
        with contextlib.suppress(TLError):
            if note not in store.get(run_id).notes:
                store.add_note(run_id, note)


def end_trackers(store: RunStore, run_id: str, trackers: RunTrackers, status: str,
                 report: EvalReport | None) -> None:
    """Close TensorBoard (and MLflow) with the outcome; a tracker that stopped leaves a note."""
    for failure in trackers.close(status, report):
        store.add_note(run_id, failure)


def record_failure(store: RunStore, run_id: str, exc: Exception, reraise_user_errors: bool) -> None:
    """Mark the run failed with a reason a user can act on; an unexpected error is logged.

    Call it while ``exc`` is being handled: the log gets its traceback.
    """
    error = exc if isinstance(exc, TLError) else as_storage_error(exc)
    if error is None:
        log.error("run %s failed:\n%s", run_id, traceback.format_exc())
        store.finish(run_id, RunStatus.FAILED, f"Internal error ({type(exc).__name__}): {exc}")
        return
    store.finish(run_id, RunStatus.FAILED, str(error))
    if reraise_user_errors and error is exc:
        raise exc
    if reraise_user_errors:
        raise error from exc


def as_storage_error(exc: BaseException) -> StorageError | None:
    """A friendly error for a full disk anywhere in ``exc``'s chain, else None.

    Keras, h5py and SQLite report a full disk differently (errno ENOSPC, "No space left on
    device", "database or disk is full"), sometimes wrapped in another exception.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if (getattr(current, "errno", None) in _DISK_FULL_ERRNOS
                or "no space left" in text or "disk is full" in text or "quota exceeded" in text):
            return StorageError(
                "The server ran out of disk space (no space left on device) while writing "
                "this run's files; nothing incomplete was kept.",
                "Free some space (delete old runs or uploads), then resume the run: it "
                "continues from its last finished epoch.",
            )
        current = current.__cause__ or current.__context__
    return None


def save_artifacts(
    store: RunStore, run_id: str, result: RunResult, report: EvalReport,
    predictions: TestPredictions | None = None,
) -> None:
    """Write model, report, per-image test answers, class names and mistake thumbnails; the
    summary goes last.

    All or nothing: when any write fails (a full disk), every artifact of the run is removed
    again, so no complete-looking model is left for a run that is not finished.
    """
    artifacts = store.artifacts(run_id)
    artifacts.folder.mkdir(parents=True, exist_ok=True)
    summary = run_summary(result, report, store.epochs(run_id))
    try:
        atomic_write(artifacts.model, result.model.save, keep_suffix=True)
        store.write_json(run_id, RunArtifacts.REPORT, report.to_dict())
        store.write_json(run_id, RunArtifacts.CLASS_NAMES, result.bundle.class_names)
        if predictions is not None:
            store.write_json(run_id, RunArtifacts.PREDICTIONS, predictions.to_dict())
        save_data_record(store, run_id, result.bundle)
        save_mistake_thumbnails(store, run_id, result, report)
        store.write_record(run_id, result.status, summary)  # for `doctor --rebuild`
    except BaseException:
        remove_artifacts(store, run_id)
        raise
    store.update(run_id, summary=summary)


def run_summary(result: RunResult, report: EvalReport, history: list[EpochRecord]) -> RunSummary:
    """The headline test metrics and costs the tables and metric cards show."""
    return RunSummary(
        test_accuracy=report.accuracy,
        macro_f1=report.macro["f1"],
        top_k=report.top_k,
        test_top_k_accuracy=report.top_k_accuracy,
        best_val_accuracy=max((e.val_accuracy for e in history), default=None),
        trainable_params=result.trainable_params,
        total_params=result.total_params,
        train_seconds=result.seconds,
        epochs=len(history),
        num_classes=len(result.bundle.class_names),
        counts=result.bundle.counts(),
    )


def remove_artifacts(store: RunStore, run_id: str) -> None:
    """Delete the results :func:`save_artifacts` writes (checkpoint and log stay)."""
    for path in store.artifacts(run_id).results:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def save_mistake_thumbnails(
    store: RunStore, run_id: str, result: RunResult, report: EvalReport
) -> None:
    """Keep the images of the worst mistakes (TFDS and builtin images have no file to show),
    and a heatmap of the predicted class over each: where the model saw what it was so sure of."""
    artifacts = store.artifacts(run_id)
    artifacts.mistakes.mkdir(exist_ok=True)
    thumbnails = [np.asarray(result.bundle.test.images[m.index], dtype=np.uint8) for m in report.mistakes]
    for rank, pixels in enumerate(thumbnails):
        Image.fromarray(pixels).save(artifacts.mistake_thumbnail(rank))
    if thumbnails:
        save_mistake_heatmaps(store, run_id, result, report.mistakes, thumbnails)


def save_mistake_heatmaps(
    store: RunStore, run_id: str, result: RunResult, mistakes: list[Mistake], thumbnails: list[np.ndarray]
) -> None:
    """Grad-CAM (saliency for a TF Hub vector model) of each mistake's predicted class, drawn
    over its thumbnail. The report keeps a dozen mistakes at most, so this is one gradient pass
    over a handful of images (0.4-0.7 s for MobileNetV2 at 96 px on two cores). The heatmaps
    are extra: when the model cannot be explained the run still finishes, with a note; only a
    full disk fails it, as any other artifact would.
    """
    artifacts = store.artifacts(run_id)
    names = result.bundle.class_names
    try:
        explained = explain_batch(result.model, names, np.stack(thumbnails))  # each its top class
        for rank, (mistake, explanation) in enumerate(zip(mistakes, explained, strict=True)):
            if explanation.class_name != mistake.predicted:  # a near tie the report broke the other way
                [explanation] = explain_batch(result.model, names, thumbnails[rank][None],
                                              names.index(mistake.predicted))
            picture = overlay(thumbnails[rank], explanation.heatmap)
            Image.fromarray(picture).save(artifacts.mistake_heatmap(rank))
        atomic_write(artifacts.mistake_heatmap_kind, explained[0].kind)
    except Exception as exc:  # noqa: BLE001 - explaining must never fail the run
        if as_storage_error(exc) is not None:
            raise
        log.warning("run %s: the mistakes could not be explained", run_id, exc_info=True)
        for rank in range(len(mistakes)):
            artifacts.mistake_heatmap(rank).unlink(missing_ok=True)
        reason = brief_reason(exc)
        if not isinstance(exc, TLError):
            reason = f"{type(exc).__name__}: {reason}"
        store.add_note(run_id, f"The mistakes have no heatmaps: the model could not be explained "
                               f"({reason}). The gallery shows the images alone.")
