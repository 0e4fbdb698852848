"""Background jobs: training runs in worker processes that outlive the app.

The store is the only channel between the app and the workers: ``submit`` queues a run,
``dispatch`` starts workers up to the concurrency limit, each worker writes epochs to the
store and starts the next queued run when it ends. ``reap`` marks runs whose worker died as
failed, so no run stays "running" forever. With ``TL_JOBS=ray://...`` the workers run as Ray
jobs on a cluster (:mod:`tlcore.runs.ray_jobs`) instead of processes here; nothing else changes.

Exactly one process trains a run. ``dispatch`` claims queued runs for itself in one
transaction, then hands each to the worker it starts (the worker finds the dispatcher's pid in
:data:`CLAIMED_BY_ENV`); a foreground ``python -m tlcore train`` inserts its run already
claimed by itself, so a dispatcher never sees it queued.

A full disk can stop a worker from writing its failure to the store as well. It then leaves an
empty marker file in the run's folder (an empty file needs no data block, so it can usually
still be created) and exits with :data:`EXIT_DISK_FULL`; ``reap``, which runs once the store
accepts writes again, records the full disk as the reason instead of "the worker died".
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from tlcore.config import RunSpec
from tlcore.errors import StorageError, TLError
from tlcore.paths import absolute_environment
from tlcore.records import RunArtifacts, RunRecord, RunStatus
from tlcore.runs import artifact_mirror, ray_jobs
from tlcore.runs.data_identity import DataIdentity, change_note
from tlcore.runs.shared_paths import check_reachable
from tlcore.runs.store import Claimant, RunStore

DEFAULT_MAX_JOBS = 1
LAUNCH_GRACE_S = 120.0
DEFAULT_WORKER_NICE = 10
"""How much lower than the app's a worker's CPU priority is: pages stay responsive while a job
trains on the same cores, and training still gets every cycle the app leaves idle."""

EXIT_DISK_FULL = 75
"""Exit status of a worker that ran out of disk space and could not record it (EX_TEMPFAIL:
the run can succeed once space is freed)."""

CLAIMED_BY_ENV = "TL_CLAIMED_BY"
"""Environment variable holding the pid of the dispatcher that claimed a worker's run for it."""

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the ``tlcore`` package: a worker runs there so ``-m tlcore`` imports it."""

_children: list[subprocess.Popen] = []


def max_jobs() -> int:
    """Concurrent training jobs allowed (``$TL_MAX_JOBS``; 1 suits a 2-core machine)."""
    try:
        return max(1, int(os.environ.get("TL_MAX_JOBS", DEFAULT_MAX_JOBS)))
    except ValueError:
        return DEFAULT_MAX_JOBS


def worker_nice() -> int:
    """Niceness added to workers (``$TL_WORKER_NICE``, 0 to 19; 0 keeps the app's priority)."""
    try:
        return min(19, max(0, int(os.environ.get("TL_WORKER_NICE", DEFAULT_WORKER_NICE))))
    except ValueError:
        return DEFAULT_WORKER_NICE


def check_spec(spec: RunSpec) -> RunSpec:
    """Refuse a spec that would fail before training (bad settings, unknown backbone, ...)."""
    from tlcore.runs.checks import spec_problems  # imports TensorFlow: a dispatcher needs none

    problems = spec_problems(spec)
    if problems:
        raise problems[0]
    if ray_jobs.cluster_address():
        check_reachable(spec)
        ray_jobs.resources(spec.train.mixed_precision)
    return spec


@dataclass
class Submission:
    """A launched run; ``data_change`` says how the data differs from the last finished run's."""

    run: RunRecord
    reused: bool
    data_change: str | None = None


def submit(
    spec: RunSpec, store: RunStore | None = None, force: bool = False, owner: str | None = None,
    tracking: str | None = None,
) -> Submission:
    """Queue ``spec`` (or reuse its finished or active twin on the same data) and start workers
    if there is room.

    Args:
        tracking: An MLflow tracking URI for this run alone (``--mlflow``), kept with the run
            before any worker can start it.

    Raises:
        TLError: The settings or the dataset cannot be used.
    """
    store = store or RunStore()
    run, reused, change = create_for_data(store, check_spec(spec), owner=owner, force=force,
                                          tracking=tracking)
    if not reused:
        dispatch(store)
        run = store.get(run.id)
    return Submission(run, reused, change)


def create_for_data(
    store: RunStore, spec: RunSpec, owner: str | None = None, force: bool = False,
    claimant: Claimant | None = None, tracking: str | None = None,
) -> tuple[RunRecord, bool, str | None]:
    """Create (or reuse) the run of ``spec`` on its data as it is now.

    Args:
        tracking: An MLflow tracking URI for a new run, written into its folder: the run is
            tracked there whichever process trains it, and no other run inherits it (a
            reused run keeps what it had).

    Returns:
        The run, whether it was reused, and how the data changed since the last finished
        run of these settings (also noted in the new run's log), or None.
    """
    identity = DataIdentity.of(spec)
    files = None
    if tracking:
        from tlcore.runs.mlflow_log import absolute_tracking_uri  # imports TensorFlow

        files = {RunArtifacts.TRACKING: {"mlflow_uri": absolute_tracking_uri(tracking)}}
    run, reused = store.create_run(spec, owner=owner, force=force, claimant=claimant,
                                   data_fingerprint=identity.fingerprint, files=files)
    if files and not reused:
        with contextlib.suppress(TLError):  # a worker on another node restores it; its own
            artifact_mirror.push(store.artifact_dir(run.id))  # restore reports a storage failure
    change = None if reused else change_note(store, spec, identity)
    if change:
        store.add_note(run.id, change)
    return run, reused, change


def dispatch(store: RunStore) -> list[str]:
    """Reap dead workers, then start a worker for each queued run that fits under the limit.

    The runs are claimed for this process first and handed to their workers once started, so
    a run is never without one owner that ``reap`` can check, and never has two.
    """
    reap(store)
    cluster = ray_jobs.cluster_address()
    started = []
    for run in store.claim_queued(max_jobs(), Claimant.current()):
        store.artifacts(run.id).ray_job.unlink(missing_ok=True)  # left by an earlier attempt
        if _start_on_ray(store, run, cluster) if cluster else _start_locally(store, run.id):
            started.append(run.id)
    return started


def _start_locally(store: RunStore, run_id: str) -> bool:
    """Start the run's worker process here and hand it the claim."""
    try:
        process = spawn_worker(store, run_id)
    except OSError as exc:  # out of processes or memory: say so now, not after the grace
        store.finish(run_id, RunStatus.FAILED, f"The worker process could not be started ({exc})."
                                               " Resume the run to try again.")
        return False
    try:
        created = psutil.Process(process.pid).create_time()
    except psutil.NoSuchProcess:  # it already exited: a start time no live process has
        created = 0.0
    # A no-op when the worker already took the run over, or finished it.
    store.claim(run_id, Claimant(process.pid, created), handed_from=os.getpid())
    return True


def _start_on_ray(store: RunStore, run: RunRecord, cluster: str) -> bool:
    """Send the run to the cluster; its worker takes the claim over from this process there."""
    files = store.artifacts(run.id)
    files.worker_log.parent.mkdir(parents=True, exist_ok=True)
    try:
        ray_jobs.submit_run(run, files.worker_log, files.ray_job, cluster,
                            {CLAIMED_BY_ENV: str(os.getpid()), "TL_HOME": str(store.root.absolute())})
    except TLError as exc:
        files.ray_job.unlink(missing_ok=True)
        store.finish(run.id, RunStatus.FAILED, f"{exc} Resume the run to try again.")
        return False
    return True


def spawn_worker(store: RunStore, run_id: str) -> subprocess.Popen:
    """Start ``python -m tlcore worker RUN_ID`` in its own session so it survives the app."""
    log_path = store.artifacts(run_id).worker_log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Absolute paths: the worker runs in PROJECT_ROOT, where relative ones name other folders.
    env = {**os.environ, **absolute_environment(), "TL_HOME": str(store.root.absolute()),
           CLAIMED_BY_ENV: str(os.getpid())}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tlcore", "worker", run_id],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=str(PROJECT_ROOT),
        )
    _children.append(process)
    # Set before the worker starts its threads (they inherit it); lowering is always allowed.
    with contextlib.suppress(OSError):
        own = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, process.pid, min(19, own + worker_nice()))
    return process


def placement(store: RunStore, run: RunRecord) -> str | None:
    """Where an active run trains, for people watching it: the Ray job, or None for a worker
    process on this server (or a queued run)."""
    job = ray_jobs.RayJob.read(store.artifacts(run.id).ray_job) if run.status == RunStatus.RUNNING else None
    return f"on the Ray cluster at {job.address} (job {job.submission_id})" if job else None


def worker_alive(run: RunRecord) -> bool:
    """Whether the run's recorded worker process still exists (and is not a recycled pid)."""
    if run.worker_pid is None:
        return run.started_at is not None and time.time() - run.started_at < LAUNCH_GRACE_S
    try:
        process = psutil.Process(run.worker_pid)
        same = run.worker_started is None or abs(process.create_time() - run.worker_started) < 1
        return same and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def reap(store: RunStore) -> list[str]:
    """Mark running runs whose worker died as failed; returns their ids."""
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)
    dead = []
    for run in store.list_runs(statuses={RunStatus.RUNNING}):
        reason = worker_gone(store, run)
        if reason:
            store.finish(run.id, RunStatus.FAILED, reason)
            store.artifacts(run.id).disk_full_marker.unlink(missing_ok=True)
            dead.append(run.id)
    return dead


def worker_gone(store: RunStore, run: RunRecord) -> str | None:
    """Why a running run's worker no longer trains it, or None while it does.

    A run on a Ray cluster is judged by its job there, as its process may be on another
    machine; a full disk is the reason whenever the worker left its marker.
    """
    files = store.artifacts(run.id)
    job = ray_jobs.RayJob.read(files.ray_job)
    if job is None:
        return None if worker_alive(run) else _death_reason(run, files.disk_full_marker.exists())
    reason = ray_jobs.death_reason(job, submitted_long_ago=_age(files.ray_job) > LAUNCH_GRACE_S)
    if reason is None:
        return None
    return _death_reason(run, True) if files.disk_full_marker.exists() else reason


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _death_reason(run: RunRecord, disk_was_full: bool) -> str:
    """Why a run whose worker is gone failed, as the run's error."""
    if disk_was_full:
        return str(StorageError(
            f"The server ran out of disk space: the worker process (pid {run.worker_pid}) could "
            "not even record this run's progress, and stopped.",
            "Free some space (delete old runs or uploads), then resume the run: it continues "
            "from its last finished epoch.",
        ))
    reason = (
        f"The worker process (pid {run.worker_pid}) died without finishing the run."
        if run.worker_pid else "The worker process never started."
    )
    return reason + " Resume it to continue from its last epoch."


def resume(run_id: str, store: RunStore | None = None) -> RunRecord:
    """Queue a failed or stopped run again; its worker continues after the last checkpoint."""
    store = store or RunStore()
    if ray_jobs.cluster_address():  # the cluster may not reach what a local run could
        check_reachable(store.get(run_id).spec)
    store.requeue(run_id)
    dispatch(store)
    return store.get(run_id)


def cancel(run_id: str, store: RunStore | None = None) -> RunRecord:
    """Stop a run: queued runs at once, running ones at their next batch."""
    store = store or RunStore()
    run = store.request_stop(run_id)
    if run.status != RunStatus.RUNNING:
        return run
    job = ray_jobs.RayJob.read(store.artifacts(run_id).ray_job)
    if job and not ray_jobs.has_started(job) and ray_jobs.stop(job):
        store.finish(run_id, RunStatus.STOPPED)  # still waiting for room on the cluster
    elif worker_gone(store, run):
        reap(store)
    return store.get(run_id)


def claim_for_this_process(store: RunStore, run_id: str, handed_from: int | None = None) -> bool:
    """Record this process as the run's only worker (see :meth:`RunStore.claim`).

    Args:
        handed_from: The pid of the dispatcher that claimed the run for this process.

    Returns:
        False when the run ended (cancelled) or another process already trains it.
    """
    if not store.claim(run_id, Claimant.current(), handed_from):
        return False
    store.artifacts(run_id).disk_full_marker.unlink(missing_ok=True)  # left by an earlier attempt
    return True


def _dispatcher_pid() -> int | None:
    """The pid :func:`spawn_worker` left for this worker process, if it was started by one."""
    try:
        return int(os.environ[CLAIMED_BY_ENV])
    except (KeyError, ValueError):
        return None


def run_worker(run_id: str, store: RunStore | None = None) -> int:
    """Body of ``python -m tlcore worker``: train, then hand the slot to the next queued run.

    Returns:
        The exit status: 0 when the run finished or stopped, :data:`EXIT_DISK_FULL` when a
        full disk kept the store from recording the run's end, 1 otherwise.
    """
    from tlcore.runs.runner import as_storage_error, execute_run

    store = store or RunStore()
    try:
        if not claim_for_this_process(store, run_id, handed_from=_dispatcher_pid()):
            run = store.get(run_id)
            print(f"Worker {os.getpid()}: run {run_id} is {run.status} with worker pid {run.worker_pid};"
                  " another process has it, so this one stops.", file=sys.stderr, flush=True)
            return 1
        if not _restore_from_mirror(store, run_id):
            return 1
        run = execute_run(store, run_id)
    except Exception as exc:
        if as_storage_error(exc) is None:
            raise
        _leave_disk_full_marker(store, run_id)
        return EXIT_DISK_FULL
    dispatch(store)
    return 0 if run.status in (RunStatus.FINISHED, RunStatus.STOPPED) else 1


def _restore_from_mirror(store: RunStore, run_id: str) -> bool:
    """Fetch the run's folder from ``TL_ARTIFACTS_URL`` (its checkpoint may come from another
    node); storage that cannot be read fails the run at once, with what to check."""
    try:
        artifact_mirror.restore(store.artifact_dir(run_id))
    except TLError as exc:
        store.finish(run_id, RunStatus.FAILED, f"{exc} Resume the run once the storage answers.")
        return False
    return True


def _leave_disk_full_marker(store: RunStore, run_id: str) -> None:
    """Create the empty marker file for ``reap``; on failure the exit status is all that is left."""
    with contextlib.suppress(OSError):
        store.artifacts(run_id).disk_full_marker.touch()
