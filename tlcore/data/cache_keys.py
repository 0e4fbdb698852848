"""What the on-disk caches share: size caps read from the environment and stable keys."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from typing import Any


def cache_limit_bytes(variable: str, default_mb: float) -> int:
    """The size cap in bytes from the environment ``variable`` (in megabytes).

    Junk falls back to the default; a negative cap is 0 (keep nothing beyond what is in use);
    an infinite one means no cap.
    """
    try:
        megabytes = float(os.environ.get(variable, default_mb))
    except ValueError:
        megabytes = default_mb
    if math.isnan(megabytes):
        megabytes = default_mb
    if math.isinf(megabytes) and megabytes > 0:
        return sys.maxsize
    return int(min(max(0.0, megabytes) * 1024 * 1024, sys.maxsize))


def feature_key(parts: dict[str, Any]) -> str:
    """Stable hash of the JSON of ``parts`` (what determines the cached values)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def ids_fingerprint(ids: list[str]) -> str:
    """Hash of a list of ids (a split's identities), for keys that depend on a whole split."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
