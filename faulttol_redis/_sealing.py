"""Sealing the connection pools of a closed provider, so that nothing reconnects after close.

redis-py pools reconnect on demand after ``disconnect()``, so a command that was already
running when the client (or the provider) closed — it passed every check before the close —
could open a socket that nobody closes. A sealed pool raises
:class:`~faulttol_redis.ClientClosedError` from ``get_connection`` and disconnects every
connection given back to it. Only pools that a database's client owns are sealed (a pool
passed in ``client_kwargs`` may serve others). Both providers seal their pools when they
close; only the installed methods differ (plain for ``redis``, coroutines for
``redis.asyncio``). No I/O here beyond the sync pool's ``disconnect()``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

from .errors import ClientClosedError

__all__ = ["owned_pools", "seal_async_pool", "seal_pools"]

_log = logging.getLogger("faulttol_redis.client")

_SEAL_LOCK = threading.Lock()

_REFUSE = "the client is closed: the connection pool of a closed provider opens no connection"


def _mark_sealed(pool: Any) -> bool:
    """Whether ``pool`` is sealed by this call (lock held by the caller)."""
    if pool.__dict__.get("_faulttol_sealed"):
        return False
    pool._faulttol_sealed = True
    return True


def _seal_pool(pool: Any) -> None:
    """Seal a ``redis`` pool, then disconnect it. Idempotent."""
    with _SEAL_LOCK:
        if not _mark_sealed(pool):
            return
        release = pool.release

        def get_connection(*args: Any, **kwargs: Any) -> NoReturn:
            raise ClientClosedError(_REFUSE)

        def release_and_disconnect(connection: Any) -> None:
            try:
                release(connection)
            finally:
                connection.disconnect()

        pool.get_connection = get_connection
        pool.release = release_and_disconnect
    pool.disconnect()  # after sealing: also what connected while the provider was closing


def seal_async_pool(pool: Any) -> bool:
    """Seal a ``redis.asyncio`` pool (the caller awaits its ``disconnect()``); returns whether
    it was sealed just now. Idempotent."""
    with _SEAL_LOCK:
        if not _mark_sealed(pool):
            return False
        release = pool.release

        async def get_connection(*args: Any, **kwargs: Any) -> NoReturn:
            raise ClientClosedError(_REFUSE)

        async def release_and_disconnect(connection: Any) -> None:
            try:
                await release(connection)
            finally:
                await connection.disconnect()

        pool.get_connection = get_connection
        pool.release = release_and_disconnect
        return True


def owned_pools(client: Any, *, cluster_nodes: bool) -> Iterator[Any]:
    """The connection pools a database client owns (with ``cluster_nodes``, a sync cluster
    client's known nodes' pools; an uninitialized cluster has none)."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        if getattr(client, "auto_close_connection_pool", False):
            yield pool
        return
    if not cluster_nodes:
        return
    nodes_manager = getattr(client, "__dict__", {}).get("nodes_manager")
    if nodes_manager is not None:
        for node in list(getattr(nodes_manager, "nodes_cache", {}).values()):
            node_client = getattr(node, "redis_connection", None)
            node_pool = getattr(node_client, "connection_pool", None)
            if node_pool is not None:
                yield node_pool


def seal_pools(clients: Iterable[Any]) -> None:
    """Seal (and disconnect) every pool the sync ``clients`` own."""
    for client in clients:
        for pool in owned_pools(client, cluster_nodes=True):
            try:
                _seal_pool(pool)
            except Exception:  # pragma: no cover - best effort on shutdown
                _log.debug("sealing a pool of %r failed", client, exc_info=True)
