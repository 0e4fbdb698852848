"""MLflow tracking against a real local store, and a tracking server that does not answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from reports import EPOCHS, small_report
from specs import tiny_spec

from tlcore.runs.mlflow_log import (
    DEFAULT_EXPERIMENT,
    MLflowObserver,
    absolute_tracking_uri,
    artifact_root_for,
)

mlflow = pytest.importorskip("mlflow")

def test_a_run_lands_in_a_local_store_with_settings_epochs_results_and_files(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    observer = MLflowObserver(uri, tiny_spec(schedule="one_cycle"), "run42", "fp123")
    for record in EPOCHS:
        observer.on_epoch(record)
    model = tmp_path / "model.keras"
    model.write_bytes(b"weights")
    assert observer.close(small_report(), [model, tmp_path / "missing.json"], "FINISHED") is None
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    (found,) = client.search_runs([experiment.experiment_id], "tags.`tlstudio.run_id` = 'run42'")
    assert found.info.status == "FINISHED"
    assert found.data.tags["tlstudio.data_fingerprint"] == "fp123"
    assert found.data.params["train.schedule"] == "one_cycle"
    history = client.get_metric_history(found.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.75)]
    assert found.data.metrics["test_accuracy"] == pytest.approx(0.875)
    assert [item.path for item in client.list_artifacts(found.info.run_id)] == ["model.keras"]
    assert list((tmp_path / "mlflow-artifacts").rglob("model.keras")), "artifacts go beside the database"


def test_database_stores_keep_artifacts_out_of_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_HOME", str(tmp_path / "home"))
    beside = (tmp_path / "db" / "track-artifacts").as_uri()
    assert artifact_root_for(f"sqlite:///{tmp_path}/db/track.db") == beside
    under_home = (tmp_path / "home" / "mlflow-artifacts").as_uri()
    assert artifact_root_for("postgresql+psycopg://u@localhost/ml") == under_home
    assert artifact_root_for("http://127.0.0.1:5000") is None
    assert artifact_root_for(f"file://{tmp_path}/store") is None


def test_a_relative_store_names_the_same_store_from_the_workers_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_tracking_uri("sqlite:///track.db") == f"sqlite:///{tmp_path / 'track.db'}"
    assert absolute_tracking_uri(f"sqlite:///{tmp_path}/a.db") == f"sqlite:///{tmp_path}/a.db"
    assert absolute_tracking_uri("mlruns") == str(tmp_path / "mlruns")
    assert absolute_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


@pytest.mark.timeout(120)  # MLflow's default retries would take minutes: it must give up at once
def test_a_tracking_server_that_does_not_answer_costs_seconds_and_a_note(tmp_path):
    observer = MLflowObserver("http://127.0.0.1:9", tiny_spec(), "run1", None)  # nothing listens there
    observer.on_epoch(EPOCHS[0])
    failure = observer.close(None, [], "FINISHED")
    assert failure is not None and "the run goes on without it" in failure and "127.0.0.1:9" in failure


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """``mlflow server`` on loopback, stopped (with its workers) when the test ends."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start within two minutes")
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.slow
def test_a_run_lands_on_a_tracking_server(mlflow_server, tmp_path):
    observer = MLflowObserver(mlflow_server, tiny_spec(), "run7", "fp7")
    for record in EPOCHS:
        observer.on_epoch(record)
    report_file = tmp_path / "report.json"
    report_file.write_text("{}")
    assert observer.close(small_report(), [report_file], "FINISHED") is None
    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_server)
    (found,) = client.search_runs([client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id])
    assert found.data.tags["tlstudio.run_id"] == "run7" and found.info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(found.info.run_id, "loss")] == [0.9, 0.5]
    assert [item.path for item in client.list_artifacts(found.info.run_id)] == ["report.json"]
