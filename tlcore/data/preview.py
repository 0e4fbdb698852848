"""A small, picklable summary of a dataset for the Configure page's preview.

A loaded :class:`~tlcore.data.DatasetBundle` holds every decoded image; the preview keeps only
what a person looks at (a few images per class, counts, warnings, skipped files), so a UI can
cache it cheaply per dataset spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tlcore.config import DatasetSpec
from tlcore.data import SkippedFile, load_dataset
from tlcore.data.bundle import Progress

SAMPLES_PER_CLASS = 6


@dataclass
class DatasetPreview:
    """What the preview shows about one dataset spec.

    Attributes:
        class_names: Label index -> class name.
        counts: Split name -> class name -> images.
        samples: Class name -> a few training images (``uint8`` ``[S, S, 3]``).
        warnings: The bundle's warnings (imbalance, skipped files).
        skipped: Files left out, with the reason.
    """

    class_names: list[str]
    counts: dict[str, dict[str, int]]
    samples: dict[str, list[np.ndarray]]
    warnings: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def train_images(self) -> int:
        return sum(self.counts.get("train", {}).values())

    @property
    def total_images(self) -> int:
        return sum(sum(per_class.values()) for per_class in self.counts.values())


def preview_dataset(
    spec: DatasetSpec, per_class: int = SAMPLES_PER_CLASS, progress: Progress | None = None
) -> DatasetPreview:
    """Load the dataset ``spec`` describes and keep what a preview needs.

    Raises:
        ConfigError, DatasetError, UploadError: As :func:`tlcore.data.load_dataset`.
    """
    bundle = load_dataset(spec, progress)
    return DatasetPreview(
        class_names=list(bundle.class_names),
        counts=bundle.counts(),
        samples={name: [np.array(img) for img in imgs] for name, imgs in bundle.samples(per_class).items()},
        warnings=list(bundle.warnings),
        skipped=list(bundle.skipped),
    )
