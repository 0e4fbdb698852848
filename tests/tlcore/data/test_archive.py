"""Zip datasets: safe extraction refuses hostile archives and leaves nothing behind."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest
from archives import dataset_entries, make_zip
from imagegen import encode, random_pixels

from tlcore.config import DatasetSpec
from tlcore.data import archive, load_dataset
from tlcore.data.archive import safe_extract
from tlcore.errors import DatasetError, UploadError
from tlcore.paths import tl_home


def assert_refused(path: Path, dest: Path, match: str, **limits: int) -> None:
    """safe_extract refuses the archive and leaves neither dest nor a staging folder."""
    with pytest.raises(UploadError, match=match):
        safe_extract(path, dest, **limits)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path / "out" / "extracted"


def test_safe_extract_writes_every_member(tmp_path: Path, dest: Path) -> None:
    entries = dataset_entries("flowers/")
    safe_extract(make_zip(tmp_path / "ok.zip", entries), dest)
    for name, data in entries.items():
        assert (dest / name).read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["extracted"]  # no staging left


@pytest.mark.parametrize("name", [
    "../evil.png",
    "flowers/../../evil.png",
    "..\\evil.png",
    "/etc/evil.png",
    "C:/evil.png",
    "c:evil.png",
])
def test_paths_escaping_the_destination_are_refused(tmp_path: Path, dest: Path,
                                                    name: str) -> None:
    entries = {**dataset_entries(), name: b"x"}
    assert_refused(make_zip(tmp_path / "evil.zip", entries), dest, "unsafe path")
    assert not (tmp_path / "evil.png").exists()


def test_symlink_entries_are_refused(tmp_path: Path, dest: Path) -> None:
    link = zipfile.ZipInfo("daisy/link.png")
    link.create_system = 3  # Unix, so external_attr carries the file type
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = make_zip(tmp_path / "link.zip", dataset_entries())
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    assert_refused(path, dest, "symbolic link")


def test_zip_bomb_is_stopped_by_bytes_actually_written(tmp_path: Path, dest: Path) -> None:
    path = make_zip(tmp_path / "bomb.zip", {"a/zeros.png": b"\0" * 2_000_000})
    assert path.stat().st_size < 20_000  # tiny on disk, 2 MB inflated
    assert_refused(path, dest, "inflates to more than", max_total_bytes=1_000_000)


def test_too_many_files_are_refused(tmp_path: Path, dest: Path) -> None:
    path = make_zip(tmp_path / "many.zip", dataset_entries(per_class=3))
    assert_refused(path, dest, "entries", max_files=5)


def _valid_zip(tmp_path: Path, size: int = 5000) -> bytearray:
    return bytearray(make_zip(tmp_path / "source.zip", {"a/x.png": b"A" * size}).read_bytes())


def _damaged_member(tmp_path: Path) -> bytes:
    data = _valid_zip(tmp_path)
    data[40:60] = b"\xff" * 20  # inside the compressed stream of the only member
    return bytes(data)


def _lying_sizes(tmp_path: Path) -> bytes:
    # A bomb may claim tiny sizes in its headers; the inflated data cannot match them.
    return bytes(_valid_zip(tmp_path, 500_000).replace((500_000).to_bytes(4, "little"),
                                                       (10).to_bytes(4, "little")))


@pytest.mark.parametrize("make", [
    pytest.param(lambda tmp_path: b"this is not a zip", id="not-a-zip"),
    pytest.param(lambda tmp_path: b"", id="empty"),
    pytest.param(lambda tmp_path: b"PK\x03\x04broken", id="broken-header"),
    pytest.param(lambda tmp_path: bytes(_valid_zip(tmp_path)[:-30]), id="truncated"),
    pytest.param(_damaged_member, id="damaged-member"),
    pytest.param(_lying_sizes, id="lying-sizes"),
])
def test_corrupt_archives_are_refused(tmp_path: Path, dest: Path, make) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(make(tmp_path))
    assert_refused(path, dest, "could not be read")


def test_encrypted_members_are_refused(tmp_path: Path, dest: Path) -> None:
    data = _valid_zip(tmp_path)
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x1  # the "encrypted" bit of the member's general-purpose flags
    path = tmp_path / "secret.zip"
    path.write_bytes(bytes(data))
    assert_refused(path, dest, "password")


# --- zip: datasets ------------------------------------------------------------------------

def zip_spec(path: Path) -> DatasetSpec:
    return DatasetSpec(source=f"zip:{path}", image_size=16)


def test_zip_with_one_enclosing_folder_and_macos_junk_loads(tmp_path: Path) -> None:
    entries = {**dataset_entries("flowers/"), "__MACOSX/flowers/._daisy": b"junk",
               "flowers/.DS_Store": b"junk"}
    bundle = load_dataset(zip_spec(make_zip(tmp_path / "flowers.zip", entries)))
    assert bundle.class_names == ["daisy", "rose"]
    ids = bundle.train.ids + bundle.val.ids + bundle.test.ids
    assert sorted(ids) == sorted(name.removeprefix("flowers/") for name in dataset_entries())


def test_zip_with_class_folders_at_top_level_loads(tmp_path: Path) -> None:
    bundle = load_dataset(zip_spec(make_zip(tmp_path / "top.zip", dataset_entries())))
    assert bundle.class_names == ["daisy", "rose"] and not bundle.skipped


@pytest.mark.parametrize("prefix", ["", "toys/"], ids=["at-top-level", "in-a-folder"])
def test_a_one_class_zip_says_a_classifier_needs_a_second_class(tmp_path: Path, prefix: str) -> None:
    entries = {f"{prefix}only/img{i}.png": encode(random_pixels(i)) for i in range(4)}
    with pytest.raises(DatasetError) as caught:
        load_dataset(zip_spec(make_zip(tmp_path / "one.zip", entries)))
    assert caught.value.message == (
        "The dataset has only 1 class, 'only' (4 images); a classifier needs at least 2 classes "
        "to tell apart."
    )
    assert "Add a second class: a folder of its images next to 'only/'" in caught.value.hint


def test_a_zip_of_loose_images_says_they_need_class_folders(tmp_path: Path) -> None:
    entries = {f"img{i}.png": encode(random_pixels(i)) for i in range(5)}
    with pytest.raises(DatasetError) as caught:
        load_dataset(zip_spec(make_zip(tmp_path / "loose.zip", {**entries, "notes.txt": b"x"})))
    assert caught.value.message == (
        "The archive holds 5 image(s) directly but no class sub-folders; a classifier needs at "
        "least 2 classes, one sub-folder of images each."
    )
    assert "sub-folder of its own, named after the class" in caught.value.hint


def test_same_archive_is_extracted_once(tmp_path: Path, monkeypatch) -> None:
    path = make_zip(tmp_path / "d.zip", dataset_entries())
    first = load_dataset(zip_spec(path))
    uploads = list((tl_home() / "uploads").iterdir())
    assert len(uploads) == 1 and len(uploads[0].name) == 16

    def must_not_extract(*args: object, **kwargs: object) -> None:
        raise AssertionError("extracted twice")

    monkeypatch.setattr(archive, "safe_extract", must_not_extract)
    again = load_dataset(zip_spec(path))
    assert again.train.ids == first.train.ids


def test_unsafe_archive_fails_the_load_and_leaves_no_upload(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "evil.zip", {**dataset_entries(), "../evil.png": b"x"})
    with pytest.raises(UploadError):
        load_dataset(zip_spec(path))
    assert list((tl_home() / "uploads").iterdir()) == []


def test_missing_zip_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(zip_spec(tmp_path / "nowhere.zip"))


def test_zip_outside_the_allowed_folders_is_refused(tmp_path: Path, monkeypatch) -> None:
    path = make_zip(tmp_path / "d.zip", dataset_entries())
    monkeypatch.setenv("TL_DATA_ROOT", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetError, match="TL_DATA_ROOT"):
        load_dataset(zip_spec(path))
