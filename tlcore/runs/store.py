"""Run store: runs and epochs in SQLite (or PostgreSQL), one artifact folder per run under ``TL_HOME``.

Several processes use the store at once (the app, workers, the CLI). SQLite in WAL mode with a
busy timeout handles that; every read-modify-write happens inside ``BEGIN IMMEDIATE`` so two
people launching the same spec at once end up watching one run. With ``TL_DATABASE_URL`` set
the rows live on a PostgreSQL server instead, for app servers and workers on several machines;
there a transaction-scoped advisory lock plays ``BEGIN IMMEDIATE``'s part, and the same SQL runs
on both (:class:`~tlcore.runs.database.Statements`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import sqlite3
import time
import typing
import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from tlcore.config import RunSpec, matches_type
from tlcore.errors import (
    ArtifactError,
    ConfigError,
    PermissionDeniedError,
    RunNotFoundError,
    RunStateError,
    TLError,
)
from tlcore.files import atomic_write
from tlcore.paths import ensure_folder, tl_home
from tlcore.records import (
    ACTIVE,
    EPOCH_FIELDS,
    TERMINAL,
    EpochRecord,
    RunArtifacts,
    RunRecord,
    RunStatus,
    RunSummary,
)
from tlcore.runs import artifact_mirror
from tlcore.runs.database import (
    DB_NAME,
    DOCTOR,
    Statements,
    open_database,
    open_server,
    read_only_error,
    refuse_lost_runs,
    server_url,
    unwritable_error,
)
from tlcore.runs.sql_schema import SQLITE_SCHEMA, current_revision, head_revision, migrate

STORE_LOCK = 0x746C_7275
"""The advisory lock id (``"tlru"``) a write transaction holds on a server, as SQLite's
``BEGIN IMMEDIATE`` holds the file's write lock: writers take turns, readers never wait."""

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a run id may look like: ids name artifact folders, so no separators or dots."""

PASS_FILE = "pass.txt"
"""In a run's folder while it decodes images or computes features: how far it got."""

RECORD_FILE = "run.json"
"""In a run's folder: its row and epochs (:meth:`RunStore.write_record`), for ``doctor --rebuild``."""

METRICS = tuple(name for name in EPOCH_FIELDS if name not in ("epoch", "stage"))
"""The float fields of an epoch, which SQLite reads back as NULL when they were NaN."""

REUSABLE = (RunStatus.FINISHED, RunStatus.RUNNING, RunStatus.QUEUED)
"""A new run reuses a run of the same spec key in one of these statuses (a finished one first)."""


@dataclass(frozen=True)
class Claimant:
    """The process a run is claimed for: its pid and start time (a recycled pid has another)."""

    pid: int
    started: float

    @classmethod
    def current(cls) -> Claimant:
        """This process."""
        return cls(os.getpid(), psutil.Process().create_time())


class RunStore:
    """Runs, epochs and artifacts under one root (``TL_HOME`` unless given)."""

    def __init__(
        self, root: Path | None = None, read_only: bool | None = None, adopt_folders: bool = False
    ) -> None:
        """Open the store; one that can only be read is opened read-only and nothing is created.

        Args:
            read_only: Force read-only access (the doctor only looks); None: read-only exactly
                when ``root`` cannot be written.
            adopt_folders: Open an empty store although run folders are on disk, because the
                caller lists them again (``doctor --rebuild``).

        Raises:
            StorageError: ``root`` is a file or cannot be created, the database is damaged
                or a folder, or it is empty while run folders are on disk.
        """
        self.root = Path(root) if root else tl_home(create=False)
        self.db_path = self.root / DB_NAME
        """The SQLite file; unused while ``TL_DATABASE_URL`` puts the rows on a server."""
        url = server_url()
        self._database = open_database(self.root, read_only) if url is None else \
            open_server(self.root, url, read_only)
        if url is None and not adopt_folders:
            refuse_lost_runs(self.root)
        if not self.read_only:
            ensure_folder(self.root, "TL_HOME")
            self._create_schema()
        with self._connect() as conn:
            # Reads every page of both tables: a truncated or overwritten file fails here.
            conn.execute("SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM epochs)").fetchone()

    def _create_schema(self) -> None:
        """SQLite: the tables as they always were. A server: Alembic's pending migrations."""
        if self.backend == "sqlite":
            with self._connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                for statement in filter(str.strip, SQLITE_SCHEMA.split(";")):
                    conn.execute(statement)
        elif self._database not in _MIGRATED:
            with self._reported():
                migrate(self._database.engine())
            _MIGRATED.add(self._database)

    @property
    def read_only(self) -> bool:
        """Whether this store can only be read (``TL_HOME`` or ``runs.sqlite`` is not writable)."""
        return self._database.read_only

    @property
    def backend(self) -> str:
        """``"sqlite"`` (the file under ``TL_HOME``) or ``"postgresql"`` (``TL_DATABASE_URL``)."""
        return self._database.kind

    @property
    def location(self) -> str:
        """Where the rows are, fit to show: the file's path, or the URL without its password."""
        return self._database.describe()

    @contextmanager
    def _reported(self) -> Iterator[None]:
        """Failures that come from the file or the server as StorageErrors that say so; any
        other failure as the driver's own error, whose message (a run's error, "database or
        disk is full" for the runner) carries no SQLAlchemy wrapping."""
        try:
            yield
        except (sa.exc.DBAPIError, sqlite3.DatabaseError) as exc:
            driver_error = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
            error = self._database.error(driver_error)
            if error is not None:
                raise error from exc
            if driver_error is exc:
                raise
            raise driver_error from exc

    @contextmanager
    def _connect(self) -> Iterator[Statements]:
        """A connection, committed when the block ends without an error (a no-op on SQLite,
        which commits each statement outside :meth:`transaction`)."""
        with self._reported(), self._database.engine().connect() as connection:
            yield Statements(connection)
            connection.commit()

    @contextmanager
    def transaction(self) -> Iterator[Statements]:
        """A write transaction that holds the store's write lock from its first statement."""
        with self._connect() as conn:
            if self.backend != "sqlite":
                conn.execute("SELECT pg_advisory_xact_lock(?)", (STORE_LOCK,))
                yield conn  # committed, or rolled back on an error, as the connection closes
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ---- runs -------------------------------------------------------------------------

    def create_run(
        self, spec: RunSpec, owner: str | None = None, force: bool = False,
        claimant: Claimant | None = None, data_fingerprint: str = "",
        files: Mapping[str, Any] | None = None,
    ) -> tuple[RunRecord, bool]:
        """Queue a new run, or return the finished or active run with the same key.

        The key is the spec's, followed by ``data_fingerprint`` when one is given: a run is
        reused only for equal settings on equal data.

        Args:
            claimant: Insert the new run already running for this process (a foreground
                train): a queued run could be claimed by a dispatcher before its creator.
            files: JSON artifacts of a new run (name -> payload), written into its folder
                before its row is committed, so whichever worker picks the run up finds them.

        Returns:
            The run and whether it was reused rather than created.
        """
        spec.validate()
        key = spec.key() + (f"-{data_fingerprint}" if data_fingerprint else "")
        with self.transaction() as conn:
            if not force:
                row = conn.execute(
                    f"SELECT * FROM runs WHERE key = ? AND status IN {_placeholders(REUSABLE)}"
                    " ORDER BY status = ? DESC, created_at DESC LIMIT 1",
                    (key, *REUSABLE, RunStatus.FINISHED),
                ).fetchone()
                if row is not None:
                    return _to_record(row), True
            run_id, now = uuid.uuid4().hex[:12], time.time()
            for name, payload in (files or {}).items():  # not write_json: no mirror lookups here
                self._write_json_into(self._folder(run_id), name, payload)
            status, claim = (
                (RunStatus.QUEUED, (None, None, None)) if claimant is None
                else (RunStatus.RUNNING, (now, claimant.pid, claimant.started))
            )
            conn.execute(
                "INSERT INTO runs (id, key, name, spec, status, owner, created_at, started_at,"
                " worker_pid, worker_started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, key, spec.name, json.dumps(spec.to_dict()), status, owner, now, *claim),
            )
        return self.get(run_id), False

    def get(self, run_id: str) -> RunRecord:
        check_run_id(run_id)
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(
                f"No run with id {run_id!r}.", "List runs with `python -m tlcore runs`."
            )
        return _to_record(row)

    def latest_with_key(self, key: str) -> RunRecord | None:
        """The newest run of a spec key, on any data and in any status: what became of the
        last attempt."""
        runs = self.runs_with_spec_key(key, limit=1)
        return runs[0] if runs else None

    def runs_with_spec_key(self, key: str, limit: int = -1) -> list[RunRecord]:
        """Runs of a spec key (:meth:`RunSpec.key`) on any data, newest first (all when
        ``limit`` is negative)."""
        query = "SELECT * FROM runs WHERE key = ? OR key LIKE ? ORDER BY created_at DESC"
        args: list[Any] = [key, f"{key}-%"]
        if limit >= 0:
            query, args = query + " LIMIT ?", [*args, limit]
        with self._connect() as conn:
            rows = conn.execute(query, args).fetchall()
        return [_to_record(row) for row in rows]

    def list_runs(
        self, statuses: Collection[RunStatus] | None = None, owner: str | None = None
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered by status and owner."""
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if statuses:
            query += f" AND status IN {_placeholders(statuses)}"
            args.extend(statuses)
        if owner is not None:
            query += " AND owner = ?"
            args.append(owner)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY created_at DESC", args).fetchall()
        return [_to_record(r) for r in rows]

    def update(self, run_id: str, **fields: Any) -> None:
        """Set columns of a run; a summary, lists and dicts are stored as JSON."""
        if not fields:
            return
        values = [_column_value(v) for v in fields.values()]
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._connect() as conn:
            cursor = conn.execute(
                f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id)
            )
        if cursor.rowcount == 0:
            raise RunNotFoundError(f"No run with id {run_id!r}.")

    def finish(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        """Move a run to a terminal status, unless it already reached one."""
        assert status in TERMINAL, status
        with self.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, error = COALESCE(?, error), finished_at = ?"
                f" WHERE id = ? AND status IN {_placeholders(ACTIVE)}",
                (RunStatus(status), error, time.time(), run_id, *ACTIVE),
            )

    def add_note(self, run_id: str, note: str) -> None:
        with self.transaction() as conn:
            row = conn.execute("SELECT notes FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFoundError(f"No run with id {run_id!r}.")
            notes = json.loads(row.notes) + [note]
            conn.execute("UPDATE runs SET notes = ? WHERE id = ?", (json.dumps(notes), run_id))

    def set_pass_progress(self, run_id: str, text: str | None) -> None:
        """Say how the pass before training is going ("Decoding images: 5,400 of 20,000 · ..."),
        or None once it is over; kept beside the run's files, not in the database, as it
        changes every second and matters only while the run is active."""
        path = self.artifact_dir(run_id) / PASS_FILE
        if text is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)

    def pass_progress(self, run_id: str) -> str | None:
        """The text :meth:`set_pass_progress` left, while the run is active."""
        try:
            text = (self.artifact_dir(run_id) / PASS_FILE).read_text(errors="replace")
        except OSError:
            return None
        return text if self.get(run_id).is_active else None

    def request_stop(self, run_id: str) -> RunRecord:
        """Ask a run to stop: a queued run stops at once, a running one at its next batch."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, stop_requested = 1"
                " WHERE id = ? AND status = ?",
                (RunStatus.STOPPED, time.time(), run_id, RunStatus.QUEUED),
            )
            conn.execute(
                "UPDATE runs SET stop_requested = 1 WHERE id = ? AND status = ?",
                (run_id, RunStatus.RUNNING),
            )
        return self.get(run_id)

    def stop_requested(self, run_id: str) -> bool:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT stop_requested FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        return bool(row and row.stop_requested)

    def requeue(self, run_id: str) -> RunRecord:
        """Queue a failed or stopped run again (it resumes from its checkpoint, if any)."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, error = NULL, finished_at = NULL,"
                " stop_requested = 0, worker_pid = NULL, worker_started = NULL"
                " WHERE id = ? AND status IN (?, ?)",
                (RunStatus.QUEUED, run_id, RunStatus.FAILED, RunStatus.STOPPED),
            )
        run = self.get(run_id)
        if cursor.rowcount == 0:
            raise RunStateError(
                f"Run {run_id} is {run.status}; only failed or stopped runs can be resumed."
            )
        return run

    def claim(self, run_id: str, claimant: Claimant, handed_from: int | None = None) -> bool:
        """Atomically make ``claimant`` the one process that trains the run.

        One ``UPDATE ... WHERE`` in a write transaction, so of several processes claiming at
        once exactly one wins. A queued run can be claimed; a running one only by the process
        already recorded as its worker, or when the process recorded (``handed_from``, a
        dispatcher) claimed it on the claimant's behalf and started it.

        Returns:
            Whether the run is now the claimant's; False when another process trains it or
            it ended (cancelled, failed).
        """
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, started_at = COALESCE(started_at, ?), worker_pid = ?,"
                " worker_started = ? WHERE id = ? AND (status = ? OR (status = ? AND (worker_pid = ?"
                " OR (worker_pid = ? AND ABS(worker_started - ?) < 1))))",
                (RunStatus.RUNNING, time.time(), claimant.pid, claimant.started, run_id,
                 RunStatus.QUEUED, RunStatus.RUNNING, handed_from, claimant.pid, claimant.started),
            )
        return cursor.rowcount == 1

    def claim_queued(self, limit: int, claimant: Claimant | None = None) -> list[RunRecord]:
        """Atomically move up to ``limit`` - running queued runs (oldest first) to running.

        The runs are recorded as the claimant's (this process unless given) until it hands
        each to the worker it starts (:meth:`claim` with ``handed_from``), so no other
        process can claim them in between, and ``reap`` sees a live owner meanwhile.
        """
        claimant = claimant or Claimant.current()
        with self.transaction() as conn:
            running = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE status = ?", (RunStatus.RUNNING,)
            ).fetchone()[0]
            free = max(0, limit - running)
            rows = conn.execute(
                "SELECT id FROM runs WHERE status = ? ORDER BY created_at LIMIT ?",
                (RunStatus.QUEUED, free),
            ).fetchall()
            ids, now = [], time.time()
            for row in rows:
                cursor = conn.execute(
                    "UPDATE runs SET status = ?, started_at = ?, worker_pid = ?,"
                    " worker_started = ? WHERE id = ? AND status = ?",
                    (RunStatus.RUNNING, now, claimant.pid, claimant.started, row.id, RunStatus.QUEUED),
                )
                ids += [row.id] * cursor.rowcount
        return [self.get(i) for i in ids]

    def queue_position(self, run_id: str) -> int | None:
        """1-based place in the queue, or None when the run is not queued."""
        queued = [r.id for r in reversed(self.list_runs(statuses={RunStatus.QUEUED}))]
        return queued.index(run_id) + 1 if run_id in queued else None

    def delete(self, run_id: str, user: str | None = None, is_admin: bool = True) -> None:
        """Delete a run and its artifacts; only its owner or an admin may."""
        run = self.get(run_id)
        if not is_admin and run.owner != user:
            raise PermissionDeniedError(
                "Only the run's owner or an admin can delete it.", f"Run {run_id} is {run.owner}'s."
            )
        if run.is_active:
            raise RunStateError(
                "This run is still queued or running.", "Stop it first, then delete it."
            )
        with self._connect() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.artifact_dir(run_id), ignore_errors=True)
        artifact_mirror.forget(run_id)

    # ---- epochs -----------------------------------------------------------------------

    def add_epoch(self, run_id: str, record: EpochRecord) -> None:
        """Store an epoch; one of the same number (a retried epoch) is replaced."""
        with self._connect() as conn:
            conn.execute(_UPSERT_EPOCH, (run_id, *(getattr(record, f) for f in EPOCH_FIELDS)))

    def epochs(self, run_id: str) -> list[EpochRecord]:
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(EPOCH_FIELDS)} FROM epochs WHERE run_id = ? ORDER BY epoch",
                (run_id,),
            ).fetchall()
        return [_epoch(dict(r._mapping)) for r in rows]

    def clear_epochs(self, run_id: str, after: int = 0) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM epochs WHERE run_id = ? AND epoch > ?", (run_id, after))

    # ---- artifacts --------------------------------------------------------------------

    def artifacts(self, run_id: str) -> RunArtifacts:
        """The named files of a run's folder (which may not exist yet)."""
        files = RunArtifacts(self._folder(run_id))
        if artifact_mirror.mirror_url() and not self.read_only and not (files.folder / RECORD_FILE).exists():
            with suppress(TLError):  # unreadable storage: the run shows what is here
                artifact_mirror.pull_finished(files.folder)
        return files

    def artifact_dir(self, run_id: str) -> Path:
        return self.artifacts(run_id).folder

    def _folder(self, run_id: str) -> Path:
        check_run_id(run_id)  # a typed id must not reach outside runs/ ("../..", "/etc")
        return self.root / "runs" / run_id

    def write_json(self, run_id: str, name: str, payload: Any) -> Path:
        """Write an artifact atomically: a crash or a full disk never leaves half a file.

        Raises:
            StorageError: The store is read-only, or the folder cannot be written.
        """
        return self._write_json_into(self.artifact_dir(run_id), name, payload)

    def _write_json_into(self, folder: Path, name: str, payload: Any) -> Path:
        if self.read_only:
            raise read_only_error(self.root)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return atomic_write(folder / name, json.dumps(payload, indent=1))
        except OSError as exc:  # a full disk stays an OSError, for the runner to report
            raise unwritable_error(self.root, exc) or exc from exc

    def read_json(self, run_id: str, name: str) -> Any:
        """A JSON artifact of the run.

        Raises:
            ArtifactError: The file is damaged, or missing although the run finished.
            RunStateError: The file is missing because the run has not finished.
        """
        path = self.artifact_dir(run_id) / name
        if not path.exists():
            run = self.get(run_id)
            missing = self.missing_results(run)
            if missing:
                raise missing_files_error(run, missing)
            raise RunStateError(f"Run {run_id} has no {name} yet.", "Wait until it has finished.")
        try:
            return json.loads(path.read_text())
        except (ValueError, OSError) as exc:  # UnicodeDecodeError and JSONDecodeError included
            raise ArtifactError(
                f"The file {name} of run {run_id} is damaged ({type(exc).__name__}).",
                "Resume the run to write its results again, or delete it.",
            ) from exc

    def model_path(self, run_id: str) -> Path:
        return self.artifacts(run_id).model

    def missing_results(self, run: RunRecord, only: Collection[str] = ()) -> list[str]:
        """Names of the result files a finished run must have and has not (none for other runs).

        A stopped run counts as finished once its results were saved (it then has a summary).

        Args:
            only: Check just these file names (serving needs the model and class names).
        """
        if run.status != RunStatus.FINISHED and run.summary is None:
            return []
        artifacts = self.artifacts(run.id)
        return [path.name for path in (artifacts.model, artifacts.report, artifacts.class_names)
                if (not only or path.name in only) and not path.exists()]

    # ---- the run's own record, for rebuilding the run list -----------------------------

    def write_record(self, run_id: str, status: RunStatus, summary: RunSummary) -> Path:
        """Keep the run's row and epochs in its folder, so ``doctor --rebuild`` can list it again.

        Written with the results, just before the run ends with ``status``.
        """
        run = dataclasses.replace(
            self.get(run_id), status=RunStatus(status), summary=summary, finished_at=time.time(),
            worker_pid=None, worker_started=None, stop_requested=False,
        )
        payload = {"run": _record_to_dict(run), "epochs": [e.to_dict() for e in self.epochs(run_id)]}
        return self.write_json(run_id, RECORD_FILE, payload)

    def read_record(self, run_id: str) -> tuple[RunRecord, list[EpochRecord]] | None:
        """The run and epochs :meth:`write_record` kept in the folder, or None without that file.

        Raises:
            ArtifactError: The file is damaged or was not written by :meth:`write_record`.
        """
        if not (self.artifact_dir(run_id) / RECORD_FILE).exists():
            return None
        payload = self.read_json(run_id, RECORD_FILE)
        try:
            run = _record_from_dict(payload["run"])
            epochs = [_epoch(e) for e in payload["epochs"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(
                f"The file {RECORD_FILE} of run {run_id} is damaged ({type(exc).__name__}: {exc}).",
                "The run cannot be listed again from its folder; delete the folder if it is not needed.",
            ) from exc
        if run.id != run_id:
            raise ArtifactError(f"The file {RECORD_FILE} in run folder {run_id} describes run {run.id}.",
                                "Move it back to its own folder, or delete it.")
        problem = _record_problem(run, epochs)
        if problem:
            raise ArtifactError(
                f"The file {RECORD_FILE} of run {run_id} is not a record the studio wrote: {problem}.",
                "It was edited by hand (or by another version of the studio), so the run is not listed "
                "again; delete the folder if it is not needed.",
            )
        return run, epochs

    def restore(self, run: RunRecord, epochs: Collection[EpochRecord]) -> bool:
        """Add a run read back from its folder, with its epochs; False when it is listed already."""
        check_run_id(run.id)
        row = _record_to_dict(run)
        row.update(spec=json.dumps(row["spec"]), stop_requested=int(run.stop_requested))
        names = list(row)
        with self.transaction() as conn:
            cursor = conn.execute(
                f"INSERT INTO runs ({', '.join(names)}) VALUES {_placeholders(names)}"
                " ON CONFLICT DO NOTHING",
                [_column_value(row[name]) for name in names],
            )
            if cursor.rowcount == 0:
                return False
            for record in epochs:
                conn.execute(_UPSERT_EPOCH, (run.id, *(getattr(record, f) for f in EPOCH_FIELDS)))
        return True

    def integrity_problems(self) -> list[str]:
        """What is wrong with the database (empty when sound): SQLite's ``integrity_check`` on
        the file; on a server, migrations it still lacks."""
        if self.backend != "sqlite":
            with self._reported():
                return _schema_problems(self._database.engine())
        with self._connect() as conn:
            rows = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
        return [] if rows == ["ok"] else rows


def missing_files_error(run: RunRecord, missing: Collection[str]) -> ArtifactError:
    """A finished run whose folder lost its results: say so, rather than "not finished yet"."""
    return ArtifactError(
        f"Run {run.id} is {run.status}, but its files are missing ({', '.join(missing)} not "
        "found in its folder).",
        f"Its folder under TL_HOME/runs was moved or deleted. Run {DOCTOR} to check the store, "
        f"then delete the run (`python -m tlcore delete {run.id}`) or train it again.",
    )


def check_run_id(run_id: str) -> None:
    """Refuse a run id that could not have been made by the store (it may come from a URL).

    Raises:
        RunNotFoundError: The id has characters other than letters, digits, ``_`` and ``-``.
    """
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise RunNotFoundError(
            f"No run with id {run_id!r}.",
            "Run ids are letters and digits, e.g. 3f2a9c01be47; list runs with "
            "`python -m tlcore runs`.",
        )


_MIGRATED: set[Any] = set()
"""The servers this process brought up to the newest schema: checking again costs a round trip."""

_UPSERT_EPOCH = (
    f"INSERT INTO epochs (run_id, {', '.join(EPOCH_FIELDS)}) VALUES (?, {', '.join('?' * len(EPOCH_FIELDS))})"
    f" ON CONFLICT (run_id, epoch) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in EPOCH_FIELDS if name != "epoch")
)
"""An epoch, replacing one of the same number (SQLite's upsert syntax is PostgreSQL's)."""


def _schema_problems(engine: sa.Engine) -> list[str]:
    """Why the server's schema is not the one this version of the studio reads and writes."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return []
    return [f"the schema is at revision {current or 'none'}, this version of the studio needs {head}: "
            "open the store once with write access (any studio command) to migrate it"]


def _placeholders(values: Collection[Any]) -> str:
    """``(?, ?, ?)`` for an ``IN`` over ``values``, which are passed as parameters."""
    return f"({', '.join('?' * len(values))})"


def _column_value(value: Any) -> Any:
    """What SQLite stores for a field of :meth:`RunStore.update`."""
    if isinstance(value, RunSummary):
        value = value.to_dict()
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _record_to_dict(run: RunRecord) -> dict[str, Any]:
    """A run as JSON-ready values: the spec and summary as dicts, the rest as they are."""
    data = {f.name: getattr(run, f.name) for f in dataclasses.fields(RunRecord)}
    data.update(spec=run.spec.to_dict(), summary=run.summary.to_dict() if run.summary else None)
    return data


def _record_from_dict(data: dict[str, Any]) -> RunRecord:
    values = dict(data)
    values.update(
        spec=RunSpec.from_dict(values["spec"]),
        status=RunStatus(values["status"]),
        summary=RunSummary.from_dict(values["summary"]) if values.get("summary") else None,
    )
    return RunRecord(**values)


def _epoch(values: dict[str, Any]) -> EpochRecord:
    """An epoch read back; SQLite stores NaN (a diverged loss, a metric not measured) as NULL."""
    return EpochRecord(**{name: math.nan if value is None and name in METRICS else value
                          for name, value in values.items()})


def _record_problem(run: RunRecord, epochs: Collection[EpochRecord]) -> str:
    """Why a record read back from a run's folder is not one :meth:`RunStore.write_record` wrote.

    Restored as it is, a string where the notes' list belongs broke listing the runs (every page,
    for everyone), and another spec's key made that spec's launches reuse this run's model.
    """
    for record in (run, run.summary, *epochs):
        for name, hint in ({} if record is None else typing.get_type_hints(type(record))).items():
            if not matches_type(getattr(record, name), hint):
                return f"its {name} is {getattr(record, name)!r}"
    try:
        run.spec.check_types()
    except ConfigError as exc:
        return exc.message
    if run.status not in TERMINAL:
        return f"it says the run is {run.status}, but only ended runs keep a record"
    if run.key != run.spec.key():
        return "its key is not the key of its settings"
    return ""


def _to_record(row: sa.Row) -> RunRecord:
    data = dict(row._mapping)
    data["spec"] = RunSpec.from_dict(json.loads(data["spec"]))
    data["status"] = RunStatus(data["status"])
    data["notes"] = json.loads(data["notes"])
    data["summary"] = RunSummary.from_dict(json.loads(data["summary"])) if data["summary"] else None
    data["stop_requested"] = bool(data["stop_requested"])
    return RunRecord(**data)
