"""The run store's contract, on the SQLite file and on PostgreSQL (``TL_DATABASE_URL``).

Every test runs on both backends; the PostgreSQL one is a throwaway server from Debian's
packages (tests/integration/pg_cluster.py) with a database of its own per test, and skips
when the packages are not installed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from integration.pg_cluster import shared_cluster, stop_shared

from tlcore.config import RunSpec, TrainSpec
from tlcore.errors import PermissionDeniedError, RunNotFoundError, RunStateError
from tlcore.records import EpochRecord, RunStatus, RunSummary
from tlcore.runs.store import Claimant, RunStore

ROOT = Path(__file__).resolve().parents[3]

CLAIMER = """
import json, sys, time
from pathlib import Path
from tlcore.runs.store import Claimant, RunStore

store, start = RunStore(Path(sys.argv[1])), float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
claimant = Claimant(int(sys.argv[3]), 0.0)
won = [r.id for r in store.claim_queued(100, claimant)]
won += [i for i in sys.argv[4:] if i not in won and store.claim(i, claimant)]
print(json.dumps(won))
"""
"""A process that, at an agreed moment, claims the queued runs, then each other run by id (a
claimant may claim its own run again: that is not a second winner)."""


@pytest.fixture(scope="session")
def _postgres_session(request: pytest.FixtureRequest) -> None:
    request.addfinalizer(stop_shared)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> RunStore:
    """An empty store on each backend."""
    if request.param == "postgresql":
        request.getfixturevalue("_postgres_session")
        cluster = shared_cluster()
        if cluster is None:
            pytest.skip("no PostgreSQL server binaries (apt-get install -y postgresql)")
        monkeypatch.setenv("TL_DATABASE_URL", cluster.create_database())
    else:
        monkeypatch.delenv("TL_DATABASE_URL", raising=False)
    store = RunStore()
    assert store.backend == request.param
    return store


def epoch(n: int, stage: str = "frozen", loss: float = 0.5) -> EpochRecord:
    return EpochRecord(n, stage, loss, 0.5, 1.1 / n, 0.4, 1e-3, 2.0, 10.0)


def spec(epochs: int = 1) -> RunSpec:
    return RunSpec(train=TrainSpec(epochs=epochs))


def test_create_reuses_a_finished_or_active_run_of_the_same_spec(store: RunStore) -> None:
    run, reused = store.create_run(spec(), owner="ann")
    assert not reused and run.status is RunStatus.QUEUED and run.owner == "ann"
    assert store.create_run(spec())[0].id == run.id
    store.finish(run.id, RunStatus.FINISHED)
    again, reused = store.create_run(RunSpec(name="another label", train=TrainSpec(epochs=1)))
    assert reused and again.id == run.id
    forced, reused = store.create_run(spec(), force=True)
    assert not reused and forced.id != run.id
    assert store.latest_with_key(spec().key()).id == forced.id
    assert [r.id for r in store.runs_with_spec_key(spec().key())] == [forced.id, run.id]


def test_a_failed_run_is_not_reused_and_keeps_its_error(store: RunStore) -> None:
    run, _ = store.create_run(spec())
    store.finish(run.id, RunStatus.FAILED, "boom")
    again, reused = store.create_run(spec())
    assert not reused and again.id != run.id
    assert store.get(run.id).error == "boom"
    assert store.requeue(run.id).status is RunStatus.QUEUED
    with pytest.raises(RunStateError):
        store.requeue(again.id)


def test_concurrent_creates_of_one_spec_give_one_run(store: RunStore) -> None:
    ids, barrier = [], threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        ids.append(RunStore(store.root).create_run(spec())[0].id)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert len(store.list_runs()) == 1


def test_of_concurrent_claims_in_threads_each_run_is_won_once(store: RunStore) -> None:
    runs = [store.create_run(spec(n))[0].id for n in range(1, 9)]
    barrier, wins = threading.Barrier(6), []

    def claim_each(index: int) -> None:
        claimant = Claimant(10_000 + index, float(index))
        other = RunStore(store.root)
        barrier.wait()
        if index < 2:
            wins.extend((r.id, claimant.pid) for r in other.claim_queued(100, claimant))
        else:
            wins.extend((run_id, claimant.pid) for run_id in runs if other.claim(run_id, claimant))

    threads = [threading.Thread(target=claim_each, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(run_id for run_id, _ in wins) == sorted(runs)
    for run_id, pid in wins:
        assert store.get(run_id).status is RunStatus.RUNNING and store.get(run_id).worker_pid == pid


def test_of_concurrent_claims_in_processes_each_run_is_won_once(store: RunStore) -> None:
    runs = [store.create_run(spec(n))[0].id for n in range(1, 13)]
    start = time.time() + 3  # every process has imported the store by then
    claimers = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(store.root), str(start), str(20_000 + i),
                                  *runs], cwd=ROOT, stdout=subprocess.PIPE, text=True) for i in range(3)]
    won = {20_000 + i: json.loads(p.communicate(timeout=120)[0]) for i, p in enumerate(claimers)}
    assert all(p.returncode == 0 for p in claimers)
    assert sorted(run_id for ids in won.values() for run_id in ids) == sorted(runs)
    for pid, ids in won.items():
        assert all(store.get(run_id).worker_pid == pid for run_id in ids)


def test_claiming_respects_the_limit_and_the_queue_order(store: RunStore) -> None:
    runs = [store.create_run(spec(n))[0] for n in (1, 2, 3, 4)]
    assert [store.queue_position(r.id) for r in runs] == [1, 2, 3, 4]
    claimed = store.claim_queued(limit=2, claimant=Claimant(4242, 1.0))
    assert [r.id for r in claimed] == [runs[0].id, runs[1].id]
    assert all(r.status is RunStatus.RUNNING and r.worker_pid == 4242 for r in claimed)
    assert store.claim_queued(limit=2) == []
    assert [store.queue_position(r.id) for r in runs] == [None, None, 1, 2]
    assert not store.claim(runs[0].id, Claimant(4243, 1.0)), "another process trains it"
    assert store.claim(runs[0].id, Claimant(4243, 1.0), handed_from=4242), "handed over by its dispatcher"


def test_epochs_come_back_in_order_replaced_on_retry_and_nan_kept(store: RunStore) -> None:
    run, _ = store.create_run(spec())
    for n in (2, 1, 3):
        store.add_epoch(run.id, epoch(n))
    store.add_epoch(run.id, epoch(3, "finetune", loss=math.nan))
    records = store.epochs(run.id)
    assert [r.epoch for r in records] == [1, 2, 3]
    assert records[-1].stage == "finetune" and math.isnan(records[-1].loss)
    assert records[0] == epoch(1)
    store.clear_epochs(run.id, after=1)
    assert [r.epoch for r in store.epochs(run.id)] == [1]


def test_a_stop_request_stops_a_queued_run_at_once_and_flags_a_running_one(store: RunStore) -> None:
    queued, _ = store.create_run(spec(1))
    running, _ = store.create_run(spec(2))
    store.claim(running.id, Claimant(777, 1.0))
    assert store.request_stop(queued.id).status is RunStatus.STOPPED
    assert not store.stop_requested(running.id)
    assert store.request_stop(running.id).status is RunStatus.RUNNING
    assert store.stop_requested(running.id)
    store.finish(running.id, RunStatus.STOPPED)
    store.finish(running.id, RunStatus.FAILED, "late")
    assert store.get(running.id).status is RunStatus.STOPPED


def test_progress_notes_and_summary_round_trip(store: RunStore) -> None:
    run, _ = store.create_run(spec(), owner="ann")
    store.update(run.id, progress=0.25)
    store.add_note(run.id, "one")
    store.add_note(run.id, "two")
    summary = RunSummary(test_accuracy=0.9, macro_f1=0.8, top_k=3, test_top_k_accuracy=1.0, epochs=2,
                         counts={"test": {"a": 5, "b": 4}})
    store.update(run.id, summary=summary)
    got = RunStore(store.root).get(run.id)
    assert (got.progress, got.notes, got.summary) == (0.25, ["one", "two"], summary)
    assert [r.id for r in store.list_runs(owner="ann")] == [run.id] and store.list_runs(owner="bob") == []
    assert store.list_runs(statuses={RunStatus.FINISHED}) == []
    with pytest.raises(RunNotFoundError):
        store.update("nosuchrun", progress=1.0)


def test_delete_checks_owner_and_state_and_takes_the_epochs_along(store: RunStore) -> None:
    run, _ = store.create_run(spec(), owner="ann")
    store.add_epoch(run.id, epoch(1))
    with pytest.raises(RunStateError):
        store.delete(run.id)
    store.finish(run.id, RunStatus.FINISHED)
    store.write_json(run.id, "report.json", {"x": 1})
    with pytest.raises(PermissionDeniedError):
        store.delete(run.id, user="bob", is_admin=False)
    store.delete(run.id, user="ann", is_admin=False)
    assert not store.artifact_dir(run.id).exists()
    assert store.epochs(run.id) == []
    with pytest.raises(RunNotFoundError):
        store.get(run.id)


def test_a_run_restored_from_its_folder_is_listed_once(store: RunStore) -> None:
    run, _ = store.create_run(spec())
    store.add_epoch(run.id, epoch(1))
    store.finish(run.id, RunStatus.FINISHED)
    record, epochs = store.get(run.id), store.epochs(run.id)
    store.delete(run.id)
    assert store.restore(record, epochs)
    assert not store.restore(record, epochs)
    assert store.get(run.id) == record and store.epochs(run.id) == epochs


def test_a_sound_store_has_no_integrity_problems(store: RunStore) -> None:
    store.create_run(spec())
    assert store.integrity_problems() == []
    assert "***" not in store.location or store.backend == "postgresql"
