"""FailoverPubSub (asyncio): the sync pubsub's twin over ``redis.asyncio`` (the decisions they
share are in :class:`faulttol_redis._client_common.PubSubMixin`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio.cluster
from redis.asyncio.client import PubSub

from faulttol import SwitchEvent

from .._client_common import PubSubMixin, ReadError, closed_under_us
from .._cluster import AsyncClusterPubSubPool
from ..errors import ClientClosedError
from ._pipeline import _is_cluster
from .provider import AsyncDatabase, FailoverProvider

__all__ = ["FailoverPubSub"]

_log = logging.getLogger("faulttol_redis.asyncio")


def _pubsub_pool(db: AsyncDatabase) -> Any:
    """The pool a pubsub uses on ``db``: for a cluster, connections to one node (SUBSCRIBE
    on any node receives what is published on every node), picked at each connection."""
    client: Any = db.client
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        return AsyncClusterPubSubPool(client)
    return client.connection_pool


class FailoverPubSub(PubSubMixin, PubSub):
    """A ``redis.asyncio`` PubSub that moves its subscriptions to the new database after a
    switch.

    The switch disconnects the old connection (waking a reader blocked on it); the move happens
    in the task that next uses the pubsub (``get_message``, ``listen``, ``run`` or a
    (un)subscribe call). Subscribe confirmations for the re-subscribed channels arrive again, as
    after a redis-py reconnect.

    ``aclose()`` (also called by the client's ``aclose()``; ``close()``, ``reset()`` and
    ``async with`` are redis-py's aliases of it) is final: a reader awaiting a message gets
    :class:`~faulttol_redis.ClientClosedError`, ``run()`` returns, and every later use raises
    ``ClientClosedError`` (it never reconnects nor re-subscribes). So does a pubsub whose
    provider was closed.
    """

    def __init__(self, provider: FailoverProvider, **kwargs: Any) -> None:
        self._setup_following(provider)
        self._moving = False
        super().__init__(_pubsub_pool(self._db), **kwargs)
        self._start_following(self._on_switch)

    def _is_moving(self) -> bool:
        return self._moving

    async def _on_switch(self, event: SwitchEvent) -> None:
        if self._active_db() is self._db:
            return
        self._moving = True
        conn: Any = self.connection
        if conn is not None:
            self._switches += 1
            conn.deregister_connect_callback(self.on_connect)  # no re-subscribing on the old one
            try:
                await conn.disconnect(nowait=True)  # wakes a reader blocked on the old database
            except Exception:
                _log.debug("closing the old pubsub connection failed", exc_info=True)

    async def _follow(self) -> None:
        """Move to the active database if it changed."""
        async with self._lock:
            target = self._active_db()
            conn: Any = self.connection
            if target is self._db:
                if self._moving and conn is not None:
                    # switched away and back: reconnecting here re-subscribes
                    conn.register_connect_callback(self.on_connect)
                self._moving = False
                return
            pool = self.connection_pool
            # The new database before any await: a switch meanwhile is seen (the caller
            # moves again) and closes the new connection, never the one let go.
            self.connection = None
            self._db = target
            self.connection_pool = _pubsub_pool(target)
            self._moving = False
            if conn is not None:
                conn.deregister_connect_callback(self.on_connect)
                try:
                    await conn.disconnect(nowait=True)
                finally:
                    await pool.release(conn)
            if self.subscribed:
                _log.info("pubsub: re-subscribing on %s", target.config.display_name)
                await self.on_connect(None)  # type: ignore[arg-type]

    async def _subscribe_again(self) -> None:
        """Subscribe again on the current database: a re-subscription after a switch that
        failed (the new database refused the connection) left no connection, and reading
        must retry it rather than end in redis-py's "forgot to subscribe" RuntimeError."""
        async with self._lock:
            if self.connection is None and self.subscribed:
                await self.on_connect(None)  # type: ignore[arg-type]

    # ----------------------------------------------------------------------- lifecycle

    async def _check_open(self) -> None:
        if self._is_closed():
            if not self._closed:  # the provider was closed: release what is left
                await self.aclose()
            raise self._closed_pubsub_error()

    async def aclose(self) -> None:
        """Close the pubsub for good (see the class docstring). Idempotent."""
        if not self._closed:
            self._closed = True
            self._stop_following()
        parent: Any = super()  # typed in some redis-py versions, not in others
        await parent.aclose()

    async def _reconnect(self, conn: Any, *args: Any, **kwargs: Any) -> None:
        """redis-py reconnects a pubsub connection after a read error; a closed one stays
        closed, and one whose database is no longer active is left to the move."""
        if self._is_closed():
            await conn.disconnect(nowait=True)
            return
        current: Any = self.connection
        if conn is not current:  # let go by a move (maybe in use elsewhere now)
            raise self._left_behind()
        if self._must_follow():
            await conn.disconnect(nowait=True)
            raise self._left_behind()
        await super()._reconnect(conn, *args, **kwargs)

    # ----------------------------------------------------------------------------- I/O

    async def execute_command(self, *args: Any) -> None:
        await self._check_open()
        provider = self._provider
        if not provider.initialized:
            await provider.initialize()
        if self._must_follow():
            await self._follow()
        with self._pubsub_command():
            await super().execute_command(*args)

    async def parse_response(self, block: bool = True, timeout: float = 0) -> Any:
        await self._check_open()
        if not await self._recover(self._move_before_reading):
            return None  # another switch cut the move short: the next read moves again
        conn: Any = self.connection
        switches = self._switches
        try:
            return await super().parse_response(block, timeout)
        except Exception as exc:
            return await self._on_read_error(closed_under_us(exc, conn), conn, switches)

    async def _move_before_reading(self) -> None:
        while self._must_follow():  # a switch during a move: move again before reading
            await self._follow()
        if self.connection is None and self.subscribed:
            await self._subscribe_again()

    async def _recover(self, step: Callable[[], Awaitable[None]]) -> bool:
        """Run a move or reconnect: whether it went through (its failure is handled by
        ``_after_failed_move``, which raises unless another switch caused it)."""
        switches = self._switches
        try:
            await step()
        except Exception as exc:
            self._after_failed_move(exc, switches)
            return False
        return True

    async def listen(self) -> AsyncIterator[Any]:
        await self._check_open()
        async for message in super().listen():
            yield message

    async def run(self, **kwargs: Any) -> None:
        """redis-py's ``run()``; returns (instead of raising) when the pubsub is closed."""
        try:
            await super().run(**kwargs)
        except ClientClosedError:
            if not self._closed:
                raise

    async def _on_read_error(self, exc: Exception, conn: Any, switches: int) -> None:
        """Reading failed: follow a switch, or fail over if the database is down.
        ``switches``: the count of connections closed by switches when the read began."""
        action = self._read_error(
            exc, moved=self.connection is not conn or self._switches != switches)
        if action is ReadError.IGNORE:
            return  # moved meanwhile
        if action is ReadError.PROBE:
            ordered = self._provider.ordered_provider
            slot = self._state.slot
            if await ordered.probe(slot, exc):
                if self._reconnects_after(exc) and conn is not None and not conn.is_connected:
                    # a broken connection to a live database
                    await self._recover(lambda: self._reconnect_same(conn))
                return
            await ordered.mark_unhealthy(slot, exc)
            if self._stays_after_failed_probe():
                raise exc  # nowhere to go: the caller sees the failure
        await self._recover(self._follow)  # a switch closed our connection, or we failed over

    async def _reconnect_same(self, conn: Any) -> None:
        """Reconnect to the same database, re-subscribing."""
        if self._is_closed():
            return  # closed meanwhile: the next use raises
        if not _is_cluster(self._db):
            await conn.connect()  # the connect callback re-subscribes
            return
        # A cluster may have lost our node while staying healthy (a replica took over, or a
        # policy that tolerates a dead primary): pick a node again.
        async with self._lock:
            current: Any = self.connection
            if current is not conn:
                return  # moved or reconnected meanwhile
            conn.deregister_connect_callback(self.on_connect)
            self.connection = None
            await self.connection_pool.release(conn)
        if self.subscribed:
            await self.on_connect(None)  # type: ignore[arg-type]  # subscribing connects
