"""A run's data audit: its frozen features audited, kept beside the run with small thumbnails.

The audit (:mod:`tlcore.report.audit`) reads the pooled features a frozen run left in the
feature store, so after a frozen run it takes seconds; a run whose features were evicted, or a
fine-tuned run, computes them once (and later runs reuse them). The result goes to the run's
folder, ``audit/audit.json``, with 96 px thumbnails of the images it lists, taken from the pixel
store rows the run trained on, never from the source files (which may have changed or be a
TFDS set). The page only reads what is stored: nothing is computed in the server.

An audit describes the data of one run. When the dataset changed since the run, its test
answers and splits no longer match the files, so the audit refuses rather than guess.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from tlcore.data.bundle import Split
from tlcore.errors import ArtifactError, DatasetError, RunStateError, StorageError, TLError
from tlcore.files import atomic_write
from tlcore.records import RunArtifacts, RunRecord, RunStatus
from tlcore.report.audit import AuditSettings, DataAudit, SplitEmbeddings, audit_embeddings
from tlcore.runs.database import read_only_error, unwritable_error
from tlcore.runs.store import RunStore
from tlcore.training.observer import TrainingObserver

log = logging.getLogger("tlcore.audit")

AUDIT_FOLDER = "audit"
"""In a run's folder: the audit and its thumbnails, replaced together."""
AUDIT_FILE = "audit.json"
THUMBNAIL_FOLDER = "thumbnails"
THUMBNAIL_PX = 96
"""Longest side of a thumbnail: about 4 KB each, so 50 pairs and 50 candidates stay under 600 KB."""
THUMBNAIL_QUALITY = 85


class StaleDataError(DatasetError):
    """The dataset changed since the run, so its splits and test answers no longer fit the files."""


class NotAuditableError(RunStateError):
    """The run has nothing an audit can read (trained from scratch, or no per-image test answers)."""


def audit_problem(run: RunRecord) -> str | None:
    """Why ``run`` cannot be audited, in a sentence, or None when it can (finished, not scratch)."""
    if run.spec.train.strategy == "scratch":
        return (f"Run {run.id} trained from scratch: its backbone's features are random, so they say "
                "nothing about the images.")
    if run.status != RunStatus.FINISHED and run.summary is None:
        return f"Run {run.id} is {run.status}; only a finished run can be audited."
    return None


def audit_run(store: RunStore, run_id: str, observer: TrainingObserver | None = None,
              settings: AuditSettings | None = None) -> DataAudit:
    """Audit the data of a finished run from its frozen backbone's features, and store the audit.

    Args:
        observer: Sees the passes that decode images or compute features the stores lack.
        settings: The thresholds and sizes (:class:`AuditSettings`' defaults, as calibrated).

    Raises:
        NotAuditableError: The run is a scratch run, has not finished or kept no test answers.
        StaleDataError: The dataset changed since the run.
        StorageError: The store is read-only or its folder cannot be written.
        TLError: The dataset or backbone cannot be loaded any more.
    """
    import keras

    from tlcore.runs.data_identity import DataIdentity
    from tlcore.training.frozen_features import frozen_features

    run = store.get(run_id)
    problem = audit_problem(run)
    if problem:
        raise NotAuditableError(problem, "Audit a frozen or fine-tuned run of the same data.")
    if store.read_only:
        raise read_only_error(store.root)
    answers = _test_answers(store, run)
    recorded = _recorded_fingerprint(store, run)
    _check_data(run, recorded, DataIdentity.of(run.spec).fingerprint)  # before any decoding
    keras.utils.set_random_seed(run.spec.train.seed)  # a random backbone as the run built it
    features = frozen_features(run.spec, observer)
    bundle = features.bundle
    _check_data(run, recorded, bundle.fingerprint)
    splits = [SplitEmbeddings(name, split.ids, split.identities, split.labels,
                              features.split_rows(split)) for name, split in bundle.splits().items()]
    audit = audit_embeddings(splits, bundle.class_names, _predicted(run, answers, bundle.test),
                             settings or AuditSettings())
    audit = dataclasses.replace(audit, run_id=run.id, fingerprint=bundle.fingerprint)
    save_audit(store, run.id, audit, bundle.splits())
    return audit


def _test_answers(store: RunStore, run: RunRecord) -> dict[str, int]:
    """Test image identity -> the run's predicted class, from its ``predictions.json``."""
    if not (store.artifact_dir(run.id) / RunArtifacts.PREDICTIONS).exists():
        raise NotAuditableError(
            f"Run {run.id} kept no per-image test answers (it was trained before they were kept).",
            "Train it again (tick Train again, or pass --force), then audit the new run.")
    stored = store.read_json(run.id, RunArtifacts.PREDICTIONS)
    try:
        return {str(identity): int(answer)
                for identity, answer in zip(stored["identities"], stored["predicted"], strict=True)}
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"The file {RunArtifacts.PREDICTIONS} of run {run.id} is damaged.",
                            "Resume the run to write its results again, or delete it.") from exc


def _predicted(run: RunRecord, answers: Mapping[str, int], test: Split) -> list[int]:
    """The run's answer for each test image, in the split's order."""
    missing = sum(identity not in answers for identity in test.identities)
    if missing:
        raise StaleDataError(f"Run {run.id} kept no answer for {missing} of its {len(test)} test images.",
                             "Train a run on the data as it is now, then audit that run.")
    return [answers[identity] for identity in test.identities]


def _recorded_fingerprint(store: RunStore, run: RunRecord) -> str:
    """The fingerprint of the data the run saw: its key's, or the one its data record kept."""
    from tlcore.runs.data_identity import DATA_FILE

    if run.data_fingerprint:
        return run.data_fingerprint
    if (store.artifact_dir(run.id) / DATA_FILE).exists():
        return str(store.read_json(run.id, DATA_FILE).get("fingerprint", ""))
    return ""


def _check_data(run: RunRecord, recorded: str, now: str) -> None:
    if not recorded:
        raise StaleDataError(f"Run {run.id} did not record which data it trained on, so its splits "
                             "cannot be matched to the files.",
                             "Train it again, then audit the new run.")
    if recorded != now:
        raise StaleDataError(
            f"The dataset changed since run {run.id} was trained (fingerprint {recorded}, now {now}): "
            "its splits and test answers no longer match the files.",
            "Train a run on the data as it is now (the same settings retrain), then audit that run.")


# ---- stored audits -------------------------------------------------------------------------


def audit_folder(store: RunStore, run_id: str) -> Path:
    return store.artifact_dir(run_id) / AUDIT_FOLDER


def thumbnail_path(store: RunStore, run_id: str, split: str, index: int) -> Path:
    """Where the thumbnail of image ``index`` of ``split`` is kept (it exists for listed images)."""
    return audit_folder(store, run_id) / THUMBNAIL_FOLDER / thumbnail_name(split, index)


def thumbnail_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.jpg"


def map_thumbnail_path(store: RunStore, run_id: str, position: int) -> Path:
    """The thumbnail of the ``position``-th point of the audit's map (shown when it is picked)."""
    return audit_folder(store, run_id) / THUMBNAIL_FOLDER / map_thumbnail_name(position)


def map_thumbnail_name(position: int) -> str:
    return f"map-{position:05d}.jpg"


def save_audit(store: RunStore, run_id: str, audit: DataAudit, splits: Mapping[str, Split]) -> Path:
    """Write the audit and the thumbnails of the images it lists, replacing any earlier audit.

    Everything is written into a hidden folder first, which then takes the place of the old one,
    so a reader finds the old audit with its thumbnails, or the new one with its own.
    """
    folder = store.artifact_dir(run_id)
    staging = folder / f".{AUDIT_FOLDER}-{uuid.uuid4().hex[:8]}"
    retired = folder / f".{AUDIT_FOLDER}-old-{uuid.uuid4().hex[:8]}"
    target = folder / AUDIT_FOLDER
    try:
        thumbnails = staging / THUMBNAIL_FOLDER
        thumbnails.mkdir(parents=True)
        for split, index in listed_images(audit):
            _save_thumbnail(splits[split].images[index], thumbnails / thumbnail_name(split, index))
        test_index = {image_id: i for i, image_id in enumerate(splits["test"].ids)}
        for position, point in enumerate(audit.map_points):
            pixels = splits["test"].images[test_index[point.id]]
            _save_thumbnail(pixels, thumbnails / map_thumbnail_name(position))
        atomic_write(staging / AUDIT_FILE, json.dumps(audit.to_dict(), indent=1, allow_nan=False))
        if target.exists():
            target.rename(retired)
        staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        error = _storage_error(store, exc)
        if error is None:
            raise
        raise error from exc
    finally:
        shutil.rmtree(retired, ignore_errors=True)
    return target / AUDIT_FILE


def _storage_error(store: RunStore, exc: OSError) -> StorageError | None:
    """A full disk or an unwritable folder as the StorageError every run file write raises."""
    from tlcore.runs.runner import as_storage_error

    return unwritable_error(store.root, exc) or as_storage_error(exc)


def listed_images(audit: DataAudit) -> list[tuple[str, int]]:
    """(split, index) of every image the audit shows: both sides of each pair, each candidate."""
    wanted = [(pair.split, pair.index) for pair in audit.leaks]
    wanted += [(pair.other_split, pair.other_index) for pair in audit.leaks]
    wanted += [("train", issue.index) for issue in audit.label_issues]
    return list(dict.fromkeys(wanted))


def _save_thumbnail(pixels: np.ndarray, path: Path) -> None:
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    image.save(path, "JPEG", quality=THUMBNAIL_QUALITY)


def stored_audit(store: RunStore, run_id: str) -> DataAudit | None:
    """The run's stored audit, or None when it has none.

    Raises:
        ArtifactError: The stored audit is damaged.
    """
    path = audit_folder(store, run_id) / AUDIT_FILE
    if not path.exists():
        return None
    try:
        return DataAudit.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(
            f"The stored data audit of run {run_id} is damaged ({type(exc).__name__}).",
            f"Audit it again: `python -m tlcore audit {run_id} --again`.") from exc


def latest_audit_for_data(store: RunStore, fingerprint: str) -> DataAudit | None:
    """The newest stored audit of any run on the data with this fingerprint (for a dataset preview).

    Runs on the same files with other seeds or split fractions have other splits, so the counts
    of another run's audit are a guide to the data, not to a new run's split.
    """
    if not fingerprint:
        return None
    found = []
    for run in store.list_runs(statuses={RunStatus.FINISHED, RunStatus.STOPPED}):
        stored = audit_folder(store, run.id) / AUDIT_FILE
        if run.data_fingerprint != fingerprint or not stored.exists():
            continue
        try:
            audit = stored_audit(store, run.id)
        except ArtifactError:
            continue
        if audit is not None and audit.fingerprint == fingerprint:
            found.append(audit)
    return max(found, key=lambda audit: audit.created_at, default=None)


AUTO_AUDIT_ENV = "TL_AUTO_AUDIT"
"""``0`` turns off the audit a worker runs after each finished run (on by default)."""


def audit_after_run(store: RunStore, run_id: str) -> None:
    """Audit a run that just finished, in its worker, so its warnings reach the run's log and
    the dataset's preview without anyone asking. It never fails the run: a reason it could not
    be done becomes a note too."""
    if os.environ.get(AUTO_AUDIT_ENV, "1").strip() == "0":
        return
    run = store.get(run_id)
    if audit_problem(run) is not None:
        return
    try:
        audit = audit_run(store, run_id)
    except TLError as exc:
        store.add_note(run_id, f"The data audit was not done: {exc.message}")
        return
    except Exception:  # noqa: BLE001 - the run has finished; an audit bug must not undo that
        log.warning("run %s: the data audit failed", run_id, exc_info=True)
        store.add_note(run_id, "The data audit failed unexpectedly; `python -m tlcore audit RUN --again` "
                               "retries it.")
        return
    for warning in audit.warnings():
        store.add_note(run_id, f"Data audit: {warning}")
