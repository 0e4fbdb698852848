"""Dataset sources by kind: ``DatasetSpec.kind`` -> loader."""

from __future__ import annotations

from collections.abc import Callable

from tlcore.config import DatasetSpec
from tlcore.data.archive import load_zip
from tlcore.data.builtin import load_builtin
from tlcore.data.bundle import DatasetBundle, Progress
from tlcore.data.folder import load_folder
from tlcore.data.tfds_source import load_tfds

Loader = Callable[[DatasetSpec, "Progress | None"], DatasetBundle]

LOADERS: dict[str, Loader] = {
    "builtin": load_builtin,
    "folder": load_folder,
    "zip": load_zip,
    "tfds": load_tfds,
}
"""One loader per :data:`tlcore.config.SOURCE_KINDS` entry."""


def load_dataset(spec: DatasetSpec, progress: Progress | None = None) -> DatasetBundle:
    """Load, decode and split the dataset ``spec`` describes.

    Args:
        spec: Source, subset, image size, split fractions and seed.
        progress: Called as ``progress(done, total)`` while images are decoded.

    Returns:
        Three disjoint splits of ``uint8`` images at ``spec.image_size``, with class names,
        skipped files and warnings.

    Raises:
        ConfigError: The spec itself is invalid.
        DatasetError: The source cannot be used (see each loader).
        UploadError: A zip archive is corrupt or unsafe.
    """
    spec.validate()
    return LOADERS[spec.kind](spec, progress)
