"""Run folders mirrored to shared storage (``TL_ARTIFACTS_URL``), for nodes without a shared mount.

With a ``TL_HOME`` every machine mounts, nothing here is needed. Without one, each node keeps
its own ``TL_HOME`` as a working copy, and the run folders (model, report, checkpoints, log)
also live under ``TL_ARTIFACTS_URL/runs/<id>/``, any URL fsspec opens: ``s3://bucket/prefix``
for S3-compatible storage (through s3fs; endpoint and keys from its usual environment
variables), ``gs://``, or ``file:///mnt/share`` for a path.

A worker fetches its run's folder before it starts, so a run resumed on another node finds its
checkpoint, and pushes what changed after every epoch and when it ends; the app fetches the
folder of a run that ended elsewhere once its results are there. The feature
and pixel stores stay per node: they are caches, rebuilt on a miss.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

from tlcore.errors import ConfigError, StorageError

MIRROR_ENV = "TL_ARTIFACTS_URL"
RECORD_NAME = "run.json"
"""The run's record (``tlcore.runs.store.RECORD_FILE``): in the mirror once the run's results are."""
PULL_INTERVAL_S = 10.0
"""How long a process waits before asking the storage again for a folder it did not find."""

_last_pull: dict[str, float] = {}
_pushed: dict[str, dict[str, tuple[int, int]]] = {}


def mirror_url() -> str | None:
    """``TL_ARTIFACTS_URL`` without a trailing slash, or None when run folders are local only."""
    value = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    return value or None


def check_mirror() -> None:
    """Refuse a ``TL_ARTIFACTS_URL`` fsspec cannot open, before a run depends on it.

    Raises:
        ConfigError: An unknown protocol, or one whose driver is not installed.
    """
    url = mirror_url()
    if url:
        _filesystem(url)


@functools.lru_cache(maxsize=4)
def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the root path in it.

    Raises:
        ConfigError: fsspec knows no such protocol, or its driver is not installed.
    """
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{MIRROR_ENV}={url!r} cannot be opened ({exc}).",
                          "Use an s3://, gs:// or file:// URL, and install the filesystem's driver "
                          "(s3fs for s3://).") from exc


def _remote(url: str, run_id: str) -> tuple[Any, str]:
    fs, root = _filesystem(url)
    return fs, f"{root}/runs/{run_id}"


def _local_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file under ``folder`` by its relative name, with its size and modification time."""
    files = {}
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            files[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return files


def push(folder: Path) -> int:
    """Copy the files of a run folder that changed since this process last pushed it, and drop
    the mirror's copies of files the folder no longer has (a cleared checkpoint).

    Returns:
        How many files were copied (0 without a mirror).

    Raises:
        StorageError: The storage refused a write.
    """
    url = mirror_url()
    if url is None or not folder.is_dir():
        return 0
    fs, remote = _remote(url, folder.name)
    local = _local_files(folder)
    seen = _pushed.setdefault(str(folder), {})
    changed = [name for name, signature in local.items() if seen.get(name) != signature]
    try:
        for name in changed:
            fs.makedirs(f"{remote}/{Path(name).parent}".rstrip("/."), exist_ok=True)
            fs.put_file(str(folder / name), f"{remote}/{name}")
            seen[name] = local[name]
        for name in [name for name in seen if name not in local]:
            if fs.exists(f"{remote}/{name}"):
                fs.rm_file(f"{remote}/{name}")
            del seen[name]
    except Exception as exc:  # noqa: BLE001 - each storage driver raises its own kinds
        raise StorageError(f"Run {folder.name}'s files could not be copied to {url} ({exc}).",
                           f"Check {MIRROR_ENV} and the storage's credentials; the run's files are "
                           "still in this node's TL_HOME.") from exc
    return len(changed)


def pull_finished(folder: Path) -> int:
    """Fetch a run folder whose run ended elsewhere, once its results are in the mirror.

    The app calls it for a folder without its record (``run.json``, written with the results):
    while the run is active the mirror has none either and nothing is fetched, so files a worker
    on this machine is writing are never replaced by older copies. Asked at most once every
    :data:`PULL_INTERVAL_S` per folder.

    Returns:
        How many files were fetched.
    """
    url = mirror_url()
    mine = str(folder) in _pushed  # this process writes the folder: the mirror is its copy
    if url is None or mine or time.monotonic() - _last_pull.get(str(folder), -1e9) < PULL_INTERVAL_S:
        return 0
    _last_pull[str(folder)] = time.monotonic()
    fs, remote = _remote(url, folder.name)
    return _fetch(url, fs, remote, folder) if _exists(url, fs, f"{remote}/{RECORD_NAME}") else 0


def restore(folder: Path) -> int:
    """Fetch every file the mirror has of a run folder (a worker about to train or resume the
    run, maybe on another node than the last attempt): the mirror holds the latest checkpoint."""
    url = mirror_url()
    if url is None:
        return 0
    fs, remote = _remote(url, folder.name)
    return _fetch(url, fs, remote, folder) if _exists(url, fs, remote) else 0


def _exists(url: str, fs: Any, path: str) -> bool:
    try:
        return bool(fs.exists(path))
    except Exception as exc:  # noqa: BLE001 - each storage driver raises its own kinds
        raise _read_error(url, Path(path).name, exc) from exc


def _fetch(url: str, fs: Any, remote: str, folder: Path) -> int:
    try:
        listing = fs.find(remote)
        for path in listing:
            target = folder / Path(path).relative_to(remote)
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(path, str(target))
    except Exception as exc:  # noqa: BLE001 - each storage driver raises its own kinds
        raise _read_error(url, folder.name, exc) from exc
    _pushed[str(folder)] = _local_files(folder)  # the same as the mirror's: nothing to push back
    return len(listing)


def _read_error(url: str, run_id: str, exc: Exception) -> StorageError:
    return StorageError(f"Run {run_id}'s files could not be read from {url} ({exc}).",
                        f"Check {MIRROR_ENV} and the storage's credentials.")


def forget(run_id: str) -> None:
    """Delete a run's copy in the mirror (the run was deleted)."""
    url = mirror_url()
    if url is None:
        return
    fs, remote = _remote(url, run_id)
    try:
        if fs.exists(remote):
            fs.rm(remote, recursive=True)
    except Exception as exc:  # noqa: BLE001 - each storage driver raises its own kinds
        raise StorageError(f"Run {run_id}'s files could not be deleted from {url} ({exc}).",
                           f"Check {MIRROR_ENV} and the storage's credentials.") from exc
