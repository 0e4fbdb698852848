"""windowed_map: decoding threads that keep order, stay a window ahead, and yield to their consumer."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from tlcore.data import catalogue
from tlcore.data.catalogue import DECODE_WINDOW, DECODER_NICENESS, windowed_map


def test_results_come_in_the_order_of_the_items_whatever_finishes_first() -> None:
    def slow_for_even(item: int) -> tuple[int, int]:
        time.sleep(0.002 if item % 2 == 0 else 0)
        return item, item * item

    assert list(windowed_map(slow_for_even, iter(range(50)))) == [(n, n * n) for n in range(50)]


def test_the_decoders_never_run_more_than_a_window_ahead_of_the_consumer() -> None:
    pulled, started = [0], []

    def items():
        for n in range(10 * DECODE_WINDOW):
            pulled[0] = n
            yield n

    for item, _ in windowed_map(lambda n: (n, started.append(n)), items()):
        assert pulled[0] - item <= DECODE_WINDOW
    assert len(started) == 10 * DECODE_WINDOW


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux threads have priorities of their own")
def test_decoding_threads_run_at_a_lower_priority_and_leave_the_callers_alone(monkeypatch) -> None:
    monkeypatch.setattr(catalogue, "DECODE_WORKERS", 2)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def priority(item: int) -> tuple[int, int]:
        return item, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen = {value for _, value in windowed_map(priority, iter(range(20)))}
    assert seen == {min(19, own + DECODER_NICENESS)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
