"""A real PostgreSQL for the integration tests, started once per session and always stopped.

The server comes from Debian's packages (``apt-get install -y postgresql``); without them the
tests marked ``integration`` skip. Each test gets a database of its own and ``TL_DATABASE_URL``
pointing at it, so the run store it opens lives on the server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from integration.pg_cluster import Cluster, shared_cluster, stop_shared


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a PostgreSQL server started from Debian's "
                            "packages (skipped without them)")


@pytest.fixture(scope="session")
def postgres_cluster(request: pytest.FixtureRequest) -> Cluster:
    request.addfinalizer(stop_shared)
    cluster = shared_cluster()
    if cluster is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install -y postgresql)")
    return cluster


@pytest.fixture
def postgres_url(postgres_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database, named in ``TL_DATABASE_URL`` for this test (workers inherit it)."""
    url = postgres_cluster.create_database()
    monkeypatch.setenv("TL_DATABASE_URL", url)
    yield url
