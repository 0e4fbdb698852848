"""Short background tasks that are not training runs: an LR range test, a head search, an audit.

Each of them loads a dataset and runs a network, which the app's server process must never
do (it serves every user, and a dataset does not fit in it). So the page starts a task, a
detached ``python -m tlcore task ID`` process runs it, and the page polls its folder under
``TL_HOME/tasks``: ``request.json`` (what to do), ``progress.json`` (rewritten as it goes),
then ``result.json`` or ``error.json``. The same request while one is still running returns
that one instead of starting a second process.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tlcore import strict_json
from tlcore.config import RunSpec
from tlcore.errors import ConfigError, StorageError, TLError
from tlcore.files import atomic_write
from tlcore.paths import absolute_environment, subdir
from tlcore.runs.jobs import PROJECT_ROOT, worker_nice

TASK_KINDS: dict[str, str] = {}
"""Task kind -> ``module:function`` running it, imported only in the task's own process. The
function takes (spec, options, report) and returns a JSON-able result; ``report(dict)``
publishes progress. The kinds are in :mod:`tlcore.runs.task_kinds`."""

REQUEST, PROGRESS, RESULT, ERROR, PID = "request.json", "progress.json", "result.json", "error.json", "pid"
LAUNCH_GRACE_S = 60.0
"""A task whose process is gone but that has no result yet is failed only after this long: the
process may not have written its pid yet."""

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TaskState:
    """What a page shows of a task.

    Attributes:
        id: The task's folder name.
        kind: One of :data:`TASK_KINDS`.
        status: ``running``, ``finished`` or ``failed``.
        progress: The last progress the task published (its own keys), or None.
        result: The task's result once finished.
        error: Why it failed, in words a user can act on.
    """

    id: str
    kind: str
    status: str
    progress: dict[str, Any] | None = None
    result: Any = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status != "running"


def _load_kinds() -> None:
    import tlcore.runs.task_kinds  # noqa: F401 - fills TASK_KINDS


def task_id(kind: str, spec: RunSpec, options: dict[str, Any]) -> str:
    payload = json.dumps({"kind": kind, "spec": spec.key(), "options": options}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def task_folder(identifier: str) -> Path:
    if not identifier or "/" in identifier or identifier.startswith("."):
        raise ConfigError(f"{identifier!r} is not a task id.")
    return subdir("tasks") / identifier


def start_task(kind: str, spec: RunSpec, options: dict[str, Any] | None = None) -> str:
    """Start ``kind`` on ``spec`` in a process of its own, or find the same one still running.

    A finished or failed task of the same request starts again: the data may have changed.

    Raises:
        ConfigError: Unknown kind, or the spec is impossible.
        StorageError: The task folder cannot be written.
    """
    _load_kinds()
    if kind not in TASK_KINDS:
        raise ConfigError(f"Unknown task {kind!r}.", f"Choose from {', '.join(sorted(TASK_KINDS))}.")
    spec.validate()
    options = dict(options or {})
    identifier = task_id(kind, spec, options)
    folder = task_folder(identifier)
    if (folder / REQUEST).exists() and not task_state(identifier).done:
        return identifier
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in (PROGRESS, RESULT, ERROR, PID):
            (folder / name).unlink(missing_ok=True)
        atomic_write(folder / REQUEST, json.dumps({"kind": kind, "spec": spec.to_dict(), "options": options,
                                                   "requested_at": time.time()}))
    except OSError as exc:
        raise StorageError(f"Could not prepare the task folder {folder} ({exc.strerror or exc}).",
                           "Check that TL_HOME is writable and not full.") from exc
    _spawn(identifier, folder)
    return identifier


def _spawn(identifier: str, folder: Path) -> None:
    env = {**os.environ, **absolute_environment(), "TL_HOME": str(folder.parents[1].absolute())}
    with open(folder / "task.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "tlcore", "task", identifier], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                   env=env, cwd=str(PROJECT_ROOT))
    with contextlib.suppress(OSError):
        own = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, process.pid, min(19, own + worker_nice()))


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"The task file {path} cannot be read ({exc}).", "Start the task again.") from exc


def task_state(identifier: str) -> TaskState:
    """Where a task is: running (with its progress), finished (with its result) or failed."""
    folder = task_folder(identifier)
    request = _read(folder / REQUEST)
    if request is None:
        raise ConfigError(f"No task {identifier}.", "Start it again from the page or the CLI.")
    kind, progress = request["kind"], _read(folder / PROGRESS)
    if (folder / RESULT).exists():
        return TaskState(identifier, kind, "finished", progress, _read(folder / RESULT))
    error = _read(folder / ERROR)
    if error is not None:
        return TaskState(identifier, kind, "failed", progress, error=error["message"])
    if not _alive(folder, request):
        return TaskState(identifier, kind, "failed", progress,
                         error="The task's process ended without a result (see task.log in its folder).")
    return TaskState(identifier, kind, "running", progress)


def _alive(folder: Path, request: dict[str, Any]) -> bool:
    try:
        pid = int((folder / PID).read_text())
    except (OSError, ValueError):
        return time.time() - float(request.get("requested_at", 0)) < LAUNCH_GRACE_S
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_task(identifier: str) -> int:
    """The task process: run the request and leave its result or its error in the folder."""
    folder = task_folder(identifier)
    atomic_write(folder / PID, str(os.getpid()))
    request = _read(folder / REQUEST)
    if request is None:
        raise ConfigError(f"No task {identifier}.")

    def report(progress: dict[str, Any]) -> None:
        atomic_write(folder / PROGRESS, strict_json.dumps(progress))

    _load_kinds()
    try:
        module, function = TASK_KINDS[request["kind"]].split(":")
        run: Callable[[RunSpec, dict[str, Any], Report], Any] = getattr(importlib.import_module(module),
                                                                        function)
        result = run(RunSpec.from_dict(request["spec"]).validate(), request["options"], report)
        atomic_write(folder / RESULT, strict_json.dumps(result))
    except TLError as exc:
        atomic_write(folder / ERROR, json.dumps({"message": str(exc)}))
        return 2
    except Exception as exc:  # noqa: BLE001 - the page must hear why, whatever broke
        message = f"The task failed unexpectedly ({type(exc).__name__}: {exc}); see task.log in {folder}."
        atomic_write(folder / ERROR, json.dumps({"message": message}))
        raise
    return 0
