"""Images whose class is decided by one small object at a random place on random clutter.

A classifier can only be right on them by finding the object, so a heatmap that explains the
prediction must point at it: the test of whether an explanation means something.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("square", "circle")


@dataclass(frozen=True)
class ObjectImages:
    """``images`` [N, S, S, 3] uint8, ``labels`` [N] (index into :data:`SHAPES`), and each
    object's box as ``(top, left, bottom, right)``, bottom and right exclusive."""

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray


def _clutter(rng: np.random.Generator, size: int) -> Image.Image:
    """Noise with lines and bars, some as bright as the object: brightness alone finds nothing."""
    noise = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        colour = tuple(int(c) for c in rng.integers(40, 256, 3))
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, size, 4))
        if rng.random() < 0.5:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 3)))
        else:
            draw.rectangle((min(x0, x1), min(y0, y1), min(x0, x1) + 2, max(y0, y1)), fill=colour)
    return image


def object_images(count: int, size: int = 48, side: int = 7, seed: int = 0) -> ObjectImages:
    """``count`` images, half squares and half circles of ``side`` pixels, in random places."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int32) % len(SHAPES)
    rng.shuffle(labels)
    images, boxes = [], []
    for label in labels:
        image = _clutter(rng, size)
        top, left = (int(v) for v in rng.integers(1, size - side - 1, 2))
        box = (left, top, left + side - 1, top + side - 1)
        draw = ImageDraw.Draw(image)
        if SHAPES[label] == "square":
            draw.rectangle(box, fill=(255, 255, 255))
        else:
            draw.ellipse(box, fill=(255, 255, 255))
        images.append(np.asarray(image))
        boxes.append((top, left, top + side, left + side))
    return ObjectImages(np.stack(images), labels, np.array(boxes, dtype=np.int32))
