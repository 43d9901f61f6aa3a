"""Building the redis-py clients of a database: :func:`create_client` (sync) and
:func:`create_async_client` (asyncio).

A :class:`~faulttol_redis.DatabaseConfig` is a plain record; the clients are built here, from
its settings, shaped for failover:

* redis-py's own retries are off (``Retry(NoBackoff(), 0)``) unless ``client_kwargs`` sets
  ``retry``, so that the failover client's retry is the only one;
* a cluster database (``cluster=True``) gets a :class:`~faulttol_redis._cluster` client that
  loads the cluster's topology on first use and reports the cluster being unavailable as a
  :class:`~faulttol_redis.ClusterConnectionError`;
* a standalone database's connections mark a failure to connect or to complete the
  handshake as "never sent" (``faulttol_redis._connection``), unless ``client_kwargs``
  chooses the connections (``connection_class``, ``connection_pool``).

This module reads a config through :class:`ClientSettings` (the fields it needs) and does not
import the config module: that one imports this (its deprecated ``create_client`` /
``create_async_client`` methods delegate here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.retry
from redis.backoff import NoBackoff

from . import _cluster, _connection

__all__ = [
    "RESERVED_CLIENT_KWARGS",
    "ClientSettings",
    "command_runner",
    "create_async_client",
    "create_client",
]

RESERVED_CLIENT_KWARGS = frozenset({"host", "port", "url", "startup_nodes"})
"""Client options that only the config's own fields (host, port, url) set: refused in
``client_kwargs`` and in ``overrides``."""


class ClientSettings(Protocol):
    """What building a client reads from a database's config: a
    :class:`~faulttol_redis.DatabaseConfig` is one."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def url(self) -> str | None: ...

    @property
    def cluster(self) -> bool: ...

    @property
    def client_kwargs(self) -> Mapping[str, Any] | None: ...


def _client_kwargs(config: ClientSettings, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The config's ``client_kwargs`` updated by ``overrides`` (which may not move the
    client to another endpoint)."""
    kwargs = dict(config.client_kwargs or {})
    kwargs.update(overrides)
    for key in RESERVED_CLIENT_KWARGS & kwargs.keys():
        raise ValueError(f"cannot override {key!r}: use DatabaseConfig's host/port/url")
    return kwargs


def create_client(
    config: ClientSettings, **overrides: Any
) -> redis.Redis | redis.cluster.RedisCluster:
    """A new sync client for the database ``config`` describes: its ``client_kwargs``
    updated by ``overrides``.

    redis-py's own retries are off (``Retry(NoBackoff(), 0)``) unless a ``retry`` is given,
    so that the failover client's retry is the only one. With ``cluster=True`` this is a
    ``RedisCluster`` that loads the cluster's topology on first use (once, under a lock:
    concurrent first commands are safe, and a cluster that is down when the client is made
    does not prevent making it) and reports the cluster being unavailable as a
    :class:`~faulttol_redis.ClusterConnectionError`. A standalone client's connections mark
    a failure to connect or to complete the handshake as "never sent", so that the failover
    client replays the command (``faulttol_redis._connection``), unless ``client_kwargs``
    chooses the connections (``connection_class``, ``connection_pool``).
    """
    kwargs = _client_kwargs(config, overrides)
    if "retry" not in kwargs:
        kwargs["retry"] = redis.retry.Retry(NoBackoff(), 0)
    if config.cluster:
        if config.url is not None:
            return _cluster.FailoverRedisCluster(url=config.url, **kwargs)
        return _cluster.FailoverRedisCluster(host=config.host, port=config.port, **kwargs)
    if config.url is not None:
        client = redis.Redis.from_url(config.url, **kwargs)
    else:
        client = redis.Redis(host=config.host, port=config.port, **kwargs)
    _connection.use_failover_connections(client, kwargs)
    return client


def create_async_client(
    config: ClientSettings, **overrides: Any
) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
    """The asyncio twin of :func:`create_client` (a cluster client connects lazily, as
    redis-py's does, and reports the cluster being unavailable as a
    :class:`~faulttol_redis.ClusterConnectionError`)."""
    kwargs = _client_kwargs(config, overrides)
    if "retry" not in kwargs:
        kwargs["retry"] = redis.asyncio.retry.Retry(NoBackoff(), 0)
    if config.cluster:
        if config.url is not None:
            return _cluster.FailoverAsyncRedisCluster.from_url(config.url, **kwargs)
        return _cluster.FailoverAsyncRedisCluster(host=config.host, port=config.port, **kwargs)
    if config.url is not None:
        aclient = redis.asyncio.Redis.from_url(config.url, **kwargs)
    else:
        aclient = redis.asyncio.Redis(host=config.host, port=config.port, **kwargs)
    _connection.use_failover_connections(aclient, kwargs)
    return aclient


def _forwarding_execute_command() -> Any:
    """redis-py's ``Redis.execute_command`` when all it does is call
    ``self._execute_command(*args, **options)`` (redis-py 8), else None."""
    method = getattr(redis.Redis, "execute_command", None)
    code = getattr(method, "__code__", None)
    if code is None or code.co_names != ("_execute_command",):
        return None
    if not callable(getattr(redis.Redis, "_execute_command", None)):
        return None
    return method


_FORWARDING_EXECUTE_COMMAND = _forwarding_execute_command()


def command_runner(client: Any) -> Any:
    """What the failover client calls to run one command on a database's sync ``client``.

    Its ``execute_command``, except where that only forwards to ``_execute_command`` (a
    ``redis.Redis`` on redis-py 8, checked once on the function's code): then that method
    itself, which spares every command one frame and one re-packing of its arguments
    behind the failover client's own ``execute_command``. A class that overrides
    ``execute_command`` (a cluster client, a subclass, an instrumentation wrapper installed
    before the client is made) is always called through it.
    """
    forwarding = _FORWARDING_EXECUTE_COMMAND
    if forwarding is not None and getattr(type(client), "execute_command", None) is forwarding:
        return client._execute_command
    return client.execute_command
