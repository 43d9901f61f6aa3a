"""FailoverRedis for asyncio: a ``redis.asyncio.Redis`` whose commands run through failover.

Every command of redis-py's asyncio command mixins reaches
:meth:`FailoverRedis.execute_command`, which awaits it on the active database through the
provider (retry → circuit breaker → failover). Pipelines are buffered and run on the database
active at ``execute()``; a WATCHed transaction is bound to the database its WATCH ran on and
never commits anywhere else. Each ``pubsub()`` is an independent ``redis.asyncio`` PubSub that
moves its channels, patterns and shard channels to the new database after a switch.

The client has no connection pool of its own: each database's ``redis.asyncio`` client has
one, owned by the provider. ``aclose()`` closes the client's pubsubs and its provider (the
health-check task and every connection).

Lifecycle, as for the sync client: ``aclose()`` (alias ``close()``) is final. Every later call
raises :class:`~faulttol_redis.ClientClosedError` without network I/O (also on a client
closed before its first use), commands racing the close end with redis-py exceptions only,
the client's pubsubs and WATCHing pipelines are closed with it, and the provider's pools
refuse new connections (the provider seals them when it closes). The success path pays one
attribute read for it: the gate it reads (the generic provider's ``active_state``) is a closed
one once the client closes, and a never-healthy one until the provider has started up.

What this client shares with the sync one (closed checks, the redis-py members answered by
the active database, replay and WATCH decisions, when a pubsub follows a switch) is in
:mod:`faulttol_redis._client_common`; this module holds the asyncio I/O.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any

import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.client import Pipeline, PubSub
from redis.exceptions import RedisError

from faulttol import SwitchEvent

from .._client_common import (
    CLOSED_GATE,
    ClientMixin,
    PipelineMixin,
    PubSubMixin,
    ReadError,
    give_back,
    is_watch,
)
from .._cluster import AsyncClusterPubSubPool
from ..config import MultiDbConfig
from ..errors import ClientClosedError
from .provider import AsyncDatabase, FailoverProvider

__all__ = ["FailoverPipeline", "FailoverPubSub", "FailoverRedis"]

_log = logging.getLogger("faulttol_redis.asyncio")


def _run_command(db: AsyncDatabase, args: tuple[Any, ...],
                 options: dict[str, Any]) -> Awaitable[Any]:
    return db.client.execute_command(*args, **options)  # type: ignore[no-any-return]


class FailoverRedis(ClientMixin, redis.asyncio.Redis):  # type: ignore[misc]
    """A ``redis.asyncio.Redis`` whose commands run on the provider's active database.

    Build it from a provider (``FailoverRedis(provider)``) or a config
    (``FailoverRedis.from_config(config)``); no I/O happens until first use (see
    :mod:`faulttol_redis.asyncio.provider` for startup). ``async with`` initializes it and
    closes it on exit; ``aclose()`` closes the client, its pubsubs and its provider (see the
    module docstring for what a closed client does).

    The redis-py members that assume one connection pool answer for the active database
    (``connection_pool``, ``get_encoder()``...), apply to every database (callbacks, HIMPORT
    fieldsets) or say why they cannot work (``set_retry``, ``from_url``, ``from_pool``).
    """

    connection: None
    """Always None: the client holds no connection of its own."""

    single_connection_client: bool
    """Always False: commands run on pooled connections of the active database."""

    auto_close_connection_pool: bool
    """False: the client has no pool; the provider owns the databases' pools (and closes
    them when the client that owns the provider closes)."""

    def __init__(self, provider: FailoverProvider) -> None:  # no super(): no own pool
        if not isinstance(provider, FailoverProvider):
            raise TypeError(
                f"provider must be an asyncio FailoverProvider, got {type(provider).__name__}"
            )
        self._setup(provider, started=provider.initialized)
        self._usage = 0

    @classmethod
    def from_config(cls, config: MultiDbConfig) -> FailoverRedis:
        """Build the provider for ``config`` and a client on it (no I/O yet)."""
        return cls(FailoverProvider(config))

    @property
    def provider(self) -> FailoverProvider:
        """The failover provider this client runs on."""
        return self._provider  # type: ignore[no-any-return]

    async def initialize(self) -> FailoverRedis:
        """Run the provider's startup (connect in order) if it has not run yet."""
        self._check_open()
        try:
            await self._provider.initialize()
        except RuntimeError as exc:  # the provider closed meanwhile
            if self._is_closed():
                raise self._closed_error(exc) from exc
            raise
        if self._gate is not CLOSED_GATE:
            self._gate = self._ordered.active_state  # started: the success path may run
        return self

    # ------------------------------------------------------------------------ commands

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command on the active database, with retry and failover.

        The success path of :meth:`faulttol.AsyncOrderedProvider.execute_with`, written out
        here as in the sync client. Before startup, and once the client or its provider is
        closed, every call goes to :meth:`_slow` (the gate's slot is never healthy, or its
        state says ``closed``).
        """
        gate = self._gate
        slot = gate.slot
        breaker = slot.breaker
        if slot.healthy is not False and not gate.closed and breaker.try_acquire_permission():
            now = self._now
            start = now()
            try:
                result = await slot.target.client.execute_command(*args, **options)
            except BaseException as exc:
                return await self._failed(slot, breaker, now() - start, exc, args, options)
            breaker.on_result(now() - start, result)
            return result
        return await self._slow(args, options, slot, None)

    async def _failed(self, slot: Any, breaker: Any, duration: float, exc: BaseException,
                      args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """The first attempt failed: record it and recover, unless the client closed."""
        if self._is_closed():
            give_back(breaker)  # the close broke the call: nothing to count
            raise self._after_close(exc)
        breaker.on_error(duration, exc)
        return await self._slow(args, options, slot, exc)

    async def _slow(self, args: tuple[Any, ...], options: dict[str, Any], slot: Any,
                    exc: BaseException | None) -> Any:
        """Startup, then the provider's slow path (retry, probe, failover), with the closed
        checks."""
        if self._is_closed():
            raise self._closed_error(exc)
        if not self._provider.initialized:
            await self.initialize()
            return await self.execute_command(*args, **options)
        try:
            return await self._ordered.recover(
                self._attempt, (args, options), None, self._may_replay, slot=slot, exc=exc
            )
        except BaseException as error:
            if self._is_closed():
                raise self._after_close(error)  # noqa: B904 - the cause is set
            raise

    def _attempt(self, db: AsyncDatabase, args: tuple[Any, ...],
                 options: dict[str, Any]) -> Awaitable[Any]:
        """One attempt of the slow path; stops it at once if the client closed meanwhile."""
        self._check_attempt()
        return db.client.execute_command(*args, **options)  # type: ignore[no-any-return]

    # Attributes redis-py's helpers read from a client: answered by the active database.

    @property
    def connection_pool(self) -> Any:  # type: ignore[override]
        """The active database's connection pool (read-only; None for a cluster database)."""
        return getattr(self._provider.client(), "connection_pool", None)

    @property
    def response_callbacks(self) -> Any:  # type: ignore[override]
        return getattr(self._provider.client(), "response_callbacks", {})

    # HIMPORT fieldsets (redis-py 8.1+) live in each client's registry: declared on every
    # database, so that HIMPORT SET keeps working after a switch.

    async def _himport(self, name: str, *args: Any) -> list[Any]:
        await self.initialize()
        return [await method(*args) for method in self._himport_methods(name)]

    async def himport_prepare(self, fieldset_name: str, fields: Iterable[Any]) -> bool:
        """Declare an HIMPORT fieldset on every database's client."""
        await self._himport("himport_prepare", fieldset_name, list(fields))
        return True

    async def himport_discard(self, fieldset_name: str) -> int:
        """Remove an HIMPORT fieldset from every database's client (1 if it was declared)."""
        return 1 if any(await self._himport("himport_discard", fieldset_name)) else 0

    async def himport_discard_all(self) -> int:
        """Remove every HIMPORT fieldset from every database's client; returns how many
        were declared."""
        return max(await self._himport("himport_discard_all"), default=0)

    # ---------------------------------------------------------------- pipelines, pubsub

    def pipeline(
        self, transaction: bool = True, shard_hint: Any = None
    ) -> FailoverPipeline:
        """A pipeline that runs on the database active when it executes."""
        self._check_open()
        return FailoverPipeline(self, transaction, shard_hint)

    def pubsub(self, **kwargs: Any) -> FailoverPubSub:
        """An independent PubSub that follows switches, re-subscribing on the new database.

        ``aclose()`` on this client closes it too."""
        self._check_open()
        pubsub = FailoverPubSub(self._provider, **kwargs)
        self._pubsubs.add(pubsub)
        return pubsub

    def monitor(self) -> Any:
        """MONITOR on the active database (does not follow switches)."""
        self._check_open()
        return self._provider.client().monitor()

    def client(self) -> FailoverRedis:
        """Another client on the same provider (redis-py: a client sharing the pool).

        Its ``aclose()`` closes only it (and its pubsubs and WATCHing pipelines), not the
        provider; closing the provider (or the client that owns it) closes it too. Unlike
        redis-py's, it is not pinned to one connection: for commands that must share a
        connection use a pipeline (``watch()``/``multi()``/``execute()``), which is bound
        to one database and one connection while it WATCHes.
        """
        child: FailoverRedis = self._child()
        return child

    # --------------------------------------------------------------------------- close

    async def __aenter__(self) -> FailoverRedis:
        self._check_open()
        self._usage += 1
        try:
            return await self.initialize()
        except BaseException:
            self._usage -= 1
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._usage -= 1
        if self._usage <= 0:
            await self.aclose()

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the client for good: its pubsubs, its WATCHing pipelines and, when it owns
        the provider (built with ``FailoverRedis(provider)`` or ``from_config``, not by
        :meth:`client`), the provider (health checks, every connection). Idempotent.
        ``close_connection_pool`` is accepted for redis-py compatibility and ignored: the
        provider's owner decides."""
        if self._closed:
            return
        self._closed = True
        self._gate = CLOSED_GATE
        for pipe in list(self._watching):
            await pipe._abandon()  # a WATCHing pipeline holds a connection
        for pubsub in list(self._pubsubs):
            try:
                await pubsub.aclose()
            except Exception:  # pragma: no cover - best effort on shutdown
                _log.debug("closing a pubsub failed", exc_info=True)
        if self._owns_provider:
            await self._provider.aclose()  # which seals its pools

    async def close(self, close_connection_pool: bool | None = None) -> None:
        """Alias of :meth:`aclose`."""
        await self.aclose()

    def __del__(self, *args: Any) -> None:
        pass  # the provider owns the connections; aclose() releases them explicitly


# --- pipelines ------------------------------------------------------------------------------


def _is_cluster(db: AsyncDatabase) -> bool:
    return isinstance(db.client, redis.asyncio.cluster.RedisCluster)


async def _run_pipeline(db: AsyncDatabase, stack: list[Any], scripts: set[Any],
                        transaction: bool, shard_hint: Any, raise_on_error: bool) -> list[Any]:
    pipe = db.client.pipeline(transaction, shard_hint)
    try:
        if _is_cluster(db):
            # redis-py runs a cluster transaction's execute_command on a worker thread's own
            # event loop: the cluster must be initialized on ours first.
            await pipe.initialize()
        # Replayed through the public API; an asyncio cluster pipeline buffers on
        # execute_command (it has no pipeline_execute_command).
        add = getattr(pipe, "pipeline_execute_command", None) or pipe.execute_command
        for args, options in stack:
            add(*args, **options)
        if scripts and hasattr(pipe, "scripts"):
            pipe.scripts = set(scripts)
        return await pipe.execute(raise_on_error)  # type: ignore[no-any-return]
    finally:
        await pipe.reset()


class FailoverPipeline(PipelineMixin, Pipeline):  # type: ignore[misc]
    """A ``redis.asyncio`` Pipeline whose buffered commands run on the database active at
    ``execute()``.

    After ``watch()`` the pipeline is bound to the database the WATCH ran on (immediate
    commands, MULTI, EXEC all go there); if the active database changes before ``execute()``,
    ``execute()`` raises ``WatchError`` instead of committing elsewhere.

    Once its client is closed, what would reach a database (``execute()``, ``watch()``, an
    immediate command while WATCHing) raises :class:`~faulttol_redis.ClientClosedError`;
    buffering a command does no I/O and is not checked. Closing the client releases the
    connection of a WATCHing pipeline.
    """

    def __init__(self, client: FailoverRedis, transaction: bool, shard_hint: Any) -> None:
        self._client = client
        self._bound: AsyncDatabase | None = None
        self._real: Any = None
        active = client.provider.client()
        super().__init__(getattr(active, "connection_pool", None),  # type: ignore[arg-type]
                         getattr(active, "response_callbacks", {}), transaction, shard_hint)

    async def _check_open(self) -> None:
        if self._client._is_closed():
            await self.reset()
            raise self._client._closed_error()

    # While WATCHing, everything goes to the real pipeline on the bound database.

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        real = self._real
        if real is not None:
            result = real.execute_command(*args, **kwargs)
            # buffered (after MULTI): the real pipeline; else an immediate command, not run yet
            return self if result is real else self._immediate(result)
        if args and is_watch(args[0]) and not self.explicit_transaction:
            return self._bind_and_watch(*args, **kwargs)
        return self.pipeline_execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def _immediate(self, command: Awaitable[Any]) -> Any:
        """Await an immediate command of the bound pipeline, unless the client closed."""
        client = self._client
        if client._is_closed():
            close = getattr(command, "close", None)
            if close is not None:
                close()  # never started: no I/O, no "never awaited" warning
            await self._check_open()
        try:
            return await command
        except BaseException as exc:
            if client._is_closed():
                await self.reset()
                raise client._after_close(exc)  # noqa: B904 - the cause is set
            raise

    async def _bind_and_watch(self, *args: Any, **kwargs: Any) -> Any:
        if self.command_stack:
            raise RedisError("Cannot issue a WATCH after commands were queued")
        await self._check_open()
        client = self._client
        await client.initialize()
        db = client._ordered.active
        real = db.client.pipeline(self.is_transaction, self.shard_hint)
        try:
            if _is_cluster(db):
                await real.initialize()  # on this loop (see _run_pipeline)
            result = await real.execute_command(*args, **kwargs)
        except BaseException as exc:
            await real.reset()
            if client._is_closed():
                raise client._after_close(exc)  # noqa: B904 - the cause is set
            raise
        self._bound, self._real = db, real
        self.watching = True
        client._watching.add(self)
        if client._is_closed():  # closed while the WATCH ran
            await self._check_open()
        return result

    def multi(self) -> None:
        if self._real is not None:
            self._real.multi()
            self.explicit_transaction = True
            return
        super().multi()  # type: ignore[no-untyped-call]

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send the buffered commands to the active database (see the class docstring)."""
        await self._check_open()
        client = self._client
        real = self._real
        if real is not None:
            try:
                self._check_still_bound()
                real.scripts |= self.scripts
                return await real.execute(raise_on_error)  # type: ignore[no-any-return]
            except BaseException as exc:
                if client._is_closed():
                    raise client._after_close(exc)  # noqa: B904 - the cause is set
                raise
            finally:
                await self.reset()
        stack = self.command_stack
        if not stack:
            return []
        try:
            if not client.provider.initialized:
                await client.initialize()
            return await client._ordered.execute_with(  # type: ignore[no-any-return]
                self._attempt,
                (stack, self.scripts, self.is_transaction, self.shard_hint, raise_on_error),
                None,
                self._may_replay,
            )
        except BaseException as exc:
            if client._is_closed():
                raise client._after_close(exc)  # noqa: B904 - the cause is set
            raise
        finally:
            await self.reset()

    def _attempt(self, db: AsyncDatabase, *call: Any) -> Awaitable[list[Any]]:
        """One attempt of the pipeline; stops the provider at once if the client closed."""
        self._client._check_attempt()
        return _run_pipeline(db, *call)

    async def reset(self) -> None:  # type: ignore[override]
        real, self._real, self._bound = self._real, None, None
        self._client._watching.discard(self)
        try:
            if real is not None:
                if self._client._is_closed():
                    real.watching = False  # no UNWATCH: the close ended the connection's WATCH
                await real.reset()
        finally:
            await super().reset()  # type: ignore[no-untyped-call]  # holds no connection: clears the buffer and flags

    async def _abandon(self) -> None:
        """The client is closing: disconnect the WATCHing connection (which ends the WATCH);
        the pipeline's next call finds the client closed and resets it."""
        conn = getattr(self._real, "connection", None)
        if conn is not None:
            try:
                await conn.disconnect(nowait=True)
            except Exception:  # pragma: no cover - best effort on shutdown
                _log.debug("closing a WATCHing pipeline's connection failed", exc_info=True)

    async def unwatch(self) -> Any:  # type: ignore[override]
        real = self._real
        if real is None:
            return True
        await self._check_open()
        try:
            return await real.unwatch()
        finally:
            await self.reset()


# --- pubsub ---------------------------------------------------------------------------------


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
            self.connection = None
            if conn is not None:
                conn.deregister_connect_callback(self.on_connect)
                try:
                    await conn.disconnect(nowait=True)
                finally:
                    await self.connection_pool.release(conn)
            self._db = target
            self.connection_pool = _pubsub_pool(target)
            self._moving = False
            if self.subscribed:
                _log.info("pubsub: re-subscribing on %s", target.config.display_name)
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
        await super().aclose()  # type: ignore[no-untyped-call]

    async def _reconnect(self, conn: Any, *args: Any, **kwargs: Any) -> None:
        """redis-py reconnects a pubsub connection after a read error; a closed one stays
        closed."""
        if self._is_closed():
            await conn.disconnect(nowait=True)
            return
        await super()._reconnect(conn, *args, **kwargs)

    # ----------------------------------------------------------------------------- I/O

    async def execute_command(self, *args: Any) -> None:
        await self._check_open()
        provider = self._provider
        if not provider.initialized:
            await provider.initialize()
        if self._must_follow():
            await self._follow()
        try:
            await super().execute_command(*args)
        except Exception as exc:
            if self._is_closed():
                raise self._closed_error_after(exc)  # noqa: B904 - the cause is set
            raise

    async def parse_response(self, block: bool = True, timeout: float = 0) -> Any:
        await self._check_open()
        if self._must_follow():
            await self._follow()
        conn: Any = self.connection
        try:
            return await super().parse_response(block, timeout)
        except Exception as exc:
            return await self._on_read_error(exc, conn)

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

    async def _on_read_error(self, exc: Exception, conn: Any) -> Any:
        """Reading failed: follow a switch, or fail over if the database is down."""
        if self._is_closed():
            raise self._closed_error_after(exc)
        action = self._read_error(exc, moved=self.connection is not conn)
        if action is ReadError.IGNORE:
            return None  # moved meanwhile
        if action is ReadError.RAISE:
            raise exc
        if action is ReadError.PROBE:
            ordered = self._provider.ordered_provider
            slot = self._state.slot
            if await ordered.probe(slot, exc):
                if self._reconnects_after(exc) and conn is not None and not conn.is_connected:
                    await self._reconnect_same(conn)  # a broken connection to a live database
                return None
            await ordered.mark_unhealthy(slot, exc)
            if self._stays_after_failed_probe():
                raise exc  # nowhere to go: the caller sees the failure
        await self._follow()  # a switch closed our connection under the reader, or we failed over
        return None

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
