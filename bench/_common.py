"""Shared helpers for the Redis benchmarks (``bench/failover.py``, ``bench/redis_overhead.py``).

Both compare faulttol_redis with redis-py's own multi-database client, ``MultiDBClient`` (sync
and asyncio), on real throwaway ``redis-server`` processes on loopback. This module builds the
clients the same way for every benchmark (so the comparison is like for like), starts and
always stops the servers (standalone, and 3-primary Redis Clusters through the test suite's
``LocalCluster``), and formats the machine note and tables.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import statistics
import sys
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Protocol

import redis
from redis.multidb.client import MultiDBClient
from redis.multidb.config import DatabaseConfig as RedisPyDatabaseConfig
from redis.multidb.config import MultiDbConfig as RedisPyMultiDbConfig

import faulttol_redis.asyncio
from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig
from faulttol_redis.testing import RedisServer, find_redis_server, server_version

__all__ = [
    "SOCKET_TIMEOUT",
    "Cluster",
    "close_redispy",
    "close_redispy_async",
    "clusters",
    "faulttol_async_client",
    "faulttol_client",
    "faulttol_configs",
    "fmt_ms",
    "fmt_ratio",
    "has_async_multidb",
    "machine_note",
    "median",
    "redispy_async_client",
    "redispy_client",
    "redispy_port",
    "servers",
    "table",
    "timeouts",
]

SOCKET_TIMEOUT = 0.5
"""Socket and connect timeout (seconds) of every client under test, as the issue asks."""


@contextlib.contextmanager
def servers(count: int) -> Iterator[list[RedisServer]]:
    """``count`` fresh loopback servers; all of them are stopped on exit, even on errors
    (a paused one is resumed first by ``RedisServer.stop``)."""
    started: list[RedisServer] = []
    try:
        for _ in range(count):
            started.append(RedisServer())
        yield started
    finally:
        for server in started:
            with contextlib.suppress(Exception):
                server.stop()


class Cluster(Protocol):
    """What the benchmarks use of ``faulttol_redis.testing.LocalCluster``."""

    nodes: list[RedisServer]

    @property
    def ports(self) -> list[int]: ...

    @property
    def host(self) -> str: ...

    def owner_of(self, key: str | bytes) -> int: ...

    def kill(self, index: int) -> None: ...

    def stop(self) -> None: ...


def _local_cluster_class() -> Any:
    """``faulttol_redis.testing.LocalCluster``: it starts ``--cluster-enabled`` servers on free
    ports and joins them with the ``redis-cli --cluster create`` beside the chosen
    ``redis-server``."""
    from faulttol_redis.testing import LocalCluster

    return LocalCluster


@contextlib.contextmanager
def clusters(count: int) -> Iterator[list[Cluster]]:
    """``count`` fresh 3-primary Redis Clusters on loopback (no replicas, cluster-node-timeout
    1 s); every node of every one is stopped on exit, even on errors."""
    local_cluster = _local_cluster_class()
    started: list[Cluster] = []
    try:
        for _ in range(count):
            started.append(local_cluster())
        yield started
    finally:
        for cluster in started:
            with contextlib.suppress(Exception):
                cluster.stop()


def timeouts() -> dict[str, Any]:
    """Socket and connect timeouts of every client under test."""
    return {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}


def faulttol_configs(ports: Sequence[int], host: str = "127.0.0.1") -> MultiDbConfig:
    """The default config over standalone servers on ``ports`` in order (index 1 first)."""
    return MultiDbConfig([DatabaseConfig(host, port, client_kwargs=timeouts()) for port in ports])


def faulttol_client(ports: Sequence[int], host: str = "127.0.0.1") -> FailoverRedis:
    """A ``FailoverRedis`` over ``ports`` in order (index 1 first), default config otherwise."""
    return FailoverRedis.from_config(faulttol_configs(ports, host))


async def faulttol_async_client(
    ports: Sequence[int], host: str = "127.0.0.1"
) -> faulttol_redis.asyncio.FailoverRedis:
    """The asyncio ``FailoverRedis`` over ``ports``, default config, already initialized
    (startup probes done, health-check task running on the current loop), so that cost is
    not charged to the first command."""
    client = faulttol_redis.asyncio.FailoverRedis.from_config(faulttol_configs(ports, host))
    await client.initialize()
    return client


def _redispy_config(config_cls: Any, database_cls: Any, ports: Sequence[int], host: str,
                    **kwargs: Any) -> Any:
    return config_cls(
        databases_config=[
            database_cls(client_kwargs={"host": host, "port": port, **timeouts()})
            for port in ports
        ],
        **kwargs,
    )


def redispy_client(ports: Sequence[int], host: str = "127.0.0.1",
                   **config_kwargs: Any) -> MultiDBClient:
    """redis-py's ``MultiDBClient`` over ``ports``, default config otherwise.

    All databases get redis-py's default weight (1.0); its ``WeightedList`` keeps equal
    weights in insertion order, so the first port is the initial active database (checked
    by the benchmarks with :func:`redispy_port`). The client is initialized (initial health
    check) before it is returned, so that cost is not charged to the first command.
    ``config_kwargs`` go to redis-py's ``MultiDbConfig`` (e.g. ``client_class=RedisCluster``:
    then every port is a startup node of a cluster).
    """
    config = _redispy_config(RedisPyMultiDbConfig, RedisPyDatabaseConfig, ports, host,
                             **config_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "MultiDBClient is experimental"
        client = MultiDBClient(config)
    handle: Any = client  # redis-py's multidb module is not fully typed
    handle.initialize()
    return client


def has_async_multidb() -> bool:
    """Whether this redis-py has the asyncio ``MultiDBClient`` (``redis.asyncio.multidb``)."""
    try:
        importlib.import_module("redis.asyncio.multidb.client")
    except ImportError:
        return False
    return True


async def redispy_async_client(ports: Sequence[int], host: str = "127.0.0.1") -> Any:
    """redis-py's asyncio ``MultiDBClient`` over ``ports``, default config, initialized (see
    :func:`redispy_client`). Requires :func:`has_async_multidb`."""
    client_module = importlib.import_module("redis.asyncio.multidb.client")
    config_module = importlib.import_module("redis.asyncio.multidb.config")
    config = _redispy_config(config_module.MultiDbConfig, config_module.DatabaseConfig, ports,
                             host)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "MultiDBClient is experimental"
        client = client_module.MultiDBClient(config)
    await client.initialize()
    return client


def redispy_port(client: Any) -> int | None:
    """The port of the standalone database redis-py's client (sync or asyncio) uses."""
    database: Any = client.command_executor.active_database
    if database is None:
        return None
    port = database.client.connection_pool.connection_kwargs.get("port")
    return int(port) if port is not None else None


def close_redispy(client: MultiDBClient) -> None:
    """Close redis-py's client *and* every database's client.

    ``MultiDBClient.close()`` closes only the active database's client; the others would keep
    their sockets until garbage collection.
    """
    handle: Any = client  # redis-py's multidb module is not fully typed
    with contextlib.suppress(Exception):
        handle.close()
    for database, _ in handle.get_databases():
        with contextlib.suppress(Exception):
            database.client.close()


async def close_redispy_async(client: Any) -> None:
    """Close redis-py's asyncio client *and* every database's client (its ``aclose()``
    closes only the active database's client)."""
    with contextlib.suppress(Exception):
        await client.aclose()
    for database, _ in client.get_databases():
        with contextlib.suppress(Exception):
            await database.client.aclose()


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def fmt_ms(seconds: float) -> str:
    """Seconds as whole milliseconds (``-`` for NaN)."""
    if seconds != seconds:  # NaN
        return "-"
    return f"{seconds * 1000:.0f} ms"


def fmt_ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` with three decimals (``-`` when undefined)."""
    if denominator <= 0 or numerator != numerator or denominator != denominator:
        return "-"
    return f"{numerator / denominator:.3f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with columns padded to line up in a terminal too."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


def machine_note() -> str:
    """One line: date, CPUs, Python, redis-py, faulttol and redis-server versions."""
    binary = find_redis_server()
    server = ".".join(map(str, server_version(binary)))
    try:
        faulttol_version = metadata.version("faulttol")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        faulttol_version = "?"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{now}; {os.cpu_count()} CPUs ({platform.machine()}, {platform.system()}); "
        f"Python {sys.version.split()[0]}; redis-py {redis.__version__}; "
        f"faulttol {faulttol_version}; redis-server {server}"
    )
