"""pytest fixtures with real ``redis-server`` processes, for your own tests.

Installing faulttol registers this module as a pytest plugin (the ``pytest11`` entry point
``faulttol_redis``), so the fixtures are there in any project that has the package installed;
disable it with ``-p no:faulttol_redis``. A fixture of the same name in your ``conftest.py``
overrides the plugin's.

* ``redis_server`` — one fresh :class:`~faulttol_redis.testing.RedisServer` per test.
* ``redis_servers`` — a factory, ``redis_servers(n) -> list[RedisServer]``, callable as often
  as the test needs.
* ``redis_cluster`` — a started 3-primary :class:`~faulttol_redis.testing.LocalCluster`;
  the test is skipped when the ``redis-server`` found is older than 7.0.

Every server and cluster node a fixture started is stopped at teardown, whatever the test's
outcome, including paused (SIGSTOPped) and killed ones. Without any ``redis-server`` binary
the fixtures raise an error saying how to install one (a missing dependency is not a skip).

This is the only module of :mod:`faulttol_redis.testing` that imports pytest; only pytest
loads it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._cluster import MIN_CLUSTER_SERVER_VERSION, LocalCluster, cluster_factory
from ._server import RedisServer, ServerFactory, find_redis_server, server_factory, server_version

__all__ = ["redis_cluster", "redis_server", "redis_servers"]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """One running ``redis-server`` on 127.0.0.1 and a free port, stopped after the test."""
    with server_factory() as start:
        (server,) = start(1)
        yield server


@pytest.fixture
def redis_servers() -> Iterator[ServerFactory]:
    """A factory: ``redis_servers(n)`` starts ``n`` servers and returns them in order; all
    are stopped after the test."""
    with server_factory() as start:
        yield start


@pytest.fixture
def redis_cluster() -> Iterator[LocalCluster]:
    """A running 3-primary Redis Cluster on 127.0.0.1 (no replicas), stopped after the test.

    Skips the test when the ``redis-server`` found is older than 7.0.
    """
    binary = find_redis_server()
    version = server_version(binary)
    if version < MIN_CLUSTER_SERVER_VERSION:
        pytest.skip(
            f"redis_cluster needs redis-server >= 7.0; {binary} is "
            f"{'.'.join(map(str, version))} (install Redis 7, e.g. apt-get install redis-server)"
        )
    with cluster_factory() as start:
        yield start()
