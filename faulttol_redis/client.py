"""FailoverRedis: a ``redis.Redis``-compatible client that runs every command through failover.

Every command of redis-py's command mixins reaches :meth:`FailoverRedis.execute_command`, which
runs it on the active database through the provider (retry → circuit breaker → failover).
Pipelines are buffered and run on the database active at ``execute()``; a WATCHed transaction is
bound to the database its WATCH ran on and never commits anywhere else. Each ``pubsub()`` is an
independent redis-py ``PubSub`` that moves its channels, patterns and shard channels to the new
database after a switch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from typing import Any

import redis
from redis.client import Pipeline, PubSub
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from faulttol.provider import SwitchEvent

from ._cluster import pubsub_node_pool
from ._replay import command_may_replay, pipeline_may_replay
from .config import MultiDbConfig
from .provider import Database, FailoverProvider

__all__ = ["FailoverPipeline", "FailoverPubSub", "FailoverRedis"]

_log = logging.getLogger("faulttol_redis.client")


def _run_command(db: Database, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    return db.client.execute_command(*args, **options)


class FailoverRedis(redis.Redis):
    """A ``redis.Redis`` whose commands run on the provider's active database.

    Build it from a provider (``FailoverRedis(provider)``) or a config
    (``FailoverRedis.from_config(config)``). ``close()`` closes the provider too.
    """

    def __init__(self, provider: FailoverProvider) -> None:  # no super(): no own pool
        if not isinstance(provider, FailoverProvider):
            raise TypeError(f"provider must be a FailoverProvider, got {type(provider).__name__}")
        self._provider = provider
        self._now = provider.clock.monotonic
        self._replay_ambiguous = provider.config.retry_ambiguous_writes
        self._closed = False

    @classmethod
    def from_config(cls, config: MultiDbConfig) -> FailoverRedis:
        """Build the provider for ``config`` and a client on it."""
        return cls(FailoverProvider(config))

    @property
    def provider(self) -> FailoverProvider:
        """The failover provider this client runs on."""
        return self._provider

    # ------------------------------------------------------------------------ commands

    def _may_replay(self, exc: BaseException, call: tuple[Any, ...]) -> bool:
        return command_may_replay(exc, call, replay_ambiguous=self._replay_ambiguous)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command on the active database, with retry and failover.

        The success path is :meth:`OrderedProvider.execute_with`'s, written out here: every
        command pays it, and one frame and one re-packing of the arguments less is a third
        of this layer's cost. Any failure goes to the provider's shared slow path.
        """
        provider = self._provider
        slot = provider._active
        breaker = slot.breaker
        if slot.healthy is not False and breaker.try_acquire_permission():
            now = self._now
            start = now()
            try:
                result = slot.target.client.execute_command(*args, **options)
            except BaseException as exc:
                breaker.on_error(now() - start, exc)
                return provider._recover(
                    _run_command, (args, options), None, self._may_replay, slot, exc
                )
            breaker.on_result(now() - start, result)
            return result
        return provider._recover(_run_command, (args, options), None, self._may_replay, slot, None)

    # Attributes redis-py's helpers read from a client: answered by the active database.

    @property
    def connection_pool(self) -> Any:  # type: ignore[override]
        """The active database's connection pool (read-only; None for a cluster database)."""
        return getattr(self._provider.client(), "connection_pool", None)

    @property
    def response_callbacks(self) -> Any:  # type: ignore[override]
        return getattr(self._provider.client(), "response_callbacks", {})

    def get_encoder(self) -> Any:
        return self._provider.client().get_encoder()

    def get_connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = self._provider.client().get_connection_kwargs()
        return kwargs

    def set_response_callback(self, command: str, callback: Any) -> None:
        """Set a response callback on every database's client."""
        for i in range(1, len(self._provider) + 1):
            self._provider.client(i).set_response_callback(command, callback)

    # ---------------------------------------------------------------- pipelines, pubsub

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> FailoverPipeline:
        """A pipeline that runs on the database active when it executes."""
        return FailoverPipeline(self, transaction, shard_hint)

    def pubsub(self, **kwargs: Any) -> FailoverPubSub:
        """An independent PubSub that follows switches, re-subscribing on the new database."""
        return FailoverPubSub(self._provider, **kwargs)

    def monitor(self) -> Any:
        """MONITOR on the active database (does not follow switches)."""
        client: Any = self._provider.client()
        return client.monitor()

    # --------------------------------------------------------------------------- close

    def close(self) -> None:
        """Close the client and its provider (health checks, every connection)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._provider.close()

    def __del__(self) -> None:
        pass  # the provider owns the connections; close() releases them explicitly

    def __repr__(self) -> str:
        provider = getattr(self, "_provider", None)
        return f"FailoverRedis({provider!r})"


# --- pipelines ------------------------------------------------------------------------------


def _run_pipeline(db: Database, stack: list[Any], scripts: set[Any], transaction: bool,
                  shard_hint: Any, raise_on_error: bool) -> list[Any]:
    pipe = db.client.pipeline(transaction, shard_hint)
    try:
        for args, options in stack:  # replayed through the public API: standalone or cluster
            pipe.pipeline_execute_command(*args, **options)
        if scripts and hasattr(pipe, "scripts"):
            pipe.scripts = set(scripts)
        return pipe.execute(raise_on_error)  # type: ignore[no-any-return]
    finally:
        pipe.reset()


class FailoverPipeline(Pipeline):
    """A redis-py ``Pipeline`` whose buffered commands run on the database active at ``execute()``.

    After ``watch()`` the pipeline is bound to the database the WATCH ran on (immediate
    commands, MULTI, EXEC all go there); if the active database changes before ``execute()``,
    ``execute()`` raises ``WatchError`` instead of committing elsewhere.
    """

    def __init__(self, client: FailoverRedis, transaction: bool, shard_hint: Any) -> None:
        self._client = client
        self._bound: Database | None = None
        self._real: Pipeline | None = None
        active: Any = client.provider.client()
        # commands are buffered here and replayed on db.client.pipeline(): the pool is unused
        pool: Any = getattr(active, "connection_pool", None)
        super().__init__(pool,
                         getattr(active, "response_callbacks", {}), transaction, shard_hint)

    # While WATCHing, everything goes to the real pipeline on the bound database.

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        real: Any = self._real
        if real is not None:
            return real.execute_command(*args, **kwargs)
        if args and str(args[0]).upper() == "WATCH" and not self.explicit_transaction:
            return self._bind_and_watch(*args, **kwargs)
        return self.pipeline_execute_command(*args, **kwargs)

    def _bind_and_watch(self, *args: Any, **kwargs: Any) -> Any:
        if self.command_stack:
            raise redis.RedisError("Cannot issue a WATCH after commands were queued")
        provider = self._client.provider
        db = provider._active.target
        real = db.client.pipeline(self.transaction, self.shard_hint)
        result = real.execute_command(*args, **kwargs)
        self._bound, self._real = db, real
        self.watching = True
        return result

    def multi(self) -> None:
        if self._real is not None:
            self._real.multi()
            self.explicit_transaction = True
            return
        super().multi()

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send the buffered commands to the active database (see the class docstring)."""
        real = self._real
        if real is not None:
            try:
                if self._client.provider._active.target is not self._bound:
                    raise WatchError("the active database changed after WATCH")
                real.scripts |= self.scripts
                results: list[Any] = real.execute(raise_on_error)
                return results
            finally:
                self.reset()
        stack = self.command_stack
        if not stack:
            return []
        try:
            return self._client.provider.execute_with(
                _run_pipeline,
                (stack, self.scripts, self.transaction, self.shard_hint, raise_on_error),
                None,
                self._may_replay,
            )
        finally:
            self.reset()

    def _may_replay(self, exc: BaseException, call: tuple[Any, ...]) -> bool:
        return pipeline_may_replay(exc, call, replay_ambiguous=self._client._replay_ambiguous)

    def reset(self) -> None:  # type: ignore[override]
        real, self._real, self._bound = self._real, None, None
        if real is not None:
            real.reset()
        self.command_stack = []
        self.scripts = set()
        self.watching = False
        self.explicit_transaction = False

    def unwatch(self) -> Any:
        if self._real is not None:
            result = self._real.unwatch()
            self.reset()
            return result
        return True

    def __del__(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"FailoverPipeline(commands={len(self.command_stack)}, bound={self._bound!r})"


# --- pubsub ---------------------------------------------------------------------------------


def _is_cluster(db: Database) -> bool:
    return isinstance(db.client, RedisCluster)


def _pubsub_pool(db: Database) -> Any:
    """The pool a pubsub uses on ``db``: for a cluster, one node's (SUBSCRIBE on any node
    receives what is published on every node)."""
    client: Any = db.client
    if isinstance(client, RedisCluster):
        return pubsub_node_pool(client)  # the first live node
    return client.connection_pool


class FailoverPubSub(PubSub):
    """A redis-py ``PubSub`` that moves its subscriptions to the new database after a switch.

    The move happens on the thread that next uses the pubsub (``get_message``, ``listen``,
    ``run_in_thread``'s worker, or a (un)subscribe call); a reader blocked on the old database
    is woken by closing that connection. Subscribe confirmations for the re-subscribed channels
    arrive again, as after a redis-py reconnect.
    """

    def __init__(self, provider: FailoverProvider, **kwargs: Any) -> None:
        self._provider = provider
        self._db: Database = provider._active.target
        self._moving = threading.Event()
        super().__init__(_pubsub_pool(self._db), **kwargs)
        ref = weakref.WeakMethod(self._on_switch)

        def listener(event: SwitchEvent) -> None:
            method = ref()
            if method is not None:
                method(event)

        self._listener = listener
        provider.add_switch_listener(listener)

    def _on_switch(self, event: SwitchEvent) -> None:
        self._moving.set()
        conn: Any = self.connection
        if conn is not None and self._provider._active.target is not self._db:
            try:
                conn.disconnect()  # wakes a reader blocked on the old database
            except Exception:
                _log.debug("closing the old pubsub connection failed", exc_info=True)

    def _follow(self) -> None:
        """Move to the active database if it changed."""
        target = self._provider._active.target
        if target is self._db:
            self._moving.clear()
            return
        with self._lock:
            target = self._provider._active.target
            if target is self._db:
                return
            old: Any = self.connection
            if old is not None:
                old.deregister_connect_callback(self.on_connect)
                try:
                    old.disconnect()
                finally:
                    self.connection_pool.release(old)
            self.connection = None
            self._db = target
            self.connection_pool = _pubsub_pool(target)
            self._moving.clear()
            if self.channels or self.patterns or self.shard_channels:
                _log.info("pubsub: re-subscribing on %s", target.config.display_name)
                self.on_connect(None)

    def execute_command(self, *args: Any) -> None:
        if self._moving.is_set() or self._provider._active.target is not self._db:
            self._follow()
        super().execute_command(*args)  # type: ignore[no-untyped-call]

    def parse_response(self, block: bool = True, timeout: float = 0) -> Any:
        if self._moving.is_set() or self._provider._active.target is not self._db:
            self._follow()
        try:
            return super().parse_response(block, timeout)  # type: ignore[no-untyped-call]
        except Exception as exc:
            return self._on_read_error(exc)

    def _on_read_error(self, exc: Exception) -> Any:
        """Reading failed: follow a switch, or fail over if the database is down."""
        provider = self._provider
        if self._moving.is_set() or provider._active.target is not self._db:
            self._follow()  # the switch closed our connection under the reader
            return None
        if not isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
            raise exc
        slot = provider._active
        if provider._run_probe(slot, exc):
            if not isinstance(exc, RedisTimeoutError):
                self._reconnect_same()  # a broken connection to a live database
            return None
        provider._after_probe_failed(slot, exc)
        if provider._active.target is self._db:
            raise exc  # nowhere to go: the caller sees the failure
        self._follow()
        return None

    def _reconnect_same(self) -> None:
        with self._lock:
            conn: Any = self.connection
            if conn is not None and _is_cluster(self._db):
                # a cluster may have moved our node's role: pick a node again
                conn.deregister_connect_callback(self.on_connect)
                conn.disconnect()
                self.connection_pool.release(conn)
                self.connection = None
                self.connection_pool = _pubsub_pool(self._db)
                self.on_connect(None)
            elif conn is not None:
                conn.disconnect()
                conn.connect()  # the connect callback re-subscribes

    def close(self) -> None:
        self._provider.remove_switch_listener(self._listener)
        super().close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
