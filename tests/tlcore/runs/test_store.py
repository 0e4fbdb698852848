import json
import threading

import pytest

from tlcore.config import RunSpec, TrainSpec
from tlcore.errors import PermissionDeniedError, RunNotFoundError, RunStateError
from tlcore.records import EpochRecord, RunStatus, RunSummary
from tlcore.runs.store import RunStore


def epoch(n: int, stage: str = "frozen") -> EpochRecord:
    return EpochRecord(n, stage, 1.0 / n, 0.5, 1.1 / n, 0.4, 1e-3, 2.0, 10.0)


def test_create_then_reuse_finished_run(isolated_home):
    store = RunStore()
    run, reused = store.create_run(RunSpec())
    assert not reused and run.status == "queued"
    store.finish(run.id, "finished")
    again, reused = store.create_run(RunSpec(name="another label"))
    assert reused and again.id == run.id
    forced, reused = store.create_run(RunSpec(), force=True)
    assert not reused and forced.id != run.id


def test_failed_runs_are_not_reused():
    store = RunStore()
    run, _ = store.create_run(RunSpec())
    store.finish(run.id, "failed", "boom")
    again, reused = store.create_run(RunSpec())
    assert not reused and again.id != run.id
    assert store.get(run.id).error == "boom"


def test_concurrent_creates_of_one_spec_give_one_run():
    store = RunStore()
    ids, barrier = [], threading.Barrier(8)

    def create():
        barrier.wait()
        ids.append(RunStore(store.root).create_run(RunSpec())[0].id)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1


def test_epochs_are_stored_in_order_and_replaced_on_retry():
    store = RunStore()
    run, _ = store.create_run(RunSpec())
    for n in (2, 1, 3):
        store.add_epoch(run.id, epoch(n))
    store.add_epoch(run.id, epoch(3, "finetune"))
    records = store.epochs(run.id)
    assert [r.epoch for r in records] == [1, 2, 3]
    assert records[-1].stage == "finetune"


def test_claim_respects_limit_and_order():
    store = RunStore()
    runs = [store.create_run(RunSpec(train=TrainSpec(epochs=n)))[0] for n in (1, 2, 3)]
    claimed = store.claim_queued(limit=2)
    assert [r.id for r in claimed] == [runs[0].id, runs[1].id]
    assert all(store.get(r.id).status == "running" for r in claimed)
    assert store.claim_queued(limit=2) == []
    assert store.queue_position(runs[2].id) == 1


def test_stop_request_stops_queued_at_once_and_flags_running():
    store = RunStore()
    queued, _ = store.create_run(RunSpec(train=TrainSpec(epochs=1)))
    running, _ = store.create_run(RunSpec(train=TrainSpec(epochs=2)))
    store.update(running.id, status="running")
    assert store.request_stop(queued.id).status == "stopped"
    assert store.request_stop(running.id).status == "running"
    assert store.stop_requested(running.id)


def test_finish_does_not_overwrite_a_terminal_status():
    store = RunStore()
    run, _ = store.create_run(RunSpec())
    store.finish(run.id, "stopped")
    store.finish(run.id, "failed", "late")
    assert store.get(run.id).status == "stopped"


def test_delete_checks_owner_and_state():
    store = RunStore()
    run, _ = store.create_run(RunSpec(), owner="ann")
    with pytest.raises(RunStateError):
        store.delete(run.id)
    store.finish(run.id, "finished")
    store.write_json(run.id, "report.json", {"x": 1})
    with pytest.raises(PermissionDeniedError):
        store.delete(run.id, user="bob", is_admin=False)
    store.delete(run.id, user="ann", is_admin=False)
    assert not store.artifact_dir(run.id).exists()
    with pytest.raises(RunNotFoundError):
        store.get(run.id)


def test_notes_and_summary_round_trip():
    store = RunStore()
    run, _ = store.create_run(RunSpec(), owner="ann")
    store.add_note(run.id, "one")
    store.add_note(run.id, "two")
    summary = RunSummary(test_accuracy=0.9, macro_f1=0.8, top_k=3, test_top_k_accuracy=1.0, epochs=2,
                         counts={"test": {"a": 5, "b": 4}})
    store.update(run.id, summary=summary)
    got = store.get(run.id)
    assert got.notes == ["one", "two"]
    assert got.summary == summary
    assert [r.id for r in store.list_runs(owner="ann")] == [run.id]
    assert store.list_runs(owner="bob") == []


def test_statuses_are_stored_as_plain_strings_and_read_back_as_the_enum():
    store = RunStore()
    run, _ = store.create_run(RunSpec())
    assert run.status is RunStatus.QUEUED
    store.claim_queued(limit=1)
    store.finish(run.id, RunStatus.STOPPED)
    got = store.get(run.id)
    assert got.status is RunStatus.STOPPED and not got.is_active
    with store.transaction() as conn:
        stored = conn.execute("SELECT status FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
    assert type(stored) is str and stored == "stopped"
    assert [r.id for r in store.list_runs(statuses={RunStatus.STOPPED})] == [run.id]
    assert store.list_runs(statuses={RunStatus.QUEUED, RunStatus.RUNNING}) == []


def test_a_summary_stored_by_an_older_version_still_loads():
    store = RunStore()
    run, _ = store.create_run(RunSpec())
    old = {"test_accuracy": 0.75, "test_top3_accuracy": 0.9, "macro_f1": 0.7, "epochs": 4}
    with store.transaction() as conn:
        conn.execute("UPDATE runs SET summary = ? WHERE id = ?", (json.dumps(old), run.id))
    summary = store.get(run.id).summary
    assert summary == RunSummary(test_accuracy=0.75, macro_f1=0.7, top_k=3, test_top_k_accuracy=0.9, epochs=4)


def test_artifacts_are_named_inside_the_runs_folder():
    store = RunStore()
    run, _ = store.create_run(RunSpec())
    artifacts = store.artifacts(run.id)
    assert artifacts.folder == store.root / "runs" / run.id == store.artifact_dir(run.id)
    assert store.model_path(run.id) == artifacts.model
    with pytest.raises(RunNotFoundError):
        store.artifacts("../elsewhere")
