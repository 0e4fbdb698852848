"""Fixed-size rows on disk, keyed by a content identity: the storage under pixels and features.

A dataset of 100,000 photos is 15 GB of pixels at 224 px, so nothing may hold all of them in
memory. Rows are appended to chunk files (raw bytes, one row after the other) and found through
a small SQLite index, ``identity -> (chunk, row)``. Readers get a :class:`RowArray`, which reads
the rows it is asked for with ``os.pread``: they pass through the page cache but are never
mapped into the process, so its resident memory stays flat however many rows go by (a
``np.memmap`` would count every touched page as resident until the kernel reclaims it).

Identities rather than positions are the keys, so an image added to a dataset costs one new
row and an image that did not change is never decoded or forwarded again. Chunks are written
whole and atomically before their rows are indexed; two processes storing the same identity
both succeed and one row wins. Unreadable inputs are remembered too (:meth:`RowStore.mark_bad`),
so a broken file is reported, not re-read, on every run.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlcore.files import atomic_write

CHUNK_BYTES = 32 * 1024 * 1024
"""A chunk file holds about this much (at least one row): few files, bounded write buffers."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, name TEXT NOT NULL, used REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rows (identity TEXT PRIMARY KEY, chunk INTEGER NOT NULL, row INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bad (identity TEXT PRIMARY KEY, reason TEXT NOT NULL);
"""
_LAYOUT = "layout.json"
_LOCK = ".lock"
_QUERY_BATCH = 900
"""Identities per ``IN (...)`` query, under SQLite's limit on bound parameters."""


@dataclass(frozen=True)
class RowLayout:
    """The shape and type of every row of one store."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


class RowsEvicted(KeyError):
    """Rows asked for are not in the store (``args[0]`` lists their identities)."""


class RowStore:
    """Rows of one layout under ``root``: chunk files plus ``index.sqlite``.

    A folder found holding another layout (or a damaged index) is emptied and started afresh:
    everything in it can be recomputed, and a stale row must never be read as a new one.
    """

    def __init__(self, root: Path, layout: RowLayout, *, cache_writes: bool = True) -> None:
        """``cache_writes=False`` writes chunks through to the disk and drops them from the
        page cache (see :func:`_write_through`): for stores written once and read rarely."""
        self.root = Path(root)
        self.layout = layout
        self.cache_writes = cache_writes
        self.root.mkdir(parents=True, exist_ok=True)
        with self._exclusive():  # two processes opening a new store: one sets it up
            if not self._layout_matches() or not self._index_opens():
                self._reset()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the store's lock file (which a reset never deletes) for the block."""
        with (self.root / _LOCK).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ---- reading -----------------------------------------------------------------------

    def locate(self, identities: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``identity -> (chunk, row)`` for the identities that are stored."""
        found: dict[str, tuple[int, int]] = {}
        with self._connect() as conn:
            for identity, chunk, row in _lookup(conn, "rows", "chunk, row", identities):
                found[identity] = (chunk, row)
        return found

    def missing(self, identities: Sequence[str]) -> list[str]:
        """The identities with neither a row nor a remembered failure, in their order, once each."""
        known = set(self.locate(identities)) | set(self.bad(identities))
        return [identity for identity in dict.fromkeys(identities) if identity not in known]

    def bad(self, identities: Sequence[str]) -> dict[str, str]:
        """``identity -> reason`` for identities remembered as unreadable."""
        with self._connect() as conn:
            return dict(_lookup(conn, "bad", "reason", identities))

    def array(self, identities: Sequence[str]) -> RowArray:
        """The rows of ``identities`` (all stored) as one lazily read array, in that order.

        Raises:
            RowsEvicted: An identity has no row (never stored, or evicted by another process
                since it was checked: compute the missing rows and ask again).
        """
        located = self.locate(identities)
        absent = [identity for identity in identities if identity not in located]
        if absent:
            raise RowsEvicted(absent)
        places = np.array([located[identity] for identity in identities], dtype=np.int64).reshape(-1, 2)
        chunk_ids = sorted(set(places[:, 0].tolist()))
        names: dict[int, str] = {}
        with self._connect() as conn:
            for batch in _batches(chunk_ids):
                names.update(
                    conn.execute(f"SELECT id, name FROM chunks WHERE id IN ({_marks(batch)})", batch)
                )
                conn.execute(
                    f"UPDATE chunks SET used = ? WHERE id IN ({_marks(batch)})", [time.time(), *batch]
                )
        files = _ChunkFiles({chunk: self.root / names[chunk] for chunk in chunk_ids})
        return RowArray(files, places, self.layout)

    # ---- writing -----------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[RowWriter]:
        """A writer whose buffered rows are stored when the block ends, even on an error."""
        writer = RowWriter(self)
        try:
            yield writer
        finally:
            writer.close()

    def mark_bad(self, failures: Iterable[tuple[str, str]]) -> None:
        """Remember inputs that could not be read, with the reason shown to the user."""
        failures = list(failures)
        if failures:
            with self._connect() as conn:
                conn.executemany("INSERT OR REPLACE INTO bad (identity, reason) VALUES (?, ?)", failures)

    def _store_chunk(self, identities: list[str], rows: np.ndarray) -> None:
        name = f"chunk-{uuid.uuid4().hex}.rows"
        contiguous = np.ascontiguousarray(rows, dtype=self.layout.dtype)
        if self.cache_writes:
            atomic_write(self.root / name, lambda path: contiguous.tofile(path))
        else:
            atomic_write(self.root / name, lambda path: _write_through(path, contiguous))
        with self._connect() as conn:
            chunk = conn.execute(
                "INSERT INTO chunks (name, used) VALUES (?, ?)", (name, time.time())
            ).lastrowid
            conn.executemany(
                "INSERT OR IGNORE INTO rows (identity, chunk, row) VALUES (?, ?, ?)",
                [(identity, chunk, row) for row, identity in enumerate(identities)],
            )

    # ---- upkeep ------------------------------------------------------------------------

    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.root.glob("chunk-*.rows"))

    def evict(self, max_bytes: int, keep_since: float) -> int:
        """Delete least recently used chunks until the store fits ``max_bytes``.

        Chunks used at or after ``keep_since`` (by the run now in progress) are kept. Readers
        that opened a chunk keep reading it after it is deleted; its rows are recomputed by
        whoever needs them next. Returns the number of chunks deleted.
        """
        total = self.size_bytes()
        deleted = 0
        with self._connect() as conn:
            for chunk, name in conn.execute(
                "SELECT id, name FROM chunks WHERE used < ? ORDER BY used", (keep_since,)
            ).fetchall():
                if total <= max_bytes:
                    break
                path = self.root / name
                with suppress(FileNotFoundError):
                    total -= path.stat().st_size
                    path.unlink()
                conn.execute("DELETE FROM rows WHERE chunk = ?", (chunk,))
                conn.execute("DELETE FROM chunks WHERE id = ?", (chunk,))
                deleted += 1
        return deleted

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.root / "index.sqlite", timeout=60, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _layout_matches(self) -> bool:
        try:
            saved = json.loads((self.root / _LAYOUT).read_text())
        except (OSError, ValueError):
            return False
        return saved == {"shape": list(self.layout.shape), "dtype": self.layout.dtype}

    def _index_opens(self) -> bool:
        try:
            self._create_tables()
            with self._connect() as conn:
                conn.execute("SELECT COUNT(*) FROM rows").fetchone()
        except sqlite3.Error:
            return False
        return True

    def _create_tables(self) -> None:
        conn = sqlite3.connect(self.root / "index.sqlite", timeout=60)
        try:
            conn.executescript(_SCHEMA)
        finally:
            conn.close()

    def _reset(self) -> None:
        for path in self.root.iterdir():
            if path.is_file() and path.name != _LOCK:
                path.unlink(missing_ok=True)
        self._create_tables()
        layout = {"shape": list(self.layout.shape), "dtype": self.layout.dtype}
        atomic_write(self.root / _LAYOUT, json.dumps(layout))


def _write_through(path: Path, rows: np.ndarray) -> None:
    """Write ``rows`` to ``path``, wait for the disk, and let the kernel drop those pages.

    On the VMs this was measured on, pages the kernel had not used for a while cost a
    hypervisor fault each on first touch: buffered writes of a 5,000-photo pixel store (750 MB)
    cost 3-4 s of system time, a fifth of the run's CPU, taken from the forward pass beside
    them. Pages handed back right after each chunk are the ones the next chunk reuses, which
    cut that to well under a second, and a store of 100,000 photos (15 GB) no longer pushes
    everything else out of the page cache. Where the kernel offers no such advice, this is
    a plain write.
    """
    with path.open("wb", buffering=0) as file:
        view = memoryview(rows.reshape(-1).view(np.uint8))
        while view:
            view = view[file.write(view):]
        if hasattr(os, "posix_fadvise"):
            os.fdatasync(file.fileno())
            os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


class RowWriter:
    """Buffers rows and stores them a chunk at a time, on a thread of its own.

    Writing a 32 MB chunk and indexing it takes about 0.1 s, which the decode and feature
    passes would otherwise wait for after every 200 images (3 s of a 5,000-photo run). The
    writing thread takes a full buffer while the next one fills; at most one chunk is in
    flight, so memory stays at two chunks (the same two, taking turns: a fresh 32 MB buffer
    per chunk cost a page fault per 4 KB), and its error surfaces at the next hand-over.
    """

    def __init__(self, store: RowStore) -> None:
        self.store = store
        self.capacity = max(1, CHUNK_BYTES // max(1, store.layout.row_bytes))
        self._rows = self._new_buffer()
        self._spare: np.ndarray | None = None
        self._identities: list[str] = []
        self._pending: Future[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tlcore-rows")

    def add(self, identity: str, row: np.ndarray) -> None:
        self._rows[len(self._identities)] = row
        self._identities.append(identity)
        if len(self._identities) == self.capacity:
            self._hand_over()

    def flush(self) -> None:
        """Store every row added so far; they can be read when this returns."""
        self._hand_over()
        self._wait()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._thread.shutdown(wait=True)

    def _hand_over(self) -> None:
        if not self._identities:
            return
        self._wait()  # the buffer in flight, if any, is free again: it becomes the spare
        count, identities, rows = len(self._identities), self._identities, self._rows
        store_chunk = self.store._store_chunk  # noqa: SLF001 - its writer
        self._pending = self._thread.submit(store_chunk, identities, rows[:count])
        self._rows = self._spare if self._spare is not None else self._new_buffer()
        self._spare, self._identities = rows, []

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _new_buffer(self) -> np.ndarray:
        return np.empty((self.capacity, *self.store.layout.shape), dtype=self.store.layout.dtype)


class _ChunkFiles:
    """Open file descriptors of a set of chunks, shared by the arrays taken from one array."""

    def __init__(self, paths: dict[int, Path]) -> None:
        self.paths = paths
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def fd(self, chunk: int) -> int:
        with self._lock:
            if chunk not in self._fds:
                self._fds[chunk] = os.open(self.paths[chunk], os.O_RDONLY)
            return self._fds[chunk]

    def open_all(self) -> None:
        """Open every chunk now, so a later eviction by another process cannot take one away."""
        for chunk in self.paths:
            self.fd(chunk)

    def __del__(self) -> None:
        for fd in self._fds.values():
            with suppress(OSError):
                os.close(fd)


class RowArray:
    """Rows read from disk on demand; indexes like a read-only NumPy array of its rows.

    ``array[i]`` is one row, ``array[a:b]`` and ``array[indices]`` read those rows into a new
    array. :meth:`take` makes a sub-array without reading anything.
    """

    def __init__(self, files: _ChunkFiles, places: np.ndarray, layout: RowLayout) -> None:
        self._files = files
        self._places = places
        self.layout = layout
        files.open_all()

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._places), *self.layout.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.layout.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """What the rows take on disk (and would take if read all at once)."""
        return len(self._places) * self.layout.row_bytes

    def __len__(self) -> int:
        return len(self._places)

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.read(np.array([key]))[0]
        if isinstance(key, slice):
            return self.read(np.arange(len(self))[key])
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (len(self),):
                raise IndexError(f"A mask of shape {key.shape} does not fit {len(self)} rows.")
            key = np.flatnonzero(key)
        return self.read(key.astype(np.int64))

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        rows = self.read(np.arange(len(self)))
        return rows if dtype is None else rows.astype(dtype)

    def take(self, indices: Sequence[int] | np.ndarray) -> RowArray:
        return RowArray(self._files, self._places[np.asarray(indices, dtype=np.int64)], self.layout)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The rows at ``indices``, read with one ``pread`` per run of adjacent rows."""
        out = np.empty((len(indices), *self.layout.shape), dtype=self.layout.dtype)
        if not len(indices):
            return out
        view = out.reshape(len(indices), -1).view(np.uint8)
        size = self.layout.row_bytes
        places = self._places[indices]
        order = np.lexsort((places[:, 1], places[:, 0]))
        start = 0
        while start < len(order):
            chunk, first = places[order[start]]
            stop = start + 1
            while (
                stop < len(order)
                and places[order[stop], 0] == chunk
                and places[order[stop], 1] == first + (stop - start)
            ):
                stop += 1
            data = os.pread(self._files.fd(int(chunk)), size * (stop - start), int(first) * size)
            if len(data) != size * (stop - start):
                raise OSError(
                    f"A stored chunk is shorter than its index says ({self._files.paths[int(chunk)]})."
                )
            rows = np.frombuffer(data, dtype=np.uint8).reshape(stop - start, size)
            view[order[start:stop]] = rows
            start = stop
        return out


def _lookup(conn: sqlite3.Connection, table: str, columns: str, identities: Sequence[str]) -> list[tuple]:
    """``(identity, *columns)`` of the identities found in ``table``.

    Many identities are matched in Python against one scan of the table: 100,000 of them in a
    few hundred ``IN (...)`` queries, or through a temporary table, cost several times as much.
    """
    unique = list(dict.fromkeys(identities))
    if not unique:
        return []
    if len(unique) <= _QUERY_BATCH:
        query = f"SELECT identity, {columns} FROM {table} WHERE identity IN ({_marks(unique)})"
        return conn.execute(query, unique).fetchall()
    wanted = set(unique)
    return [row for row in conn.execute(f"SELECT identity, {columns} FROM {table}") if row[0] in wanted]


def _batches(items: list) -> Iterator[list]:
    for start in range(0, len(items), _QUERY_BATCH):
        yield items[start : start + _QUERY_BATCH]


def _marks(items: Sequence[object]) -> str:
    return ", ".join("?" * len(items))
