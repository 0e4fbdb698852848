"""tlcore.files: readers see the old file or the whole new one, and a failed write leaves nothing."""

from pathlib import Path

import pytest

from tlcore.files import atomic_write


def test_bytes_and_text_replace_the_target_whole(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    atomic_write(target, b"old")
    assert atomic_write(target, "néw") == target
    assert target.read_text(encoding="utf-8") == "néw"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failing_writer_keeps_the_old_content_and_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    target.write_bytes(b"the good model")

    def half_then_full_disk(partial: Path) -> None:
        partial.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, half_then_full_disk, keep_suffix=True)
    assert target.read_bytes() == b"the good model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_keep_suffix_hands_the_writer_a_name_ending_like_the_target(tmp_path: Path) -> None:
    seen: list[str] = []
    atomic_write(tmp_path / "ckpt.weights.h5", lambda p: (seen.append(p.name), p.write_bytes(b"w")),
                 keep_suffix=True)
    assert seen[0].endswith("-ckpt.weights.h5") and seen[0].startswith(".")


def test_without_keep_suffix_a_half_written_file_never_matches_the_target_suffix(tmp_path: Path) -> None:
    names: list[str] = []

    def look(partial: Path) -> None:
        names.append(partial.name)
        assert list(tmp_path.glob("*.npy")) == []
        partial.write_bytes(b"x")

    atomic_write(tmp_path / "key.npy", look)
    assert names[0].endswith(".partial")
