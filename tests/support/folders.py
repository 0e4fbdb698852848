"""Class-per-folder datasets that tests grow, edit and shrink, and a count of what gets decoded."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from imagegen import FORMATS, encode, random_pixels

import tlcore.data.folder


def add_images(class_dir: Path, count: int, ext: str = ".png", seed: int = 0, first: int = 0,
               size: int = 16) -> list[Path]:
    """Write ``count`` distinct images ``img{first}..`` into ``class_dir``, seeded by ``seed``."""
    class_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(first, first + count):
        path = class_dir / f"img{i:03d}{ext}"
        path.write_bytes(encode(random_pixels(seed * 100_000 + i, size, size), FORMATS[ext]))
        paths.append(path)
    return paths


def rewrite_image(path: Path, seed: int, size: int = 16) -> None:
    """Give ``path`` other pixels and a later modification time, as an edit in place does."""
    before = path.stat().st_mtime_ns
    path.write_bytes(encode(random_pixels(seed, size, size), FORMATS[path.suffix.lower()]))
    later = max(path.stat().st_mtime_ns, before + 2_000_000_000)
    os.utime(path, ns=(later, later))


class DecodeCounter:
    """Records the file of every :func:`tlcore.images.load_image` call a folder dataset makes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def take(self) -> list[str]:
        """The files decoded since the last call (relative to the dataset root when inside it), sorted."""
        with self._lock:
            taken, self.paths = sorted(self.paths), []
        return taken

    def record(self, source: object) -> None:
        path = Path(source)
        shown = path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)
        with self._lock:
            self.paths.append(shown)


def count_decodes(monkeypatch: pytest.MonkeyPatch, root: Path) -> DecodeCounter:
    """Wrap the decoder :mod:`tlcore.data.folder` calls, so tests see each file it decodes."""
    counter = DecodeCounter(root)
    load_image = tlcore.data.folder.load_image

    def counting(source, size=None):
        counter.record(source)
        return load_image(source, size)

    monkeypatch.setattr(tlcore.data.folder, "load_image", counting)
    return counter
