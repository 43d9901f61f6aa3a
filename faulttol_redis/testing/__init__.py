"""Test your own code under real failover: real ``redis-server`` processes and real faults.

* :class:`RedisServer` — a throwaway ``redis-server`` on loopback and a free port, without
  persistence: ``kill()`` (SIGKILL), ``pause()``/``resume()`` (SIGSTOP/SIGCONT), ``restart()``
  (same port, empty data set), ``stop()``; ``host``, ``port``, ``url``, ``client()``; a context
  manager. Nothing it starts outlives it (garbage collection, interpreter exit, and on Linux
  even a killed interpreter).
* :func:`server_factory` — ``with server_factory() as start: a, b = start(2)``: every server
  started is stopped at the end, paused ones included (:data:`ServerFactory` is its type).
* :class:`LocalCluster` / :func:`cluster_factory` — a real N-primary Redis Cluster (Redis 7+).
* :class:`BlackHoleProxy` — a TCP proxy on loopback whose ``freeze()`` stops forwarding both
  ways without closing anything (a lost route, a partition).
* :func:`find_redis_server`, :func:`find_redis_cli`, :func:`server_version`, :func:`free_port`.
* A pytest plugin (:mod:`faulttol_redis.testing.pytest_plugin`, registered as ``pytest11``
  entry point ``faulttol_redis``: installing the package is enough) with the fixtures
  ``redis_server``, ``redis_servers`` and ``redis_cluster``.

The library never imports this package, and it does not need pytest (only the plugin
module does, and only pytest loads it).
"""

from __future__ import annotations

from ._cluster import (
    MIN_CLUSTER_SERVER_VERSION,
    LocalCluster,
    cluster_factory,
    find_redis_cli,
)
from ._proxy import BlackHoleProxy
from ._server import (
    RedisServer,
    ServerFactory,
    find_redis_server,
    free_port,
    server_factory,
    server_version,
)

__all__ = [
    "MIN_CLUSTER_SERVER_VERSION",
    "BlackHoleProxy",
    "LocalCluster",
    "RedisServer",
    "ServerFactory",
    "cluster_factory",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "server_factory",
    "server_version",
]
