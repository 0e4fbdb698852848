"""Frozen forward passes on two threads at once, their rows handed back in the order asked.

A small network at a small batch cannot keep every core busy through one call: MobileNetV2
alpha 0.35 at 16 images kept 1.7 of 2 cores busy, so a second call beside it raised the rate
by a tenth on its own, and by more inside a cold run, where the decoding threads, the
consumer's copying and the chunk writes fit into what the two calls leave
(``bench/scale.py``; ``docs/benchmarks.md``). Rows of one image do not depend on the others,
so the order calls finish in never changes a row, only when it is stored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

import numpy as np

FORWARD_STREAMS = 2
"""Calls in flight at most."""

Tag = TypeVar("Tag")


class ForwardStreams(Generic[Tag]):
    """Runs ``forward`` on up to ``streams`` batches at once; :meth:`put` and :meth:`finish`
    give back ``(tag, rows)`` of finished batches, oldest first.

    With ``streams=1`` every batch runs on the caller's thread, as a plain loop would.
    """

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], streams: int = FORWARD_STREAMS) -> None:
        self.forward = forward
        self.streams = max(1, streams)
        self._pending: deque[tuple[Tag, Future[np.ndarray]]] = deque()
        self._pool = (ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="tlcore-forward")
                      if self.streams > 1 else None)

    def put(self, tag: Tag, batch: np.ndarray) -> Iterator[tuple[Tag, np.ndarray]]:
        """Start ``batch``; yields the batches that must finish first to keep ``streams`` in flight."""
        if self._pool is None:
            yield tag, self.forward(batch)
            return
        self._pending.append((tag, self._pool.submit(self.forward, batch)))
        while len(self._pending) > self.streams:
            yield self._oldest()

    def finish(self) -> Iterator[tuple[Tag, np.ndarray]]:
        """Every batch still in flight, then the threads end."""
        try:
            while self._pending:
                yield self._oldest()
        finally:
            self.close()

    def close(self) -> None:
        """End the threads; batches not collected are dropped (their errors with them)."""
        if self._pool is not None:
            for _, future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)
        self._pending.clear()

    def _oldest(self) -> tuple[Tag, np.ndarray]:
        tag, future = self._pending.popleft()
        return tag, future.result()
