"""File identities read on one thread from the page cache and on several from the disk.

Whether files came from the disk is decided by the clock; the tests move the line
(``DISK_FILE_S``) so that every chunk counts as one or the other, and check that the choice
changes who reads, never what is read or in which order.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tlcore.data import file_identity
from tlcore.data.file_identity import file_identities
from tlcore.data.file_identity import file_identity as identity_of

FILES = 23


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(file_identity, "READ_CHUNK", 4)
    monkeypatch.setattr(file_identity, "DISK_PART", 3)
    files = []
    for i in range(FILES):
        path = tmp_path / "photos" / f"{i:02d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([i]) * (100 + 900 * i))
        files.append(str(path))
    return files


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(thread name, path) of every identity read."""
    seen: list[tuple[str, str]] = []
    real = file_identity._read_identity

    def noting(path):
        seen.append((threading.current_thread().name, str(path)))
        return real(path)

    monkeypatch.setattr(file_identity, "_read_identity", noting)
    return seen


def test_files_from_the_page_cache_are_read_on_the_calling_thread(paths, readers, monkeypatch):
    monkeypatch.setattr(file_identity, "DISK_FILE_S", float("inf"))
    found = file_identities(paths)
    assert {name for name, _ in readers} == {threading.current_thread().name}
    assert found == [identity_of(path) for path in paths]


def test_files_from_the_disk_are_read_on_threads_after_the_first_chunk(paths, readers, monkeypatch):
    monkeypatch.setattr(file_identity, "DISK_FILE_S", 0.0)
    found = file_identities(paths)
    reads = list(readers)
    caller = threading.current_thread().name
    assert [name for name, _ in reads[:4]] == [caller] * 4
    assert all(name.startswith("identity") for name, _ in reads[4:])
    assert sorted(path for _, path in reads) == sorted(paths)  # each file read once
    assert found == [identity_of(path) for path in paths]  # the same identities, in order


@pytest.mark.parametrize("line", [0.0, float("inf")])
def test_remembered_identities_are_the_same_whoever_checks_them(paths, tmp_path, monkeypatch, line):
    memo = tmp_path / "identities.sqlite"
    first = file_identities(paths, memo)
    monkeypatch.setattr(file_identity, "DISK_FILE_S", line)
    Path(paths[9]).write_bytes(b"edited")
    Path(paths[17]).unlink()
    again = file_identities(paths, memo)
    assert again[9] == identity_of(paths[9]) != first[9]
    assert again[17] == ""  # gone: no identity, and not a remembered one
    assert [x for i, x in enumerate(again) if i not in (9, 17)] == [
        x for i, x in enumerate(first) if i not in (9, 17)]
