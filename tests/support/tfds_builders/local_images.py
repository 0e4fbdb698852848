"""A real TFDS builder that prepares an image-classification dataset from a local folder.

It lets a test run TFDS' whole preparation (generate, shuffle, write TFRecords, read back)
offline, which ``tfds.testing.mock_data`` skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow_datasets as tfds

SOURCE_VARIABLE = "TL_TEST_TFDS_SOURCE"
"""Folder with one sub-folder of PNGs per class, read when the builder prepares."""

CLASSES = ("circle", "square")


class LocalImages(tfds.core.GeneratorBasedBuilder):
    """Images of two classes read from ``$TL_TEST_TFDS_SOURCE/<class>/*.png``."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(names=list(CLASSES)),
        }))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        return {"train": self._generate_examples(Path(os.environ[SOURCE_VARIABLE]))}

    def _generate_examples(self, source: Path):
        for name in CLASSES:
            for path in sorted((source / name).glob("*.png")):
                yield f"{name}/{path.name}", {"image": str(path), "label": name}
