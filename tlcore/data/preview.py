"""A dataset's preview from its catalogue: counts, warnings and a few decoded samples.

The preview runs in the Streamlit server, which serves every user, so it never decodes a
dataset: counts per class and split come from the file listing and each image's seeded hash,
exactly as a run will split them, and only the handful of sample images shown are decoded.
Files that fail to decode are found by a run's decode pass; once one has seen them, the
preview lists them too (the pixel store remembers them).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import numpy as np

from tlcore.config import DatasetSpec
from tlcore.data.assemble import assign_splits
from tlcore.data.bundle import SPLIT_NAMES, SkippedFile, data_warnings
from tlcore.data.catalogue import Catalogue
from tlcore.data.pixels import pixel_store
from tlcore.data.registry import list_dataset
from tlcore.data.rows import RowStore
from tlcore.data.splits import check_class_counts, stratified_subset
from tlcore.errors import BadImageError, TLError

SAMPLES_PER_CLASS = 6


@dataclass
class DatasetPreview:
    """What the preview shows about one dataset spec.

    Attributes:
        class_names: Label index -> class name.
        counts: Split name -> class name -> images.
        samples: Class name -> a few training images (``uint8`` ``[S, S, 3]``).
        warnings: Imbalance, files known to be unreadable.
        skipped: Files left out, with the reason (those a run has found so far).
        fingerprint: The data's fingerprint, as a run on it records it.
        unchecked: Images no run has decoded yet (unreadable ones among them show up then).
    """

    class_names: list[str]
    counts: dict[str, dict[str, int]]
    samples: dict[str, list[np.ndarray]]
    warnings: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    fingerprint: str = ""
    unchecked: int = 0

    @property
    def train_images(self) -> int:
        return sum(self.counts.get("train", {}).values())

    @property
    def total_images(self) -> int:
        return sum(sum(per_class.values()) for per_class in self.counts.values())

    def to_dict(self) -> dict[str, object]:
        """Everything but the sample pixels, for ``preview --json``."""
        return {
            "class_names": self.class_names,
            "counts": self.counts,
            "warnings": self.warnings,
            "skipped": [{"id": s.id, "reason": s.reason} for s in self.skipped],
            "fingerprint": self.fingerprint,
            "unchecked": self.unchecked,
            "images": self.total_images,
        }


def preview_dataset(spec: DatasetSpec, per_class: int = SAMPLES_PER_CLASS) -> DatasetPreview:
    """List the dataset ``spec`` describes and summarise it, decoding only the samples.

    Raises:
        ConfigError, DatasetError, UploadError: As :func:`tlcore.data.registry.list_dataset`.
    """
    catalogue = list_dataset(spec)
    check_class_counts(catalogue.labels, catalogue.class_names)
    keep = stratified_subset(catalogue.identities, catalogue.labels, spec.subset, spec.seed)
    store = _known_pixels(spec.image_size)
    identities = [catalogue.identities[i] for i in keep]
    bad = store.bad(identities) if store is not None else {}
    skipped = [
        SkippedFile(catalogue.ids[i], bad[catalogue.identities[i]])
        for i in keep
        if catalogue.identities[i] in bad
    ]
    good = np.array([i for i in keep if catalogue.identities[i] not in bad], dtype=np.int64)
    parts = assign_splits(catalogue, good, spec)
    n_classes = len(catalogue.class_names)
    counts = {
        name: dict(
            zip(
                catalogue.class_names,
                np.bincount(catalogue.labels[good[part]], minlength=n_classes).tolist(),
                strict=True,
            )
        )
        for name, part in zip(SPLIT_NAMES, parts, strict=True)
    }
    warnings = data_warnings(
        len(skipped), np.bincount(catalogue.labels[good], minlength=n_classes), catalogue.class_names
    )
    return DatasetPreview(
        class_names=list(catalogue.class_names),
        counts=counts,
        samples=_samples(catalogue, good[parts[0]], spec.image_size, per_class),
        warnings=warnings,
        skipped=skipped,
        fingerprint=catalogue.fingerprint,
        unchecked=len(store.missing(identities)) if store is not None else len(identities),
    )


def _known_pixels(image_size: int) -> RowStore | None:
    """The pixel store, for what runs learned about these files; None where it cannot be opened
    (a read-only home): the preview then knows nothing about unreadable files yet."""
    try:
        return pixel_store(image_size)
    except (OSError, sqlite3.Error, TLError):
        return None


def _samples(
    catalogue: Catalogue, train: np.ndarray, size: int, per_class: int
) -> dict[str, list[np.ndarray]]:
    """Up to ``per_class`` decoded training images of each class (unreadable ones left out)."""
    chosen = [
        int(i)
        for k in range(len(catalogue.class_names))
        for i in train[catalogue.labels[train] == k][:per_class]
    ]
    samples: dict[str, list[np.ndarray]] = {name: [] for name in catalogue.class_names}
    for index, pixels in catalogue.decode(chosen, size):
        if not isinstance(pixels, BadImageError):
            samples[catalogue.class_names[int(catalogue.labels[index])]].append(pixels)
    return samples
