"""Exactly one process trains a run, however dispatchers and foreground trains interleave."""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from specs import TINY_SIZE, tiny_spec

from tlcore.cli import main
from tlcore.config import RunSpec, TrainSpec
from tlcore.records import EpochRecord, RunStatus
from tlcore.runs import jobs
from tlcore.runs.store import Claimant, RunStore

ROOT = Path(__file__).resolve().parents[3]
TRAIN = ["train", "--dataset", "builtin:shapes", "--backbone", "mobilenet_v2", "--alpha", "0.35",
         "--weights", "none", "--image-size", str(TINY_SIZE), "--epochs", "2", "--strategy", "frozen",
         "--json"]

DISPATCH_LOOP = """
import json, sys, time
from pathlib import Path
from tlcore.runs import jobs
from tlcore.runs.store import RunStore

store, ready, stop = RunStore(Path(sys.argv[1])), Path(sys.argv[2]), Path(sys.argv[3])
started, rounds = [], 0
while not stop.exists():
    started += jobs.dispatch(store)
    rounds += 1
    ready.touch()
    time.sleep(0.01)  # a busy app polling, without starving the training of the two cores
print(json.dumps({"started": started, "rounds": rounds}))
"""


@pytest.fixture
def dispatcher() -> Iterator[Claimant]:
    """Another live process, standing in for the app that dispatches queued runs."""
    sleeper = subprocess.Popen(["sleep", "120"])
    yield Claimant(sleeper.pid, psutil.Process(sleeper.pid).create_time())
    sleeper.kill()
    sleeper.wait()


def assert_trained_once_by_this_process(store: RunStore, run_id: str, epochs: int) -> None:
    run = store.get(run_id)
    assert run.status == RunStatus.FINISHED, run.error
    assert run.worker_pid == os.getpid()
    assert [e.epoch for e in store.epochs(run_id)] == list(range(1, epochs + 1))
    assert len(run.notes) == len(set(run.notes)), run.notes
    artifacts = store.artifacts(run_id)
    assert artifacts.model.exists() and not [p for p in artifacts.folder.iterdir() if p.name.startswith(".")]
    assert not artifacts.worker_log.exists(), "a worker process was started for it"


def test_of_many_concurrent_claims_on_each_run_exactly_one_wins():
    store = RunStore()
    runs = [store.create_run(RunSpec(train=TrainSpec(epochs=n)))[0].id for n in range(1, 9)]
    barrier, wins = threading.Barrier(6), []

    def claim_each(index: int) -> None:
        claimant = Claimant(10_000 + index, float(index))
        barrier.wait()
        if index < 2:  # two dispatchers
            wins.extend((r.id, claimant.pid) for r in RunStore(store.root).claim_queued(100, claimant))
        else:  # four processes claiming each run directly
            wins.extend((run_id, claimant.pid) for run_id in runs
                        if RunStore(store.root).claim(run_id, claimant))

    threads = [threading.Thread(target=claim_each, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(run_id for run_id, _ in wins) == sorted(runs)
    for run_id, pid in wins:
        assert store.get(run_id).status == RunStatus.RUNNING and store.get(run_id).worker_pid == pid


def test_a_run_a_dispatcher_claimed_is_never_claimed_by_another_process(dispatcher):
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    assert [r.id for r in store.claim_queued(1, dispatcher)] == [run.id]

    assert not jobs.claim_for_this_process(store, run.id)
    assert jobs.run_worker(run.id, store) == 1
    assert not store.claim(run.id, Claimant(dispatcher.pid + 1, 0.0), handed_from=os.getpid())
    assert store.get(run.id).worker_pid == dispatcher.pid
    assert jobs.reap(store) == [], "its dispatcher is alive"

    # The worker the dispatcher started takes the run over, once.
    assert jobs.claim_for_this_process(store, run.id, handed_from=dispatcher.pid)
    assert store.get(run.id).worker_pid == os.getpid()
    assert not store.claim(run.id, Claimant(dispatcher.pid + 1, 0.0), handed_from=dispatcher.pid)


def test_a_dispatch_right_after_a_foreground_train_inserts_its_run_starts_no_worker(monkeypatch, capsys):
    """The dispatcher is injected exactly between the insert and the training."""
    spawned, dispatched, owners = [], [], []
    create_run, add_epoch = RunStore.create_run, RunStore.add_epoch

    def create_then_dispatch(self: RunStore, *args, **kwargs):
        run, reused = create_run(self, *args, **kwargs)
        dispatched.extend(jobs.dispatch(RunStore(self.root)))
        return run, reused

    def add_epoch_noting_owner(self: RunStore, run_id: str, record: EpochRecord) -> None:
        owners.append(self.get(run_id).worker_pid)
        add_epoch(self, run_id, record)

    monkeypatch.setattr(RunStore, "create_run", create_then_dispatch)
    monkeypatch.setattr(RunStore, "add_epoch", add_epoch_noting_owner)
    def spawn_worker(store: RunStore, run_id: str) -> None:
        spawned.append(run_id)
        raise OSError("no worker in this test")

    monkeypatch.setattr(jobs, "spawn_worker", spawn_worker)

    assert main(TRAIN) == 0
    payload = json.loads(capsys.readouterr().out)
    assert spawned == dispatched == []
    assert owners == [os.getpid(), os.getpid()]
    assert_trained_once_by_this_process(RunStore(), payload["run_id"], epochs=2)


@pytest.mark.slow
def test_a_dispatcher_looping_in_another_process_never_takes_a_foreground_train(
        isolated_home, tmp_path, capsys):
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    loop = subprocess.Popen([sys.executable, "-c", DISPATCH_LOOP, str(isolated_home), str(ready), str(stop)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert loop.poll() is None and time.monotonic() < deadline, "the dispatch loop did not start"
            time.sleep(0.05)
        code = main([*TRAIN, "--epochs", "1"])
    finally:
        stop.touch()
        out, _ = loop.communicate(timeout=60)
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    result = json.loads(out)
    assert result["started"] == [] and result["rounds"] > 10
    assert_trained_once_by_this_process(RunStore(), payload["run_id"], epochs=1)
