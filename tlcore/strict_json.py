"""JSON that every program can parse: NaN and infinities, which Python writes by default and
strict parsers (browsers, ``jq``) refuse, become ``null``.

A diverged run's loss, an LR range test's last steps and a scratch model's metrics can all be
NaN or infinite, and they reach other programs through the CLI's ``--json`` and task results.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float inside it (dicts, lists, tuples) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(value)``; other values than JSON's are written as text."""
    return json.dumps(finite(value), default=str, allow_nan=False, **options)
