"""Zip archives for tests: written from a name -> bytes mapping, or a tiny two-class dataset."""

from __future__ import annotations

import zipfile
from pathlib import Path

from imagegen import encode, random_pixels


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def dataset_entries(prefix: str = "", per_class: int = 3) -> dict[str, bytes]:
    return {
        f"{prefix}{name}/img{i}.png": encode(random_pixels(10 * k + i))
        for k, name in enumerate(["daisy", "rose"])
        for i in range(per_class)
    }
