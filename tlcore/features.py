"""On-disk cache of frozen-network outputs, keyed by a hash of everything that shapes them.

With the backbone frozen (BatchNorm in inference mode) its output for an image never changes
between epochs or between runs, so it is computed once per (dataset split, backbone, weights,
image size, preprocessing, cut point) and reused: by later epochs, later runs and the classic
experiment. The cache is capped in size (``$TL_FEATURE_CACHE_MB``) and evicts the least
recently used entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tlcore.paths import subdir

DEFAULT_CACHE_MB = 4096


def cache_limit_bytes() -> int:
    try:
        megabytes = float(os.environ.get("TL_FEATURE_CACHE_MB", DEFAULT_CACHE_MB))
    except ValueError:
        megabytes = DEFAULT_CACHE_MB
    return int(max(0.0, megabytes) * 1024 * 1024)


def feature_key(parts: dict[str, Any]) -> str:
    """Stable hash of the JSON of ``parts`` (what determines the cached array)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def ids_fingerprint(ids: list[str]) -> str:
    """Hash of a split's image ids, so a changed folder never reuses stale features."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


class FeatureCache:
    """Arrays stored as ``.npy`` files; reading one marks it as recently used."""

    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        self.root = Path(root) if root else subdir("features")
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = cache_limit_bytes() if max_bytes is None else max_bytes

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        try:
            array = np.load(path)
        except (FileNotFoundError, ValueError, OSError):
            return None
        os.utime(path)
        return array

    def put(self, key: str, array: np.ndarray) -> None:
        """Store atomically (a crash never leaves a truncated entry), then evict."""
        if array.nbytes > self.max_bytes:
            return
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, array)
            os.replace(tmp, self.path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.evict()

    def get_or_compute(self, key: str, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
        """The cached array, or a freshly computed (and stored) one; the flag says which."""
        cached = self.get(key)
        if cached is not None:
            return cached, True
        array = compute()
        self.put(key, array)
        return array, False

    def entries(self) -> list[Path]:
        """Entries, least recently used first."""
        return sorted(self.root.glob("*.npy"), key=lambda p: p.stat().st_mtime)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.entries())

    def evict(self) -> list[Path]:
        entries = self.entries()
        total = sum(p.stat().st_size for p in entries)
        removed = []
        for path in entries:
            if total <= self.max_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed
