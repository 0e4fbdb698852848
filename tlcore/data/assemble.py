"""Turn a catalogue of candidate images into a split, decoded bundle.

Sources that can list their images before decoding them (generated shapes, a folder, an
extracted zip) share this path: validate the classes, take the subset, decode in parallel,
drop what fails to decode, validate again, split. A catalogue that fingerprints its content
has the finished bundle cached on disk (:mod:`tlcore.data.cache`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlcore.config import DatasetSpec
from tlcore.data.bundle import DatasetBundle, Progress, SkippedFile, Split, SplitWriter, make_bundle
from tlcore.data.cache import load_cached
from tlcore.data.splits import check_class_counts, stratified_partition, stratified_subset
from tlcore.errors import BadImageError

DECODE_WORKERS = min(8, os.cpu_count() or 1)
"""Decoding threads: PIL releases the GIL while decoding, so threads use every core."""

Reader = Callable[[int], np.ndarray]
"""Decodes catalogue entry ``i`` at the requested size, raising BadImageError on failure."""


@dataclass(frozen=True)
class Catalogue:
    """What a source knows before decoding: one id and label per candidate image.

    Attributes:
        ids: Stable, printable identifier of each image.
        labels: Label index of each image.
        class_names: Label index -> class name.
        content: JSON-able fingerprint of what the reader would decode, cheap to take and
            changed whenever the pixels could change (file sizes and times, a generator
            version); ``None`` leaves the bundle uncached.
    """

    ids: list[str]
    labels: np.ndarray
    class_names: list[str]
    content: Mapping[str, Any] | None = None


def bundle_from_catalogue(
    catalogue: Catalogue,
    read: Reader,
    spec: DatasetSpec,
    progress: Progress | None = None,
) -> DatasetBundle:
    """Subset, decode and split a catalogue following ``spec``, or read the cached result.

    Raises:
        DatasetError: Too few classes or images, before or after dropping unreadable files.
    """
    if catalogue.content is None:
        return _assemble(catalogue, read, spec, progress)
    content = {
        "ids": catalogue.ids,
        "labels": np.asarray(catalogue.labels).tolist(),
        "class_names": catalogue.class_names,
        "source": catalogue.content,
    }
    return load_cached(
        spec, content, lambda report: _assemble(catalogue, read, spec, report), progress
    )


def _assemble(
    catalogue: Catalogue, read: Reader, spec: DatasetSpec, progress: Progress | None
) -> DatasetBundle:
    check_class_counts(catalogue.labels, catalogue.class_names)
    keep = stratified_subset(catalogue.ids, catalogue.labels, spec.subset, spec.seed)
    pool, skipped = _decode_all(catalogue, keep, read, spec.image_size, progress)
    note = f"{len(skipped)} file(s) could not be decoded and were skipped." if skipped else ""
    check_class_counts(pool.labels, catalogue.class_names, note)
    train, val, test = stratified_partition(
        pool.ids, pool.labels, (spec.val_fraction, spec.test_fraction), spec.seed
    )
    return make_bundle(
        pool.take(train), pool.take(val), pool.take(test),
        catalogue.class_names, skipped, spec.source,
    )


def _decode_all(
    catalogue: Catalogue,
    keep: np.ndarray,
    read: Reader,
    image_size: int,
    progress: Progress | None,
) -> tuple[Split, list[SkippedFile]]:
    """Decode the kept entries in parallel, in order; failures become SkippedFile entries."""
    writer = SplitWriter(image_size, len(keep))
    skipped: list[SkippedFile] = []
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
        results = pool.map(lambda i: _read_or_error(read, int(i)), keep)
        for done, (index, result) in enumerate(zip(keep, results, strict=True), start=1):
            image_id = catalogue.ids[index]
            if isinstance(result, BadImageError):
                skipped.append(SkippedFile(image_id, str(result)))
            else:
                writer.add(result, catalogue.labels[index], image_id)
            if progress is not None:
                progress(done, len(keep))
    return writer.result(), skipped


def _read_or_error(read: Reader, index: int) -> np.ndarray | BadImageError:
    """Return the error instead of raising it, so one bad file does not cancel the batch."""
    try:
        return read(index)
    except BadImageError as exc:
        return exc
