"""On-disk cache of frozen-network outputs, keyed by a hash of everything that shapes them.

With the backbone frozen (BatchNorm in inference mode) its output for an image never changes
between epochs or between runs, so it is computed once per (dataset split, backbone, weights,
image size, preprocessing, cut point) and reused: by later epochs, later runs and the classic
experiment. The cache is capped in size (``$TL_FEATURE_CACHE_MB``) and evicts the least
recently used entries.

:class:`tlcore.data.array_cache.ArrayCache` is the storage underneath.
"""

from __future__ import annotations

from pathlib import Path

from tlcore.data.array_cache import ArrayCache, cache_limit_bytes
from tlcore.paths import subdir


class FeatureCache(ArrayCache):
    """Feature arrays under ``$TL_HOME/features``, capped by ``$TL_FEATURE_CACHE_MB``."""

    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        super().__init__(
            Path(root) if root else subdir("features"),
            cache_limit_bytes() if max_bytes is None else max_bytes,
        )
