"""A throwaway PostgreSQL server from Debian's packages, on loopback, in a temporary folder.

``initdb`` makes the cluster; ``postgres`` runs as a child of the test process with a
parent-death signal, so it shuts down even when the tests are killed, and ``pg_ctl stop`` ends
it in the normal case. As root the server runs as the ``postgres`` user (it refuses root).
The tests reach it by TCP with a password, the way a studio reaches a real server.
"""

from __future__ import annotations

import atexit
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "tlstudio", "s3cret-" + uuid.uuid4().hex[:8]
START_TIMEOUT_S = 60.0
_PR_SET_PDEATHSIG = 1


def server_binaries() -> Path | None:
    """The folder holding ``initdb``, ``postgres`` and ``pg_ctl``, or None without a server."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    if found:
        return Path(found[0]).parent
    postgres = shutil.which("postgres")
    return Path(postgres).parent if postgres else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's process before exec: a fast shutdown when the test process goes away."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


@dataclass
class Cluster:
    """A running server: ``url(database)`` to connect, ``create_database`` for a clean one."""

    bin: Path
    folder: Path
    port: int
    user: str | None
    process: subprocess.Popen

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        name = "tl_" + uuid.uuid4().hex[:10]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process.poll() is None:
            subprocess.run([str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"],
                           user=self.user, capture_output=True, timeout=60, check=False)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_cluster(bin_dir: Path, fast: bool = True) -> Cluster:
    """Make and start a cluster; the caller stops it (:meth:`Cluster.stop`).

    Args:
        fast: Without ``fsync``: a throwaway server need not survive a power cut, and its
            ``CREATE DATABASE`` per test and shutdown checkpoint then take no disk flushes.
    """
    folder = Path(tempfile.mkdtemp(prefix="tl-postgres-"))
    user = "postgres" if os.geteuid() == 0 else None
    (folder / "socket").mkdir()
    password_file = folder / "password"
    password_file.write_text(PASSWORD)
    if user:
        account = pwd.getpwnam(user)
        for path in (folder, folder / "socket", password_file):
            os.chown(path, account.pw_uid, account.pw_gid)
    subprocess.run([str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", USER, "-E", "UTF8",
                    f"--pwfile={password_file}", "--auth-local=trust", "--auth-host=scram-sha-256",
                    "--no-sync"], user=user, check=True, capture_output=True, timeout=120)
    port = _free_port()
    with open(folder / "server.log", "wb") as log:  # the server keeps its own copy of the handle
        process = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(folder / "data"), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder / 'socket'}",
             *(["-c", "fsync=off"] if fast else [])],
            user=user, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent, start_new_session=True)
    cluster = Cluster(bin_dir, folder, port, user, process)
    _wait_until_ready(cluster)
    return cluster


def _wait_until_ready(cluster: Cluster) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            psycopg.connect(cluster.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if cluster.process.poll() is not None or time.monotonic() > deadline:
                log = (cluster.folder / "server.log").read_text(errors="replace")[-2000:]
                cluster.stop()
                raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
            time.sleep(0.1)


_shared: list[Cluster] = []


def shared_cluster() -> Cluster | None:
    """The one server of this test session, started on first use; None without the packages.

    Both tests/integration and the store's backend tests use it, so a session starts at most
    one server; :func:`stop_shared` (a session finalizer) ends it.
    """
    if not _shared:
        bin_dir = server_binaries()
        if bin_dir is None:
            return None
        _shared.append(start_cluster(bin_dir))
    return _shared[0]


def stop_shared() -> None:
    while _shared:
        _shared.pop().stop()


atexit.register(stop_shared)  # a session that ends without its finalizers still stops the server
