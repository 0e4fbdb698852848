"""Shared fixtures: every test gets its own TL_HOME and an empty Keras cache, and is seeded.

Slow and e2e tests are skipped unless asked for (``--run-slow``, ``--run-e2e``), so the
default suite stays offline and fast on two cores. Tests that use ../shared/assets skip when it is absent.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
MARKERS = {"slow": "--run-slow", "e2e": "--run-e2e"}


def pytest_addoption(parser: pytest.Parser) -> None:
    for marker, option in MARKERS.items():
        parser.addoption(option, action="store_true", help=f"run tests marked {marker}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker, option in MARKERS.items():
            if marker in item.keywords and not config.getoption(option):
                item.add_marker(pytest.mark.skip(reason=f"needs {option}"))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "tlhome"
    monkeypatch.setenv("TL_HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TL_DATA_ROOT", str(tmp_path))
    return home


@pytest.fixture(autouse=True)
def seeded() -> None:
    random.seed(0)
    np.random.seed(0)


@pytest.fixture
def assets() -> Path:
    """The shared offline weights and datasets; tests using it skip when they are absent."""
    if not (ASSETS / "keras-weights").is_dir():
        pytest.skip("../shared/assets is not present")
    return ASSETS
