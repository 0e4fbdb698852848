"""Datasets generated in memory, for offline demos and tests.

``builtin:shapes`` draws filled shapes at random positions, sizes, rotations and colours
on solid, gradient or blotchy backgrounds, with pixel noise: a small model learns it in a
few epochs, but not from a single pixel statistic. Every image is generated from a fixed
seed and its own index, so every call (and every subset of it) yields the same pixels, and
the result can be cached on disk like any other source's (reading it back takes a tenth of
the time generating does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from tlcore.config import DatasetSpec
from tlcore.data.assemble import bundle_from_catalogue
from tlcore.data.bundle import DatasetBundle, Progress
from tlcore.data.catalogue import Catalogue, parallel_decoder
from tlcore.errors import DatasetError
from tlcore.images import load_image

SHAPES_SEED = 20_240_601
SHAPES_VERSION = 1
"""Bumped whenever the drawing changes, so cached copies of the old pixels are not reused."""
SHAPES_PER_CLASS = 70
SHAPES_CANVAS = 80
_MIN_CONTRAST = 90.0
"""Least RGB distance between a shape's fill and its background's mean colour."""


def _regular(n: int) -> np.ndarray:
    """Vertices of a regular n-gon on the unit circle."""
    angles = 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int, inner: float) -> np.ndarray:
    """Vertices of a star alternating between radius 1 and ``inner``."""
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return _regular(2 * points) * radii[:, None]


_ARM = 0.33
_CROSS = np.array(
    [(_ARM, 1), (-_ARM, 1), (-_ARM, _ARM), (-1, _ARM), (-1, -_ARM), (-_ARM, -_ARM),
     (-_ARM, -1), (_ARM, -1), (_ARM, -_ARM), (1, -_ARM), (1, _ARM), (_ARM, _ARM)],
    dtype=float,
)
SHAPE_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular(48),
    "square": _regular(4),
    "triangle": _regular(3),
    "star": _star(5, 0.45),
    "cross": _CROSS,
}
"""Class name -> outline in unit coordinates (rotated, scaled and placed per image)."""


def render_shape(shape: str, rng: np.random.Generator, canvas: int = SHAPES_CANVAS) -> np.ndarray:
    """Draw one random instance of ``shape`` as a ``uint8`` RGB array."""
    background = _background(rng, canvas)
    fill = _contrasting_colour(rng, background.reshape(-1, 3).mean(axis=0))
    radius = rng.uniform(0.16, 0.38) * canvas
    centre = rng.uniform(radius * 0.8, canvas - radius * 0.8, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = SHAPE_OUTLINES[shape] @ rotation.T * radius + centre
    image = Image.fromarray(background)
    ImageDraw.Draw(image).polygon([tuple(p) for p in points], fill=tuple(int(c) for c in fill))
    noise = rng.normal(0, rng.uniform(4, 12), (canvas, canvas, 3))
    return np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, canvas: int) -> np.ndarray:
    """A solid, linear-gradient or blotchy background, equally likely."""
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(rng.integers(0, 256, 3), (canvas, canvas, 3)).astype(np.uint8)
    if kind == 1:
        start, end = rng.integers(0, 256, (2, 3))
        ramp = np.linspace(0, 1, canvas)[:, None, None]
        gradient = np.broadcast_to(start + (end - start) * ramp, (canvas, canvas, 3))
        return np.ascontiguousarray(np.rot90(gradient, k=int(rng.integers(4))), dtype=np.uint8)
    blotches = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    return np.asarray(blotches.resize((canvas, canvas), Image.Resampling.BILINEAR))


def _contrasting_colour(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    """A random colour far enough from the background that the shape stays visible."""
    colour = rng.integers(0, 256, 3)
    while np.linalg.norm(colour - background_mean) < _MIN_CONTRAST:
        colour = rng.integers(0, 256, 3)
    return colour


def _shapes() -> Catalogue:
    names = list(SHAPE_OUTLINES)
    labels = np.repeat(np.arange(len(names), dtype=np.int32), SHAPES_PER_CLASS)
    ids = [f"{names[k]}/{j:03d}" for k in range(len(names)) for j in range(SHAPES_PER_CLASS)]

    def read(index: int, size: int) -> np.ndarray:
        rng = np.random.default_rng([SHAPES_SEED, index])
        return load_image(render_shape(names[labels[index]], rng), size)

    identities = [f"shapes:{SHAPES_VERSION}:{index}" for index in range(len(ids))]
    return Catalogue(ids, labels, names, identities, parallel_decoder(read))


@dataclass(frozen=True)
class Builtin:
    """A generated dataset: a one-line description and a factory of catalogue + reader."""

    description: str
    make: Callable[[], Catalogue]


BUILTINS: dict[str, Builtin] = {
    "shapes": Builtin(
        f"{len(SHAPE_OUTLINES)} classes of drawn shapes ({', '.join(SHAPE_OUTLINES)}), "
        f"{SHAPES_PER_CLASS} images each, on varied backgrounds; needs no download.",
        _shapes,
    ),
}


def builtin_datasets() -> dict[str, str]:
    """Name -> one-line description of every generated dataset."""
    return {name: entry.description for name, entry in BUILTINS.items()}


def load_builtin(spec: DatasetSpec, progress: Progress | None = None) -> DatasetBundle:
    """Generate, split and return the builtin dataset named by ``spec.location``."""
    return bundle_from_catalogue(list_builtin(spec), spec, progress)


def list_builtin(spec: DatasetSpec) -> Catalogue:
    """The catalogue of the builtin dataset named by ``spec.location``.

    Raises:
        DatasetError: The name is not a builtin dataset.
    """
    entry = BUILTINS.get(spec.location)
    if entry is None:
        raise DatasetError(
            f"There is no builtin dataset called {spec.location!r}.",
            f"Known builtin datasets: {', '.join(sorted(BUILTINS))}.",
        )
    return entry.make()
