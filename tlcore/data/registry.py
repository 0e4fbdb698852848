"""Dataset sources by kind: ``DatasetSpec.kind`` -> a lister of its catalogue."""

from __future__ import annotations

from collections.abc import Callable

from tlcore.config import DatasetSpec
from tlcore.data.archive import list_zip
from tlcore.data.assemble import bundle_from_catalogue
from tlcore.data.builtin import list_builtin
from tlcore.data.bundle import DatasetBundle, Progress
from tlcore.data.catalogue import Catalogue
from tlcore.data.folder import list_folder
from tlcore.data.tfds_source import list_tfds

Lister = Callable[[DatasetSpec], Catalogue]

LISTERS: dict[str, Lister] = {
    "builtin": list_builtin,
    "folder": list_folder,
    "zip": list_zip,
    "tfds": list_tfds,
}
"""One lister per :data:`tlcore.config.SOURCE_KINDS` entry."""


def list_dataset(spec: DatasetSpec) -> Catalogue:
    """The catalogue of the dataset ``spec`` describes: ids, labels, identities; no decoding.

    Raises:
        ConfigError: The spec itself is invalid.
        DatasetError: The source cannot be used (see each lister).
        UploadError: A zip archive is corrupt or unsafe.
    """
    spec.validate()
    return LISTERS[spec.kind](spec)


def load_dataset(spec: DatasetSpec, progress: Progress | None = None) -> DatasetBundle:
    """Load, decode (what the pixel store lacks) and split the dataset ``spec`` describes.

    Args:
        spec: Source, subset, image size, split fractions and seed.
        progress: Called as ``progress(done, total)`` while images are decoded.

    Returns:
        Three disjoint splits of ``uint8`` images at ``spec.image_size`` read from disk, with
        class names, skipped files, warnings and the data's fingerprint.

    Raises:
        ConfigError, DatasetError, UploadError: As :func:`list_dataset`.
    """
    return bundle_from_catalogue(list_dataset(spec), spec, progress)
