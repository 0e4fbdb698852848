"""What every dataset source produces: decoded, resized splits held in memory.

Splits are plain ``uint8`` arrays decoded by :func:`tlcore.images.load_image`, the same
function ``predict`` uses, so a model never sees pixels prepared two different ways, and
features of a frozen backbone can be cached per image id. Training builds its own
``tf.data`` pipeline from these arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while images are decoded."""

SPLIT_NAMES = ("train", "val", "test")
IMBALANCE_RATIO = 3.0
"""Largest/smallest class size above which a bundle warns about imbalance."""


@dataclass
class Split:
    """One split of a dataset.

    Attributes:
        images: ``uint8`` array of shape ``[N, S, S, 3]``.
        labels: ``int32`` array of shape ``[N]``, indices into the bundle's class names.
        ids: One stable identifier per image (a relative path, ``train/123``, ...).
    """

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, indices: Sequence[int] | np.ndarray) -> Split:
        """The images at ``indices``, in that order."""
        index = np.asarray(indices, dtype=np.int64)
        return Split(self.images[index], self.labels[index], [self.ids[i] for i in index])

    def class_counts(self, n_classes: int) -> np.ndarray:
        """Number of images of each class, zeros included."""
        return np.bincount(self.labels, minlength=n_classes)


@dataclass(frozen=True)
class SkippedFile:
    """An input left out of the dataset, and why (shown to the user, not fatal)."""

    id: str
    reason: str


@dataclass
class DatasetBundle:
    """A dataset ready to train on: three disjoint splits and what was learned loading them.

    Attributes:
        train: Images the model learns from.
        val: Images that steer training (early stopping, best epoch).
        test: Images held out for the final evaluation.
        class_names: Label index -> class name.
        skipped: Inputs that could not be used.
        warnings: Things the user should know (imbalance, skipped files).
        source: The ``DatasetSpec.source`` this came from.
    """

    train: Split
    val: Split
    test: Split
    class_names: list[str]
    skipped: list[SkippedFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str = ""

    def splits(self) -> dict[str, Split]:
        """The three splits by name, in the order train, val, test."""
        return dict(zip(SPLIT_NAMES, (self.train, self.val, self.test), strict=True))

    def counts(self) -> dict[str, dict[str, int]]:
        """Split name -> class name -> number of images (zeros included)."""
        n_classes = len(self.class_names)
        return {
            name: dict(zip(self.class_names, split.class_counts(n_classes).tolist(), strict=True))
            for name, split in self.splits().items()
        }

    def samples(self, per_class: int) -> dict[str, list[np.ndarray]]:
        """Up to ``per_class`` training images of each class, for a preview grid."""
        return {
            name: [self.train.images[i] for i in np.flatnonzero(self.train.labels == k)[:per_class]]
            for k, name in enumerate(self.class_names)
        }


def make_bundle(
    train: Split,
    val: Split,
    test: Split,
    class_names: list[str],
    skipped: list[SkippedFile],
    source: str,
) -> DatasetBundle:
    """Assemble a bundle and derive the warnings every source owes its user."""
    warnings = []
    if skipped:
        warnings.append(
            f"{len(skipped)} file(s) could not be read and were left out; see the skipped list."
        )
    counts = sum(split.class_counts(len(class_names)) for split in (train, val, test))
    imbalance = imbalance_warning(np.asarray(counts), class_names)
    if imbalance:
        warnings.append(imbalance)
    return DatasetBundle(train, val, test, class_names, skipped, warnings, source)


def imbalance_warning(counts: np.ndarray, class_names: Sequence[str]) -> str | None:
    """A warning when the largest class has over :data:`IMBALANCE_RATIO` times the smallest."""
    smallest, largest = int(counts.min()), int(counts.max())
    if smallest > 0 and largest <= IMBALANCE_RATIO * smallest:
        return None
    return (
        f"Classes are strongly imbalanced: {class_names[int(counts.argmax())]!r} has {largest} "
        f"images, {class_names[int(counts.argmin())]!r} only {smallest}. "
        "Consider class weights (TrainSpec.class_weights) or more images of the small classes."
    )


class SplitWriter:
    """Collects decoded images straight into one array, so a split is never held twice.

    Args:
        image_size: Side of the (square) images.
        capacity: Expected number of images; the array grows if more arrive.
    """

    def __init__(self, image_size: int, capacity: int) -> None:
        self._images = np.zeros((max(capacity, 1), image_size, image_size, 3), dtype=np.uint8)
        self._labels: list[int] = []
        self._ids: list[str] = []

    def add(self, image: np.ndarray, label: int, image_id: str) -> None:
        """Append one decoded image of shape ``(S, S, 3)``."""
        n = len(self._ids)
        if n == len(self._images):
            self._images = np.concatenate([self._images, np.zeros_like(self._images)])
        self._images[n] = image
        self._labels.append(int(label))
        self._ids.append(image_id)

    def result(self) -> Split:
        """The split of everything added so far."""
        n = len(self._ids)
        return Split(self._images[:n], np.asarray(self._labels, dtype=np.int32), self._ids)
