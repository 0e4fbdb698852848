"""The pixel store: every image decoded once, by content identity, resized, on disk.

Training, validation, the feature pass, evaluation and the mistakes gallery all read the same
rows, decoded by :func:`tlcore.images.load_image` (as ``predict`` decodes uploads), so every
step sees identical pixels and none holds a dataset in memory. One store per image size and
decoder: a new Pillow release or a change in how images are decoded starts a new store rather
than mixing pixels of two decoders.

The store is a cache: ``$TL_PIXEL_CACHE_MB`` (default 32 GiB) caps it, least recently used
chunks go first, and the chunks of the data being used now are never evicted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import PIL
import simplejpeg

from tlcore.data.bundle import Progress
from tlcore.data.cache_keys import cache_limit_bytes
from tlcore.data.catalogue import Catalogue
from tlcore.data.rows import RowLayout, RowStore
from tlcore.errors import BadImageError
from tlcore.paths import subdir

PIXELS_FORMAT = 2
"""Bumped whenever :func:`tlcore.images.load_image` would decode the same file differently."""

CACHE_LIMIT_VARIABLE = "TL_PIXEL_CACHE_MB"
DEFAULT_PIXEL_CACHE_MB = 32 * 1024


def decoder_tag() -> str:
    """What the pixels depend on besides the file: the decoders' versions."""
    versions = f"{PIXELS_FORMAT}:{PIL.__version__}:{simplejpeg.__version__}"
    return hashlib.sha256(versions.encode()).hexdigest()[:8]


def pixel_store(image_size: int) -> RowStore:
    """The store of ``image_size`` px images under ``$TL_HOME/pixels``."""
    root = subdir("pixels") / f"{image_size}px-{decoder_tag()}"
    return RowStore(root, RowLayout((image_size, image_size, 3), "uint8"), cache_writes=False)


def decode_missing(
    catalogue: Catalogue,
    indices: Sequence[int],
    image_size: int,
    progress: Progress | None = None,
    on_decoded: Callable[[str, np.ndarray], None] | None = None,
) -> RowStore:
    """Decode the entries at ``indices`` that the store has not seen, and store them.

    ``on_decoded(identity, pixels)`` hears of each image as it is decoded, while the decoding
    threads go on with the next ones: a frozen run forwards it there and then.

    Entries already stored, or remembered as unreadable, cost nothing; so a dataset that grew
    by 1 % decodes that 1 %. Failures are remembered with their reason.

    Returns:
        The store, now holding (or knowing as unreadable) every entry at ``indices``.
    """
    store = pixel_store(image_size)
    missing = set(store.missing([catalogue.identities[i] for i in indices]))
    todo = []
    for index in indices:
        if catalogue.identities[index] in missing:
            missing.discard(catalogue.identities[index])  # copies of one image decode once
            todo.append(index)
    done = len(indices) - len(todo)
    if progress is not None and (done or not todo):
        progress(done, len(indices))
    failures: list[tuple[str, str]] = []
    with store.writer() as writer:
        for count, (index, result) in enumerate(catalogue.decode(todo, image_size), start=1):
            identity = catalogue.identities[index]
            if isinstance(result, BadImageError):
                failures.append((identity, str(result)))
            else:
                pixels = np.asarray(result, dtype=np.uint8)
                writer.add(identity, pixels)
                if on_decoded is not None:
                    on_decoded(identity, pixels)
            if progress is not None:
                progress(done + count, len(indices))
    store.mark_bad(failures)
    return store


def evict_pixels(store: RowStore, in_use_since: float) -> None:
    """Keep the store under its cap, sparing chunks read since ``in_use_since``."""
    store.evict(cache_limit_bytes(CACHE_LIMIT_VARIABLE, DEFAULT_PIXEL_CACHE_MB), keep_since=in_use_since)
