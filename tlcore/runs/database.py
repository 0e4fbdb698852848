"""The run store's SQLite file: opened read-only when writing is impossible, damage named plainly.

A home on a read-only disk, a ``runs.sqlite`` that was truncated, overwritten or replaced by a
folder, and a ``TL_HOME`` that is a file all used to end in a raw ``sqlite3`` traceback. Here
each becomes a :class:`~tlcore.errors.StorageError` that says what is wrong and what to do, and
a home that can only be read still lists and shows its runs.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tlcore.errors import StorageError
from tlcore.paths import not_a_folder_error

DB_NAME = "runs.sqlite"
RUNS_FOLDER = "runs"
"""Under the store's root: one artifact folder per run, named by its id."""

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
