"""A studio home for module-scoped fixtures.

The autouse ``isolated_home`` fixture is per test, and module-scoped fixtures are set up before
it: without this, a bundle loaded once per module would write its pixels under the real
``~/.tlstudio``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def studio_home(path: Path) -> Iterator[Path]:
    """``TL_HOME`` (and ``TL_DATA_ROOT``) at ``path`` inside the block."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TL_HOME", str(path / "tlhome"))
        patch.setenv("TL_DATA_ROOT", str(path))
        yield path
