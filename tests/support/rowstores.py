"""Small row stores for tests: rows that say which identity they belong to, and aged chunks."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tlcore.data.rows import RowLayout, RowStore

SHAPE = (2, 3)
LAYOUT = RowLayout(SHAPE, "int32")


def row_for(number: int, shape: tuple[int, ...] = SHAPE, dtype: str = "int32") -> np.ndarray:
    """A row whose every cell differs from every other row's (``number * 1000 + cell``)."""
    size = int(np.prod(shape))
    return (number * 1000 + np.arange(size)).reshape(shape).astype(dtype)


def store_rows(store: RowStore, numbers: Sequence[int], prefix: str = "id") -> list[str]:
    """Store :func:`row_for` of each number under ``f"{prefix}{number}"``, in one chunk."""
    identities = [f"{prefix}{n}" for n in numbers]
    with store.writer() as writer:
        for identity, n in zip(identities, numbers, strict=True):
            writer.add(identity, row_for(n, store.layout.shape, store.layout.dtype))
    return identities


def age_chunks(root: Path, seconds: float) -> None:
    """Pretend every chunk of the store at ``root`` was last used ``seconds`` earlier.

    Eviction spares what was used in the last second or so; tests age the chunks instead of
    sleeping past that.
    """
    conn = sqlite3.connect(root / "index.sqlite")
    try:
        with conn:
            conn.execute("UPDATE chunks SET used = used - ?", (seconds,))
    finally:
        conn.close()


def chunk_files(root: Path) -> list[Path]:
    return sorted(root.glob("chunk-*.rows"))
