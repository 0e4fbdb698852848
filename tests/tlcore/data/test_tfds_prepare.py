"""tfds: a real builder prepared end to end from files the test writes, offline, under TL_HOME."""

from pathlib import Path

import numpy as np
import pytest
from imagegen import write_class_folders
from tfds_builders.local_images import CLASSES, SOURCE_VARIABLE

from tlcore.config import DatasetSpec
from tlcore.data import load_dataset


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tfds-source"
    write_class_folders(folder, dict.fromkeys(CLASSES, 10))
    monkeypatch.setenv(SOURCE_VARIABLE, str(folder))
    return folder


def test_a_builder_is_prepared_under_tl_home_and_decoded_like_every_source(
        source: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))  # TFDS' own default would be here
    spec = DatasetSpec(source="tfds:local_images", image_size=16, val_fraction=0.2, test_fraction=0.2)
    bundle = load_dataset(spec)
    assert bundle.class_names == list(CLASSES)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 20
    assert bundle.train.images.shape[1:] == (16, 16, 3)
    assert set(np.unique(bundle.train.labels)) == {0, 1}
    prepared = isolated_home / "tensorflow_datasets" / "local_images" / "1.0.0"
    assert any(prepared.glob("*.tfrecord*"))
    assert not (tmp_path / "user-home" / "tensorflow_datasets").exists()


def test_data_dir_in_the_spec_wins_over_tl_home(source: Path, isolated_home: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "prepared"
    load_dataset(DatasetSpec(source="tfds:local_images", image_size=16, data_dir=str(data_dir)))
    assert any((data_dir / "local_images" / "1.0.0").glob("*.tfrecord*"))
    assert not (isolated_home / "tensorflow_datasets" / "local_images").exists()
