"""ForwardStreams: calls overlap, rows come back in the order asked, errors are not lost."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tlcore.training.forward_streams import ForwardStreams


def collect(streams: ForwardStreams, batches: list[np.ndarray]) -> list[tuple[int, np.ndarray]]:
    done = []
    for tag, batch in enumerate(batches):
        done.extend(streams.put(tag, batch))
    done.extend(streams.finish())
    return done


def test_rows_come_back_in_the_order_asked_though_later_calls_finish_first() -> None:
    def forward(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.03 if batch[0] % 2 == 0 else 0)  # even batches are slow
        return batch * 10

    batches = [np.array([n, n]) for n in range(9)]
    done = collect(ForwardStreams(forward, streams=2), batches)
    assert [tag for tag, _ in done] == list(range(9))
    assert all(np.array_equal(rows, batches[tag] * 10) for tag, rows in done)


def test_two_calls_run_at_once_and_never_more() -> None:
    running, most, lock = [0], [0], threading.Lock()

    def forward(batch: np.ndarray) -> np.ndarray:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return batch

    collect(ForwardStreams(forward, streams=2), [np.zeros(1)] * 8)
    assert most[0] == 2


def test_one_stream_runs_on_the_callers_thread() -> None:
    callers = set()

    def forward(batch: np.ndarray) -> np.ndarray:
        callers.add(threading.get_ident())
        return batch

    done = collect(ForwardStreams(forward, streams=1), [np.ones(1)] * 3)
    assert callers == {threading.get_ident()} and len(done) == 3


def test_an_error_in_a_call_reaches_the_caller() -> None:
    def forward(batch: np.ndarray) -> np.ndarray:
        if batch[0] == 3:
            raise ValueError("bad batch")
        return batch

    with pytest.raises(ValueError, match="bad batch"):
        collect(ForwardStreams(forward, streams=2), [np.array([n]) for n in range(6)])
