"""Where a run's progress goes besides the store: TensorBoard always, MLflow when configured.

:class:`RunTrackers` sits between the store's observer and the caller's own (a progress bar):
it hands every epoch to the trackers and everything else on unchanged, and ends them with the
run's outcome. Trackers never fail a run; why one stopped becomes a note in the run's log.

A run tracks to the MLflow store it was created with (``--mlflow``, kept in its folder as
:attr:`RunArtifacts.tracking`), else to the server-wide ``TL_MLFLOW_URI`` of the process that
trains it: never to a store another run's launcher named.
"""

from __future__ import annotations

import json

from tlcore.records import EpochRecord, RunArtifacts, RunRecord
from tlcore.report.evaluate import EvalReport
from tlcore.runs.mlflow_log import MLflowObserver, tracking_uri
from tlcore.runs.tensorboard_log import TensorBoardObserver
from tlcore.training.observer import BatchProgress, PassProgress, TrainingObserver

MLFLOW_STATUS = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}


class RunTrackers(TrainingObserver):
    """The run's trackers, and the caller's observer behind them."""

    def __init__(
        self, run: RunRecord, artifacts: RunArtifacts, watcher: TrainingObserver | None = None
    ) -> None:
        self.watcher = watcher or TrainingObserver()
        self.artifacts = artifacts
        self.tensorboard = TensorBoardObserver(artifacts.folder, run.spec, run.id)
        uri = run_tracking_uri(artifacts)
        self.mlflow = MLflowObserver(uri, run.spec, run.id, run.data_fingerprint) if uri else None

    def on_epoch(self, record: EpochRecord) -> None:
        self.tensorboard.on_epoch(record)
        if self.mlflow is not None:
            self.mlflow.on_epoch(record)
        self.watcher.on_epoch(record)

    def on_batch(self, progress: BatchProgress) -> None:
        self.watcher.on_batch(progress)

    def note(self, message: str) -> None:
        self.watcher.note(message)

    def on_pass(self, progress: PassProgress) -> None:
        self.watcher.on_pass(progress)

    def should_stop(self) -> bool:
        return self.watcher.should_stop()

    def close(self, status: str, report: EvalReport | None) -> list[str]:
        """End every tracker with the run's status and test report; the notes of those that stopped."""
        failures = [self.tensorboard.close(report)]
        if self.mlflow is not None:
            files = [self.artifacts.model, self.artifacts.report]
            failures.append(self.mlflow.close(report, files, MLFLOW_STATUS.get(status, "FAILED")))
        return [failure for failure in failures if failure]


def run_tracking_uri(artifacts: RunArtifacts) -> str | None:
    """The MLflow store the run was created with, else the server-wide one (or None).

    A file that cannot be read counts as none: tracking must never cost the run.
    """
    try:
        own = json.loads(artifacts.tracking.read_text()).get("mlflow_uri")
    except (OSError, ValueError, AttributeError):
        own = None
    return own.strip() if isinstance(own, str) and own.strip() else tracking_uri()
