"""Training runs as Ray jobs: with ``TL_JOBS=ray://HOST:PORT`` each claimed run goes to a cluster.

Ray's job API rather than a Ray task, because a job outlives the process that submitted it (as
a local worker, started in its own session, outlives the app), any process can read its status
from its id, Ray stops it on request, and its entrypoint reserves CPUs and GPUs, so Ray holds
back the jobs the cluster has no room for. A task would die with the Streamlit process that
owns it.

The job runs the very worker a local run uses (``python -m tlcore worker RUN_ID``), on whichever
node has the resources, against the same store (a shared ``TL_HOME``, ``TL_DATABASE_URL``): so
per-epoch progress, Stop, checkpoints and resuming need nothing Ray-specific. The run's folder
records which job trains it (``ray-job.json``), and ``reap`` asks Ray about that job instead of
looking for a local process.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shlex
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tlcore.errors import ClusterError, ConfigError, brief_reason
from tlcore.paths import absolute_environment
from tlcore.records import RunRecord

JOBS_ENV = "TL_JOBS"
DATABASE_URL_ENV = "TL_DATABASE_URL"
CPUS_ENV, GPUS_ENV = "TL_RAY_CPUS", "TL_RAY_GPUS"
DEFAULT_CPUS = 1.0
FORWARDED = ("KERAS_HOME", "TFHUB_CACHE_DIR", "TFDS_DATA_DIR", "MLFLOW_TRACKING_URI")
"""Settings besides every ``TL_*`` one that a worker on another node needs as the app has them."""

ALIVE = frozenset({"PENDING", "RUNNING"})
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RayJob:
    """The Ray job of one attempt at a run, as ``ray-job.json`` keeps it."""

    address: str
    submission_id: str

    @classmethod
    def read(cls, path: Path) -> RayJob | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def cluster_address() -> str | None:
    """The cluster ``TL_JOBS`` names, or None for local worker processes (the default).

    ``ray://HOST:PORT`` is the cluster's Ray Client address (the studio asks it once per process
    where the job API listens); ``http://HOST:PORT`` is that job API (the dashboard port) itself.

    Raises:
        ConfigError: Any other value.
    """
    value = os.environ.get(JOBS_ENV, "").strip()
    if value in ("", "local"):
        return None
    if value.startswith(("ray://", "http://", "https://")) and len(value.split("://", 1)[1]) > 0:
        return value
    raise ConfigError(f"{JOBS_ENV}={value!r} names no job backend.",
                      f"Use {JOBS_ENV}=local (worker processes on this server) or "
                      f"{JOBS_ENV}=ray://HOST:10001 (a Ray cluster).")


@functools.lru_cache(maxsize=4)
def _client(address: str) -> Any:
    """One job-API client per cluster and process (a ``ray://`` address costs a connection)."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, RuntimeError, grpc errors: all mean "not there"
        raise ClusterError(f"The Ray cluster at {address} could not be reached ({brief_reason(exc)}).",
                           f"Start it (ray start --head) or correct {JOBS_ENV}.") from exc


def resources(spec_needs_gpu: bool) -> dict[str, float]:
    """The entrypoint's resource request: the server's ``TL_RAY_CPUS``/``TL_RAY_GPUS``, at
    least one GPU for a spec that only runs on one (mixed precision), and N for
    ``TL_DEVICES=gpu:N``.

    Raises:
        ConfigError: A setting that is not a number of zero or more.
    """
    wanted = {}
    for name, default, key in ((CPUS_ENV, DEFAULT_CPUS, "entrypoint_num_cpus"),
                               (GPUS_ENV, 0.0, "entrypoint_num_gpus")):
        raw = os.environ.get(name, "").strip()
        try:
            wanted[key] = float(raw) if raw else default
        except ValueError:
            wanted[key] = -1.0
        if not math.isfinite(wanted[key]) or wanted[key] < 0:
            raise ConfigError(f"{name}={raw!r} is not a number of CPUs or GPUs.",
                              f"Set {name} to 0 or more (fractions are allowed), or unset it.")
    if spec_needs_gpu:
        wanted["entrypoint_num_gpus"] = max(1.0, wanted["entrypoint_num_gpus"])
    wanted["entrypoint_num_gpus"] = max(float(gpus_asked_by_devices()), wanted["entrypoint_num_gpus"])
    return wanted


def gpus_asked_by_devices() -> int:
    """The GPUs ``TL_DEVICES=gpu:N`` trains on (0 otherwise): a job that would mirror over N
    GPUs must land on a node that has them. The worker validates the setting itself."""
    kind, _, count = os.environ.get("TL_DEVICES", "").strip().lower().partition(":")
    return int(count) if kind == "gpu" and count.isdigit() else 0


def worker_environment(extra: dict[str, str]) -> dict[str, str]:
    """What the worker's process needs of this one's settings, paths made absolute; the rest
    of this process's environment (``PATH``, ``HOME``, ...) belongs to this machine only.

    No secret travels: a job's variables show in the Ray dashboard, so ``TL_DATABASE_URL``
    goes without its password (each node's ``PGPASSWORD`` or ``~/.pgpass`` supplies it) and
    storage keys stay in the nodes' own environment.
    """
    names = [name for name in os.environ if name.startswith("TL_") or name in FORWARDED]
    env = {**{name: os.environ[name] for name in names}, **absolute_environment(), **extra}
    if env.get(DATABASE_URL_ENV):
        env[DATABASE_URL_ENV] = without_password(env[DATABASE_URL_ENV])
    return env


def without_password(url: str) -> str:
    """``url`` with its password left out (unchanged when it has none or cannot be read)."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    bare = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
                      parsed.query)
    return bare.render_as_string(hide_password=False)


def submit_run(run: RunRecord, worker_log: Path, marker: Path, address: str,
               extra_env: dict[str, str]) -> RayJob:
    """Send the run's worker to the cluster and record the job beside the run.

    Raises:
        ConfigError: The ``TL_RAY_*`` resource settings are not numbers.
        ClusterError: The cluster cannot be reached or refused the job.
    """
    command = " ".join(shlex.quote(part) for part in (sys.executable, "-m", "tlcore", "worker", run.id))
    log = worker_log.absolute()  # its folder may not exist yet on a node with a TL_HOME of its own
    entrypoint = (f"mkdir -p {shlex.quote(str(log.parent))} && cd {shlex.quote(str(PROJECT_ROOT))} && "
                  f"exec {command} >> {shlex.quote(str(log))} 2>&1")
    wanted = resources(run.spec.train.mixed_precision)
    job = RayJob(address, f"tlcore-{run.id}-{uuid.uuid4().hex[:8]}")
    marker.write_text(json.dumps(asdict(job)))
    try:
        _client(address).submit_job(
            entrypoint=entrypoint, submission_id=job.submission_id,
            runtime_env={"env_vars": worker_environment(extra_env)},
            metadata={"tlcore_run": run.id, "submitted_at": f"{time.time():.3f}"},
            **wanted,
        )
    except ClusterError:
        raise
    except Exception as exc:
        raise ClusterError(f"The Ray cluster at {address} refused run {run.id} ({brief_reason(exc)}).",
                           "Check the cluster's resources and the TL_RAY_* settings.") from exc
    return job


def death_reason(job: RayJob, submitted_long_ago: bool) -> str | None:
    """Why the job no longer trains its run, or None while it is queued or running on the
    cluster, or when the cluster cannot say (a cluster down for a moment fails no run).

    Args:
        submitted_long_ago: Whether the job was sent long enough ago that a cluster which
            does not know it has lost it (restarted), rather than not having received it yet.
    """
    try:
        info = _client(job.address).get_job_info(job.submission_id)
    except Exception as exc:
        if submitted_long_ago and "does not exist" in str(exc):
            return (f"The Ray cluster at {job.address} no longer knows job {job.submission_id} (it was"
                    " restarted). Resume the run to continue from its last epoch.")
        return None
    status = str(getattr(info.status, "value", info.status))
    if status in ALIVE:
        return None
    detail = (info.message or "").split(", last available logs")[0].strip().splitlines()
    because = f": {detail[0][:300]}" if detail else ""
    return (f"The Ray job {job.submission_id} ended ({status.lower()}) without finishing the run"
            f"{because}. Resume it to continue from its last epoch.")


def stop(job: RayJob) -> bool:
    """Ask Ray to end the job (a run still waiting for room on the cluster never starts)."""
    try:
        return bool(_client(job.address).stop_job(job.submission_id))
    except Exception:
        return False


def has_started(job: RayJob) -> bool:
    """Whether the job's entrypoint is running (or ran): False while it waits for resources."""
    try:
        status = _client(job.address).get_job_status(job.submission_id)
    except Exception:
        return True
    return str(getattr(status, "value", status)) != "PENDING"


def cluster_version(address: str) -> str:
    """The Ray version the cluster's job API reports (the doctor's check that it answers).

    Raises:
        ClusterError: The cluster cannot be reached.
    """
    try:
        return str(_client(address).get_version())
    except ClusterError:
        raise
    except Exception as exc:
        raise ClusterError(f"The Ray cluster at {address} could not be reached ({brief_reason(exc)}).",
                           f"Start it (ray start --head) or correct {JOBS_ENV}.") from exc
