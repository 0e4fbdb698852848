"""The job tests of the local backend, against a real Ray cluster and a real PostgreSQL.

Each run is sent as a Ray job to the loopback head (``TL_JOBS``); its worker trains against the
store on the PostgreSQL server, the way workers on other machines would. Queueing, progress,
Stop, cancel, a worker killed with ``kill -9``, resuming and two launches of one spec must all
behave as they do with local worker processes.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest
from folders import add_images
from integration.pg_cluster import PASSWORD
from ray.job_submission import JobSubmissionClient
from specs import tiny_spec

from tlcore.config import RunSpec
from tlcore.errors import ConfigError
from tlcore.records import RunStatus
from tlcore.runs import jobs
from tlcore.runs.ray_jobs import RayJob
from tlcore.runs.store import RunStore
from tlcore.training.checkpoint import Checkpoint

pytestmark = pytest.mark.integration


def wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.3)


def ray_job_of(store: RunStore, run_id: str) -> RayJob:
    job = RayJob.read(store.artifacts(run_id).ray_job)
    assert job is not None, f"run {run_id} has no Ray job"
    return job


def job_status(head, job: RayJob) -> str:
    return JobSubmissionClient(head.jobs_url).get_job_status(job.submission_id).value


def finished(store: RunStore, run_id: str) -> None:
    wait_for(lambda: not store.get(run_id).is_active, f"run {run_id} to end")
    run = store.get(run_id)
    log = store.artifacts(run_id).worker_log
    assert run.status is RunStatus.FINISHED, (run.error, log.read_text()[-3000:] if log.exists() else "")


def slow_spec(epochs: int) -> RunSpec:
    """A run whose epochs go through the whole network: long enough to stop or kill midway."""
    return tiny_spec("scratch", epochs=epochs)


def test_a_run_trains_on_the_cluster_and_a_second_launch_reuses_it(on_ray, postgres_url) -> None:
    store = RunStore()
    submission = jobs.submit(tiny_spec("frozen", epochs=2), store)
    assert not submission.reused and submission.run.status is RunStatus.RUNNING
    job = ray_job_of(store, submission.run.id)
    sent = JobSubmissionClient(on_ray.jobs_url).get_job_info(job.submission_id).runtime_env["env_vars"]
    assert sent["TL_DATABASE_URL"] == postgres_url.replace(f":{PASSWORD}@", "@")  # shown in the dashboard
    again = jobs.submit(tiny_spec("frozen", epochs=2), RunStore())  # while it is still active
    assert again.reused and again.run.id == submission.run.id
    finished(store, submission.run.id)
    run = store.get(submission.run.id)
    assert [e.epoch for e in store.epochs(run.id)] == [1, 2] and run.progress == pytest.approx(1.0)
    assert store.model_path(run.id).exists() and run.summary is not None
    wait_for(lambda: job_status(on_ray, job) == "SUCCEEDED", "the Ray job to succeed")
    assert jobs.submit(tiny_spec("frozen", epochs=2), store).reused


def test_the_job_limit_holds_and_a_worker_on_the_cluster_starts_the_next_run(on_ray, monkeypatch) -> None:
    monkeypatch.setenv("TL_MAX_JOBS", "1")
    store = RunStore()
    first = jobs.submit(tiny_spec("frozen", epochs=1), store)
    second = jobs.submit(tiny_spec("frozen", epochs=1, learning_rate=0.002), store)
    assert first.run.status is RunStatus.RUNNING and second.run.status is RunStatus.QUEUED
    assert store.queue_position(second.run.id) == 1
    assert not store.artifacts(second.run.id).ray_job.exists()
    finished(store, first.run.id)
    finished(store, second.run.id)  # dispatched by the first run's worker, on the cluster
    assert ray_job_of(store, second.run.id).submission_id != ray_job_of(store, first.run.id).submission_id


def test_stop_ends_a_cluster_run_at_its_next_batch(on_ray) -> None:
    store = RunStore()
    run_id = jobs.submit(slow_spec(epochs=30), store).run.id
    wait_for(lambda: store.epochs(run_id), "the first epoch")
    assert jobs.cancel(run_id, store).stop_requested
    wait_for(lambda: not store.get(run_id).is_active, "the run to stop")
    run = store.get(run_id)
    assert run.status is RunStatus.STOPPED and len(store.epochs(run_id)) < 30
    wait_for(lambda: job_status(on_ray, ray_job_of(store, run_id)) == "SUCCEEDED", "the job to end")


def test_a_run_waiting_for_room_on_the_cluster_is_cancelled_at_once(on_ray, monkeypatch) -> None:
    monkeypatch.setenv("TL_RAY_CPUS", "64")  # more than the cluster has: Ray holds the job back
    store = RunStore()
    run_id = jobs.submit(tiny_spec("frozen", epochs=1), store).run.id
    job = ray_job_of(store, run_id)
    time.sleep(2)
    assert job_status(on_ray, job) == "PENDING" and store.get(run_id).status is RunStatus.RUNNING
    assert jobs.reap(store) == []  # waiting for room is not dead
    assert jobs.cancel(run_id, store).status is RunStatus.STOPPED
    assert jobs.reap(store) == [] and store.get(run_id).status is RunStatus.STOPPED
    assert not store.epochs(run_id)
    # Should the job get room after all, its worker finds the run ended and trains nothing.
    assert jobs.run_worker(run_id, store) == 1 and store.get(run_id).status is RunStatus.STOPPED


def test_a_worker_killed_on_the_cluster_fails_the_run_with_the_reason_and_resume_continues_it(on_ray) -> None:
    store = RunStore()
    run_id = jobs.submit(slow_spec(epochs=6), store).run.id
    checkpoint = store.artifacts(run_id).checkpoint
    wait_for(lambda: Checkpoint.load(checkpoint), "the first checkpoint")
    first_job = ray_job_of(store, run_id)
    os.kill(store.get(run_id).worker_pid, signal.SIGKILL)
    wait_for(lambda: job_status(on_ray, first_job) == "FAILED", "Ray to see the job fail")
    assert jobs.reap(store) == [run_id]
    failed = store.get(run_id)
    assert failed.status is RunStatus.FAILED
    assert first_job.submission_id in failed.error and "exit code -9" in failed.error
    assert "Resume" in failed.error
    saved = Checkpoint.load(checkpoint).epoch

    jobs.resume(run_id, store)
    assert ray_job_of(store, run_id).submission_id != first_job.submission_id
    finished(store, run_id)
    run = store.get(run_id)
    assert [e.epoch for e in store.epochs(run_id)] == list(range(1, 7))
    assert any(f"Resumed after epoch {saved}" in note for note in run.notes), run.notes


def test_a_dataset_the_cluster_cannot_reach_is_refused_before_it_is_queued(on_ray, tmp_path, monkeypatch):
    outside = tmp_path / "only-here"
    for name in ("cats", "dogs"):
        add_images(outside / name, 20)
    tiny = tiny_spec("frozen")
    spec = replace(tiny, dataset=replace(tiny.dataset, source=f"folder:{outside}"))
    store = RunStore()
    with pytest.raises(ConfigError, match="not on a path the Ray cluster's nodes share") as refused:
        jobs.submit(spec, store)
    assert "TL_SHARED_PATHS" in refused.value.hint
    assert store.list_runs() == []
    monkeypatch.setenv("TL_SHARED_PATHS", str(tmp_path))
    jobs.check_spec(spec)  # shared now


def test_a_ray_client_address_finds_the_job_api_and_the_run_trains(on_ray, monkeypatch) -> None:
    monkeypatch.setenv("TL_JOBS", on_ray.client_url)
    store = RunStore()
    run_id = jobs.submit(tiny_spec("frozen", epochs=1, learning_rate=0.003), store).run.id
    # Queued until an earlier test's run frees its slot (under load that run can still be ending).
    wait_for(lambda: store.artifacts(run_id).ray_job.exists(), f"run {run_id} to be sent to Ray")
    assert ray_job_of(store, run_id).address == on_ray.client_url
    finished(store, run_id)
