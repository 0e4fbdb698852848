"""Dataset sources -> one :class:`DatasetBundle` of decoded, split, in-memory images.

Sources: ``builtin:NAME`` (generated, offline), ``folder:PATH`` (class-per-folder),
``zip:PATH`` (a zipped class-per-folder tree, extracted safely) and ``tfds:NAME``.
"""

from tlcore.data.builtin import builtin_datasets
from tlcore.data.bundle import DatasetBundle, SkippedFile, Split
from tlcore.data.registry import load_dataset
from tlcore.data.tfds_source import COMMON_TFDS

__all__ = [
    "COMMON_TFDS", "DatasetBundle", "SkippedFile", "Split", "builtin_datasets", "load_dataset",
]
