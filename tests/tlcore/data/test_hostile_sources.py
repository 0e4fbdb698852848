"""Datasets built to escape or mislead: linked class folders, hidden characters in class names,
archives that repeat a member or clash a file with a folder."""

import zipfile
from pathlib import Path

import pytest
from imagegen import encode, random_pixels, write_class_folders

from tlcore.config import DatasetSpec
from tlcore.data import load_dataset
from tlcore.data.archive import safe_extract
from tlcore.errors import DatasetError, UploadError


def folder_spec(path: Path) -> DatasetSpec:
    return DatasetSpec(source=f"folder:{path}", image_size=16, val_fraction=0.34, test_fraction=0.34)


def test_a_class_folder_linking_outside_the_roots_is_refused_before_anything_in_it_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    write_class_folders(allowed / "d", {"a": 3, "b": 3})
    write_class_folders(outside, {"secret": 4})
    (allowed / "d" / "c").symlink_to(outside / "secret")
    monkeypatch.setenv("TL_DATA_ROOT", str(allowed))
    listed: list[Path] = []
    original_walk = __import__("os").walk

    def spying_walk(top, *args, **kwargs):
        listed.append(Path(top))
        return original_walk(top, *args, **kwargs)

    monkeypatch.setattr("tlcore.data.folder.os.walk", spying_walk)
    with pytest.raises(DatasetError, match="class folder 'c' that links outside") as caught:
        load_dataset(folder_spec(allowed / "d"))
    assert str(outside) not in str(caught.value) and "secret" not in str(caught.value)
    assert listed == []  # refused before any class folder was walked


def test_a_link_to_the_root_of_the_file_system_is_refused_too(tmp_path: Path, monkeypatch) -> None:
    allowed = tmp_path / "allowed"
    write_class_folders(allowed / "d", {"a": 3, "b": 3})
    (allowed / "d" / "everything").symlink_to("/")
    monkeypatch.setenv("TL_DATA_ROOT", str(allowed))
    with pytest.raises(DatasetError, match="'everything' that links outside"):
        load_dataset(folder_spec(allowed / "d"))


@pytest.mark.parametrize(("name", "shown"), [
    ("two\nlines", r"two\u000alines"), ("évil\u202egnp.exe", r"évil\u202egnp.exe"),
    ("tab\there", r"tab\u0009here"), ("zero\u200bwidth", r"zero\u200bwidth"),
])
def test_class_names_with_hidden_characters_are_refused_and_shown_escaped(
        tmp_path: Path, name: str, shown: str) -> None:
    write_class_folders(tmp_path / "d", {"plain": 3, name: 3})
    with pytest.raises(DatasetError, match="control or formatting character") as caught:
        load_dataset(folder_spec(tmp_path / "d"))
    message = str(caught.value)
    assert name not in message  # never printed raw
    assert f"'{shown}'" in message


def test_class_names_in_other_scripts_and_with_punctuation_are_fine(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "d", {"Gänseblümchen": 3, "薔薇 (rose)": 3})
    bundle = load_dataset(folder_spec(tmp_path / "d"))
    assert bundle.class_names == ["Gänseblümchen", "薔薇 (rose)"]


def write_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("second", ["red/1.png", "red/./1.png", "red//1.png"])
def test_an_archive_holding_one_member_twice_is_refused(tmp_path: Path, second: str) -> None:
    archive = write_zip(tmp_path / "dup.zip", [("red/1.png", encode(random_pixels(1))),
                                               (second, encode(random_pixels(2)))])
    dest = tmp_path / "out"
    with pytest.raises(UploadError, match="twice"):
        safe_extract(archive, dest)
    assert not dest.exists() and [p.name for p in tmp_path.iterdir()] == ["dup.zip"]


def test_a_member_that_is_a_file_and_a_folder_is_named_without_server_paths(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "clash.zip", [("red", b"a file"), ("red/1.png", encode(random_pixels(1)))])
    with pytest.raises(UploadError) as caught:
        safe_extract(archive, tmp_path / "uploads" / "x")
    message = str(caught.value)
    assert "'red/1.png'" in message and "both a file and a folder" in message
    assert str(tmp_path) not in message and "partial" not in message
