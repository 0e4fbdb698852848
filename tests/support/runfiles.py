"""Finished runs made without training: a row, an epoch, a summary and stand-in result files."""

from __future__ import annotations

from tlcore.config import RunSpec, TrainSpec
from tlcore.records import EpochRecord, RunStatus, RunSummary
from tlcore.runs.store import RunStore


def finished_run(store: RunStore, learning_rate: float = 1e-3, record: bool = True) -> str:
    """A finished run with its result files (stand-ins) and, unless told not to, its record."""
    run, _ = store.create_run(RunSpec(train=TrainSpec(strategy="frozen", learning_rate=learning_rate)))
    store.add_epoch(run.id, EpochRecord(1, "frozen", 0.9, 0.6, 1.0, 0.5, 1e-3, 2.0, 10.0))
    summary = RunSummary(test_accuracy=0.8, epochs=1)
    store.update(run.id, summary=summary)
    store.artifacts(run.id).folder.mkdir(parents=True)
    store.model_path(run.id).write_bytes(b"model")
    store.write_json(run.id, "report.json", {})
    store.write_json(run.id, "class_names.json", ["a", "b"])
    if record:
        store.write_record(run.id, RunStatus.FINISHED, summary)
    store.finish(run.id, RunStatus.FINISHED)
    return run.id
