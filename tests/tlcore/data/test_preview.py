import pytest

from tlcore.config import DatasetSpec
from tlcore.data.preview import preview_dataset
from tlcore.errors import DatasetError


def test_preview_keeps_samples_counts_and_warnings_only():
    preview = preview_dataset(DatasetSpec(source="builtin:shapes", image_size=32, subset=0.3), per_class=2)
    assert len(preview.class_names) == 5
    assert set(preview.counts) == {"train", "val", "test"}
    assert preview.total_images == sum(sum(c.values()) for c in preview.counts.values())
    assert 0 < preview.train_images < preview.total_images
    assert all(len(images) == 2 and images[0].shape == (32, 32, 3) for images in preview.samples.values())
    assert preview.skipped == []


def test_preview_errors_are_the_loaders(tmp_path):
    with pytest.raises(DatasetError):
        preview_dataset(DatasetSpec(source=f"folder:{tmp_path / 'missing'}"))
