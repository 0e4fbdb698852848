import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from specs import tiny_spec

from tlcore.runs import jobs
from tlcore.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[3]


def wait_until_ended(store: RunStore, run_id: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while store.get(run_id).is_active:
        assert time.monotonic() < deadline, f"run {run_id} still {store.get(run_id).status}"
        time.sleep(0.5)


def test_submitted_run_trains_in_a_worker_process_and_is_reused():
    store = RunStore()
    submission = jobs.submit(tiny_spec("frozen", epochs=1), store)
    assert not submission.reused and submission.run.status == "running"
    assert submission.run.worker_pid != os.getpid()
    wait_until_ended(store, submission.run.id)
    run = store.get(submission.run.id)
    log = store.artifacts(run.id).worker_log.read_text()
    assert run.status == "finished", (run.error, log)
    assert [e.epoch for e in store.epochs(run.id)] == [1]
    assert store.model_path(run.id).exists()
    assert run.summary is not None and 0 <= run.summary.test_accuracy <= 1
    again = jobs.submit(tiny_spec("frozen", epochs=1), store)
    assert again.reused and again.run.id == run.id


def claim_with_fake_worker(store: RunStore) -> tuple[str, subprocess.Popen]:
    run, _ = store.create_run(tiny_spec())
    store.claim_queued(limit=1)
    sleeper = subprocess.Popen(["sleep", "60"])
    store.update(run.id, worker_pid=sleeper.pid,
                 worker_started=psutil.Process(sleeper.pid).create_time())
    return run.id, sleeper


def test_a_killed_worker_is_detected_and_its_run_failed():
    store = RunStore()
    run_id, sleeper = claim_with_fake_worker(store)
    assert jobs.reap(store) == []
    os.kill(sleeper.pid, signal.SIGKILL)
    sleeper.wait()
    assert jobs.reap(store) == [run_id]
    run = store.get(run_id)
    assert run.status == "failed" and f"pid {sleeper.pid}" in run.error


def test_a_recycled_pid_does_not_count_as_alive():
    store = RunStore()
    run_id, sleeper = claim_with_fake_worker(store)
    store.update(run_id, worker_started=psutil.Process(sleeper.pid).create_time() - 100)
    assert jobs.reap(store) == [run_id]
    sleeper.kill()


def test_queue_respects_the_job_limit(monkeypatch):
    monkeypatch.setenv("TL_MAX_JOBS", "1")
    store = RunStore()
    running_id, sleeper = claim_with_fake_worker(store)
    queued = jobs.submit(tiny_spec("frozen", epochs=2), store)
    assert queued.run.status == "queued"
    assert store.queue_position(queued.run.id) == 1
    jobs.cancel(queued.run.id, store)
    assert store.get(queued.run.id).status == "stopped"
    sleeper.kill()


def test_cancel_of_a_running_run_sets_the_stop_flag():
    store = RunStore()
    run_id, sleeper = claim_with_fake_worker(store)
    run = jobs.cancel(run_id, store)
    assert run.status == "running" and run.stop_requested
    sleeper.kill()
    sleeper.wait()
    assert jobs.cancel(run_id, store).status == "failed"


def test_worker_refuses_a_run_that_already_ended():
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    store.request_stop(run.id)
    assert jobs.run_worker(run.id, store) == 1
    assert store.get(run.id).status == "stopped"


@pytest.mark.parametrize("value,expected", [("3", 3), ("0", 1), ("x", 1)])
def test_max_jobs_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("TL_MAX_JOBS", value)
    assert jobs.max_jobs() == expected


def test_a_worker_that_finds_its_run_taken_says_so_in_its_log(capsys) -> None:
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    store.request_stop(run.id)  # cancelled before its worker got to it
    assert jobs.run_worker(run.id, store) == 1
    said = capsys.readouterr().err
    assert f"run {run.id} is stopped" in said and "this one stops" in said


def test_a_worker_that_crashes_in_native_code_leaves_its_stack_in_the_log() -> None:
    crash = ("import argparse, ctypes\n"
             "from tlcore.runs import jobs\n"
             "from tlcore.cli.run_verbs import cmd_worker\n"
             "jobs.run_worker = lambda run_id: ctypes.string_at(0)\n"  # a segfault, as a native crash
             "cmd_worker(argparse.Namespace(run_id='r1'))\n")
    done = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=120,
                          check=False, cwd=ROOT)
    assert done.returncode != 0
    assert "Fatal Python error: Segmentation fault" in done.stderr and "cmd_worker" in done.stderr
