"""On-disk stores of frozen-network outputs, one row per image identity.

With the backbone frozen (BatchNorm in inference mode) its output for an image never changes
between epochs or between runs, so it is computed once per image and per (backbone, weights,
image size, preprocessing, cut point) and reused: by later epochs, later runs, the classic
experiment, and by the same images in a dataset that has grown since. Rows are written as they
are computed and read back a batch at a time (:class:`tlcore.data.rows.RowArray`), so no step
holds a dataset's features in memory. ``$TL_FEATURE_CACHE_MB`` caps each store; least recently
used chunks go first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tlcore.data.cache_keys import cache_limit_bytes, feature_key
from tlcore.data.rows import RowLayout, RowStore
from tlcore.paths import subdir

DEFAULT_FEATURE_CACHE_MB = 8 * 1024


def feature_store(namespace: Mapping[str, Any], row_shape: tuple[int, ...]) -> RowStore:
    """The store of float32 rows of ``row_shape`` for everything ``namespace`` describes."""
    key = feature_key({**namespace, "shape": list(row_shape)})
    return RowStore(subdir("features") / key, RowLayout(tuple(row_shape), "float32"))


def feature_cache_limit() -> int:
    return cache_limit_bytes("TL_FEATURE_CACHE_MB", DEFAULT_FEATURE_CACHE_MB)
