"""A real PostgreSQL and a real Ray cluster for the integration tests, each started once per
session (on first use) and always stopped.

The server comes from Debian's packages (``apt-get install -y postgresql``); without them the
tests marked ``integration`` skip. Each test gets a database of its own and ``TL_DATABASE_URL``
pointing at it, so the run store it opens lives on the server. The Ray head comes from the
``ray`` package in requirements.txt; tests that use it (``on_ray``) send their runs to it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from integration import ray_head
from integration.pg_cluster import PASSWORD, Cluster, shared_cluster, stop_shared


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a PostgreSQL server started from Debian's "
                            "packages (skipped without them), some also a Ray cluster")


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


@pytest.fixture(scope="session")
def ray_cluster(request: pytest.FixtureRequest) -> ray_head.RayHead:
    request.addfinalizer(ray_head.stop_shared)
    head = ray_head.shared_head({"PGPASSWORD": PASSWORD})  # a node's own secret: jobs carry none
    if head is None:
        pytest.skip("Ray is not installed in this environment (pip install -r requirements.txt)")
    return head


@pytest.fixture
def on_ray(ray_cluster: ray_head.RayHead, postgres_url: str, monkeypatch: pytest.MonkeyPatch
           ) -> ray_head.RayHead:
    """Runs go to the Ray cluster (``TL_JOBS``), and the store they share is on PostgreSQL."""
    monkeypatch.setenv("TL_JOBS", ray_cluster.jobs_url)
    return ray_cluster
