"""Tiny generated images, encoded files and class-per-folder datasets for data tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
           ".gif": "GIF"}


def random_pixels(seed: int, height: int = 24, width: int = 24) -> np.ndarray:
    """A reproducible uint8 RGB array."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **save_args: object) -> bytes:
    """The bytes of ``image`` saved in ``fmt``."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def halves(left: tuple[int, ...], right: tuple[int, ...], height: int = 20,
           width: int = 40, mode: str = "RGB") -> Image.Image:
    """An image whose left half is one colour and right half another, to check geometry."""
    image = Image.new(mode, (width, height), left)
    image.paste(Image.new(mode, (width // 2, height), right), (width // 2, 0))
    return image


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels but holds almost no data.

    That is all a decompression bomb needs to get past a check of the file size.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def write_class_folders(root: Path, counts: dict[str, int], ext: str = ".png",
                        size: int = 16) -> list[Path]:
    """Write ``counts[name]`` distinct images into ``root/name/`` and return their paths."""
    paths = []
    for k, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = root / name / f"img{i:03d}{ext}"
            path.write_bytes(encode(random_pixels(1000 * k + i, size, size), FORMATS[ext.lower()]))
            paths.append(path)
    return paths
