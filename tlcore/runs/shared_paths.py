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
from tlcore.runs.artifact_mirror import check_mirror, mirror_url

SHARED_ENV = "TL_SHARED_PATHS"


def shared_roots() -> list[Path]:
    """The folders every node of the cluster mounts at the same path (``TL_SHARED_PATHS``,
    separated by ``os.pathsep``), and ``TL_HOME`` unless run folders are mirrored to storage
    (``TL_ARTIFACTS_URL``): then each node has a ``TL_HOME`` of its own."""
    raw = os.environ.get(SHARED_ENV, "")
    roots = [Path(part).expanduser().resolve() for part in raw.split(os.pathsep) if part.strip()]
    return roots if mirror_url() else [*roots, tl_home(create=False).resolve()]


def spec_paths(spec: RunSpec) -> list[tuple[str, Path]]:
    """The files and folders the spec names, each with what it is for."""
    named = []
    if spec.dataset.kind in ("folder", "zip"):
        named.append(("dataset", Path(spec.dataset.location)))
    if spec.dataset.data_dir:
        named.append(("TFDS data directory", Path(spec.dataset.data_dir)))
    elif spec.dataset.kind == "tfds":  # prepared under TL_HOME: shared unless runs are mirrored
        named.append(("TFDS data directory", tl_home(create=False) / "tensorflow_datasets"))
    weights = spec.backbone.weights
    for path in spec.backbone.local_files():
        named.append(("weights file" if path == weights else "backbone folder", Path(path)))
    return named


def check_reachable(spec: RunSpec) -> None:
    """Refuse a spec naming a path the cluster's nodes do not share.

    Raises:
        ConfigError: A path outside every shared folder, or a ``TL_ARTIFACTS_URL`` that
            cannot be opened.
    """
    check_mirror()
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
