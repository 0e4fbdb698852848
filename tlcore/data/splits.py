"""Deterministic, stratified subsetting and splitting.

Every function here works on image ids and labels only, never on pixels, so a source can
decide what to keep before it spends time decoding. Within each class, items are ordered
by id and then shuffled by a generator seeded with ``(seed, class)``: the result depends
only on the ids, the labels and the seed, not on the order a file system lists files in,
and one class's split does not move when another class gains an image.
"""

from __future__ import annotations

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
    ids: Sequence[str], labels: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Indices of a ``fraction`` of each class, in their original order.

    Each class keeps at least :data:`MIN_IMAGES_PER_CLASS` images (or all it has), so a
    small subset of a small dataset can still be split.
    """
    if fraction >= 1:
        return np.arange(len(ids))
    kept = []
    for order in _class_orders(ids, labels, seed, _SUBSET_SALT):
        n_keep = min(len(order), max(MIN_IMAGES_PER_CLASS, _share(len(order), fraction)))
        kept.append(order[:n_keep])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def stratified_partition(
    ids: Sequence[str], labels: np.ndarray, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Split indices into a remainder and one held-out part per fraction, class by class.

    Every part gets at least one image of each class that has enough images for all parts
    plus the remainder; the remainder (the training split) keeps the rest.

    Returns:
        ``[rest, part_1, ..., part_k]``, disjoint index arrays covering every index.
    """
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for order in _class_orders(ids, labels, seed, _PARTITION_SALT):
        bounds = np.cumsum(_held_out_sizes(len(order), fractions))
        pieces = np.split(order, bounds)
        parts[0].append(pieces[-1])
        for part, piece in zip(parts[1:], pieces[:-1], strict=False):
            part.append(piece)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]


def _class_orders(
    ids: Sequence[str], labels: np.ndarray, seed: int, salt: int
) -> list[np.ndarray]:
    """Per class, its indices sorted by id and then shuffled by ``(seed, salt, class)``."""
    labels = np.asarray(labels)
    orders = []
    for label in np.unique(labels):
        members = sorted(np.flatnonzero(labels == label), key=ids.__getitem__)
        rng = np.random.default_rng([seed, salt, int(label)])
        orders.append(rng.permutation(np.asarray(members, dtype=np.int64)))
    return orders


def _held_out_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes of the held-out parts of a class of ``n``: at least 1 each, 1 left to train."""
    sizes = [max(1, _share(n, f)) for f in fractions]
    while sum(sizes) > n - 1 and max(sizes) > 1:
        sizes[sizes.index(max(sizes))] -= 1
    return sizes


def _share(n: int, fraction: float) -> int:
    """``n * fraction`` rounded half up (Python's round() would round half to even)."""
    return int(n * fraction + 0.5)
