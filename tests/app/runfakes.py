"""Runs in any state without training: records written straight to the store, for page tests.

A "running" run is claimed by the test process itself, so the jobs sidebar's reaper sees a live
worker and no real worker is started for it.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid

import pyarrow as pa
from streamlit.testing.v1 import AppTest

from tlcore.config import RunSpec
from tlcore.records import RunRecord, RunStatus, RunSummary
from tlcore.runs.store import Claimant, RunStore


def fake_run(store: RunStore, spec: RunSpec, name: str, status: RunStatus = RunStatus.RUNNING,
             accuracy: float | None = None, error: str | None = None) -> RunRecord:
    """A run of ``spec`` named ``name``, left ``status`` (with a summary when ``accuracy`` is given)."""
    run, _ = store.create_run(dataclasses.replace(spec, name=name), force=True, claimant=Claimant.current(),
                              data_fingerprint="f00d")  # as every launch records its data
    if accuracy is not None:
        store.update(run.id, summary=RunSummary(test_accuracy=accuracy, best_val_accuracy=accuracy))
    if status != RunStatus.RUNNING:
        store.finish(run.id, status, error)
    return store.get(run.id)


def clone_run(store: RunStore, source_id: str, name: str, status: RunStatus) -> RunRecord:
    """A copy of a trained run (its files and epochs too) under a new id, left ``status``.

    A "running" copy is claimed by this process, with its results already written, as a worker
    leaves them a moment before the end: ``store.finish`` then ends it.
    """
    source = store.get(source_id)
    running = status == RunStatus.RUNNING
    copy = dataclasses.replace(
        source, id=uuid.uuid4().hex[:12], key=uuid.uuid4().hex[:16], name=name, status=status,
        created_at=time.time(), finished_at=None if running else time.time(),
        worker_pid=Claimant.current().pid if running else None,
        worker_started=Claimant.current().started if running else None)
    store.restore(copy, store.epochs(source_id))
    shutil.copytree(store.artifact_dir(source_id), store.artifact_dir(copy.id))
    return store.get(copy.id)


def displayed_table(at: AppTest, index: int = 0) -> list[dict[str, str]]:
    """The cells of a styled ``st.dataframe`` as the browser shows them (formatted text)."""
    raw = at.dataframe[index].proto.arrow_data.styler.display_values
    return pa.ipc.open_stream(raw).read_pandas().to_dict("records")
