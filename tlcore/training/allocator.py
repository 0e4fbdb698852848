"""Let a training process keep the memory TensorFlow frees between batches, and reuse it.

Every batch through a network allocates and frees the same activation buffers. With glibc's
defaults, blocks above a size threshold get an ``mmap`` of their own, and freed memory above
another threshold goes back to the system, so each batch faults the same pages in again. A
cold frozen run on the flowers (1,000 images) took about 700,000 page faults and 2-3 s of
kernel time that way; with both thresholds raised it takes about 30,000 faults, 0.5 s, and
finishes 1.5 s sooner (``docs/benchmarks.md``, "Memory reuse").

The price: a process keeps up to :data:`TRIM_THRESHOLD_BYTES` of freed memory for reuse
instead of handing it back. Runs train in worker processes that exit when their run ends, and
only they call this; the app's server process does not.
"""

from __future__ import annotations

import ctypes
import functools
import platform

MMAP_THRESHOLD_CANDIDATES = (128 * 2**20, 32 * 2**20)
"""Blocks up to this size come from the reusable heap. 128 MiB holds every activation of a
batch of 32 through MobileNetV2 at the default 160 px (the largest, 79 MB) and of ResNet50 at
224 px (103 MB); larger blocks still get a mapping of their own. Older glibc versions refuse
more than 32 MiB on 64-bit machines, so that is the fallback."""

TRIM_THRESHOLD_BYTES = 512 * 2**20
"""Freed memory the process may hold on to before returning it to the system."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds, once per process.

    It changes the whole process, for good, which is why it is called at the start of
    training rather than on import.

    Returns:
        True when the thresholds were raised; False where the C library is not glibc
        (macOS, Windows, musl), which keeps its own behaviour.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if not any(mallopt(_M_MMAP_THRESHOLD, size) for size in MMAP_THRESHOLD_CANDIDATES):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
