"""Faults a shared server must survive: killed workers, a full disk, racing launches, restarts.

The fast tests simulate the fault inside this process; the ``slow`` ones use real worker
processes (``python -m tlcore worker``) and real signals.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras
import psutil
import pytest
from imagegen import encode, random_pixels
from PIL import Image
from specs import tiny_spec

from tlcore.deploy.serving import load_run
from tlcore.records import ACTIVE, EpochRecord
from tlcore.report.evaluate import EvalReport, evaluate
from tlcore.runs import jobs
from tlcore.runs.runner import execute_run, save_artifacts
from tlcore.runs.store import RunStore
from tlcore.training.checkpoint import Checkpoint
from tlcore.training.loop import RunResult, train
from tlcore.training.observer import BatchProgress, TrainingObserver

ROOT = Path(__file__).resolve().parents[2]
RESULT_FILES = ("model.keras", "report.json", "class_names.json", "mistakes")


def disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def wait_for(condition, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)
    return value


def worker_processes(run_id: str) -> list[psutil.Process]:
    """Live ``python -m tlcore worker RUN_ID`` processes, wherever they were started from."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if cmdline[-2:] == ["worker", run_id] and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.fixture
def end_workers() -> Iterator[RunStore]:
    """The test's store; afterwards every worker of its active runs is stopped."""
    store = RunStore()
    yield store
    for run in store.list_runs(statuses=ACTIVE):
        store.request_stop(run.id)
        for process in worker_processes(run.id):
            process.terminate()
            process.wait(timeout=30)
    jobs.reap(store)


def png() -> bytes:
    return encode(random_pixels(0), "PNG")


def history(store: RunStore, run_id: str) -> list[tuple[int, float]]:
    return [(e.epoch, e.loss) for e in store.epochs(run_id)]


def checkpointed_epochs(store: RunStore, run_id: str) -> int:
    """Epochs recorded in the store whose checkpoint is on disk too (0 while they differ)."""
    recorded = len(store.epochs(run_id))
    checkpoint = Checkpoint.load(store.artifact_dir(run_id) / "checkpoint")
    return recorded if checkpoint is not None and checkpoint.epoch == recorded else 0


# --- a worker that dies ---------------------------------------------------------------------

class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing in the runner catches it."""


def claimed_run(store: RunStore, epochs: int) -> str:
    run, _ = store.create_run(tiny_spec("frozen", epochs=epochs))
    jobs.claim_for_this_process(store, run.id)
    return run.id


def die_like_a_killed_worker(store: RunStore, run_id: str) -> None:
    """Point the run at a pid that is gone, as after ``kill -9``, and let reap find it."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    store.update(run_id, worker_pid=gone.pid, worker_started=time.time())
    assert jobs.reap(store) == [run_id]


def test_a_run_whose_worker_died_resumes_after_its_last_epoch() -> None:
    store = RunStore()
    run_id = claimed_run(store, epochs=4)

    recorded: list[int] = []

    class CrashInEpochThree(TrainingObserver):
        def on_epoch(self, record: EpochRecord) -> None:
            recorded.append(record.epoch)

        def on_batch(self, progress: BatchProgress) -> None:
            if recorded and recorded[-1] == 2:  # epoch 2 is recorded and checkpointed by now
                raise Killed

    with pytest.raises(Killed):
        execute_run(store, run_id, observer=CrashInEpochThree())
    assert store.get(run_id).status == "running"  # as a killed worker leaves it
    before = history(store, run_id)
    assert [epoch for epoch, _ in before] == [1, 2]

    die_like_a_killed_worker(store, run_id)
    failed = store.get(run_id)
    assert failed.status == "failed" and "died" in failed.error and "Resume" in failed.error
    assert history(store, run_id) == before

    store.requeue(run_id)
    jobs.claim_for_this_process(store, run_id)
    finished = execute_run(store, run_id)
    assert finished.status == "finished", finished.error
    after = history(store, run_id)
    assert [epoch for epoch, _ in after] == [1, 2, 3, 4]
    assert after[:2] == before  # the first two epochs were not trained again
    assert any("Resumed after epoch 2" in note for note in finished.notes)
    assert load_run(run_id, store).predict([png()])[0]


def test_a_death_between_epoch_record_and_checkpoint_redoes_the_epoch(monkeypatch) -> None:
    store = RunStore()
    run_id = claimed_run(store, epochs=3)
    original = RunStore.add_epoch

    def die_before_recording_epoch_two(self: RunStore, run: str, record: EpochRecord) -> None:
        if record.epoch == 2:
            raise Killed  # epochs are recorded before they are checkpointed: no checkpoint 2
        original(self, run, record)

    monkeypatch.setattr(RunStore, "add_epoch", die_before_recording_epoch_two)
    with pytest.raises(Killed):
        execute_run(store, run_id)
    monkeypatch.setattr(RunStore, "add_epoch", original)
    die_like_a_killed_worker(store, run_id)
    store.requeue(run_id)
    jobs.claim_for_this_process(store, run_id)
    finished = execute_run(store, run_id)
    assert finished.status == "finished", finished.error
    assert [epoch for epoch, _ in history(store, run_id)] == [1, 2, 3]  # no gap: 2 redone
    assert any("Resumed after epoch 1" in note for note in finished.notes)


# --- a full disk ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, EvalReport]:
    """One tiny trained model and its report, shared by the artifact-writing tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_HOME", str(tmp_path_factory.mktemp("home")))
        patch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras")))
        result = train(tiny_spec("frozen", epochs=1))
        return result, evaluate(result.model, result.bundle.test, result.bundle.class_names)


def fail_on_partial_file(name: str):
    """A Path.write_bytes that writes half of ``name``'s temporary file, then finds the disk full."""
    original = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if self.name.startswith(f".{name}.") and self.name.endswith(".partial"):
            original(self, data[: len(data) // 2])
            disk_full()
        return original(self, data)

    return write_bytes


def half_a_model(self: keras.Model, path: str | Path, *args: object, **kwargs: object) -> None:
    Path(path).write_bytes(b"PK\x03\x04 half of a model")
    disk_full()


@pytest.mark.parametrize("step", ["model", "report", "class_names", "thumbnails"])
def test_a_full_disk_while_saving_leaves_no_artifacts(monkeypatch, trained, step: str) -> None:
    result, report = trained
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    if step == "model":
        monkeypatch.setattr(keras.Model, "save", half_a_model)
    elif step == "thumbnails":
        monkeypatch.setattr(Image.Image, "save", disk_full)
    else:
        monkeypatch.setattr(Path, "write_bytes", fail_on_partial_file(f"{step}.json"))
    with pytest.raises(OSError):
        save_artifacts(store, run.id, result, report)
    folder = store.artifact_dir(run.id)
    assert [p.name for p in folder.iterdir() if p.name in RESULT_FILES or p.name.startswith(".")] == []
    assert store.get(run.id).summary is None

    monkeypatch.undo()  # space freed: the same call now writes the complete set
    save_artifacts(store, run.id, result, report)
    assert {"model.keras", "report.json", "class_names.json"} <= {p.name for p in folder.iterdir()}


def finish_calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = RunStore.finish

    def spy(self: RunStore, run_id: str, status: str, error: str | None = None) -> None:
        calls.append(status)
        original(self, run_id, status, error)

    monkeypatch.setattr(RunStore, "finish", spy)
    return calls


def test_a_full_disk_fails_the_run_with_a_clear_reason_and_resume_finishes_it(monkeypatch) -> None:
    store = RunStore()
    run_id = claimed_run(store, epochs=1)
    statuses = finish_calls(monkeypatch)
    monkeypatch.setattr(keras.Model, "save", half_a_model)
    failed = execute_run(store, run_id)
    assert statuses == ["failed"]
    assert failed.status == "failed"
    assert "ran out of disk space" in failed.error and "resume" in failed.error
    assert "Internal error" not in failed.error
    assert not store.model_path(run_id).exists()
    assert not [p for p in store.artifact_dir(run_id).iterdir() if p.name.startswith(".")]  # no partial
    trained_epochs = history(store, run_id)

    monkeypatch.undo()  # space freed
    store.requeue(run_id)
    jobs.claim_for_this_process(store, run_id)
    finished = execute_run(store, run_id)
    assert finished.status == "finished", finished.error
    assert history(store, run_id) == trained_epochs  # saved from the checkpoint, not retrained
    assert load_run(run_id, store).predict([png()])[0]


def test_a_full_disk_while_checkpointing_fails_the_run_clearly(monkeypatch) -> None:
    import tlcore.training.checkpoint

    store = RunStore()
    run_id = claimed_run(store, epochs=2)
    monkeypatch.setattr(tlcore.training.checkpoint, "save_checkpoint", disk_full)
    failed = execute_run(store, run_id)
    assert failed.status == "failed" and "ran out of disk space" in failed.error
    assert not store.model_path(run_id).exists()


def test_the_cli_reports_a_full_disk_as_one_line(monkeypatch, capsys) -> None:
    from tlcore.cli import main

    monkeypatch.setattr(keras.Model, "save", half_a_model)
    code = main(["train", "--dataset", "builtin:shapes", "--backbone", "mobilenet_v2",
                 "--alpha", "0.35", "--weights", "none", "--image-size", "48", "--epochs", "1",
                 "--strategy", "frozen"])
    err = capsys.readouterr().err
    assert code == 2 and "error: The server ran out of disk space" in err
    assert "Traceback" not in err


class FullDisk:
    """Stands in for a full disk under the run store: once ``full``, every SQLite write fails.

    Reads still work, as they do on a real full disk.
    """

    WRITES = ("INSERT", "UPDATE", "DELETE")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        original = RunStore._connect
        disk = self

        @contextmanager
        def connect(store: RunStore) -> Iterator[object]:
            with original(store) as conn:
                yield disk.Connection(conn) if disk.full else conn

        monkeypatch.setattr(RunStore, "_connect", connect)

    class Connection:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql.lstrip().upper().startswith(FullDisk.WRITES):
                raise sqlite3.OperationalError("database or disk is full")
            return self._conn.execute(sql, *args)


def fill_after_first_epoch(monkeypatch: pytest.MonkeyPatch, disk: FullDisk) -> None:
    original = RunStore.add_epoch

    def add_epoch(self: RunStore, run_id: str, record: EpochRecord) -> None:
        original(self, run_id, record)
        disk.full = True

    monkeypatch.setattr(RunStore, "add_epoch", add_epoch)


def dispatched_run(store: RunStore, epochs: int) -> str:
    """A run as ``dispatch`` leaves it for its worker: running, with its folder made."""
    run, _ = store.create_run(tiny_spec("frozen", epochs=epochs))
    assert [r.id for r in store.claim_queued(1)] == [run.id]
    store.artifact_dir(run.id).mkdir(parents=True)  # spawn_worker opens worker.log in it
    return run.id


@pytest.mark.parametrize("fills", ["before-the-claim", "after-epoch-1"])
def test_a_full_disk_that_stops_sqlite_too_is_recorded_by_the_reaper(monkeypatch, fills) -> None:
    store = RunStore()
    run_id = dispatched_run(store, epochs=2)
    disk = FullDisk(monkeypatch)
    if fills == "before-the-claim":
        disk.full = True
    else:
        fill_after_first_epoch(monkeypatch, disk)

    assert jobs.run_worker(run_id, store) == jobs.EXIT_DISK_FULL
    assert store.get(run_id).status == "running"  # the worker could not record anything
    assert store.artifacts(run_id).disk_full_marker.exists()
    assert len(history(store, run_id)) == (0 if fills == "before-the-claim" else 1)

    monkeypatch.undo()  # space freed; the worker has exited
    die_like_a_killed_worker(store, run_id)
    failed = store.get(run_id)
    assert failed.status == "failed"
    assert failed.error.startswith("The server ran out of disk space")
    assert "Free some space" in failed.error and "resume the run" in failed.error
    assert "died" not in failed.error
    assert not store.artifacts(run_id).disk_full_marker.exists()

    store.requeue(run_id)
    assert jobs.run_worker(run_id, store) == 0
    assert store.get(run_id).status == "finished"
    assert [epoch for epoch, _ in history(store, run_id)] == [1, 2]


def test_a_worker_killed_after_an_earlier_full_disk_is_not_blamed_on_the_disk(monkeypatch) -> None:
    store = RunStore()
    run_id = dispatched_run(store, epochs=1)
    store.artifacts(run_id).disk_full_marker.touch()  # left by an earlier attempt
    jobs.claim_for_this_process(store, run_id)
    die_like_a_killed_worker(store, run_id)
    assert "died without finishing" in store.get(run_id).error


# --- two people, one spec ---------------------------------------------------------------------

def test_two_people_launching_one_spec_at_once_share_one_run(end_workers: RunStore) -> None:
    spawned_before = len(jobs._children)
    barrier, results = threading.Barrier(6), []

    def launch() -> None:
        barrier.wait()
        results.append(jobs.submit(tiny_spec("frozen", epochs=1), RunStore(end_workers.root)))

    threads = [threading.Thread(target=launch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({s.run.id for s in results}) == 1
    assert sorted(s.reused for s in results) == [False] + [True] * 5
    assert len(end_workers.list_runs()) == 1
    [worker] = jobs._children[spawned_before:]
    assert end_workers.get(results[0].run.id).worker_pid == worker.pid
    assert psutil.Process(worker.pid).nice() == min(19, psutil.Process().nice() + jobs.worker_nice())


def test_a_worker_that_cannot_be_started_fails_the_run_at_once(monkeypatch) -> None:
    def no_more_processes(store: RunStore, run_id: str) -> None:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(jobs, "spawn_worker", no_more_processes)
    run = jobs.submit(tiny_spec("frozen", epochs=1)).run
    assert run.status == "failed" and "could not be started" in run.error


SUBMITTER = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from imagegen import encode, random_pixels
from specs import tiny_spec
from tlcore.runs import jobs
ready = Path(sys.argv[1]); ready.touch()
while len(list(ready.parent.glob("*.ready"))) < int(sys.argv[2]):
    time.sleep(0.01)
submission = jobs.submit(tiny_spec("frozen", epochs=int(sys.argv[3])))
print(json.dumps({{"id": submission.run.id, "reused": submission.reused}}), flush=True)
time.sleep(float(sys.argv[4]))
"""


def start_submitter(tmp_path: Path, name: str, people: int, epochs: int,
                    linger: float = 0.0) -> subprocess.Popen:
    """A process that submits the tiny spec once ``people`` submitters are ready, then lingers."""
    script = tmp_path / "submit.py"
    script.write_text(SUBMITTER.format(tests=str(Path(__file__).parents[1] / "support")))
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / f"{name}.ready"), str(people), str(epochs),
         str(linger)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_two_processes_launching_one_spec_at_once_start_one_worker(
    tmp_path: Path, end_workers: RunStore
) -> None:
    submitters = [start_submitter(tmp_path, f"person{i}", 2, epochs=3) for i in range(2)]
    answers = [json.loads(p.communicate(timeout=180)[0]) for p in submitters]
    assert answers[0]["id"] == answers[1]["id"]
    assert sorted(a["reused"] for a in answers) == [False, True]
    assert len(end_workers.list_runs()) == 1
    assert len(wait_for(lambda: worker_processes(answers[0]["id"]), 30, "the worker")) == 1


# --- the app's process goes away ----------------------------------------------------------------

@pytest.mark.slow
def test_a_worker_outlives_the_process_group_that_started_it(tmp_path: Path,
                                                             end_workers: RunStore) -> None:
    """Like a Streamlit server killed during training: its whole process group gets SIGKILL."""
    server = start_submitter(tmp_path, "server", 1, epochs=2, linger=300)
    run_id = json.loads(server.stdout.readline())["id"]
    [worker] = wait_for(lambda: worker_processes(run_id), 60, "the worker")
    assert os.getsid(worker.pid) != os.getsid(server.pid)
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)
    assert worker.is_running() and end_workers.get(run_id).is_active

    wait_for(lambda: not end_workers.get(run_id).is_active, 300, "the run to end", poll=1)
    run = end_workers.get(run_id)
    assert run.status == "finished", run.error
    assert [epoch for epoch, _ in history(end_workers, run_id)] == [1, 2]


# --- kill -9 of a real worker -----------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_of_a_real_worker_mid_epoch(monkeypatch, end_workers: RunStore) -> None:
    monkeypatch.setenv("TL_MAX_JOBS", "1")
    store = end_workers
    # Without the feature cache every epoch runs the backbone: long enough to land inside one.
    victim = jobs.submit(tiny_spec("frozen", epochs=8, feature_cache=False), store).run
    bystander = jobs.submit(tiny_spec("frozen", epochs=1), store).run
    assert store.get(bystander.id).status == "queued"

    # Killed once the latest recorded epoch is also checkpointed, i.e. inside the next epoch
    # (a kill between recording an epoch and its checkpoint redoes that epoch: tested apart).
    wait_for(lambda: checkpointed_epochs(store, victim.id) >= 1, 240, "the first checkpoint",
             poll=0.05)
    pid = store.get(victim.id).worker_pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             30, "the worker to die")
    before = history(store, victim.id)
    assert 1 <= len(before) < 8 and [e for e, _ in before] == list(range(1, len(before) + 1))
    saved = Checkpoint.load(store.artifact_dir(victim.id) / "checkpoint").epoch
    assert 1 <= saved <= len(before)

    assert jobs.reap(store) == [victim.id]
    failed = store.get(victim.id)
    assert failed.status == "failed" and f"pid {pid}" in failed.error
    assert history(store, victim.id) == before
    assert store.get(bystander.id).status == "queued"  # untouched by the crash and the reaping

    assert jobs.dispatch(store) == [bystander.id]  # the freed slot goes to the queued run
    resumed = jobs.resume(victim.id, store)
    assert resumed.status == "queued"  # behind the bystander: one job at a time
    wait_for(lambda: not store.get(bystander.id).is_active, 240, "the bystander", poll=0.5)
    assert store.get(bystander.id).status == "finished", store.get(bystander.id).error
    wait_for(lambda: not store.get(victim.id).is_active, 300, "the resumed run", poll=0.5)

    run = store.get(victim.id)
    assert run.status == "finished", run.error
    after = history(store, victim.id)
    assert [epoch for epoch, _ in after] == list(range(1, 9))  # no duplicates, no gaps
    assert after[:saved] == before[:saved]  # epochs after the checkpoint (if any) are redone
    assert any(f"Resumed after epoch {saved}" in note for note in run.notes)
    assert store.model_path(victim.id).exists()
