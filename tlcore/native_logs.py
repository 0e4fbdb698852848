"""TensorFlow's start-up lines, kept off a terminal that asked for quiet.

TensorFlow's native libraries log a few INFO lines when they load (oneDNN is on, no CUDA
driver) before absl's logging is initialised, and lines logged then ignore
``TF_CPP_MIN_LOG_LEVEL`` (tensorflow/tensorflow#102212). The CLI sets that level to 2, so a
``--help`` or a ``train`` began with six lines of noise. Loading TensorFlow with the process's
standard error caught keeps those lines back and passes every other line on, in order, once
TensorFlow has loaded.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

NOISE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                   rb"|I\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\] )")
"""What absl prints before it is initialised: its own warning, and INFO lines (``I`` + date)."""


def quiet_wanted() -> bool:
    """Whether ``TF_CPP_MIN_LOG_LEVEL`` asks to hide INFO lines (1 or more)."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    return level.isdigit() and int(level) >= 1


@contextlib.contextmanager
def native_info_lines_hidden() -> Iterator[None]:
    """Run the body with file descriptor 2 caught, then write back what is not start-up INFO.

    A no-op when INFO lines were asked for, or when standard error has no descriptor.
    """
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        stderr_fd = -1
    if not quiet_wanted() or stderr_fd < 0:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), stderr_fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)
            caught.seek(0)
            kept = b"".join(line for line in caught if not NOISE.match(line))
            if kept:
                os.write(stderr_fd, kept)
