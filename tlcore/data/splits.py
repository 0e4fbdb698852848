"""Deterministic, stratified subsetting and splitting.

Every function here works on keys (content identities) and labels only, never on pixels, so
a source can decide what to keep before it spends time decoding. Each item's fate is decided
by a seeded hash of its own key: the result does not depend on the order a file system lists
files in, and an image keeps its split when others are added or removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from tlcore.errors import DatasetError

MIN_IMAGES_PER_CLASS = 3
"""One image each for training, validation and test."""

_SUBSET_SALT = 1
_PARTITION_SALT = 2


def check_class_counts(labels: np.ndarray, class_names: Sequence[str], note: str = "") -> None:
    """Refuse datasets that cannot be split into train, validation and test.

    Args:
        labels: Label index of every image.
        class_names: Label index -> class name.
        note: Extra context appended to the hint (e.g. how many files were skipped).

    Raises:
        DatasetError: There are no classes, only one, or a class has fewer than
            :data:`MIN_IMAGES_PER_CLASS` images.
    """
    if not class_names:
        raise DatasetError(
            "The dataset has no classes.",
            f"Put the images of each class in a sub-folder of its own (cats/, dogs/, ...). {note}",
        )
    if len(class_names) == 1:
        raise DatasetError(
            f"The dataset has only 1 class, {class_names[0]!r} "
            f"({len(labels)} image{'' if len(labels) == 1 else 's'}); "
            "a classifier needs at least 2 classes to tell apart.",
            f"Add a second class: a folder of its images next to '{class_names[0]}/' "
            f"(one folder per class). {note}",
        )
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    small = [(name, int(n)) for name, n in zip(class_names, counts, strict=False) if n < MIN_IMAGES_PER_CLASS]
    if small:
        listing = ", ".join(f"{name!r} has {n}" for name, n in small)
        raise DatasetError(
            f"Too few images: {listing}. Every class needs at least {MIN_IMAGES_PER_CLASS} "
            "(one each for training, validation and testing).",
            f"Add images to {'that class' if len(small) == 1 else 'those classes'}, remove it, "
            f"or use a larger subset. {note}",
        )


def stratified_subset(
    keys: Sequence[str], labels: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Indices of about a ``fraction`` of each class, in their original order.

    An item is kept when its seeded hash falls below ``fraction``, so adding or removing other
    items never changes whether it is kept. Each class keeps at least
    :data:`MIN_IMAGES_PER_CLASS` items (or all it has), topped up by lowest hash.
    """
    if fraction >= 1:
        return np.arange(len(keys))
    draws = unit_hashes(keys, seed, _SUBSET_SALT)
    labels = np.asarray(labels)
    kept = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        by_draw = members[np.argsort(draws[members], kind="stable")]
        n_keep = max(int(np.sum(draws[members] < fraction)), min(len(members), MIN_IMAGES_PER_CLASS))
        kept.append(by_draw[:n_keep])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def stratified_partition(
    keys: Sequence[str], labels: np.ndarray, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Split indices into a remainder and one held-out part per fraction, class by class.

    Each item's part is decided by its own seeded hash (``[0, f1)`` -> part 1, ``[f1, f1+f2)``
    -> part 2, the rest -> the remainder), so an item keeps its part when others are added or
    removed and a test image never moves into training as a dataset grows. In a class too
    small for its share to reach every part, the lowest draws of the remainder are moved into
    the empty parts (and the highest held-out draw back, if the remainder is empty), so every
    part gets one image of each class that has enough for all parts plus the remainder.

    Returns:
        ``[rest, part_1, ..., part_k]``, disjoint index arrays covering every index.
    """
    draws = unit_hashes(keys, seed, _PARTITION_SALT)
    bounds = np.cumsum(fractions)
    part_of = np.searchsorted(bounds, draws, side="right") + 1  # 1..k held out, k + 1 remainder
    part_of[part_of == len(fractions) + 1] = 0
    labels = np.asarray(labels)
    for label in np.unique(labels):
        _repair_class(part_of, np.flatnonzero(labels == label), draws, len(fractions))
    return [np.flatnonzero(part_of == part) for part in range(len(fractions) + 1)]


def _repair_class(part_of: np.ndarray, members: np.ndarray, draws: np.ndarray, parts: int) -> None:
    """Give every part of one class a member when the class has enough (see above).

    Each empty part takes one member from the largest part: the lowest draw when it is a
    held-out part (part 1 holds the lowest draws), the highest when it is the remainder.
    """
    if len(members) < parts + 1:
        return
    for _ in range(parts + 1):
        sizes = np.bincount(part_of[members], minlength=parts + 1)
        empty = np.flatnonzero(sizes == 0)
        if not len(empty):
            return
        donors = members[part_of[members] == int(np.argmax(sizes))]
        pick = np.argmax(draws[donors]) if empty[0] == 0 else np.argmin(draws[donors])
        part_of[donors[pick]] = empty[0]


def unit_hashes(keys: Sequence[str], seed: int, salt: int) -> np.ndarray:
    """A number in ``[0, 1)`` per key, fixed by the key, the seed and the salt alone."""
    prefix = f"{seed}:{salt}:".encode()
    digests = b"".join(hashlib.blake2b(prefix + key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
                       for key in keys)
    return np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64
