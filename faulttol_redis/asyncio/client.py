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
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable
from typing import Any

import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.client import Pipeline, PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from faulttol.provider import SwitchEvent

from .._cluster import AsyncClusterPubSubPool
from .._replay import command_may_replay, pipeline_may_replay
from ..config import MultiDbConfig
from .provider import AsyncDatabase, FailoverProvider

__all__ = ["FailoverPipeline", "FailoverPubSub", "FailoverRedis"]

_log = logging.getLogger("faulttol_redis.asyncio")


def _run_command(db: AsyncDatabase, args: tuple[Any, ...],
                 options: dict[str, Any]) -> Awaitable[Any]:
    return db.client.execute_command(*args, **options)  # type: ignore[no-any-return]


def _is_watch(arg: Any) -> bool:
    if isinstance(arg, bytes):
        arg = arg.decode("ascii", "replace")
    return isinstance(arg, str) and arg.upper() == "WATCH"


class FailoverRedis(redis.asyncio.Redis):
    """A ``redis.asyncio.Redis`` whose commands run on the provider's active database.

    Build it from a provider (``FailoverRedis(provider)``) or a config
    (``FailoverRedis.from_config(config)``); no I/O happens until first use (see
    :mod:`faulttol_redis.asyncio.provider` for startup). ``async with`` initializes it and
    closes it on exit; ``aclose()`` closes the client, its pubsubs and its provider.
    """

    def __init__(self, provider: FailoverProvider) -> None:  # no super(): no own pool
        if not isinstance(provider, FailoverProvider):
            raise TypeError(
                f"provider must be an asyncio FailoverProvider, got {type(provider).__name__}"
            )
        self._provider = provider
        self._execute = provider.execute_with_async
        self._replay_ambiguous = provider.config.retry_ambiguous_writes
        self._closed = False
        self._usage = 0
        self._pubsubs: weakref.WeakSet[FailoverPubSub] = weakref.WeakSet()
        self._watching: weakref.WeakSet[FailoverPipeline] = weakref.WeakSet()
        # Read by inherited redis.asyncio.Redis helpers: this client holds no connection.
        self.connection = None
        self.single_connection_client = False
        self.auto_close_connection_pool = False

    @classmethod
    def from_config(cls, config: MultiDbConfig) -> FailoverRedis:
        """Build the provider for ``config`` and a client on it (no I/O yet)."""
        return cls(FailoverProvider(config))

    @property
    def provider(self) -> FailoverProvider:
        """The failover provider this client runs on."""
        return self._provider

    async def initialize(self) -> FailoverRedis:
        """Run the provider's startup (connect in order) if it has not run yet."""
        await self._provider.initialize()
        return self

    # ------------------------------------------------------------------------ commands

    def _may_replay(self, exc: BaseException, call: tuple[Any, ...]) -> bool:
        return command_may_replay(exc, call, replay_ambiguous=self._replay_ambiguous)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command on the active database, with retry and failover."""
        provider = self._provider
        if not provider._initialized:
            await provider.initialize()
        return await self._execute(_run_command, (args, options), None, self._may_replay)

    # Attributes redis-py's helpers read from a client: answered by the active database.

    @property
    def connection_pool(self) -> Any:  # type: ignore[override]
        """The active database's connection pool (read-only; None for a cluster database)."""
        return getattr(self._provider.client(), "connection_pool", None)

    @property
    def response_callbacks(self) -> Any:  # type: ignore[override]
        return getattr(self._provider.client(), "response_callbacks", {})

    def get_encoder(self) -> Any:
        return self._provider.client().get_encoder()  # type: ignore[no-untyped-call]

    def get_connection_kwargs(self) -> Any:
        return self._provider.client().get_connection_kwargs()  # type: ignore[no-untyped-call]

    def set_response_callback(self, command: str, callback: Any) -> None:
        """Set a response callback on every database's client."""
        for i in range(1, len(self._provider) + 1):
            self._provider.client(i).set_response_callback(command, callback)

    # ---------------------------------------------------------------- pipelines, pubsub

    def pipeline(
        self, transaction: bool = True, shard_hint: Any = None
    ) -> FailoverPipeline:
        """A pipeline that runs on the database active when it executes."""
        return FailoverPipeline(self, transaction, shard_hint)

    def pubsub(self, **kwargs: Any) -> FailoverPubSub:
        """An independent PubSub that follows switches, re-subscribing on the new database."""
        pubsub = FailoverPubSub(self._provider, **kwargs)
        self._pubsubs.add(pubsub)
        return pubsub

    def monitor(self) -> Any:
        """MONITOR on the active database (does not follow switches)."""
        return self._provider.client().monitor()

    def client(self) -> Any:
        """A single-connection client of the active database (does not follow switches)."""
        return self._provider.client().client()

    # --------------------------------------------------------------------------- close

    async def __aenter__(self) -> FailoverRedis:
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
        """Close the client, its pubsubs and its provider (health checks, connections)."""
        if self._closed:
            return
        self._closed = True
        for pipe in list(self._watching):
            await pipe.reset()  # a WATCHing pipeline holds a connection
        for pubsub in list(self._pubsubs):
            await pubsub.aclose()
        await self._provider.aclose()

    async def close(self, close_connection_pool: bool | None = None) -> None:
        """Alias of :meth:`aclose`."""
        await self.aclose()

    def __del__(self, *args: Any) -> None:
        pass  # the provider owns the connections; aclose() releases them explicitly

    def __repr__(self) -> str:
        provider = getattr(self, "_provider", None)
        return f"FailoverRedis({provider!r})"


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


class FailoverPipeline(Pipeline):
    """A ``redis.asyncio`` Pipeline whose buffered commands run on the database active at
    ``execute()``.

    After ``watch()`` the pipeline is bound to the database the WATCH ran on (immediate
    commands, MULTI, EXEC all go there); if the active database changes before ``execute()``,
    ``execute()`` raises ``WatchError`` instead of committing elsewhere.
    """

    def __init__(self, client: FailoverRedis, transaction: bool, shard_hint: Any) -> None:
        self._client = client
        self._bound: AsyncDatabase | None = None
        self._real: Any = None
        active = client.provider.client()
        super().__init__(getattr(active, "connection_pool", None),  # type: ignore[arg-type]
                         getattr(active, "response_callbacks", {}), transaction, shard_hint)

    # While WATCHing, everything goes to the real pipeline on the bound database.

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        real = self._real
        if real is not None:
            result = real.execute_command(*args, **kwargs)
            return self if result is real else result
        if args and _is_watch(args[0]) and not self.explicit_transaction:
            return self._bind_and_watch(*args, **kwargs)
        return self.pipeline_execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def _bind_and_watch(self, *args: Any, **kwargs: Any) -> Any:
        if self.command_stack:
            raise RedisError("Cannot issue a WATCH after commands were queued")
        provider = self._client.provider
        await provider.initialize()
        db = provider._active.target
        real = db.client.pipeline(self.is_transaction, self.shard_hint)
        try:
            if _is_cluster(db):
                await real.initialize()  # on this loop (see _run_pipeline)
            result = await real.execute_command(*args, **kwargs)
        except BaseException:
            await real.reset()
            raise
        self._bound, self._real = db, real
        self.watching = True
        self._client._watching.add(self)
        return result

    def multi(self) -> None:
        if self._real is not None:
            self._real.multi()
            self.explicit_transaction = True
            return
        super().multi()  # type: ignore[no-untyped-call]

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send the buffered commands to the active database (see the class docstring)."""
        real = self._real
        if real is not None:
            try:
                if self._client.provider._active.target is not self._bound:
                    raise WatchError("the active database changed after WATCH")
                real.scripts |= self.scripts
                return await real.execute(raise_on_error)  # type: ignore[no-any-return]
            finally:
                await self.reset()
        stack = self.command_stack
        if not stack:
            return []
        provider = self._client.provider
        try:
            if not provider._initialized:
                await provider.initialize()
            return await provider.execute_with_async(
                _run_pipeline,
                (stack, self.scripts, self.is_transaction, self.shard_hint, raise_on_error),
                None,
                self._may_replay,
            )
        finally:
            await self.reset()

    def _may_replay(self, exc: BaseException, call: tuple[Any, ...]) -> bool:
        return pipeline_may_replay(exc, call, replay_ambiguous=self._client._replay_ambiguous)

    async def reset(self) -> None:  # type: ignore[override]
        real, self._real, self._bound = self._real, None, None
        self._client._watching.discard(self)
        try:
            if real is not None:
                await real.reset()
        finally:
            await super().reset()  # type: ignore[no-untyped-call]  # holds no connection: clears the buffer and flags

    async def unwatch(self) -> Any:  # type: ignore[override]
        real = self._real
        if real is None:
            return True
        try:
            return await real.unwatch()
        finally:
            await self.reset()

    def __repr__(self) -> str:
        return f"FailoverPipeline(commands={len(self.command_stack)}, bound={self._bound!r})"


# --- pubsub ---------------------------------------------------------------------------------


def _pubsub_pool(db: AsyncDatabase) -> Any:
    """The pool a pubsub uses on ``db``: for a cluster, connections to one node (SUBSCRIBE
    on any node receives what is published on every node), picked at each connection."""
    client: Any = db.client
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        return AsyncClusterPubSubPool(client)
    return client.connection_pool


class FailoverPubSub(PubSub):
    """A ``redis.asyncio`` PubSub that moves its subscriptions to the new database after a
    switch.

    The switch disconnects the old connection (waking a reader blocked on it); the move happens
    in the task that next uses the pubsub (``get_message``, ``listen``, ``run`` or a
    (un)subscribe call). Subscribe confirmations for the re-subscribed channels arrive again, as
    after a redis-py reconnect.
    """

    def __init__(self, provider: FailoverProvider, **kwargs: Any) -> None:
        self._provider = provider
        self._db: AsyncDatabase = provider._active.target
        self._moving = False
        super().__init__(_pubsub_pool(self._db), **kwargs)
        ref = weakref.WeakMethod(self._on_switch)

        async def listener(event: SwitchEvent) -> None:
            method = ref()
            if method is not None:
                await method(event)

        self._listener = listener
        provider.add_switch_listener(listener)

    async def _on_switch(self, event: SwitchEvent) -> None:
        if self._provider._active.target is self._db:
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
            target = self._provider._active.target
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

    def _must_follow(self) -> bool:
        return self._moving or self._provider._active.target is not self._db

    async def execute_command(self, *args: Any) -> None:
        provider = self._provider
        if not provider._initialized:
            await provider.initialize()
        if self._must_follow():
            await self._follow()
        await super().execute_command(*args)

    async def parse_response(self, block: bool = True, timeout: float = 0) -> Any:
        if self._must_follow():
            await self._follow()
        conn: Any = self.connection
        try:
            return await super().parse_response(block, timeout)
        except Exception as exc:
            return await self._on_read_error(exc, conn)

    async def _on_read_error(self, exc: Exception, conn: Any) -> Any:
        """Reading failed: follow a switch, or fail over if the database is down."""
        provider = self._provider
        if self._must_follow():
            await self._follow()  # the switch closed our connection under the reader
            return None
        current: Any = self.connection
        if current is not conn:
            return None  # moved meanwhile
        if not isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
            raise exc
        slot = provider._active
        if await provider._run_probe_async(slot, exc):
            if conn is not None and not conn.is_connected and not isinstance(
                exc, RedisTimeoutError
            ):
                await self._reconnect_same(conn)  # a broken connection to a live database
            return None
        provider._after_probe_failed(slot, exc)
        await provider._deliver_pending()
        if provider._active.target is self._db:
            raise exc  # nowhere to go: the caller sees the failure
        await self._follow()
        return None

    async def _reconnect_same(self, conn: Any) -> None:
        """Reconnect to the same database, re-subscribing."""
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

    async def aclose(self) -> None:
        self._provider.remove_switch_listener(self._listener)
        await super().aclose()  # type: ignore[no-untyped-call]
