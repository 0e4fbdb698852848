"""What every dataset source produces: three splits of decoded, resized images.

A split's images are ``uint8`` rows decoded by :func:`tlcore.images.load_image`, the same
function ``predict`` uses, so a model never sees pixels prepared two different ways. They are
read from the pixel store on disk as they are needed (:class:`tlcore.data.rows.RowArray`);
small arrays made in memory work the same. Each image carries its content identity, under
which a frozen backbone's features are cached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tlcore.data.catalogue import Catalogue
from tlcore.data.rows import RowArray

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while images are decoded."""

SPLIT_NAMES = ("train", "val", "test")
IMBALANCE_RATIO = 3.0
"""Largest/smallest class size above which a bundle warns about imbalance."""


@dataclass
class Split:
    """One split of a dataset.

    Attributes:
        images: ``uint8`` images of shape ``[N, S, S, 3]``: a :class:`~tlcore.data.rows.RowArray`
            on disk, or an array.
        labels: ``int32`` array of shape ``[N]``, indices into the bundle's class names.
        ids: One stable identifier per image (a relative path, ``train/123``, ...).
        identities: Content identity per image (for images in memory, a hash of each
            one's pixels by default).
    """

    images: np.ndarray | RowArray
    labels: np.ndarray
    ids: list[str]
    identities: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.identities:
            if isinstance(self.images, np.ndarray):
                self.identities = [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest()
                                   for row in self.images]
            else:
                self.identities = list(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, indices: Sequence[int] | np.ndarray) -> Split:
        """The images at ``indices``, in that order (read from disk only when used)."""
        index = np.asarray(indices, dtype=np.int64)
        images = self.images.take(index) if isinstance(self.images, RowArray) else self.images[index]
        return Split(images, self.labels[index], [self.ids[i] for i in index],
                     [self.identities[i] for i in index])

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
        fingerprint: Hash of the catalogue the splits came from (:attr:`Catalogue.fingerprint`).
        manifest: ``id -> [identity, class]`` of that catalogue, to tell later what changed.
    """

    train: Split
    val: Split
    test: Split
    class_names: list[str]
    skipped: list[SkippedFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    fingerprint: str = ""
    manifest: dict[str, list[str]] = field(default_factory=dict)

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
    catalogue: Catalogue | None = None,
) -> DatasetBundle:
    """Assemble a bundle and derive the warnings every source owes its user."""
    counts = sum(split.class_counts(len(class_names)) for split in (train, val, test))
    warnings = data_warnings(len(skipped), np.asarray(counts), class_names)
    if catalogue is None:
        return DatasetBundle(train, val, test, class_names, skipped, warnings, source)
    return DatasetBundle(train, val, test, class_names, skipped, warnings, source,
                         catalogue.fingerprint, catalogue.manifest())


def data_warnings(skipped: int, counts: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """What a person should know about a dataset: unreadable files left out, imbalance.

    The preview and a loaded bundle say the same, from the catalogue and the decoded splits.
    """
    warnings = []
    if skipped:
        warnings.append(f"{skipped} file(s) could not be read and were left out; see the skipped list.")
    imbalance = imbalance_warning(counts, class_names)
    return warnings + ([imbalance] if imbalance else [])


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

