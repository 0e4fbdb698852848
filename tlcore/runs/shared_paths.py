"""Which paths a run on a Ray cluster may name: those every node reads (``TL_SHARED_PATHS``).

A worker on another machine opens the spec's files by the same path as the app. A folder that
exists only on the app's server would fail there after the job waited for room on the
cluster, with a message about a missing folder; checked before the run is queued, it fails at
once and says which setting to change.
"""

from __future__ import annotations

import os
from pathlib import Path

from tlcore.config import RunSpec
from tlcore.errors import ConfigError
from tlcore.paths import is_inside, tl_home

SHARED_ENV = "TL_SHARED_PATHS"


def shared_roots() -> list[Path]:
    """The folders every node of the cluster mounts at the same path (``TL_SHARED_PATHS``,
    separated by ``os.pathsep``); ``TL_HOME`` is always one, as every worker writes there."""
    raw = os.environ.get(SHARED_ENV, "")
    roots = [Path(part).expanduser().resolve() for part in raw.split(os.pathsep) if part.strip()]
    return [*roots, tl_home(create=False).resolve()]


def spec_paths(spec: RunSpec) -> list[tuple[str, Path]]:
    """The files and folders the spec names, each with what it is for."""
    named = []
    if spec.dataset.kind in ("folder", "zip"):
        named.append(("dataset", Path(spec.dataset.location)))
    if spec.dataset.data_dir:
        named.append(("TFDS data directory", Path(spec.dataset.data_dir)))
    backbone = spec.backbone
    if backbone.weights not in ("imagenet", "none"):
        named.append(("weights file", Path(backbone.weights)))
    location = backbone.name.split(":", 1)[1] if ":" in backbone.name else ""
    if location.startswith(("/", "~", ".")):
        named.append(("backbone folder", Path(location)))
    return named


def check_reachable(spec: RunSpec) -> None:
    """Refuse a spec naming a path the cluster's nodes do not share.

    Raises:
        ConfigError: A path outside every shared folder.
    """
    roots = shared_roots()
    for what, path in spec_paths(spec):
        resolved = path.expanduser().resolve()
        if not is_inside(resolved, roots):
            listed = ", ".join(str(root) for root in roots)
            raise ConfigError(
                f"The {what} {resolved} is not on a path the Ray cluster's nodes share ({listed}),"
                " so a worker on another machine could not read it.",
                f"Move it under a shared folder, or add its folder to {SHARED_ENV} (paths separated"
                f" by {os.pathsep!r}) once every node mounts it at the same path.",
            )
