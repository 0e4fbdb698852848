"""On-disk cache of finished dataset bundles: loading the same data again is one file read.

Decoding and resizing is nearly all of a load (a thousand JPEG photos take seconds on two
cores), and its result depends only on the spec and on the source's content. So a bundle is
stored under a hash of both: the spec's fields and a fingerprint of the content that each
source takes without decoding anything (file sizes and modification times, a TFDS version,
a generator version). Changed data gets a new key and never meets a stale entry; old
entries age out of the size cap (``$TL_DATASET_CACHE_MB``, 0 turns the cache off), least
recently used first.

An entry is one uncompressed ``.npz``: the split arrays plus a JSON record of ids, class
names, skipped files and warnings. Writes are atomic (two processes loading the same data
both write, and one complete file wins); the zip's CRCs and a consistency check turn a
damaged entry into a miss.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import PIL

from tlcore.config import DatasetSpec
from tlcore.data.array_cache import ArrayCache, cache_limit_bytes, feature_key
from tlcore.data.bundle import SPLIT_NAMES, DatasetBundle, Progress, SkippedFile, Split
from tlcore.paths import subdir

CACHE_FORMAT = 1
"""Bumped whenever what an entry holds, or how a bundle is built from a source (decoding in
:func:`tlcore.images.load_image`, subsetting, splitting, warnings), changes."""

CACHE_LIMIT_VARIABLE = "TL_DATASET_CACHE_MB"
DEFAULT_DATASET_CACHE_MB = 4096

_RECORD = "record"


class BundleCache(ArrayCache):
    """Dataset bundles, one ``.npz`` file per key."""

    suffix = ".npz"

    def _save(self, handle: BinaryIO, value: DatasetBundle) -> None:
        np.savez(handle, **_to_arrays(value))

    def _load(self, path: Path) -> DatasetBundle:
        try:
            with np.load(path) as arrays:
                return _from_arrays(arrays)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - zipfile and numpy fail in many ways
            # A damaged file can raise nearly anything while being parsed (BadZipFile,
            # RuntimeError for a flipped "encrypted" bit, TypeError, ...); all mean a miss.
            raise ValueError(f"Unreadable dataset cache entry {path.name}: {exc!r}") from exc

    def _nbytes(self, value: DatasetBundle) -> int:
        return sum(split.images.nbytes for split in value.splits().values())


def dataset_cache() -> BundleCache:
    """The cache under ``$TL_HOME/datasets``, capped by ``$TL_DATASET_CACHE_MB``."""
    limit = cache_limit_bytes(CACHE_LIMIT_VARIABLE, DEFAULT_DATASET_CACHE_MB)
    return BundleCache(subdir("datasets"), limit)


def bundle_key(spec: DatasetSpec, content: Mapping[str, Any]) -> str:
    """Hash of every spec field (each shapes the bundle), the source's content and the decoder."""
    return feature_key({
        "format": CACHE_FORMAT,
        "pillow": PIL.__version__,  # decodes and resizes: a new release may move pixels
        "spec": dataclasses.asdict(spec),
        "content": content,
    })


def load_cached(
    spec: DatasetSpec,
    content: Mapping[str, Any],
    load: Callable[[Progress | None], DatasetBundle],
    progress: Progress | None = None,
) -> DatasetBundle:
    """The cached bundle for ``spec`` and ``content``, or ``load(progress)``'s, then stored.

    Args:
        spec: The dataset spec being loaded.
        content: JSON-able fingerprint of the source's content; it must change whenever
            the images, labels or ids the source would produce change.
        load: Builds the bundle, reporting decoding progress to its argument.
        progress: Called as ``progress(done, total)``; a hit reports ``(total, total)`` once.
    """
    cache = dataset_cache()
    if cache.max_bytes == 0:
        return load(progress)
    key = bundle_key(spec, content)
    bundle = cache.get(key)
    if bundle is not None and bundle.train.images.shape[1:3] == (spec.image_size,) * 2:
        if progress is not None:
            total = sum(map(len, bundle.splits().values())) + len(bundle.skipped)
            progress(total, total)
        return bundle
    bundle = load(progress)
    with suppress(OSError):  # A full or read-only disk costs the next load time, never this one its data.
        cache.put(key, bundle)
    return bundle


def _to_arrays(bundle: DatasetBundle) -> dict[str, np.ndarray]:
    record = {
        "class_names": bundle.class_names,
        "skipped": [[skipped.id, skipped.reason] for skipped in bundle.skipped],
        "warnings": bundle.warnings,
        "source": bundle.source,
        "ids": {name: split.ids for name, split in bundle.splits().items()},
    }
    arrays = {_RECORD: np.frombuffer(json.dumps(record).encode(), dtype=np.uint8)}
    for name, split in bundle.splits().items():
        arrays[f"{name}_images"] = split.images
        arrays[f"{name}_labels"] = split.labels
    return arrays


def _from_arrays(arrays: Mapping[str, np.ndarray]) -> DatasetBundle:
    record = json.loads(arrays[_RECORD].tobytes())
    n_classes = len(record["class_names"])
    train, val, test = (
        _checked_split(arrays[f"{name}_images"], arrays[f"{name}_labels"],
                       record["ids"][name], n_classes)
        for name in SPLIT_NAMES
    )
    if not train.images.shape[1:] == val.images.shape[1:] == test.images.shape[1:]:
        raise ValueError("The splits' images differ in shape.")
    return DatasetBundle(
        train, val, test,
        class_names=[str(name) for name in record["class_names"]],
        skipped=[SkippedFile(str(i), str(reason)) for i, reason in record["skipped"]],
        warnings=[str(warning) for warning in record["warnings"]],
        source=str(record["source"]),
    )


def _checked_split(
    images: np.ndarray, labels: np.ndarray, ids: list[str], n_classes: int
) -> Split:
    """A split whose arrays agree with each other and with its ids, or ValueError."""
    n = len(ids)
    if (
        images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != n
        or images.shape[1] != images.shape[2] or images.shape[3] != 3
        or labels.dtype != np.int32 or labels.shape != (n,)
        or (n and not 0 <= labels.min() <= labels.max() < n_classes)
    ):
        raise ValueError("The entry's arrays do not match its ids and classes.")
    return Split(images, labels, [str(i) for i in ids])
