"""Run folders mirrored to shared storage (``TL_ARTIFACTS_URL``), here a ``file://`` URL.

"Another node" is this process with the run's folder deleted and the mirror's memory of what it
pushed and pulled forgotten: what it then finds, it found in the mirror.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image
from specs import tiny_spec

from tlcore.deploy.serving import load_run
from tlcore.errors import ConfigError
from tlcore.records import RunStatus
from tlcore.runs import artifact_mirror, jobs
from tlcore.runs.runner import execute_run
from tlcore.runs.store import RunStore
from tlcore.training.observer import BatchProgress, TrainingObserver


@pytest.fixture
def bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bucket"
    folder.mkdir()
    monkeypatch.setenv("TL_ARTIFACTS_URL", f"file://{folder}")
    as_another_node(monkeypatch)
    return folder


def as_another_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifact_mirror, "_last_pull", {})
    monkeypatch.setattr(artifact_mirror, "_pushed", {})


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def mirrored(bucket: Path, run_id: str) -> set[str]:
    root = bucket / "runs" / run_id
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing in the runner catches it."""


def test_a_finished_run_is_in_the_mirror_and_a_node_without_its_folder_fetches_it(bucket, monkeypatch):
    store = RunStore()
    run, _ = store.create_run(tiny_spec("frozen", epochs=2))
    jobs.claim_for_this_process(store, run.id)
    assert execute_run(store, run.id).status is RunStatus.FINISHED
    files = mirrored(bucket, run.id)
    assert {"model.keras", "report.json", "run.json", "class_names.json"} <= files
    assert not [name for name in files if name.startswith("checkpoint/")]  # cleared with the run's end

    shutil.rmtree(store.artifact_dir(run.id))  # another node, which never had the folder
    as_another_node(monkeypatch)
    assert store.artifacts(run.id).model.exists()
    assert load_run(run.id, store).predict([png()])[0]


def test_a_run_is_in_the_mirror_before_any_node_can_see_it_finished(bucket, monkeypatch) -> None:
    store = RunStore()
    run, _ = store.create_run(tiny_spec("frozen", epochs=1))
    jobs.claim_for_this_process(store, run.id)
    seen_at_finish: list[set[str]] = []
    finish = store.finish

    def finish_and_look(run_id: str, status: RunStatus, error: str | None = None) -> None:
        seen_at_finish.append(mirrored(bucket, run_id))
        finish(run_id, status, error)

    monkeypatch.setattr(store, "finish", finish_and_look)
    assert execute_run(store, run.id).status is RunStatus.FINISHED
    assert {"model.keras", "report.json", "run.json", "class_names.json"} <= seen_at_finish[0]


def test_a_run_killed_on_one_node_resumes_on_another_from_the_mirrored_checkpoint(bucket, monkeypatch):
    store = RunStore()
    run, _ = store.create_run(tiny_spec("frozen", epochs=4))
    jobs.claim_for_this_process(store, run.id)

    class DieInEpochFour(TrainingObserver):
        def on_batch(self, progress: BatchProgress) -> None:
            if len(store.epochs(run.id)) == 3:
                raise Killed

    with pytest.raises(Killed):
        execute_run(store, run.id, observer=DieInEpochFour())
    assert any(name.startswith("checkpoint/") for name in mirrored(bucket, run.id))
    shutil.rmtree(store.artifact_dir(run.id))  # the node is gone, and its TL_HOME with it
    as_another_node(monkeypatch)
    store.update(run.id, worker_pid=None, worker_started=None)
    store.finish(run.id, RunStatus.FAILED, "node lost")
    store.requeue(run.id)

    assert jobs.run_worker(run.id, store) == 0
    finished = store.get(run.id)
    assert finished.status is RunStatus.FINISHED, finished.error
    assert [e.epoch for e in store.epochs(run.id)] == [1, 2, 3, 4]
    assert any("Resumed after epoch" in note for note in finished.notes), finished.notes


def pushed_run_with_log(store: RunStore, log: str) -> Path:
    """A queued run whose folder holds only a worker log, pushed to the mirror."""
    run, _ = store.create_run(tiny_spec())
    folder = store.artifact_dir(run.id)
    folder.mkdir(parents=True)
    (folder / "worker.log").write_text(log)
    artifact_mirror.push(folder)
    return folder


def test_an_active_run_is_never_fetched_over_the_files_a_worker_writes(bucket, monkeypatch) -> None:
    folder = pushed_run_with_log(RunStore(), "epoch 1\nepoch 2\n")
    (folder / "worker.log").write_text("epoch 1\n")  # as if the mirror were ahead: still not fetched
    as_another_node(monkeypatch)
    assert artifact_mirror.pull_finished(folder) == 0
    assert (folder / "worker.log").read_text() == "epoch 1\n"


def test_only_changed_files_are_copied_and_removed_ones_leave_the_mirror(bucket, tmp_path) -> None:
    folder = tmp_path / "tlhome" / "runs" / "abc123def456"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "checkpoint" / "weights.h5").write_bytes(b"1")
    (folder / "worker.log").write_text("a")
    assert artifact_mirror.push(folder) == 2
    assert artifact_mirror.push(folder) == 0
    (folder / "worker.log").write_text("ab")
    shutil.rmtree(folder / "checkpoint")
    assert artifact_mirror.push(folder) == 1
    assert mirrored(bucket, folder.name) == {"worker.log"}
    assert (bucket / "runs" / folder.name / "worker.log").read_text() == "ab"


def test_deleting_a_run_deletes_its_copy_in_the_mirror(bucket) -> None:
    store = RunStore()
    run_id = pushed_run_with_log(store, "x").name
    assert (bucket / "runs" / run_id / "worker.log").exists()
    store.request_stop(run_id)
    store.delete(run_id)
    assert not (bucket / "runs" / run_id).exists()


def test_storage_that_fails_costs_a_note_and_never_the_run(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the bucket should be")
    monkeypatch.setenv("TL_ARTIFACTS_URL", f"file://{blocker}/bucket")
    store = RunStore()
    run, _ = store.create_run(tiny_spec("frozen", epochs=1))
    jobs.claim_for_this_process(store, run.id)
    finished = execute_run(store, run.id)
    assert finished.status is RunStatus.FINISHED, finished.error
    assert store.model_path(run.id).exists()
    notes = [note for note in finished.notes if "shared storage failed" in note]
    assert len(notes) == 1 and "TL_ARTIFACTS_URL" in notes[0]


def test_a_url_fsspec_cannot_open_is_refused_before_a_run_is_queued(monkeypatch) -> None:
    monkeypatch.setenv("TL_JOBS", "http://127.0.0.1:9")
    monkeypatch.setenv("TL_ARTIFACTS_URL", "nosuch://bucket/prefix")
    with pytest.raises(ConfigError, match="TL_ARTIFACTS_URL") as refused:
        jobs.check_spec(tiny_spec())
    assert "file://" in refused.value.hint
    assert RunStore().list_runs() == []
