"""Reading a run's notes: what the feature pass forwarded and what it read back."""

from __future__ import annotations

import re
from collections.abc import Iterable

FEATURE_PASS = re.compile(r"([\d,]+) image\(s\) forwarded, ([\d,]+) read from the feature store")


def feature_passes(notes: Iterable[str]) -> list[tuple[int, int]]:
    """``(forwarded, read from the store)`` of each stage's feature pass, in order."""
    return [(int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")))
            for note in notes if (m := FEATURE_PASS.search(note))]
