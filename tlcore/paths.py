"""Where the studio keeps its state, read from the environment each time.

Reading the environment on every call (not at import) lets tests and the worker process
point the studio at another home without re-importing anything.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path.home() / ".tlstudio"


def tl_home() -> Path:
    """Root of the run store, artifacts, caches and extracted uploads (``$TL_HOME``)."""
    home = Path(os.environ.get("TL_HOME", DEFAULT_HOME)).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def data_roots() -> list[Path]:
    """Folders that ``folder:`` datasets may live under (``$TL_DATA_ROOT``, ``os.pathsep``-separated).

    Defaults to the user's home folder; a shared server should set it explicitly.
    """
    raw = os.environ.get("TL_DATA_ROOT", "")
    roots = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
    return [r.resolve() for r in roots] or [Path.home().resolve()]


def keras_models_dir() -> Path:
    """Keras' weight cache, ``$KERAS_HOME/models`` (``~/.keras/models`` by default)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def subdir(name: str) -> Path:
    path = tl_home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
