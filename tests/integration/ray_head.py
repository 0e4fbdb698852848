"""A throwaway Ray cluster on loopback: one head node with two CPUs, so two jobs at once.

``ray start --head --block`` runs as a child of the test process with a parent-death signal:
it stops the cluster's processes when it gets SIGTERM, so the cluster ends with the tests even
when they are killed, and :meth:`RayHead.stop` ends it in the normal case. Every address is
127.0.0.1 and every port a free one, and the cluster keeps its files in a temporary folder.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CPUS = 2
START_TIMEOUT_S = 120.0
_PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def ray_command() -> Path | None:
    """The ``ray`` script of this interpreter's environment, or None when Ray is missing."""
    found = Path(sys.executable).with_name("ray")
    return found if found.exists() else None


@dataclass
class RayHead:
    """A running head: ``jobs_url`` is the job API (``TL_JOBS=http://...``), ``client_url`` the
    Ray Client address (``TL_JOBS=ray://...``)."""

    folder: Path
    process: subprocess.Popen
    dashboard_port: int
    client_port: int

    @property
    def jobs_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def client_url(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    def log(self) -> str:
        return (self.folder / "head.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_head(ray: Path, extra_env: dict[str, str] | None = None) -> RayHead:
    """Start a head node and wait until its job API answers; the caller stops it.

    Args:
        extra_env: Settings of the node's own environment, which its jobs inherit (as a real
            node's ``PGPASSWORD``, which the studio never sends along with a job).
    """
    folder = Path(tempfile.mkdtemp(prefix="tlray-", dir="/tmp"))  # short: Ray's socket paths are
    dashboard_port, client_port = _free_port(), _free_port()     # limited to 107 characters
    command = [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={_free_port()}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
               f"--ray-client-server-port={client_port}", f"--num-cpus={CPUS}", "--num-gpus=0",
               "--include-dashboard=true", "--disable-usage-stats", f"--temp-dir={folder / 'ray'}"]
    with open(folder / "head.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **(extra_env or {})}, preexec_fn=_die_with_parent)
    head = RayHead(folder, process, dashboard_port, client_port)
    _wait_until_ready(head)
    return head


def _wait_until_ready(head: RayHead) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{head.jobs_url}/api/version", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            if head.process.poll() is not None or time.monotonic() > deadline:
                log = head.log()
                head.stop()
                raise RuntimeError(f"The Ray head did not start:\n{log}") from None
            time.sleep(0.5)


_shared: list[RayHead] = []


def shared_head(extra_env: dict[str, str] | None = None) -> RayHead | None:
    """The one Ray cluster of this test session, started on first use; None without Ray."""
    if not _shared:
        ray = ray_command()
        if ray is None:
            return None
        _shared.append(start_head(ray, extra_env))
    return _shared[0]


def stop_shared() -> None:
    while _shared:
        _shared.pop().stop()


atexit.register(stop_shared)
