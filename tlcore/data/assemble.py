"""Turn a catalogue of candidate images into three splits read from the pixel store.

Every source lists its images first (:class:`~tlcore.data.catalogue.Catalogue`); from there the
path is shared: validate the classes, take the subset, decode what the pixel store has not
seen, drop what fails to decode, validate again, split by each image's seeded hash. Nothing
here holds more than one chunk of pixels in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from tlcore.config import DatasetSpec
from tlcore.data.bundle import DatasetBundle, Progress, SkippedFile, Split, make_bundle
from tlcore.data.catalogue import FREE, Catalogue
from tlcore.data.pixels import CACHE_LIMIT_VARIABLE, decode_missing, evict_pixels, pixel_store
from tlcore.data.rows import RowsEvicted, RowStore
from tlcore.data.splits import check_class_counts, stratified_partition, stratified_subset
from tlcore.errors import StorageError

ROLES = ("train", "val", "test")
EVICTION_RETRIES = 3


def bundle_from_catalogue(
    catalogue: Catalogue,
    spec: DatasetSpec,
    progress: Progress | None = None,
    on_decoded: Callable[[str, np.ndarray], None] | None = None,
) -> DatasetBundle:
    """Subset, decode (what is new) and split a catalogue following ``spec``.

    ``on_decoded`` hears of each newly decoded image (see :func:`tlcore.data.pixels.decode_missing`).

    Raises:
        DatasetError: Too few classes or images, before or after dropping unreadable files.
    """
    started = time.time()
    check_class_counts(catalogue.labels, catalogue.class_names)
    keep = stratified_subset(catalogue.identities, catalogue.labels, spec.subset, spec.seed)
    for attempt in range(EVICTION_RETRIES):
        try:
            bundle = _splits_of_stored(catalogue, keep, spec, progress, on_decoded)
            break
        except RowsEvicted as exc:  # another process evicted rows we had just checked: decode again
            if attempt == EVICTION_RETRIES - 1:
                raise StorageError(
                    f"The pixel store is so full that other runs evicted {len(exc.args[0])} of this "
                    f"dataset's images {EVICTION_RETRIES} times while they were being read.",
                    f"Raise {CACHE_LIMIT_VARIABLE} (megabytes) or run fewer jobs at once.",
                ) from exc
    evict_pixels(pixel_store(spec.image_size), in_use_since=started)
    return bundle


def _splits_of_stored(
    catalogue: Catalogue,
    keep: np.ndarray,
    spec: DatasetSpec,
    progress: Progress | None,
    on_decoded: Callable[[str, np.ndarray], None] | None,
) -> DatasetBundle:
    store = decode_missing(catalogue, keep, spec.image_size, progress, on_decoded)
    bad = store.bad([catalogue.identities[i] for i in keep])
    skipped = [
        SkippedFile(catalogue.ids[i], bad[catalogue.identities[i]])
        for i in keep
        if catalogue.identities[i] in bad
    ]
    good = np.array([i for i in keep if catalogue.identities[i] not in bad], dtype=np.int64)
    note = f"{len(skipped)} file(s) could not be decoded and were skipped." if skipped else ""
    check_class_counts(catalogue.labels[good], catalogue.class_names, note)
    parts = assign_splits(catalogue, good, spec)
    train, val, test = (split_of(catalogue, good[part], store) for part in parts)
    return make_bundle(train, val, test, catalogue.class_names, skipped, spec.source, catalogue)


def assign_splits(catalogue: Catalogue, indices: np.ndarray, spec: DatasetSpec) -> list[np.ndarray]:
    """Positions in ``indices`` of the train, validation and test images.

    Official splits stay as they are; the roles a source has no official split for are carved
    from its free images (the official training split of a TFDS dataset, say) by hash.
    """
    fixed = np.full(len(indices), FREE) if catalogue.fixed_split is None else catalogue.fixed_split[indices]
    roles = {role: np.flatnonzero(fixed == k) for k, role in enumerate(ROLES)}
    missing = [k for k, role in enumerate(ROLES[1:], start=1) if not len(roles[role])]
    pool = np.flatnonzero((fixed == FREE) | (fixed == 0))
    fractions = {1: spec.val_fraction, 2: spec.test_fraction}
    carved = stratified_partition(
        [catalogue.identities[i] for i in indices[pool]],
        catalogue.labels[indices[pool]],
        [fractions[k] for k in missing],
        spec.seed,
    )
    result = {0: pool[carved[0]], **{k: pool[part] for k, part in zip(missing, carved[1:], strict=True)}}
    return [np.sort(result.get(k, roles[role])) for k, role in enumerate(ROLES)]


def split_of(catalogue: Catalogue, indices: np.ndarray, store: RowStore) -> Split:
    """The catalogue entries at ``indices`` as a split whose images are read from ``store``."""
    identities = [catalogue.identities[i] for i in indices]
    return Split(
        store.array(identities),
        catalogue.labels[indices].astype(np.int32),
        [catalogue.ids[i] for i in indices],
        identities,
    )
