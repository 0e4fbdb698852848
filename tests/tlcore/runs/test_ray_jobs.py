"""The Ray job backend (``TL_JOBS``) against a fake job-API client: no cluster, no network.

The fake stands in for ``ray.job_submission.JobSubmissionClient`` where ``ray_jobs._client``
hands it out, so these tests see exactly what the studio sends and how it reads the answers;
tests/integration/test_ray_cluster_jobs.py runs the same paths against a real cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from specs import tiny_spec

from tlcore.config import RunSpec
from tlcore.errors import ClusterError, ConfigError
from tlcore.records import RunStatus
from tlcore.runs import jobs, ray_jobs
from tlcore.runs.ray_jobs import RayJob
from tlcore.runs.store import RunStore

ADDRESS = "http://127.0.0.1:9"
KILLED = ("Job entrypoint command failed with exit code -9, last available logs (truncated to 20,000 chars):"
          "\nTraceback (most recent call last):\n  File \"worker.py\"")


@dataclass
class FakeJobClient:
    """What a job API would answer: one status for every job, and the calls it received."""

    status: object = "RUNNING"
    message: str | None = None
    info_error: Exception | None = None
    submit_error: Exception | None = None
    submitted: list[dict] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    def submit_job(self, **kwargs: object) -> str:
        if self.submit_error:
            raise self.submit_error
        self.submitted.append(kwargs)
        return str(kwargs["submission_id"])

    def get_job_info(self, submission_id: str) -> SimpleNamespace:
        if self.info_error:
            raise self.info_error
        return SimpleNamespace(status=self.status, message=self.message)

    def get_job_status(self, submission_id: str) -> object:
        return self.get_job_info(submission_id).status

    def stop_job(self, submission_id: str) -> bool:
        self.stopped.append(submission_id)
        return True


def no_local_worker(store: RunStore, run_id: str) -> subprocess.Popen:
    pytest.fail(f"a local worker was started for run {run_id} with TL_JOBS set")


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeJobClient:
    """``TL_JOBS`` names a cluster whose job API is the fake; local workers fail the test."""
    fake = FakeJobClient()
    monkeypatch.setenv("TL_JOBS", ADDRESS)
    for name in ("TL_RAY_CPUS", "TL_RAY_GPUS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ray_jobs, "_client", lambda address: fake)
    monkeypatch.setattr(jobs, "spawn_worker", no_local_worker)
    return fake


def sent_to_cluster(store: RunStore, spec: RunSpec | None = None) -> str:
    """A run dispatched to the fake cluster (without the TensorFlow-backed spec checks)."""
    run, _ = store.create_run(spec or tiny_spec())
    assert jobs.dispatch(store) == [run.id]
    return run.id


def job_of(store: RunStore, run_id: str) -> RayJob:
    job = RayJob.read(store.artifacts(run_id).ray_job)
    assert job is not None
    return job


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.parametrize("value", [None, "", "local", "  local "])
def test_no_cluster_means_local_workers(value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("TL_JOBS", raising=False)
    else:
        monkeypatch.setenv("TL_JOBS", value)
    assert ray_jobs.cluster_address() is None


@pytest.mark.parametrize("value", ["ray://head:10001", "http://head:8265", "https://jobs.example:443"])
def test_a_cluster_address_is_taken_as_given(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TL_JOBS", value)
    assert ray_jobs.cluster_address() == value


@pytest.mark.parametrize("value", ["ray://", "spark://x", "yes"])
def test_any_other_backend_is_refused_with_the_values_that_work(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_JOBS", value)
    with pytest.raises(ConfigError) as refused:
        ray_jobs.cluster_address()
    assert repr(value) in refused.value.message
    assert "TL_JOBS=local" in refused.value.hint and "ray://" in refused.value.hint


@pytest.mark.parametrize("cpus, gpus, needs_gpu, expected", [
    (None, None, False, {"entrypoint_num_cpus": 1.0, "entrypoint_num_gpus": 0.0}),
    ("0.5", "2", False, {"entrypoint_num_cpus": 0.5, "entrypoint_num_gpus": 2.0}),
    ("", " ", False, {"entrypoint_num_cpus": 1.0, "entrypoint_num_gpus": 0.0}),
    (None, "0", True, {"entrypoint_num_cpus": 1.0, "entrypoint_num_gpus": 1.0}),
    ("4", "2", True, {"entrypoint_num_cpus": 4.0, "entrypoint_num_gpus": 2.0}),
])
def test_resources_come_from_the_settings_and_mixed_precision_gets_a_gpu(
    cpus: str | None, gpus: str | None, needs_gpu: bool, expected: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("TL_RAY_CPUS", cpus), ("TL_RAY_GPUS", gpus)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert ray_jobs.resources(needs_gpu) == expected


@pytest.mark.parametrize("devices, gpus, expected", [
    ("gpu:4", None, 4.0), ("GPU:2", "3", 3.0), ("cpu:2", None, 0.0), ("auto", "1", 1.0), ("gpu:x", None, 0.0),
])
def test_a_run_mirrored_over_n_gpus_asks_the_cluster_for_n(
    devices: str, gpus: str | None, expected: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_DEVICES", devices)
    monkeypatch.delenv("TL_RAY_CPUS", raising=False)
    if gpus is None:
        monkeypatch.delenv("TL_RAY_GPUS", raising=False)
    else:
        monkeypatch.setenv("TL_RAY_GPUS", gpus)
    assert ray_jobs.resources(False)["entrypoint_num_gpus"] == expected


@pytest.mark.parametrize("name", ["TL_RAY_CPUS", "TL_RAY_GPUS"])
@pytest.mark.parametrize("value", ["-1", "two", "1,5"])
def test_a_resource_setting_that_is_no_count_is_refused_by_name(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        ray_jobs.resources(False)
    assert f"{name}={value!r}" in refused.value.message and name in refused.value.hint


def test_the_worker_gets_the_studio_settings_with_absolute_paths_and_nothing_machine_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TL_HOME", "relative-home")
    monkeypatch.setenv("TL_MAX_JOBS", "3")
    monkeypatch.setenv("KERAS_HOME", "/shared/keras")
    monkeypatch.setenv("TFDS_DATA_DIR", "/shared/tfds")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("HOME", "/home/app")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/cuda/lib")
    env = ray_jobs.worker_environment({"TL_CLAIMED_BY": "4242"})
    assert env["TL_HOME"] == str(Path.cwd() / "relative-home")
    assert env["TL_MAX_JOBS"] == "3" and env["TL_CLAIMED_BY"] == "4242"
    assert env["KERAS_HOME"] == "/shared/keras" and env["TFDS_DATA_DIR"] == "/shared/tfds"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert not {"PATH", "HOME", "LD_LIBRARY_PATH"} & env.keys()
    assert all(name.startswith("TL_") or name in ray_jobs.FORWARDED for name in env)


@pytest.mark.parametrize("text", [None, "", "not json {", "[1, 2]", "null", '{"address": "ray://h:1"}',
                                  '{"address": "ray://h:1", "submission_id": "s", "extra": 1}'])
def test_a_missing_or_damaged_job_file_reads_as_no_job(text: str | None, tmp_path: Path) -> None:
    path = tmp_path / "ray-job.json"
    if text is not None:
        path.write_text(text)
    assert RayJob.read(path) is None


def test_a_job_file_reads_back_as_the_job_it_names(tmp_path: Path) -> None:
    path = tmp_path / "ray-job.json"
    path.write_text(json.dumps({"address": "ray://h:1", "submission_id": "tlcore-abc-1234"}))
    assert RayJob.read(path) == RayJob("ray://h:1", "tlcore-abc-1234")


def test_submit_sends_one_job_running_the_worker_and_starts_nothing_here(
    cluster: FakeJobClient, isolated_home: Path
) -> None:
    store = RunStore()
    run = jobs.submit(tiny_spec(), store).run
    assert run.status is RunStatus.RUNNING and run.worker_pid == os.getpid()
    [sent] = cluster.submitted
    files = store.artifacts(run.id)
    words = shlex.split(sent["entrypoint"])
    assert f"-m tlcore worker {run.id}" in sent["entrypoint"]
    assert words[words.index(">>") + 1] == str(files.worker_log.absolute()) and words[-1] == "2>&1"
    env = sent["runtime_env"]["env_vars"]
    assert env["TL_CLAIMED_BY"] == str(os.getpid()) and env["TL_HOME"] == str(isolated_home)
    assert sent["entrypoint_num_cpus"] == 1.0 and sent["entrypoint_num_gpus"] == 0.0
    assert sent["metadata"]["tlcore_run"] == run.id
    assert job_of(store, run.id) == RayJob(ADDRESS, sent["submission_id"])
    assert run.id in sent["submission_id"]


def test_a_mixed_precision_run_asks_the_cluster_for_a_gpu(
    cluster: FakeJobClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_RAY_CPUS", "2")
    tiny = tiny_spec()
    sent_to_cluster(RunStore(), replace(tiny, train=replace(tiny.train, mixed_precision=True)))
    assert cluster.submitted[0]["entrypoint_num_gpus"] == 1.0
    assert cluster.submitted[0]["entrypoint_num_cpus"] == 2.0


@pytest.mark.parametrize("status", ["PENDING", "RUNNING", SimpleNamespace(value="RUNNING")])
def test_a_queued_or_running_job_keeps_its_run(status: object, cluster: FakeJobClient) -> None:
    store = RunStore()
    run_id = sent_to_cluster(store)
    cluster.status = status
    assert jobs.reap(store) == []
    assert store.get(run_id).status is RunStatus.RUNNING


@pytest.mark.parametrize("status", ["FAILED", SimpleNamespace(value="FAILED")])
def test_a_failed_job_fails_its_run_with_ray_reason_but_not_its_logs(
    status: object, cluster: FakeJobClient
) -> None:
    store = RunStore()
    run_id = sent_to_cluster(store)
    cluster.status, cluster.message = status, KILLED
    assert jobs.reap(store) == [run_id]
    run = store.get(run_id)
    assert run.status is RunStatus.FAILED
    assert job_of(store, run_id).submission_id in run.error and "exit code -9" in run.error
    assert "Resume" in run.error
    assert "last available logs" not in run.error and "Traceback" not in run.error


def test_a_cluster_that_cannot_answer_fails_no_run(cluster: FakeJobClient) -> None:
    store = RunStore()
    run_id = sent_to_cluster(store)
    cluster.info_error = ConnectionError("Failed to connect to Ray at address: http://127.0.0.1:9")
    age(store.artifacts(run_id).ray_job, jobs.LAUNCH_GRACE_S + 60)
    assert jobs.reap(store) == []
    assert store.get(run_id).status is RunStatus.RUNNING


def test_a_job_the_cluster_does_not_know_fails_its_run_only_after_the_launch_grace(
    cluster: FakeJobClient,
) -> None:
    store = RunStore()
    run_id = sent_to_cluster(store)
    job = job_of(store, run_id)
    cluster.info_error = RuntimeError(f"Request failed with status code 404: Job {job.submission_id}"
                                      " does not exist.")
    age(store.artifacts(run_id).ray_job, jobs.LAUNCH_GRACE_S - 30)
    assert jobs.reap(store) == []
    age(store.artifacts(run_id).ray_job, jobs.LAUNCH_GRACE_S + 30)
    assert jobs.reap(store) == [run_id]
    error = store.get(run_id).error
    assert job.submission_id in error and "no longer knows" in error and "Resume" in error


def test_a_full_disk_is_the_reason_over_what_ray_says(cluster: FakeJobClient) -> None:
    store = RunStore()
    run_id = sent_to_cluster(store)
    marker = store.artifacts(run_id).disk_full_marker
    marker.touch()
    cluster.status, cluster.message = "FAILED", "Job entrypoint command failed with exit code 75"
    assert jobs.reap(store) == [run_id]
    error = store.get(run_id).error
    assert "ran out of disk space" in error and "exit code" not in error
    assert not marker.exists()


def test_cancel_of_a_job_still_waiting_for_room_stops_the_run_at_once(cluster: FakeJobClient) -> None:
    store = RunStore()
    run_id = sent_to_cluster(store)
    cluster.status = "PENDING"
    run = jobs.cancel(run_id, store)
    assert run.status is RunStatus.STOPPED
    assert cluster.stopped == [job_of(store, run_id).submission_id]


def test_cancel_of_a_running_job_leaves_the_stop_to_its_worker(cluster: FakeJobClient) -> None:
    store = RunStore()
    run_id = sent_to_cluster(store)
    run = jobs.cancel(run_id, store)
    assert run.status is RunStatus.RUNNING and run.stop_requested
    assert cluster.stopped == []


def test_a_job_the_cluster_refuses_fails_its_run_at_once(cluster: FakeJobClient) -> None:
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    cluster.submit_error = RuntimeError("Failed to submit job: no node has 64 CPUs\nmore detail")
    assert jobs.dispatch(store) == []
    failed = store.get(run.id)
    assert failed.status is RunStatus.FAILED
    assert "refused" in failed.error and "no node has 64 CPUs" in failed.error and "Resume" in failed.error
    assert "more detail" not in failed.error
    assert not store.artifacts(run.id).ray_job.exists()


def test_a_cluster_that_cannot_be_reached_fails_the_run_with_why(
    cluster: FakeJobClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(address: str) -> FakeJobClient:
        raise ClusterError(f"The Ray cluster at {address} could not be reached (timed out).", "Start it.")

    monkeypatch.setattr(ray_jobs, "_client", unreachable)
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    assert jobs.dispatch(store) == []
    failed = store.get(run.id)
    assert failed.status is RunStatus.FAILED
    assert f"The Ray cluster at {ADDRESS} could not be reached (timed out)." in failed.error
    assert "Resume" in failed.error and not store.artifacts(run.id).ray_job.exists()


def test_a_bad_resource_setting_fails_the_run_naming_it(
    cluster: FakeJobClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TL_RAY_CPUS", "lots")
    store = RunStore()
    run, _ = store.create_run(tiny_spec())
    assert jobs.dispatch(store) == []
    assert store.get(run.id).status is RunStatus.FAILED and "TL_RAY_CPUS" in store.get(run.id).error
    assert cluster.submitted == []


def test_resuming_locally_forgets_the_job_of_an_earlier_attempt_on_the_cluster(
    cluster: FakeJobClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore()
    run_id = sent_to_cluster(store)
    cluster.status, cluster.message = "FAILED", KILLED
    assert jobs.reap(store) == [run_id]
    sleeper = subprocess.Popen(["sleep", "5"])
    try:
        monkeypatch.setenv("TL_JOBS", "local")
        monkeypatch.setattr(jobs, "spawn_worker", lambda store, run_id: sleeper)
        run = jobs.resume(run_id, store)
        assert run.status is RunStatus.RUNNING and run.worker_pid == sleeper.pid
        assert not store.artifacts(run_id).ray_job.exists()
        assert jobs.reap(store) == []  # judged by its local process, not the failed job
    finally:
        sleeper.kill()
        sleeper.wait()
    assert jobs.reap(store) == [run_id]
    assert f"pid {sleeper.pid}" in store.get(run_id).error


def test_a_run_on_the_cluster_says_where_it_trains_and_a_local_one_does_not(cluster: FakeJobClient) -> None:
    store = RunStore()
    run_id = sent_to_cluster(store)
    where = jobs.placement(store, store.get(run_id))
    assert where == f"on the Ray cluster at {ADDRESS} (job {job_of(store, run_id).submission_id})"
    store.finish(run_id, RunStatus.FAILED, "gone")
    assert jobs.placement(store, store.get(run_id)) is None  # only while it trains
    local, _ = store.create_run(tiny_spec("frozen", epochs=2))
    assert jobs.placement(store, local) is None
