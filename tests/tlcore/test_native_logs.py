"""TensorFlow's start-up INFO lines are kept off the CLI's standard error; nothing else is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WRITES = r"""
import os
from tlcore.native_logs import native_info_lines_hidden
with native_info_lines_hidden():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    os.write(2, b"I0000 00:00:1796304588.801478   29713 port.cc:153] oneDNN custom operations are on.\n")
    os.write(2, b"E0000 00:00:1796304688.885555   30616 cuda_platform.cc:52] failed call to cuInit\n")
    os.write(2, b"a line of the program's own\n")
os.write(2, b"after\n")
"""


def stderr_of(code: str, level: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          check=True, timeout=120)
    return done.stderr.decode()


def test_start_up_info_lines_are_dropped_and_every_other_line_kept_in_order() -> None:
    assert stderr_of(WRITES, "2").splitlines() == [
        "E0000 00:00:1796304688.885555   30616 cuda_platform.cc:52] failed call to cuInit",
        "a line of the program's own",
        "after",
    ]


@pytest.mark.parametrize("level", [None, "0"])
def test_nothing_is_dropped_when_info_lines_were_asked_for(level) -> None:
    assert len(stderr_of(WRITES, level).splitlines()) == 5


def test_the_cli_help_starts_without_tensorflow_noise() -> None:
    shown = stderr_of("import runpy, sys; sys.argv = ['tlcore', '--help']; "
                      "runpy.run_module('tlcore', run_name='__main__')", None)
    assert "absl::InitializeLog" not in shown and "oneDNN" not in shown, shown
