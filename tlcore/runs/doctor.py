"""``python -m tlcore doctor``: what is wrong with a studio home, and rebuilding its run list.

:func:`check` only looks: the home folder, the run store (does it open, does it pass SQLite's
``integrity_check``), the run folders (on disk but not listed; finished but missing their files)
and the caches. :func:`rebuild` lists the run folders again from the record each run keeps in
its folder (``run.json``, written with its results). A damaged ``runs.sqlite`` is never
deleted: it is kept beside the new one as ``runs.sqlite.damaged-<time>``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from tlcore.errors import StorageError, TLError
from tlcore.paths import tl_home
from tlcore.records import RunRecord
from tlcore.runs import ray_jobs
from tlcore.runs.database import (
    DB_NAME,
    REBUILD,
    RUNS_FOLDER,
    check_folder,
    read_only_error,
    run_folders,
    server_url,
    writable,
)
from tlcore.runs.store import RECORD_FILE, RunStore

CACHES = (("features", "feature store"), ("pixels", "pixel store"))
"""Cache folders under ``TL_HOME`` (see :mod:`tlcore.training.features`, :mod:`tlcore.data.pixels`)."""

SHOWN_IDS = 5


@dataclass(frozen=True)
class Finding:
    """One thing the doctor looked at: fine, or a problem with what to do about it."""

    area: str
    ok: bool
    message: str
    hint: str = ""

    def describe(self) -> str:
        mark = "ok     " if self.ok else "PROBLEM"
        return f"{mark} {self.area}: {self.message}" + (f" {self.hint}" if self.hint else "")


@dataclass(frozen=True)
class Checkup:
    """Everything :func:`check` found under one home."""

    home: Path
    findings: tuple[Finding, ...]

    @property
    def healthy(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.ok)

    def describe(self) -> str:
        return "\n".join([f"TL_HOME {self.home}", *(f.describe() for f in self.findings)])


@dataclass(frozen=True)
class Rebuild:
    """What :func:`rebuild` did."""

    kept: Path | None
    """Where the damaged or empty store was moved, if it was."""
    restored: tuple[str, ...]
    unrecoverable: tuple[str, ...]
    """Run folders without a usable record: left on disk as they are."""

    def describe(self) -> str:
        lines = [f"kept the old store as {self.kept}"] if self.kept else []
        lines.append(f"listed {len(self.restored)} run(s) again" + _ids_suffix(self.restored))
        if self.unrecoverable:
            lines.append(f"left {len(self.unrecoverable)} run folder(s) without a {RECORD_FILE} "
                         f"as they are{_ids_suffix(self.unrecoverable)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _StoreState:
    finding: Finding
    store: RunStore | None
    runs: list[RunRecord] | None
    """None when the store cannot be read."""


def check(home: Path | None = None) -> Checkup:
    """Look at ``home`` (``TL_HOME``) without changing anything in it."""
    home = home or tl_home(create=False)
    findings = [_check_home(home)]
    if home.is_dir():
        state = _check_store(home)
        findings += [state.finding, *_check_folders(home, state), *_check_caches(home)]
    return Checkup(home, (*findings, _check_jobs()))


def rebuild(home: Path | None = None) -> Rebuild:
    """List every run folder that holds its record again; keep a damaged store aside first.

    Raises:
        StorageError: ``home`` is not a folder, or cannot be written.
    """
    home = home or tl_home(create=False)
    check_folder(home, "TL_HOME")
    if not home.is_dir():
        raise StorageError(f"TL_HOME ({home}) does not exist, so there is nothing to rebuild.",
                           "Check that TL_HOME names the studio's folder.")
    if not writable(home, home / DB_NAME):
        raise read_only_error(home)
    kept = None if _sound(home) else keep_aside(home / DB_NAME)
    store = RunStore(home, adopt_folders=True)
    listed = {run.id for run in store.list_runs()}
    restored, unrecoverable = [], []
    for run_id in run_folders(home):
        if run_id in listed:
            continue
        try:
            record = store.read_record(run_id)
        except TLError:  # a damaged record, or a folder name no run id has
            record = None
        if record is None:
            unrecoverable.append(run_id)
        elif store.restore(*record):
            restored.append(run_id)
    return Rebuild(kept, tuple(restored), tuple(unrecoverable))


def keep_aside(path: Path) -> Path | None:
    """Rename a store (and SQLite's ``-wal``/``-shm`` beside it) to ``<name>.damaged-<time>``."""
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.name}.damaged-{stamp}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.damaged-{stamp}-{n}"), n + 1
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    os.replace(path, target)
    return target


def _sound(home: Path) -> bool:
    """Whether the store is worth keeping as it is: missing, or a file that passes the check."""
    path = home / DB_NAME
    if not path.exists():
        return True
    if path.is_dir() or path.stat().st_size == 0:
        return False
    try:
        return not RunStore(home, read_only=True, adopt_folders=True).integrity_problems()
    except StorageError:
        return False


def _check_home(home: Path) -> Finding:
    if not home.exists():
        return Finding("home", True, "does not exist yet; it is made by the first run.")
    if not home.is_dir():
        return Finding("home", False, "is a file, not a folder.",
                       "Point TL_HOME at a folder (or move the file away).")
    if not writable(home, home / DB_NAME):
        return Finding("home", False, "is read-only: runs can be listed and shown, but not trained, "
                       "resumed or deleted.", "Make it writable for this user, or set TL_HOME to a "
                       "folder that is.")
    return Finding("home", True, "is a writable folder.")


def _check_jobs() -> Finding:
    """Where runs train: worker processes here, or a Ray cluster that must answer."""
    try:
        address = ray_jobs.cluster_address()
        if address is None:
            return Finding("jobs", True, "runs train in worker processes on this server (TL_JOBS=local).")
        version = ray_jobs.cluster_version(address)
    except TLError as exc:
        return Finding("jobs", False, _message(exc), exc.hint)
    store = "the run store on TL_DATABASE_URL's server" if server_url() else (
        "the SQLite file under TL_HOME (enough while every node is this machine; set TL_DATABASE_URL "
        "for nodes elsewhere)")
    return Finding("jobs", True, f"runs train as Ray jobs on the cluster at {address} (Ray {version}), "
                   f"against {store}.")


def _check_server_store(home: Path) -> _StoreState:
    """The run list on a database server (``TL_DATABASE_URL``): reachable, its schema current."""
    try:
        store = RunStore(home, read_only=True, adopt_folders=True)
        problems = store.integrity_problems()
        runs = store.list_runs()
    except TLError as exc:
        return _StoreState(Finding("store", False, _message(exc), exc.hint), None, None)
    if problems:
        hint = "Open the store once with write access to run its migrations."
        return _StoreState(Finding("store", False, f"{store.location}: {'; '.join(problems[:3])}.", hint),
                           store, runs)
    return _StoreState(Finding("store", True, f"{store.location} answers and its schema is current; "
                               f"it lists {len(runs)} run(s)."), store, runs)


def _check_store(home: Path) -> _StoreState:
    if server_url() is not None:
        return _check_server_store(home)
    path = home / DB_NAME
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        state = "does not exist yet" if not path.exists() else "is empty (0 bytes)"
        return _StoreState(Finding("store", True, f"{DB_NAME} {state}: it lists no runs."), None, [])
    try:
        store = RunStore(home, read_only=True, adopt_folders=True)
        problems = store.integrity_problems()
        runs = store.list_runs()
    except (TLError, ValueError) as exc:  # ValueError: a row whose JSON cannot be read
        hint = exc.hint if isinstance(exc, TLError) else f"Run {REBUILD} to rebuild the run list."
        return _StoreState(Finding("store", False, _message(exc), hint), None, None)
    if problems:
        finding = Finding("store", False, f"{DB_NAME} fails SQLite's integrity check "
                          f"({'; '.join(problems[:3])}).", f"Run {REBUILD} to rebuild the run list "
                          "from the run folders (the damaged file is kept beside it).")
    else:
        finding = Finding("store", True, f"{DB_NAME} opens and passes SQLite's integrity check; "
                          f"it lists {len(runs)} run(s).")
    return _StoreState(finding, store, runs)


def _check_folders(home: Path, state: _StoreState) -> list[Finding]:
    on_disk = run_folders(home)
    listed = None if state.runs is None else {run.id for run in state.runs}
    unlisted = [i for i in on_disk if listed is None or i not in listed]
    findings = []
    if unlisted:
        known = [i for i in unlisted if (home / RUNS_FOLDER / i / RECORD_FILE).exists()]
        which = "the store cannot be read to list" if listed is None else "the store does not list"
        findings.append(Finding("runs", False, f"{len(unlisted)} run folder(s) are on disk that "
                                f"{which}{_ids_suffix(unlisted)}.", _rebuild_hint(len(known), len(unlisted))))
    for run in state.runs or []:
        missing = state.store.missing_results(run) if state.store else []
        if missing:
            findings.append(Finding(
                "runs", False, f"run {run.id} is {run.status}, but its files are missing "
                f"({', '.join(missing)}).", f"Delete it (`python -m tlcore delete {run.id}`) "
                "or train it again: its results cannot be recovered."))
    if not findings:
        findings.append(Finding("runs", True, f"{len(on_disk)} run folder(s), all listed; every "
                                "finished run has its files."))
    return findings


def _check_caches(home: Path) -> list[Finding]:
    findings = []
    for name, label in CACHES:
        path = home / name
        if not path.exists():
            findings.append(Finding("caches", True, f"the {label} ({name}/) is not made yet."))
            continue
        problem = _folder_problem(path)
        if problem:
            findings.append(Finding("caches", False, f"the {label} {path} {problem}.",
                                    "Fix its permissions, or move it away: it is only a cache "
                                    "and is made again when needed."))
        else:
            entries = sum(1 for _ in path.iterdir())
            findings.append(Finding("caches", True, f"the {label} ({name}/) holds {entries} entries."))
    return findings


def _folder_problem(path: Path) -> str:
    """Why the studio could not use ``path`` as a cache folder, or "" when it can."""
    if not path.is_dir():
        return "is a file, not a folder"
    try:
        next(iter(path.iterdir()), None)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return "cannot be written by this user"
    return ""


def _rebuild_hint(known: int, unlisted: int) -> str:
    if known == unlisted:
        return f"Run {REBUILD} to list them again."
    if known == 0:
        return (f"None of them holds its record ({RECORD_FILE}, written with a run's results), so "
                "they cannot be listed again; move them away if they are not needed.")
    return (f"Run {REBUILD} to list the {known} that hold their record ({RECORD_FILE}); the other "
            f"{unlisted - known} cannot be listed again.")


def _ids_suffix(ids: tuple[str, ...] | list[str]) -> str:
    if not ids:
        return ""
    shown = ", ".join(ids[:SHOWN_IDS]) + (", ..." if len(ids) > SHOWN_IDS else "")
    return f": {shown}"


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, TLError) else f"a run's row cannot be read ({exc})."
