"""Datasets collected in the browser: names, hostile images, duplicates, and use as a folder dataset."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import numpy as np
import pytest
from imagegen import encode, halves, png_declaring, random_pixels
from PIL import Image

from tlcore.config import DatasetSpec
from tlcore.data import collect, load_dataset
from tlcore.errors import BadImageError, DatasetError, StorageError, UploadError
from tlcore.images import load_image
from tlcore.paths import collected_root, data_roots

STORED_NAME = re.compile(r"^[A-Za-z0-9_-]+-[0-9a-f]{16}\.(png|jpg)$")


def png(seed: int, size: int = 16) -> bytes:
    return encode(random_pixels(seed, size, size))


def dataset_with(counts: dict[str, int], name: str = "toys") -> collect.CollectedDataset:
    """A collected dataset with ``counts[class]`` distinct generated images per class."""
    collect.create_dataset(name)
    for k, (class_name, count) in enumerate(counts.items()):
        collect.add_class(name, class_name)
        for i in range(count):
            collect.add_image(name, class_name, png(100 * k + i), f"{class_name}{i}.png")
    return collect.open_dataset(name)


def every_file(folder: Path) -> list[Path]:
    """All files below ``folder``, hidden ones (writes in progress) included."""
    return [path for path in folder.rglob("*") if path.is_file()]


def test_a_dataset_is_built_class_by_class_and_counted():
    assert collect.list_datasets() == []
    created = collect.create_dataset("toys")
    assert created.path == (collected_root() / "toys").resolve() and created.counts == {}
    collect.add_class("toys", "squares")
    collect.add_class("toys", "circles")
    for i in range(3):
        assert not collect.add_image("toys", "squares", png(i), f"sq{i}.png").duplicate
    collect.add_image("toys", "circles", png(10), "c.png")

    opened = collect.open_dataset("toys")
    assert opened.counts == {"circles": 1, "squares": 3}  # folder order, as the loader reads them
    assert opened.total_images == 4 and opened.source == f"folder:{opened.path}"
    assert collect.list_datasets() == ["toys"]
    names = [path.name for path in collect.list_images("toys", "squares")]
    assert len(names) == 3 and all(STORED_NAME.match(name) for name in names)


HOSTILE_NAMES = {
    "": "is empty",
    "   ": "is empty",
    "a/b": "path separator",
    "..\\windows": "path separator",
    "../escape": "path separator",
    ".": "hidden or ignored",
    "..": "hidden or ignored",
    ".hidden": "hidden or ignored",
    "__MACOSX": "hidden or ignored",
    "ca\nts": "control or formatting",
    "evil\u202egnp.exe": "control or formatting",
    "nul\x00byte": "control or formatting",
    "\ud800": "control or formatting",
    "x" * (collect.MAX_NAME_CHARS + 1): "characters long",
}


@pytest.mark.parametrize("name", list(HOSTILE_NAMES))
def test_hostile_dataset_and_class_names_are_refused_and_nothing_is_created(name: str):
    fragment = HOSTILE_NAMES[name]
    with pytest.raises(DatasetError, match=fragment):
        collect.create_dataset(name)
    assert collect.list_datasets() == []
    collect.create_dataset("ok")
    with pytest.raises(DatasetError, match=fragment):
        collect.add_class("ok", name)
    assert collect.open_dataset("ok").counts == {}
    assert [p.name for p in collected_root().iterdir()] == ["ok"]
    assert list((collected_root() / "ok").iterdir()) == []


def test_a_shown_name_spells_out_what_it_hides():
    collect.create_dataset("ok")
    with pytest.raises(DatasetError) as caught:
        collect.add_class("ok", "ca\nts")
    assert "ca\\u000ats" in caught.value.message and "\n" not in caught.value.message


def test_names_are_normalised_and_may_not_clash_ignoring_case():
    collect.create_dataset("  Toys ")
    assert collect.list_datasets() == ["Toys"]
    with pytest.raises(DatasetError, match="already exists"):
        collect.create_dataset("toys")
    collect.add_class("Toys", "Cafe\u0301")  # decomposed é
    assert collect.open_dataset("Toys").classes == ["Caf\u00e9"]
    with pytest.raises(DatasetError, match="'Caf\u00e9' already exists"):
        collect.add_class("Toys", "CAF\u00c9")
    collect.add_class("Toys", "café au lait: 2 (large)")  # spaces and punctuation are fine
    assert len(collect.open_dataset("Toys").classes) == 2


def test_missing_datasets_and_classes_are_named():
    with pytest.raises(DatasetError, match="no collected dataset 'nope'"):
        collect.open_dataset("nope")
    collect.create_dataset("toys")
    with pytest.raises(DatasetError, match="has no class 'dogs'"):
        collect.add_image("toys", "dogs", png(1))


BAD_IMAGES = {
    "corrupt": (encode(random_pixels(3, 64, 64), "JPEG")[:30] + bytes(range(256)) * 8, BadImageError,
                "could not be decoded"),
    "truncated": (png(4, 64)[:200], BadImageError, "could not be decoded"),
    "empty": (b"", BadImageError, "empty"),
    "text": (b"meeting notes, not a photo\n", BadImageError, "it is not a JPEG, PNG"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', BadImageError,
            "it is not a JPEG, PNG"),
    "bomb": (png_declaring(50_000, 50_000), BadImageError, "megapixels"),
    "oversized": (b"\xff\xd8\xff" + bytes(collect.MAX_IMAGE_BYTES), UploadError, "at most 20 MB"),
}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_hostile_images_are_refused_before_anything_is_written(kind: str):
    data, error, fragment = BAD_IMAGES[kind]
    dataset_with({"good": 1})
    with pytest.raises(error, match=fragment):
        collect.add_image("toys", "good", data, f"{kind}.png")
    assert collect.open_dataset("toys").counts == {"good": 1}
    assert len(every_file(collect.open_dataset("toys").path)) == 1


def test_a_full_disk_leaves_no_part_of_the_image(monkeypatch: pytest.MonkeyPatch):
    dataset_with({"a": 1})
    write_bytes = Path.write_bytes

    def half_then_full(path: Path, data: bytes) -> int:
        write_bytes(path, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched, pytest.raises(StorageError, match="disk is full"):
        patched.setattr(Path, "write_bytes", half_then_full)
        collect.add_image("toys", "a", png(99), "late.png")
    assert len(every_file(collect.open_dataset("toys").path)) == 1
    assert collect.open_dataset("toys").counts == {"a": 1}


def test_a_batch_reports_each_upload_and_keeps_the_good_ones():
    dataset_with({"a": 0, "b": 1})
    uploads = [("one.png", png(1)), ("bomb.png", png_declaring(50_000, 50_000)),
               ("again.bmp", encode(random_pixels(1, 16, 16), "BMP")), ("two.png", png(2)),
               ("from-b.png", png(100))]
    report = collect.add_images("toys", "a", uploads)
    assert len(report.added) == 2 and all(STORED_NAME.match(name) for name in report.added)
    assert report.duplicates == ["again.bmp"]  # the same pixels as one.png, in another format
    refused = dict(report.refused)
    assert set(refused) == {"bomb.png", "from-b.png"}
    assert isinstance(refused["bomb.png"], BadImageError)
    assert "already in the class 'b'" in refused["from-b.png"].message
    assert collect.open_dataset("toys").counts == {"a": 2, "b": 1}


def test_a_duplicate_is_stored_once_under_the_same_name():
    dataset_with({"a": 0})
    first = collect.add_image("toys", "a", png(7), "first.png")
    second = collect.add_image("toys", "a", png(7), "second.png")
    assert second.duplicate and not first.duplicate and second.name == first.name
    assert collect.open_dataset("toys").counts == {"a": 1}


def test_stored_names_are_safe_whatever_the_upload_was_called():
    dataset_with({"a": 0})
    names = ["../../etc/passwd.png", "C:\\Users\\me\\photo.png", ".bashrc", "曲.png", "a b;rm -rf.png", ""]
    stored = [collect.add_image("toys", "a", png(i), name).name for i, name in enumerate(names)]
    assert all(STORED_NAME.match(name) for name in stored), stored
    assert len(set(stored)) == len(names)
    class_dir = collect.open_dataset("toys").path / "a"
    assert sorted(p.name for p in every_file(collect.open_dataset("toys").path)) == sorted(stored)
    assert all((class_dir / name).is_file() for name in stored)


def test_images_are_stored_upright_without_their_metadata():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    exif[0x010F] = "PhoneMaker"
    photo = encode(halves((220, 20, 20), (20, 20, 220), height=20, width=40), "JPEG", exif=exif.tobytes())
    dataset_with({"a": 0})
    stored = collect.open_dataset("toys").path / "a" / collect.add_image("toys", "a", photo, "p.jpg").name
    assert stored.suffix == ".jpg"  # a JPEG stays a JPEG; other formats become PNG
    with Image.open(stored) as image:
        assert image.size == (20, 40) and len(image.getexif()) == 0
    difference = np.abs(load_image(stored).astype(int) - load_image(photo).astype(int))
    assert difference.mean() < 3  # re-encoded at high quality: only the colour edge rings (by up to ~20)


def test_large_images_shrink_to_the_largest_training_size_and_small_ones_do_not():
    big = encode(np.full((1100, 1300, 3), 90, np.uint8))
    dataset_with({"a": 0})
    folder = collect.open_dataset("toys").path / "a"
    stored = folder / collect.add_image("toys", "a", big, "big.png").name
    small = folder / collect.add_image("toys", "a", png(1, 24), "small.png").name
    assert load_image(stored).shape == (collect.MAX_STORED_SIDE, 1210, 3)
    assert np.array_equal(load_image(small), random_pixels(1, 24, 24))  # lossless PNG


def test_a_full_dataset_refuses_more_images_and_classes(monkeypatch: pytest.MonkeyPatch):
    dataset_with({"a": 2, "b": 0})
    monkeypatch.setattr(collect, "MAX_DATASET_IMAGES", 2)
    with pytest.raises(DatasetError, match="holds 2 images, the most allowed"):
        collect.add_image("toys", "b", png(50))
    assert collect.add_image("toys", "a", png(0), "again.png").duplicate  # a duplicate is no new image
    monkeypatch.setattr(collect, "MAX_CLASSES", 2)
    with pytest.raises(DatasetError, match="2 classes, the most allowed"):
        collect.add_class("toys", "c")


def test_images_and_classes_can_be_removed():
    dataset_with({"a": 3, "b": 3})
    victim = collect.list_images("toys", "a")[0].name
    assert collect.remove_image("toys", "a", victim).counts == {"a": 2, "b": 3}
    for wrong in (victim, "../b/" + collect.list_images("toys", "b")[0].name, "..", ""):
        with pytest.raises(DatasetError, match="has no image"):
            collect.remove_image("toys", "a", wrong)
    assert collect.remove_class("toys", "b").counts == {"a": 2}
    assert [p.name for p in collect.open_dataset("toys").path.iterdir()] == ["a"]  # no trash left
    collect.remove_dataset("toys")
    assert collect.list_datasets() == [] and list(collected_root().iterdir()) == []


def test_a_dataset_is_ready_only_with_two_classes_of_enough_images():
    dataset_with({"a": 3})
    with pytest.raises(DatasetError, match="1 class.*at least 2"):
        collect.ready_dataset("toys")
    collect.add_class("toys", "b")
    collect.add_image("toys", "b", png(500))
    with pytest.raises(DatasetError, match="'b' has 1. Every class needs at least 3"):
        collect.ready_dataset("toys")
    for i in range(2):
        collect.add_image("toys", "b", png(501 + i))
    assert collect.ready_dataset("toys").counts == {"a": 3, "b": 3}


def test_the_saved_dataset_loads_as_a_folder_dataset_outside_the_data_roots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    elsewhere = tmp_path / "only-here"
    elsewhere.mkdir()
    monkeypatch.setenv("TL_DATA_ROOT", str(elsewhere))  # TL_HOME is not under it
    dataset_with({"squares": 5, "bars": 4})
    ready = collect.ready_dataset("toys")
    assert collected_root().resolve() in data_roots()

    bundle = load_dataset(DatasetSpec(source=ready.source, image_size=16, seed=3))
    assert bundle.class_names == ["bars", "squares"] and not bundle.skipped
    totals = {name: sum(split[name] for split in bundle.counts().values()) for name in bundle.class_names}
    assert totals == {"bars": 4, "squares": 5}
    stored = {load_image(path, 16).tobytes() for path in collect.list_images("toys", "squares")}
    assert stored == {load_image(png(i), 16).tobytes() for i in range(5)}
