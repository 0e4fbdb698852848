"""What a source knows before decoding anything: ids, labels and a content identity per image.

Listing is cheap (a directory walk and a few reads per file, :mod:`tlcore.data.file_identity`),
so everything that does not need pixels comes from here: counts per class and split, imbalance
warnings, spec checks, the dataset's fingerprint and what changed since the last run. Decoding
happens once per identity, in the worker (:mod:`tlcore.data.assemble`).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from tlcore.errors import BadImageError

DECODE_WORKERS = min(8, os.cpu_count() or 1)
"""Decoding threads: PIL releases the GIL while decoding, so threads use every core."""

DECODE_WINDOW = 64
"""Images decoded ahead of the consumer, at most."""

DECODER_NICENESS = 10
"""How much lower than the rest of the process decoding threads run (Linux nice steps).

Decoders only ever run ahead of their consumer, so they should take the CPU its work leaves
idle rather than share it: a frozen forward pass beside two decoding threads at the same
priority ran 25 % slower than alone, because the scheduler kept preempting TensorFlow's
threads for theirs (``bench/scale.py``). When the consumer waits for images, nothing in the
process competes and the decoders run at full speed all the same.
"""

T = TypeVar("T")

Decoded = tuple[int, "np.ndarray | BadImageError"]
Decoder = Callable[[Sequence[int], int], Iterator[Decoded]]
"""``decode(indices, image_size)`` yields ``(index, pixels or the error)`` for each index."""

FREE = -1
"""In :attr:`Catalogue.fixed_split`: the item's split is chosen by its hash."""


@dataclass(frozen=True)
class Catalogue:
    """One entry per candidate image, and how to decode them.

    Attributes:
        ids: Stable, printable name of each image (a relative path, ``train/123``).
        labels: Label index of each image.
        class_names: Label index -> class name.
        identities: Content identity of each image: equal identities decode to equal pixels.
        decode: Decodes entries (see :data:`Decoder`).
        fixed_split: Per image, an official split (0 train, 1 validation, 2 test) or
            :data:`FREE`; None when every image is free.
    """

    ids: list[str]
    labels: np.ndarray
    class_names: list[str]
    identities: list[str]
    decode: Decoder = field(repr=False, compare=False)
    fixed_split: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def fingerprint(self) -> str:
        """Hash of every image's id, identity, class and official split: the data a run saw."""
        digest = hashlib.blake2b(digest_size=12)
        for line in sorted(self.manifest_lines()):
            digest.update(line.encode("utf-8", "surrogatepass") + b"\n")
        return digest.hexdigest()

    def manifest_lines(self) -> Iterator[str]:
        fixed = self.fixed_split if self.fixed_split is not None else np.full(len(self), FREE)
        for image_id, identity, label, split in zip(
            self.ids, self.identities, self.labels, fixed, strict=True
        ):
            yield f"{image_id}\t{identity}\t{self.class_names[int(label)]}\t{int(split)}"

    def manifest(self) -> dict[str, list[str]]:
        """``id -> [identity, class name]``, kept with a run to say later what changed."""
        return {
            image_id: [identity, self.class_names[int(label)]]
            for image_id, identity, label in zip(self.ids, self.identities, self.labels, strict=True)
        }


def parallel_decoder(read: Callable[[int, int], np.ndarray]) -> Decoder:
    """A :data:`Decoder` for sources that can read any entry at once (files, generators)."""

    def decode(indices: Sequence[int], image_size: int) -> Iterator[Decoded]:
        return windowed_map(lambda i: (i, _read_or_error(read, int(i), image_size)), iter(indices))

    return decode


def windowed_map(fn: Callable[[T], Decoded], items: Iterator[T]) -> Iterator[Decoded]:
    """``fn`` over ``items`` on threads, in order, at most :data:`DECODE_WINDOW` ahead.

    ``Executor.map`` would submit every item at once, and decoded images would pile up in
    memory whenever the consumer is slower than the decoders.
    """
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS, initializer=_behind_the_consumer) as pool:
        pending: deque[Future[Decoded]] = deque()
        for item in items:  # decoders stay busy while the consumer works on earlier images
            pending.append(pool.submit(fn, item))
            if len(pending) >= DECODE_WINDOW:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _behind_the_consumer() -> None:
    """Lower the calling thread's priority by :data:`DECODER_NICENESS` (Linux threads have
    priorities of their own; elsewhere this asks nothing of the system)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with suppress(OSError):
        lower = min(19, os.getpriority(os.PRIO_PROCESS, thread) + DECODER_NICENESS)
        os.setpriority(os.PRIO_PROCESS, thread, lower)


def _read_or_error(
    read: Callable[[int, int], np.ndarray], index: int, size: int
) -> np.ndarray | BadImageError:
    """Return the error instead of raising it, so one bad file does not cancel the batch."""
    try:
        return read(index, size)
    except BadImageError as exc:
        return exc


@dataclass(frozen=True)
class DataChange:
    """How a dataset differs from the one an earlier run saw."""

    added: Counter
    removed: Counter
    changed: Counter

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        """E.g. "3 images added to 'roses', 2 changed, 0 removed": a count lies in one class
        and is named with it, or spans several and is given alone."""

        def count(what: Counter, verb: str) -> str:
            total = sum(what.values())
            if total and len(what) == 1:
                return f"{total} image{'' if total == 1 else 's'} {verb} {next(iter(what))!r}"
            return f"{total} {verb.split()[0]}"

        added = count(self.added, "added to")
        removed = count(self.removed, "removed from")
        changed = count(self.changed, "changed in")
        return f"{added}, {changed}, {removed}"


def data_change(old: dict[str, Sequence[str]], new: dict[str, Sequence[str]]) -> DataChange:
    """Compare two manifests (:meth:`Catalogue.manifest`), counting per class."""
    added = Counter(new[i][1] for i in new.keys() - old.keys())
    removed = Counter(old[i][1] for i in old.keys() - new.keys())
    changed = Counter(new[i][1] for i in new.keys() & old.keys() if list(new[i]) != list(old[i]))
    return DataChange(added, removed, changed)
