"""Reading a run's notes: what the feature pass forwarded and what it read back."""

from __future__ import annotations

import re
from collections.abc import Iterable

FEATURE_PASS = re.compile(r"([\d,]+) image\(s\) forwarded, ([\d,]+) read from the feature store")
WHILE_DECODING = re.compile(r"Frozen features of ([\d,]+) image\(s\) computed as they were decoded")


def feature_passes(notes: Iterable[str]) -> list[tuple[int, int]]:
    """``(forwarded, read from the store)`` of each stage's feature pass, in order.

    Images forwarded as they were decoded (before the first stage) count as forwarded by the
    first stage's pass, which then finds them in the store.
    """
    notes = list(notes)
    early = sum(int(m.group(1).replace(",", "")) for note in notes if (m := WHILE_DECODING.search(note)))
    passes = [[int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))]
              for note in notes if (m := FEATURE_PASS.search(note))]
    if passes and early:
        passes[0] = [passes[0][0] + early, passes[0][1] - early]
    return [(forwarded, read) for forwarded, read in passes]
