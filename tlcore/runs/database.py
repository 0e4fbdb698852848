"""How the run store reaches its database: the SQLite file under ``TL_HOME``, or a server.

A home on a read-only disk, a ``runs.sqlite`` that was truncated, overwritten or replaced by a
folder, and a ``TL_HOME`` that is a file all used to end in a raw ``sqlite3`` traceback. Here
each becomes a :class:`~tlcore.errors.StorageError` that says what is wrong and what to do, and
a home that can only be read still lists and shows its runs.

With ``TL_DATABASE_URL`` set, runs and epochs live on PostgreSQL instead (:class:`Server`), for
several app servers and worker machines sharing one store. Both are reached through SQLAlchemy
and queried with the same SQL (:class:`Statements`). The URL carries the password, so it is
only ever shown through :func:`redact`.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from tlcore.errors import ConfigError, StorageError
from tlcore.paths import not_a_folder_error

DB_NAME = "runs.sqlite"
RUNS_FOLDER = "runs"
"""Under the store's root: one artifact folder per run, named by its id."""

DATABASE_URL_ENV = "TL_DATABASE_URL"
"""A ``postgresql://user:password@host:port/database`` URL: keep runs and epochs on that server."""

DOCTOR = "`python -m tlcore doctor`"
REBUILD = "`python -m tlcore doctor --rebuild`"

_DAMAGED = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_IOERR"})
_UNWRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


@dataclass(frozen=True)
class Database:
    """Where and how to connect: a plain path to write, a ``mode=ro`` URI to only read."""

    path: Path
    read_only: bool
    immutable: bool = False
    """Read a WAL database in a folder where SQLite cannot create its ``-shm`` file."""

    @property
    def kind(self) -> str:
        return "sqlite"

    def describe(self) -> str:
        return str(self.path)

    def engine(self) -> sa.Engine:
        """SQLAlchemy over :meth:`connect`: a new connection for each use, as SQLite wants."""
        return _sqlite_engine(self)

    def connect(self) -> sqlite3.Connection:
        if not self.read_only:
            return sqlite3.connect(self.path, timeout=30, isolation_level=None)
        uri = f"{self.path.absolute().as_uri()}?mode=ro" + ("&immutable=1" if self.immutable else "")
        return sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)

    def error(self, exc: sqlite3.Error) -> StorageError | None:
        """The plain reason for an SQLite failure that comes from the file, else None.

        A full disk (``SQLITE_FULL``) is left alone: the runner reports it in its own words.
        """
        name = getattr(exc, "sqlite_errorname", None)
        if name == "SQLITE_READONLY":
            return read_only_error(self.path.parent)
        if name in _DAMAGED or str(exc).startswith("no such table"):  # the latter: not our file
            return damaged_error(self.path, str(exc))
        if name == "SQLITE_CANTOPEN":
            if self.path.is_dir():
                return damaged_error(self.path, "it is a folder, not a database file")
            return StorageError(
                f"The run store {self.path} could not be opened ({exc}).",
                f"Check that TL_HOME ({self.path.parent}) is a folder this user can read; "
                f"{DOCTOR} says more.",
            )
        return None


@functools.cache
def _sqlite_engine(database: Database) -> sa.Engine:
    def connect() -> sqlite3.Connection:
        conn = database.connect()
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    return sa.create_engine("sqlite://", creator=connect, poolclass=NullPool)


def open_database(root: Path, read_only: bool | None = None) -> Database:
    """How to reach ``root``'s store: writable when possible, else read-only; nothing is created.

    Args:
        read_only: Force read-only (the doctor only looks); None decides from the permissions.

    Raises:
        StorageError: ``root`` is a file, the database is a folder, or the store can only be
            read and does not exist yet.
    """
    check_folder(root, "TL_HOME")
    path = root / DB_NAME
    if path.is_dir():
        raise damaged_error(path, "it is a folder, not a database file")
    if read_only is None:
        read_only = root.exists() and not writable(root, path)
    if read_only and not path.exists():
        raise StorageError(
            f"There is no run store in {root} yet, and the folder is read-only, so none can be made.",
            "Set TL_HOME to a folder this user can write to (or make this one writable).",
        )
    database = Database(path, read_only)
    if read_only and not _opens(database):
        database = Database(path, read_only, immutable=True)
    return database


def writable(root: Path, path: Path) -> bool:
    """Whether SQLite could write ``path``: it also needs the folder, for its ``-wal`` file."""
    return os.access(root, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def _opens(database: Database) -> bool:
    """Whether a ``mode=ro`` connection can read (it cannot without a ``-shm`` it may create)."""
    try:
        conn = database.connect()
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        return getattr(exc, "sqlite_errorname", None) != "SQLITE_CANTOPEN"
    except sqlite3.DatabaseError:
        return True  # damaged: reported by the first real query
    return True


def check_folder(path: Path, what: str) -> None:
    """Refuse a folder the studio needs that is a file (``TL_HOME=~/notes.txt``)."""
    if path.exists() and not path.is_dir():
        raise not_a_folder_error(path, what)


def read_only_error(root: Path) -> StorageError:
    return StorageError(
        f"The run store in {root} is read-only: nothing can be saved there.",
        "Listing and showing runs still works; to train, resume or delete runs, make TL_HOME "
        "writable or set TL_HOME to a folder this user can write to.",
    )


def damaged_error(path: Path, detail: str) -> StorageError:
    return StorageError(
        f"The run store {path} is damaged ({detail}).",
        f"Run {DOCTOR} to see what is affected, then {REBUILD} to rebuild the run list from "
        "the run folders (the damaged file is kept beside it).",
    )


def unwritable_error(root: Path, exc: OSError) -> StorageError | None:
    """A permission or read-only-disk failure under ``root`` as a StorageError, else None."""
    if exc.errno not in _UNWRITABLE_ERRNOS:
        return None
    return StorageError(
        f"The run files under {root} cannot be written ({exc.strerror or exc}).",
        "Make TL_HOME writable for this user, or set TL_HOME to a folder this user can write to.",
    )


def run_folders(root: Path) -> list[str]:
    """Ids of the run folders on disk (whatever the store lists), sorted."""
    folder = root / RUNS_FOLDER
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def refuse_lost_runs(root: Path) -> None:
    """Refuse an empty or missing store while run folders are on disk: it would list none of them.

    Raises:
        StorageError: ``runs.sqlite`` is missing or 0 bytes and ``runs/`` holds run folders.
    """
    path = root / DB_NAME
    if path.exists() and path.stat().st_size > 0:
        return
    lost = run_folders(root)
    if lost:
        state = "is empty (0 bytes)" if path.exists() else "is missing"
        shown = ", ".join(lost[:3]) + (", ..." if len(lost) > 3 else "")
        raise StorageError(
            f"The run store {path} {state}, but {len(lost)} run folder(s) are on disk under "
            f"{root / RUNS_FOLDER} ({shown}): the store lists none of them.",
            f"Run {REBUILD} to list them again (any old file is kept beside the new one).",
        )


# ---- a PostgreSQL server (TL_DATABASE_URL) -----------------------------------------------

_SERVER_HINT = (f"Check that the server is running and that {DATABASE_URL_ENV} names it rightly "
                "(user, password, host, port, database); unset it to keep the runs in TL_HOME.")
_SQLSTATE_READ_ONLY = "25006"
_SQLSTATE_NO_TABLE = "42P01"
_UNREACHABLE = ("08", "28", "3D", "57P")
"""SQLSTATE classes of a server that cannot be used: connection, authentication, no such
database, shutting down."""


@dataclass(frozen=True)
class Server:
    """A PostgreSQL database holding runs and epochs; artifact folders stay under ``TL_HOME``."""

    url: URL
    read_only: bool

    @property
    def kind(self) -> str:
        return "postgresql"

    def describe(self) -> str:
        return redact(self.url)

    def engine(self) -> sa.Engine:
        """One pooled engine per URL and mode in this process: connecting costs a round trip."""
        return _server_engine(self.url, self.read_only)

    def error(self, exc: BaseException) -> StorageError | None:
        """The plain reason for a server failure, with the password left out; else None (a
        statement the server refused, which is the caller's to report)."""
        import psycopg  # only a store on a server needs the driver

        state = getattr(exc, "sqlstate", None) or ""
        if state == _SQLSTATE_READ_ONLY:
            return StorageError(f"The run store {self.describe()} was opened read-only: nothing "
                                "can be saved through it.", "Open it without read_only to change runs.")
        if state == _SQLSTATE_NO_TABLE:
            return StorageError(
                f"The run store {self.describe()} has no tables of the studio ({self.scrub(exc)}).",
                "Open it once with write access (any studio command, e.g. `python -m tlcore runs`) "
                "to run the migrations that create them.")
        if isinstance(exc, psycopg.OperationalError) and (not state or state.startswith(_UNREACHABLE)):
            return StorageError(f"The run store {self.describe()} could not be reached "
                                f"({self.scrub(exc)}).", _SERVER_HINT)
        return None

    def scrub(self, exc: BaseException) -> str:
        """The first line of the driver's message, without the password should it appear."""
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return text.replace(self.url.password, "***") if self.url.password else text


@functools.cache
def _server_engine(url: URL, read_only: bool) -> sa.Engine:
    args = {"connect_timeout": 10}
    if read_only:
        args["options"] = "-c default_transaction_read_only=on"
    return sa.create_engine(url, pool_pre_ping=True, connect_args=args)


def server_url() -> URL | None:
    """The server ``TL_DATABASE_URL`` names, for the psycopg 3 driver; None when it is unset.

    Raises:
        ConfigError: It is not a URL, or names another kind of database or driver.
    """
    raw = os.environ.get(DATABASE_URL_ENV, "").strip()
    if not raw:
        return None
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"{DATABASE_URL_ENV} is not a database URL.",
            "Write it as postgresql://user:password@host:5432/database, or unset it to keep the "
            "runs in TL_HOME/runs.sqlite.") from None
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername != "postgresql+psycopg":
        raise ConfigError(
            f"{DATABASE_URL_ENV} names a {url.drivername} database ({redact(url)}); the run store "
            "can move to PostgreSQL only, through psycopg 3.",
            "Write it as postgresql://user:password@host:5432/database, or unset it.")
    return url


def redact(url: URL | str) -> str:
    """The URL to show: its password, when it has one, as ``***``."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "(a URL that cannot be read)"
    return parsed.render_as_string(hide_password=True)


# ---- one SQL for both --------------------------------------------------------------------

_QMARK = re.compile(r"\?")


class Statements:
    """A connection that takes the store's SQL with ``?`` placeholders, on SQLite or PostgreSQL.

    The store's statements are written in the SQL both understand; the values are bound by
    SQLAlchemy in each driver's own style, enums as their plain strings.
    """

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    @property
    def dialect(self) -> str:
        return self.connection.dialect.name

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sa.CursorResult:
        counter = iter(range(len(params) + 1))
        named = _QMARK.sub(lambda _: f":p{next(counter)}", sql)
        values = {f"p{i}": v.value if isinstance(v, Enum) else v for i, v in enumerate(params)}
        return self.connection.execute(sa.text(named), values)


def open_server(root: Path, url: URL, read_only: bool | None = None) -> Server:
    """How to reach the server ``url`` names; ``root`` still holds the run folders.

    Args:
        read_only: Force read-only (the doctor only looks); None: read-only exactly when
            ``root`` cannot be written, as the run folders then cannot be either.

    Raises:
        StorageError: ``root`` is a file.
    """
    check_folder(root, "TL_HOME")
    if read_only is None:
        read_only = root.exists() and not os.access(root, os.W_OK)
    return Server(url, read_only)
