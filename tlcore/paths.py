"""Where the studio keeps its state, read from the environment each time.

Reading the environment on every call (not at import) lets tests and the worker process
point the studio at another home without re-importing anything.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from tlcore.errors import BackboneError, StorageError, TLError

DEFAULT_HOME = Path.home() / ".tlstudio"
COLLECTED_DIR = "collected"


def tl_home(create: bool = True) -> Path:
    """Root of the run store, artifacts, caches and extracted uploads (``$TL_HOME``).

    Args:
        create: Make the folder if it is missing; readers pass False, so that a read-only
            disk can still be read.

    Raises:
        StorageError: ``TL_HOME`` is a file, or it is missing and cannot be created.
    """
    home = Path(os.environ.get("TL_HOME", DEFAULT_HOME)).expanduser()
    return ensure_folder(home, "TL_HOME") if create else home


def ensure_folder(path: Path, what: str) -> Path:
    """``mkdir -p path``; a file in the way or an unwritable parent is a StorageError.

    A full disk is left as the ``OSError`` it is, which the runner reports in its own words.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise not_a_folder_error(path, what) from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise StorageError(
            f"The folder {path} could not be created ({exc.strerror or exc}).",
            "Set TL_HOME to a folder this user can write to (or make this one writable).",
        ) from exc
    return path


def data_roots() -> list[Path]:
    """Folders that ``folder:`` datasets may live under (``$TL_DATA_ROOT``, ``os.pathsep``-separated).

    Defaults to the user's home folder; a shared server should set it explicitly. The datasets
    collected in the browser (:func:`collected_root`) are always allowed: the studio wrote them.
    """
    raw = os.environ.get("TL_DATA_ROOT", "")
    roots = [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]
    return [*(roots or [Path.home().resolve()]), collected_root().resolve()]


def collected_root() -> Path:
    """Where the Collect page keeps its datasets, one folder each (``$TL_HOME/collected``).

    Not created here: :func:`data_roots` names it on every dataset load, also on a read-only home.
    """
    return tl_home(create=False) / COLLECTED_DIR


def keras_models_dir() -> Path:
    """Keras' weight cache, ``$KERAS_HOME/models`` (``~/.keras/models`` by default)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def weights_roots() -> list[Path]:
    """Folders a weights file or a local SavedModel may be read from.

    The data roots, ``TL_HOME`` and Keras' cache: a path typed on a shared server must not
    make the worker read (or run the graph of) a file anywhere else.
    """
    return [*data_roots(), tl_home().resolve(), keras_models_dir().resolve()]


def resolve_weights_path(location: str) -> Path:
    """Resolve a weights file or SavedModel folder and refuse it outside :func:`weights_roots`.

    Raises:
        BackboneError: The path is unusable or resolves outside every allowed folder.
    """
    return resolve_allowed(location, weights_roots(), "weights", BackboneError)


def resolve_allowed(
    location: str, roots: Sequence[Path], what: str, error: type[TLError]
) -> Path:
    """Resolve a user-given path and refuse it unless it lies inside one of ``roots``.

    Links and ``..`` are resolved first, so neither can lead outside the roots.

    Args:
        location: The path as the user gave it (``~`` allowed).
        roots: Resolved folders the path may be in or below.
        what: What the path names, plural, for the message ("datasets", "weights").
        error: The error type to raise, so that each caller reports in its own terms.

    Raises:
        error: The path cannot be resolved, or its resolved form is outside every root.
    """
    try:
        path = Path(location).expanduser().resolve()
    except (ValueError, OSError) as exc:  # a NUL byte, a loop of links, ...
        raise error(f"{location!r} is not a usable path ({exc}).",
                    "Give its plain path on the server.") from exc
    if not is_inside(path, roots):
        raise error(
            f"{location!r} is outside the folders {what} may be read from "
            f"({', '.join(str(r) for r in roots)}).",
            "Move it under one of them, or set TL_DATA_ROOT (paths separated by "
            f"{os.pathsep!r}) to allow other folders.",
        )
    return path


def is_inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether an already resolved ``path`` is one of ``roots`` or lies below one."""
    return any(path.is_relative_to(root) for root in roots)


def not_a_folder_error(path: Path, what: str) -> StorageError:
    return StorageError(
        f"{what} ({path}) is a file, not a folder.",
        f"Point {what} at a folder (or move the file away): the studio keeps its runs and "
        "caches there.",
    )


def subdir(name: str) -> Path:
    return ensure_folder(tl_home() / name, f"TL_HOME's {name} folder")


PATH_VARIABLES = ("TL_HOME", "TL_DATA_ROOT", "KERAS_HOME")
"""The studio's path settings; ``TL_DATA_ROOT`` is a list separated by ``os.pathsep``."""


def absolute_environment() -> dict[str, str]:
    """The path settings that are set, each path made absolute against this process's folder.

    For a process started in another folder: workers run in the project folder, where a
    relative ``TL_HOME=studio`` named another, empty store (the run was never found) and a
    relative ``TL_DATA_ROOT`` other allowed folders.
    """
    values = {}
    for name in PATH_VARIABLES:
        raw = os.environ.get(name, "")
        paths = raw.split(os.pathsep) if name == "TL_DATA_ROOT" else [raw]
        if raw.strip():
            values[name] = os.pathsep.join(os.path.abspath(os.path.expanduser(p)) if p.strip() else p
                                           for p in paths)
    return values
