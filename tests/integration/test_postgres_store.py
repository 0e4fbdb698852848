"""The run store on a real PostgreSQL: migrations, credentials, read-only use, and the job queue.

The job tests are the local backend's (tests/tlcore/runs/test_jobs.py) where they apply: a worker
process started by ``submit`` trains against the server it inherits from ``TL_DATABASE_URL``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import psutil
import pytest
import sqlalchemy as sa
from integration.pg_cluster import PASSWORD, Cluster
from runfiles import finished_run
from specs import tiny_spec

from tlcore.cli import main
from tlcore.config import RunSpec
from tlcore.errors import ConfigError, StorageError
from tlcore.records import RunStatus
from tlcore.runs import doctor, jobs, sql_schema
from tlcore.runs.database import redact, server_url
from tlcore.runs.store import RunStore

pytestmark = pytest.mark.integration


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_opening_a_new_database_runs_the_migrations_once(postgres_url: str, isolated_home) -> None:
    assert tables(postgres_url) == set()
    opened, errors = [], []

    def open_store() -> None:
        try:
            opened.append(RunStore())
        except Exception as exc:  # noqa: BLE001 - collected and shown by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(opened) == 4
    assert tables(postgres_url) == {"runs", "epochs", "alembic_version"}
    engine = opened[0]._database.engine()
    assert sql_schema.current_revision(engine) == sql_schema.head_revision()
    assert not sql_schema.pending(engine) and not sql_schema.migrate(engine)
    assert not (isolated_home / "runs.sqlite").exists()


def test_a_read_only_store_does_not_migrate_and_says_what_to_do(postgres_url: str) -> None:
    with pytest.raises(StorageError) as caught:
        RunStore(read_only=True)
    assert "has no tables of the studio" in caught.value.message
    assert "migrations" in caught.value.hint
    assert tables(postgres_url) == set()


def test_a_read_only_store_reads_but_refuses_to_write(postgres_url: str) -> None:
    run, _ = RunStore().create_run(RunSpec())
    reader = RunStore(read_only=True)
    assert reader.read_only and reader.get(run.id).id == run.id
    with pytest.raises(StorageError, match="read-only"):
        reader.request_stop(run.id)
    assert reader.get(run.id).status is RunStatus.QUEUED


def test_a_schema_behind_the_studio_is_named_by_the_integrity_check(postgres_url: str) -> None:
    store = RunStore()
    with store._database.engine().begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
    problems = RunStore(read_only=True).integrity_problems()
    assert len(problems) == 1 and "revision older" in problems[0]


def test_runs_of_a_sqlite_home_are_listed_on_the_server_by_a_rebuild(
        postgres_url: str, isolated_home, monkeypatch) -> None:
    monkeypatch.delenv("TL_DATABASE_URL")
    local = RunStore()
    ids = {finished_run(local, 1e-3), finished_run(local, 3e-3)}
    monkeypatch.setenv("TL_DATABASE_URL", postgres_url)
    server = RunStore()
    assert server.list_runs() == []
    assert set(doctor.rebuild(isolated_home).restored) == ids
    assert {r.id for r in server.list_runs()} == ids
    assert all(server.epochs(run_id) == local.epochs(run_id) for run_id in ids)


@pytest.mark.parametrize("change", ["password", "port", "database"])
def test_an_unreachable_server_is_one_error_without_the_password(
        postgres_cluster: Cluster, monkeypatch, change) -> None:
    wrong = "not-" + PASSWORD
    url = {"password": postgres_cluster.url(password=wrong),
           "port": postgres_cluster.url(password=wrong).replace(str(postgres_cluster.port), "1"),
           "database": postgres_cluster.url("no_such_db", password=wrong)}[change]
    monkeypatch.setenv("TL_DATABASE_URL", url)
    with pytest.raises(StorageError) as caught:
        RunStore()
    text = f"{caught.value.message} {caught.value.hint}"
    assert "could not be reached" in text and "TL_DATABASE_URL" in text
    assert wrong not in text and "***" in text


def test_the_cli_reports_a_wrong_password_in_one_line(postgres_cluster: Cluster, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TL_DATABASE_URL", postgres_cluster.url(password="wrong-" + PASSWORD))
    assert main(["runs"]) != 0
    captured = capsys.readouterr()
    assert "could not be reached" in captured.err and "Traceback" not in captured.err
    assert PASSWORD not in captured.err + captured.out


def test_the_url_is_checked_and_shown_without_its_password(monkeypatch) -> None:
    monkeypatch.setenv("TL_DATABASE_URL", "postgresql://ann:hunter2@db.internal:5432/studio")
    url = server_url()
    assert url.drivername == "postgresql+psycopg"
    assert redact(url) == "postgresql+psycopg://ann:***@db.internal:5432/studio"
    monkeypatch.setenv("TL_DATABASE_URL", "mysql://ann:hunter2@db.internal/studio")
    with pytest.raises(ConfigError) as caught:
        server_url()
    assert "hunter2" not in caught.value.message and "PostgreSQL" in caught.value.message
    monkeypatch.setenv("TL_DATABASE_URL", "not a url")
    with pytest.raises(ConfigError, match="not a database URL"):
        server_url()


# ---- the job queue on the server ------------------------------------------------------------

def wait_until_ended(store: RunStore, run_id: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while store.get(run_id).is_active:
        assert time.monotonic() < deadline, f"run {run_id} still {store.get(run_id).status}"
        time.sleep(0.5)


def claim_with_fake_worker(store: RunStore) -> tuple[str, subprocess.Popen]:
    run, _ = store.create_run(tiny_spec())
    store.claim_queued(limit=1)
    sleeper = subprocess.Popen(["sleep", "60"])
    store.update(run.id, worker_pid=sleeper.pid, worker_started=psutil.Process(sleeper.pid).create_time())
    return run.id, sleeper


def test_a_worker_process_trains_against_the_server_and_a_second_launch_reuses_it(postgres_url) -> None:
    store = RunStore()
    submission = jobs.submit(tiny_spec("frozen", epochs=1), store)
    assert not submission.reused and submission.run.status is RunStatus.RUNNING
    assert submission.run.worker_pid != os.getpid()
    wait_until_ended(store, submission.run.id)
    run = store.get(submission.run.id)
    assert run.status is RunStatus.FINISHED, (run.error, store.artifacts(run.id).worker_log.read_text())
    assert [e.epoch for e in store.epochs(run.id)] == [1] and run.progress == pytest.approx(1.0)
    assert store.model_path(run.id).exists() and run.summary is not None
    again = jobs.submit(tiny_spec("frozen", epochs=1), store)
    assert again.reused and again.run.id == run.id


def test_the_queue_respects_the_job_limit_and_two_launches_share_one_run(postgres_url, monkeypatch) -> None:
    monkeypatch.setenv("TL_MAX_JOBS", "1")
    store = RunStore()
    running_id, sleeper = claim_with_fake_worker(store)
    try:
        first = jobs.submit(tiny_spec("frozen", epochs=2), store)
        second = jobs.submit(tiny_spec("frozen", epochs=2), RunStore())
        assert first.run.status is RunStatus.QUEUED and second.reused and second.run.id == first.run.id
        assert store.queue_position(first.run.id) == 1
        assert jobs.cancel(first.run.id, store).status is RunStatus.STOPPED
    finally:
        sleeper.kill()
        sleeper.wait()
    assert jobs.reap(store) == [running_id]


def test_stopping_a_running_run_sets_its_flag_and_a_dead_worker_is_reaped(postgres_url) -> None:
    store = RunStore()
    run_id, sleeper = claim_with_fake_worker(store)
    run = jobs.cancel(run_id, store)
    assert run.status is RunStatus.RUNNING and run.stop_requested
    assert jobs.reap(store) == []
    os.kill(sleeper.pid, signal.SIGKILL)
    sleeper.wait()
    assert jobs.reap(store) == [run_id]
    failed = store.get(run_id)
    assert failed.status is RunStatus.FAILED and f"pid {sleeper.pid}" in failed.error


def test_a_worker_refuses_a_run_that_already_ended(postgres_url) -> None:
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    store.request_stop(run.id)
    assert jobs.run_worker(run.id, store) == 1
    assert store.get(run.id).status is RunStatus.STOPPED


def test_doctor_checks_a_server_store(postgres_url, tmp_path, monkeypatch, capsys):
    from tlcore.cli import main

    monkeypatch.setenv("TL_HOME", str(tmp_path / "home"))
    RunStore(tmp_path / "home")  # opened with write access once: migrated
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "answers and its schema is current" in out and "runs.sqlite" not in out
    assert PASSWORD not in out
