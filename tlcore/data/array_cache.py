"""Values stored one file per key on disk, capped in size, least recently used evicted first.

It is the storage under the frozen-feature cache and the decoded-dataset cache: one file per
key, atomic writes, LRU by file modification time, a damaged entry read as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tlcore.files import atomic_write

DEFAULT_CACHE_MB = 4096

UNREADABLE = (OSError, ValueError, EOFError)
"""What reading a missing, truncated or damaged entry raises (a cut ``.npy``: EOFError)."""


def cache_limit_bytes(
    variable: str = "TL_FEATURE_CACHE_MB", default_mb: float = DEFAULT_CACHE_MB
) -> int:
    """The size cap in bytes read from the environment ``variable`` (in megabytes)."""
    try:
        megabytes = float(os.environ.get(variable, default_mb))
    except ValueError:
        megabytes = default_mb
    return int(max(0.0, megabytes) * 1024 * 1024)


def feature_key(parts: dict[str, Any]) -> str:
    """Stable hash of the JSON of ``parts`` (what determines the cached array)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def ids_fingerprint(ids: list[str]) -> str:
    """Hash of a split's image ids, so a changed folder never reuses stale features."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


class ArrayCache:
    """Values stored one file per key under ``root``; reading one marks it as recently used.

    Subclasses store other values by overriding :attr:`suffix`, :meth:`_save`, :meth:`_load`
    and :meth:`_nbytes`; a damaged entry (anything in :data:`UNREADABLE`) reads as a miss.
    """

    suffix = ".npy"

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def path(self, key: str) -> Path:
        return self.root / f"{key}{self.suffix}"

    def get(self, key: str) -> Any | None:
        path = self.path(key)
        try:
            value = self._load(path)
        except UNREADABLE:
            return None
        with suppress(OSError):  # evicted by another process since: still a valid read
            os.utime(path)
        return value

    def put(self, key: str, value: Any) -> None:
        """Store atomically (a crash never leaves a truncated entry), then evict."""
        if self._nbytes(value) > self.max_bytes:
            return
        def write(partial: Path) -> None:
            with partial.open("wb") as handle:
                self._save(handle, value)

        atomic_write(self.path(key), write)
        self.evict()

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """The cached value, or a freshly computed (and stored) one; the flag says which."""
        cached = self.get(key)
        if cached is not None:
            return cached, True
        value = compute()
        self.put(key, value)
        return value, False

    def entries(self) -> list[Path]:
        """Entries, least recently used first."""
        return [path for _, _, path in self._stats()]

    def size_bytes(self) -> int:
        return sum(size for _, size, _ in self._stats())

    def evict(self) -> list[Path]:
        stats = self._stats()
        total = sum(size for _, size, _ in stats)
        removed = []
        for _, size, path in stats:
            if total <= self.max_bytes:
                break
            total -= size
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def _stats(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of each entry, oldest first, without those deleted meanwhile."""
        stats = []
        for path in self.root.glob(f"*{self.suffix}"):
            with suppress(FileNotFoundError):
                info = path.stat()
                stats.append((info.st_mtime, info.st_size, path))
        return sorted(stats, key=lambda stat: stat[0])

    def _save(self, handle: BinaryIO, value: Any) -> None:
        np.save(handle, value)

    def _load(self, path: Path) -> Any:
        return np.load(path)

    def _nbytes(self, value: Any) -> int:
        return int(value.nbytes)
