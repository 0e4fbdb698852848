"""Shared fixtures: every test gets its own TL_HOME and an empty Keras cache, and is seeded.

Slow tests are skipped unless asked for (``--run-slow``), so the default suite stays offline
and fast on two cores. Browser tests (marked ``e2e``) run when Debian's Chromium is installed
(``.ci/run`` installs it) and skip otherwise. Tests that use ../shared/assets skip when it is
absent.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
CHROMIUM = Path("/usr/bin/chromium")

# Shared test helpers (generated images, tiny specs) import by name from every test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

# Module-scoped fixtures load data before any test's own TL_HOME is set: they get this one,
# never the real home of whoever runs the tests.
SESSION_HOME = tempfile.mkdtemp(prefix="tltest-home-")
os.environ["TL_HOME"] = SESSION_HOME
# Workers audit each finished run (seconds each); tests that mean it turn it back on.
os.environ["TL_AUTO_AUDIT"] = "0"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SESSION_HOME, ignore_errors=True)  # else every session leaves one in /tmp


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow"))
        if "e2e" in item.keywords and not CHROMIUM.exists():
            item.add_marker(pytest.mark.skip(reason=f"{CHROMIUM} is missing (apt-get install chromium)"))


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
