"""What a source knows before decoding anything: ids, labels and a content identity per image.

Listing is cheap (a directory walk and a few reads per file), so everything that does not need
pixels comes from here: counts per class and split, imbalance warnings, spec checks, the
dataset's fingerprint and what changed since the last run. Decoding happens once per identity,
in the worker (:mod:`tlcore.data.assemble`).

An image file's identity hashes its size, its modification time and its first and last 4 KiB.
Measured on 100,000 generated 256 px photos (1.7 GiB) on this 2-core server, page cache warm:
hashing whole files takes 6.9 s and would read every byte again on each listing (far longer
from a cold disk); stat plus 8 KiB takes about 2.5 s the first time, and the identity still
changes when a photo is re-encoded, cropped, retouched or replaced. Identities are then
remembered by path, inode, size and modification and change times (``identities.sqlite`` in
``TL_HOME``), so a listing of files seen before costs one ``stat`` each (about 0.6 s for the
100,000). The path is not part of the identity: a photo moved to another class keeps its pixels
(and its split), only its label changes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from tlcore.errors import BadImageError

IDENTITY_BYTES = 4096
"""Bytes hashed from each end of a file for its identity."""


DECODE_WORKERS = min(8, os.cpu_count() or 1)
"""Decoding threads: PIL releases the GIL while decoding, so threads use every core."""

DECODE_WINDOW = 64
"""Images decoded ahead of the consumer, at most."""

DECODER_NICENESS = 10
"""How much lower than the rest of the process decoding threads run (Linux nice steps).

Decoders only ever run ahead of their consumer, so they should take the CPU its work leaves
idle rather than share it: a frozen forward pass beside two decoding threads at the same
priority ran 25 % slower than alone, because the scheduler kept preempting TensorFlow's
threads for theirs (``bench/scale.py``). When the consumer waits for images, nothing in the
process competes and the decoders run at full speed all the same.
"""

T = TypeVar("T")

Decoded = tuple[int, "np.ndarray | BadImageError"]
Decoder = Callable[[Sequence[int], int], Iterator[Decoded]]
"""``decode(indices, image_size)`` yields ``(index, pixels or the error)`` for each index."""

FREE = -1
"""In :attr:`Catalogue.fixed_split`: the item's split is chosen by its hash."""


@dataclass(frozen=True)
class Catalogue:
    """One entry per candidate image, and how to decode them.

    Attributes:
        ids: Stable, printable name of each image (a relative path, ``train/123``).
        labels: Label index of each image.
        class_names: Label index -> class name.
        identities: Content identity of each image: equal identities decode to equal pixels.
        decode: Decodes entries (see :data:`Decoder`).
        fixed_split: Per image, an official split (0 train, 1 validation, 2 test) or
            :data:`FREE`; None when every image is free.
    """

    ids: list[str]
    labels: np.ndarray
    class_names: list[str]
    identities: list[str]
    decode: Decoder = field(repr=False, compare=False)
    fixed_split: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def fingerprint(self) -> str:
        """Hash of every image's id, identity, class and official split: the data a run saw."""
        digest = hashlib.blake2b(digest_size=12)
        for line in sorted(self.manifest_lines()):
            digest.update(line.encode("utf-8", "surrogatepass") + b"\n")
        return digest.hexdigest()

    def manifest_lines(self) -> Iterator[str]:
        fixed = self.fixed_split if self.fixed_split is not None else np.full(len(self), FREE)
        for image_id, identity, label, split in zip(
            self.ids, self.identities, self.labels, fixed, strict=True
        ):
            yield f"{image_id}\t{identity}\t{self.class_names[int(label)]}\t{int(split)}"

    def manifest(self) -> dict[str, list[str]]:
        """``id -> [identity, class name]``, kept with a run to say later what changed."""
        return {
            image_id: [identity, self.class_names[int(label)]]
            for image_id, identity, label in zip(self.ids, self.identities, self.labels, strict=True)
        }


def file_identity(path: str | Path) -> str:
    """The content identity of one file (see the module docstring); "" when it cannot be read."""
    return _read_identity(path)[1]


def _read_identity(path: str | Path) -> tuple[tuple[int, int, int, int] | None, str]:
    """The file's stamp (inode, size, modification and change times) and identity.

    Plain system calls, on one thread (threads only fight over the GIL here): this runs once per
    new file on every listing, 100,000 in about 2 s.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None, ""
    try:
        info = os.fstat(fd)
        data = os.pread(fd, IDENTITY_BYTES, 0)
        if info.st_size > 2 * IDENTITY_BYTES:
            data += os.pread(fd, IDENTITY_BYTES, info.st_size - IDENTITY_BYTES)
    except OSError:
        return None, ""
    finally:
        os.close(fd)
    stamp = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    content = b"%d:%d:" % (info.st_size, info.st_mtime_ns) + data
    return stamp, hashlib.blake2b(content, digest_size=16).hexdigest()


def file_identities(paths: Sequence[str], memo: Path | None = None, folder: str = "") -> list[str]:
    """:func:`file_identity` of many files, remembered in ``memo`` (an SQLite file) by path.

    A remembered identity is used while the file's inode, size, modification and change times
    are those it was taken at: the change time moves on every write and cannot be set back, so
    an edit that restores the modification time is still seen. Listing 100,000 photos seen
    before then costs one ``stat`` each instead of two reads (about 1 s against 3 s here).
    """
    known = _recall(memo, folder or os.path.commonpath(paths)) if memo is not None and paths else {}
    identities, fresh = [], []
    for path in paths:
        remembered = known.get(path)
        if remembered is not None and _stamp(path) == remembered[0]:
            identities.append(remembered[1])
            continue
        stamp, identity = _read_identity(path)
        identities.append(identity)
        if identity and stamp is not None:
            fresh.append((os.fsencode(path), *stamp, identity))
    if memo is not None and fresh:
        _remember(memo, fresh)
    return identities


def _stamp(path: str) -> tuple[int, int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


_MEMO_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, ino INTEGER, size INTEGER,"
    " mtime_ns INTEGER, ctime_ns INTEGER, identity TEXT NOT NULL)"
)


def _recall(memo: Path, folder: str) -> dict[str, tuple[tuple[int, int, int, int], str]]:
    """Remembered ``path -> (stamp, identity)`` of the files below ``folder``; {} if unreadable."""
    try:
        with closing(sqlite3.connect(memo, timeout=30)) as conn:
            conn.execute(_MEMO_SCHEMA)
            rows = conn.execute(
                "SELECT path, ino, size, mtime_ns, ctime_ns, identity FROM files"
                " WHERE path >= ? AND path < ?",
                (os.fsencode(folder) + b"/", os.fsencode(folder) + b"0"),  # paths are bytes: any name
            ).fetchall()
    except sqlite3.Error:
        return {}  # a damaged memo costs time, never a wrong identity: it is rewritten below
    return {
        os.fsdecode(path): ((ino, size, mtime, ctime), identity)
        for path, ino, size, mtime, ctime, identity in rows
    }


def _remember(memo: Path, rows: list[tuple[bytes, int, int, int, int, str]]) -> None:
    try:
        with closing(sqlite3.connect(memo, timeout=30)) as conn, conn:
            conn.execute(_MEMO_SCHEMA)
            conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)
    except sqlite3.Error:
        with suppress(OSError):
            memo.unlink()  # damaged: start it afresh next time


def parallel_decoder(read: Callable[[int, int], np.ndarray]) -> Decoder:
    """A :data:`Decoder` for sources that can read any entry at once (files, generators)."""

    def decode(indices: Sequence[int], image_size: int) -> Iterator[Decoded]:
        return windowed_map(lambda i: (i, _read_or_error(read, int(i), image_size)), iter(indices))

    return decode


def windowed_map(fn: Callable[[T], Decoded], items: Iterator[T]) -> Iterator[Decoded]:
    """``fn`` over ``items`` on threads, in order, at most :data:`DECODE_WINDOW` ahead.

    ``Executor.map`` would submit every item at once, and decoded images would pile up in
    memory whenever the consumer is slower than the decoders.
    """
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS, initializer=_behind_the_consumer) as pool:
        pending: deque[Future[Decoded]] = deque()
        for item in items:  # decoders stay busy while the consumer works on earlier images
            pending.append(pool.submit(fn, item))
            if len(pending) >= DECODE_WINDOW:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _behind_the_consumer() -> None:
    """Lower the calling thread's priority by :data:`DECODER_NICENESS` (Linux threads have
    priorities of their own; elsewhere this asks nothing of the system)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with suppress(OSError):
        lower = min(19, os.getpriority(os.PRIO_PROCESS, thread) + DECODER_NICENESS)
        os.setpriority(os.PRIO_PROCESS, thread, lower)


def _read_or_error(
    read: Callable[[int, int], np.ndarray], index: int, size: int
) -> np.ndarray | BadImageError:
    """Return the error instead of raising it, so one bad file does not cancel the batch."""
    try:
        return read(index, size)
    except BadImageError as exc:
        return exc


@dataclass(frozen=True)
class DataChange:
    """How a dataset differs from the one an earlier run saw."""

    added: Counter
    removed: Counter
    changed: Counter

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        """E.g. "3 images added to 'roses', 2 changed, 0 removed": a count lies in one class
        and is named with it, or spans several and is given alone."""

        def count(what: Counter, verb: str) -> str:
            total = sum(what.values())
            if total and len(what) == 1:
                return f"{total} image{'' if total == 1 else 's'} {verb} {next(iter(what))!r}"
            return f"{total} {verb.split()[0]}"

        added = count(self.added, "added to")
        removed = count(self.removed, "removed from")
        changed = count(self.changed, "changed in")
        return f"{added}, {changed}, {removed}"


def data_change(old: dict[str, Sequence[str]], new: dict[str, Sequence[str]]) -> DataChange:
    """Compare two manifests (:meth:`Catalogue.manifest`), counting per class."""
    added = Counter(new[i][1] for i in new.keys() - old.keys())
    removed = Counter(old[i][1] for i in old.keys() - new.keys())
    changed = Counter(new[i][1] for i in new.keys() & old.keys() if list(new[i]) != list(old[i]))
    return DataChange(added, removed, changed)
