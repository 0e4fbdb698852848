"""Optional MLflow tracking: each run's settings, epochs, test metrics, model and report.

Off unless ``TL_MLFLOW_URI`` names a tracking store (``sqlite:///...``, ``file:///...`` or an
``http://`` server) for every run of the server, or ``--mlflow URI`` on the CLI names one for
the runs it launches (kept in each run's folder, see :mod:`tlcore.runs.tracking`). Runs go to the experiment
``TL_MLFLOW_EXPERIMENT`` (default :data:`DEFAULT_EXPERIMENT`), tagged with the studio's run id
and the data fingerprint, so a result in MLflow can be traced to the data it saw.

A tracking server that does not answer must never cost a training run: requests are given a
short timeout and no retries, the first failure is noted in the run's log, and tracking stops
for the rest of the run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tlcore.config import RunSpec
from tlcore.errors import brief_reason
from tlcore.paths import tl_home
from tlcore.records import EpochRecord
from tlcore.report.evaluate import EvalReport
from tlcore.runs.tensorboard_log import SCALARS, hparams_of
from tlcore.training.observer import TrainingObserver

URI_ENV = "TL_MLFLOW_URI"
EXPERIMENT_ENV = "TL_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "transfer-learning-studio"
REQUEST_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
"""Environment MLflow's HTTP client reads: fail in seconds rather than retry for minutes."""


def tracking_uri() -> str | None:
    """The server-wide tracking store (``TL_MLFLOW_URI``), for runs that did not name their own."""
    return os.environ.get(URI_ENV, "").strip() or None


def absolute_tracking_uri(uri: str) -> str:
    """``uri`` with a relative SQLite file or store folder made absolute against this process's
    folder: the worker that trains the run starts in the project folder, where a relative
    ``sqlite:///track.db`` would name another, empty store."""
    uri = uri.strip()
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and not path.startswith(":memory:"):
            return "sqlite:///" + os.path.abspath(os.path.expanduser(path))
        return uri
    if "://" not in uri and not uri.startswith("file:"):  # a plain folder: MLflow's file store
        return os.path.abspath(os.path.expanduser(uri))
    return uri


def artifact_root_for(uri: str) -> str | None:
    """Where a new experiment keeps models and reports for a database store.

    MLflow's own default for a database store is ``./mlruns`` in whatever folder the worker
    happens to run in, which scatters models over the project checkout. A SQLite store keeps
    them in a folder beside its file; any other database store under ``TL_HOME``. File stores
    and servers choose for themselves (None).
    """
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite" and uri.startswith("sqlite:///"):
        database = Path(uri[len("sqlite:///"):]).expanduser()
        return (database.parent / f"{database.stem}-artifacts").resolve().as_uri()
    if scheme in {"postgresql", "mysql", "mssql"}:
        return (tl_home() / "mlflow-artifacts").resolve().as_uri()
    return None


class MLflowObserver(TrainingObserver):
    """Logs one studio run as one MLflow run; every call is a no-op once tracking has failed."""

    def __init__(self, uri: str, spec: RunSpec, run_id: str, data_fingerprint: str | None) -> None:
        self.uri = uri
        self.failure: str | None = None
        self.mlflow_run_id: str | None = None
        for name, value in REQUEST_LIMITS.items():
            os.environ.setdefault(name, value)
        self.client = self._attempt(lambda: self._client())
        if self.client is not None:
            self.mlflow_run_id = self._attempt(lambda: self._start(spec, run_id, data_fingerprint))

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def _start(self, spec: RunSpec, run_id: str, fingerprint: str | None) -> str:
        name = os.environ.get(EXPERIMENT_ENV, "").strip() or DEFAULT_EXPERIMENT
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (experiment.experiment_id if experiment else
                         self.client.create_experiment(name, artifact_location=artifact_root_for(self.uri)))
        tags = {"tlstudio.run_id": run_id, "tlstudio.data_fingerprint": fingerprint or "unknown",
                "tlstudio.strategy": spec.train.strategy}
        started = self.client.create_run(experiment_id, run_name=spec.name or run_id, tags=tags)
        params = [(key, str(value)[:500]) for key, value in hparams_of(spec).items()]
        from mlflow.entities import Param

        self.client.log_batch(started.info.run_id, params=[Param(k, v) for k, v in params])
        return started.info.run_id

    def _attempt(self, call: Any) -> Any:
        if self.failure is not None:
            return None
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - whatever MLflow raises, training goes on
            reason = f"{type(exc).__name__}: {brief_reason(exc)}"
            self.failure = f"MLflow tracking at {self.uri} stopped ({reason}); the run goes on without it."
            return None

    def on_epoch(self, record: EpochRecord) -> None:
        if self.mlflow_run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(getattr(record, name)), now, record.epoch) for name in SCALARS]
        self._attempt(lambda: self.client.log_batch(self.mlflow_run_id, metrics=metrics))

    def close(self, report: EvalReport | None, files: list[Path], status: str) -> str | None:
        """Log the test metrics and ``files`` (model, report), end the MLflow run with
        ``status`` (FINISHED, FAILED or KILLED); returns why tracking stopped, if it did."""
        if self.mlflow_run_id is None:
            return self.failure

        def finish() -> None:
            if report is not None:
                self.client.log_metric(self.mlflow_run_id, "test_accuracy", report.accuracy)
                self.client.log_metric(self.mlflow_run_id, "test_macro_f1", float(report.macro["f1"]))
            for path in files:
                if path.exists():
                    self.client.log_artifact(self.mlflow_run_id, str(path))
            self.client.set_terminated(self.mlflow_run_id, status)

        self._attempt(finish)
        return self.failure
