"""tlcore.training.allocator: freed memory is reused instead of being faulted in again.

The setting changes a process for good, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tlcore.training import allocator

ROOT = Path(__file__).resolve().parents[3]
BLOCK_MB = 64
ROUNDS = 5
PAGES_PER_BLOCK = BLOCK_MB * 2**20 // 4096

# Allocates, touches and frees a block larger than glibc's default mmap ceiling (32 MiB)
# ROUNDS times, through malloc as TensorFlow's CPU allocator does (numpy would ask for huge
# pages), and prints the page faults this cost.
_ALLOCATE_AND_FREE = f"""
import ctypes, resource, sys
if sys.argv[1] == "keep":
    from tlcore.training.allocator import keep_freed_memory
    assert keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size = {BLOCK_MB} * 2**20
def allocate_touch_free():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
allocate_touch_free()
before = faults()
for _ in range({ROUNDS}):
    allocate_touch_free()
print(faults() - before)
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the thresholds are glibc's",
)


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _ALLOCATE_AND_FREE, mode],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )
    return int(done.stdout.strip())


@glibc_only
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    default = _faults("default")
    kept = _faults("keep")
    assert default >= ROUNDS * PAGES_PER_BLOCK * 0.9  # every round maps fresh pages
    assert kept <= PAGES_PER_BLOCK * 0.1


@glibc_only
def test_the_thresholds_are_raised_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class FakeLibc:
        @staticmethod
        def mallopt(option: int, value: int) -> int:
            calls.append((option, value))
            return 1

    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: FakeLibc)
    allocator.keep_freed_memory.cache_clear()
    try:
        assert allocator.keep_freed_memory() is True
        assert allocator.keep_freed_memory() is True
    finally:
        allocator.keep_freed_memory.cache_clear()
    assert calls == [
        (allocator._M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD_CANDIDATES[0]),
        (allocator._M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD_BYTES),
    ]


@glibc_only
def test_an_older_glibc_that_refuses_the_larger_threshold_gets_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int]] = []
    largest_accepted = allocator.MMAP_THRESHOLD_CANDIDATES[-1]

    class OldLibc:
        @staticmethod
        def mallopt(option: int, value: int) -> int:
            calls.append((option, value))
            return int(option != allocator._M_MMAP_THRESHOLD or value <= largest_accepted)

    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: OldLibc)
    allocator.keep_freed_memory.cache_clear()
    try:
        assert allocator.keep_freed_memory() is True
    finally:
        allocator.keep_freed_memory.cache_clear()
    assert (allocator._M_MMAP_THRESHOLD, largest_accepted) in calls


def test_other_c_libraries_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: pytest.fail("libc was called"))
    allocator.keep_freed_memory.cache_clear()
    try:
        assert allocator.keep_freed_memory() is False
    finally:
        allocator.keep_freed_memory.cache_clear()
