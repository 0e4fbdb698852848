"""File identities are remembered by path and stat, so a listing reads each file once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from folders import add_images
from imagegen import FORMATS, encode, random_pixels

import tlcore.data.file_identity
from tlcore.config import DatasetSpec
from tlcore.data.folder import IDENTITY_MEMO
from tlcore.data.registry import list_dataset


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("cat", "dog"):
        add_images(tmp_path / "pets" / name, 4, seed=len(name))
    return tmp_path / "pets"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose bytes the listing reads for their identity."""
    seen: list[str] = []
    real = tlcore.data.file_identity._read_identity

    def counting(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(tlcore.data.file_identity, "_read_identity", counting)
    return seen


def identities(root: Path) -> dict[str, str]:
    catalogue = list_dataset(DatasetSpec(f"folder:{root}"))
    return dict(zip(catalogue.ids, catalogue.identities, strict=True))


def test_a_second_listing_reads_no_file_and_gives_the_same_identities(root, reads) -> None:
    first = identities(root)
    assert len(reads) == 8
    assert identities(root) == first
    assert len(reads) == 8  # every identity came from the memo


def test_an_edit_that_restores_the_modification_time_is_still_seen(root, reads) -> None:
    first = identities(root)
    target = root / "cat" / "img001.png"
    info = target.stat()
    target.write_bytes(encode(random_pixels(999, 16, 16), FORMATS[".png"]))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))  # what `cp -p` or an archiver does
    second = identities(root)
    assert second["cat/img001.png"] != first["cat/img001.png"]
    assert {k: v for k, v in second.items() if k != "cat/img001.png"} == {
        k: v for k, v in first.items() if k != "cat/img001.png"}
    assert reads[8:] == [str(target)]


@pytest.mark.parametrize("damage", [b"garbage" * 100, b""])
def test_a_damaged_memo_costs_a_read_never_a_wrong_identity(root, reads, isolated_home, damage) -> None:
    first = identities(root)
    (isolated_home / IDENTITY_MEMO).write_bytes(damage)
    assert identities(root) == first
    assert identities(root) == first
