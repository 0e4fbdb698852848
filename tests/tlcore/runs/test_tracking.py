"""A trained run leaves TensorBoard events of what it trained, and MLflow records when asked."""

from __future__ import annotations

import json
import os

import pytest
import tensorflow as tf
from specs import TINY_SIZE
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tlcore.cli import main
from tlcore.runs import jobs
from tlcore.runs.store import RunStore
from tlcore.runs.tensorboard_log import FOLDER
from tlcore.runs.tracking import RunTrackers

TINY = ["--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35", "--weights", "none",
        "--image-size", str(TINY_SIZE), "--epochs", "2", "--strategy", "frozen", "--json"]


def test_cli_runs_write_events_and_track_to_mlflow(capsys, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("TL_MLFLOW_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'track.db'}"
    assert main(["train", *TINY, "--mlflow", uri]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    store = RunStore()
    epochs = store.epochs(run_id)
    events = EventAccumulator(str(store.artifacts(run_id).folder / FOLDER), size_guidance={"tensors": 0})
    events.Reload()
    logged = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch/val_accuracy")]
    assert logged == pytest.approx([e.val_accuracy for e in epochs])
    accuracy = tf.make_ndarray(events.Tensors("test/accuracy")[0].tensor_proto)
    assert float(accuracy) == pytest.approx(store.get(run_id).summary.test_accuracy)

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (tracked,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                    f"tags.`tlstudio.run_id` = '{run_id}'")
    assert tracked.data.tags["tlstudio.data_fingerprint"] == store.get(run_id).data_fingerprint
    assert len(client.get_metric_history(tracked.info.run_id, "loss")) == len(epochs)
    artifacts = {item.path for item in client.list_artifacts(tracked.info.run_id)}
    assert artifacts == {"model.keras", "report.json"}


def test_an_unreachable_tracking_server_leaves_a_note_and_a_finished_run(capsys, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("TL_MLFLOW_URI", "http://127.0.0.1:9")
    assert main(["train", *TINY]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["status"] == "finished"
    assert any("MLflow tracking at http://127.0.0.1:9 stopped" in note for note in payload["notes"])


def tracker_uri(store: RunStore, run_id: str) -> str | None:
    """Where a worker starting the run now would track it to (None: MLflow off)."""
    trackers = RunTrackers(store.get(run_id), store.artifacts(run_id))
    trackers.close("stopped", None)
    return trackers.mlflow.uri if trackers.mlflow else None


def test_a_submitted_run_is_tracked_where_its_launcher_said_whoever_trains_it(
        capsys, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setattr(jobs, "dispatch", lambda store: [])  # the worker is started by hand below
    monkeypatch.delenv("TL_MLFLOW_URI", raising=False)
    own = f"sqlite:///{tmp_path / 'own.db'}"
    assert main(["submit", *TINY, "--mlflow", own]) == 0
    tracked = json.loads(capsys.readouterr().out)["run_id"]
    assert "TL_MLFLOW_URI" not in os.environ, "workers this process starts would pass it on"
    assert main(["submit", *TINY, "--seed", "7"]) == 0
    untracked = json.loads(capsys.readouterr().out)["run_id"]

    store = RunStore()
    assert jobs.run_worker(tracked, store) == 0  # a worker whose environment names no store
    client = mlflow.tracking.MlflowClient(tracking_uri=own)
    (found,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  f"tags.`tlstudio.run_id` = '{tracked}'")
    assert found.info.status == "FINISHED"
    assert tracker_uri(store, untracked) is None
    server = f"sqlite:///{tmp_path / 'server.db'}"
    monkeypatch.setenv("TL_MLFLOW_URI", server)  # the server's own store: for runs that named none
    assert tracker_uri(store, untracked) == server
    assert tracker_uri(store, tracked) == own


def test_a_run_queued_with_its_own_store_is_never_seen_without_it(tmp_path, monkeypatch) -> None:
    """A dispatcher polling from another process may take a queued run the moment it is
    committed: its tracking file must already be in the run's folder by then."""
    from specs import tiny_spec

    from tlcore.records import RunArtifacts

    store, watcher = RunStore(), RunStore()
    seen_while_writing: list[list[str]] = []
    write = RunStore._write_json_into

    def watched(self, folder, name, payload):
        seen_while_writing.append([run.id for run in watcher.list_runs()])
        return write(self, folder, name, payload)

    monkeypatch.setattr(RunStore, "_write_json_into", watched)
    own = f"sqlite:///{tmp_path / 'own.db'}"
    run, reused, _ = jobs.create_for_data(store, tiny_spec("frozen"), tracking=own)
    assert not reused
    assert seen_while_writing == [[]]  # the file was written before the run could be seen
    assert json.loads((store.artifact_dir(run.id) / RunArtifacts.TRACKING).read_text()) == {"mlflow_uri": own}
    again, reused, _ = jobs.create_for_data(store, tiny_spec("frozen"), tracking=own)
    assert reused and again.id == run.id and len(seen_while_writing) == 1
