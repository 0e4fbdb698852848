"""Classify a whole folder or zip with one or more finished runs, in batches, in flat memory.

Paths are expanded lazily (image files, folders walked, zip members read one at a time without
extracting anything), images are decoded a batch at a time at each run's size, and every run
answers the batch before the next one is read, so 10,000 photos cost the memory of one batch. A
file that cannot be read is answered with its reason and does not stop the others.
"""

from __future__ import annotations

import itertools
import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tlcore.deploy.serving import LoadedRun
from tlcore.errors import BadImageError, UploadError
from tlcore.images import IMAGE_EXTENSIONS, MAX_UPLOAD_BYTES, load_image

BATCH = 32
MAX_ZIP_MEMBERS = 100_000


@dataclass(frozen=True)
class Source:
    """One image to classify: the name shown, and a path or its bytes (a zip member)."""

    name: str
    data: str | bytes


@dataclass(frozen=True)
class BatchAnswer:
    """One run's answer for one image, or why the image could not be classified."""

    image: str
    run_id: str
    answer: str | None
    top: list[tuple[str, float]]
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"image": self.image, "run": self.run_id, "answer": self.answer, "error": self.error,
                "predictions": [{"label": label, "probability": p} for label, p in self.top]}


def image_sources(paths: Iterable[str]) -> Iterator[Source | BatchAnswer]:
    """The images a list of paths stands for: files, images below folders, members of zips.

    A path that is neither yields a :class:`BatchAnswer` with the reason instead.
    """
    for path in paths:
        if os.path.isdir(path):
            yield from (Source(found, found) for found in _images_below(path))
        elif path.lower().endswith(".zip") and os.path.isfile(path):
            yield from _zip_members(path)
        else:
            yield Source(path, path)


def _images_below(folder: str) -> list[str]:
    found = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found += [os.path.join(root, name) for name in sorted(names)
                  if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def _zip_members(path: str) -> Iterator[Source | BatchAnswer]:
    """Image members of a zip, read one at a time with a size cap; nothing is written to disk."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield BatchAnswer(path, "", None, [], f"The zip archive cannot be read ({exc}).")
        return
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()
                   and m.filename.lower().endswith(IMAGE_EXTENSIONS)
                   and not os.path.basename(m.filename).startswith(".")]
        for info in members[:MAX_ZIP_MEMBERS]:
            name = f"{path}:{info.filename}"
            if info.file_size > MAX_UPLOAD_BYTES:
                yield BatchAnswer(name, "", None, [], f"It inflates to {info.file_size:,} bytes; "
                                  f"at most {MAX_UPLOAD_BYTES // 2**20} MB per image are read.")
                continue
            try:
                with archive.open(info) as member:
                    data = member.read(MAX_UPLOAD_BYTES + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as exc:
                yield BatchAnswer(name, "", None, [], f"The member cannot be read ({exc}).")
                continue
            yield Source(name, data)


def classify_all(
    runs: Sequence[LoadedRun], sources: Iterable[Source | BatchAnswer], top_k: int | None = None,
    threshold: float | None = None,
) -> Iterator[BatchAnswer]:
    """Every run's answer for every source, a batch at a time."""
    return (answer for answer, _ in classify_with_sources(runs, sources, top_k, threshold))


def classify_with_sources(
    runs: Sequence[LoadedRun], sources: Iterable[Source | BatchAnswer], top_k: int | None = None,
    threshold: float | None = None,
) -> Iterator[tuple[BatchAnswer, str | bytes | None]]:
    """As :func:`classify_all`, each answer with the image it answered (None for an unread one).

    The image is a path, or a zip member's bytes already read for the answer, so a caller that
    goes on with it (an explanation) neither opens the zip again nor extracts anything. Only the
    current batch's bytes are alive at a time.
    """
    items = iter(sources)
    while batch := list(itertools.islice(items, BATCH)):
        images = [item for item in batch if isinstance(item, Source)]
        for run in runs:
            answered = iter(list(_answer_batch(run, images, top_k, threshold)))
            for item in batch:  # in the order the paths were given
                if isinstance(item, BatchAnswer):
                    yield BatchAnswer(item.image, run.run_id, None, [], item.error), None
                else:
                    yield next(answered), item.data


def _answer_batch(
    run: LoadedRun, images: list[Source], top_k: int | None, threshold: float | None
) -> Iterator[BatchAnswer]:
    """The run's answers for a batch, in the batch's order (unreadable images with their reason)."""
    pixels: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    for position, source in enumerate(images):
        try:
            pixels[position] = load_image(source.data, run.image_size)
        except (BadImageError, UploadError) as exc:
            errors[position] = str(exc)
    answers = iter(run.classify([pixels[i] for i in sorted(pixels)], top_k=top_k, threshold=threshold)
                   if pixels else [])
    for position, source in enumerate(images):
        if position in errors:
            yield BatchAnswer(source.name, run.run_id, None, [], errors[position])
        else:
            answer = next(answers)
            yield BatchAnswer(source.name, run.run_id, answer.label,
                              [(p.label, p.probability) for p in answer.predictions])


CSV_HEADER = ("image", "run", "answer", "probability", "top labels", "error")


def csv_rows(answers: Iterable[BatchAnswer]) -> Iterator[list[str]]:
    """``image, run, answer, probability, top labels, error``: one row per image and run."""
    yield list(CSV_HEADER)
    yield from (csv_row(a) for a in answers)


def csv_row(a: BatchAnswer) -> list[str]:
    """One answer as a row under :data:`CSV_HEADER`."""
    probability = f"{a.top[0][1]:.4f}" if a.top else ""
    return [a.image, a.run_id, a.answer or "", probability, " ".join(label for label, _ in a.top),
            a.error or ""]
