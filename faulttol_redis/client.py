"""FailoverRedis: a ``redis.Redis``-compatible client that runs every command through failover.

Every command of redis-py's command mixins reaches :meth:`FailoverRedis.execute_command`, which
runs it on the active database through the provider (retry → circuit breaker → failover).
Pipelines are buffered and run on the database active at ``execute()``; a WATCHed transaction is
bound to the database its WATCH ran on and never commits anywhere else. Each ``pubsub()`` is an
independent redis-py ``PubSub`` that moves its channels, patterns and shard channels to the new
database after a switch.

Lifecycle: ``close()`` closes the client for good. Every later call raises
:class:`~faulttol_redis.ClientClosedError` without network I/O, commands racing the close end
with redis-py exceptions only (a ``ClientClosedError`` when the close broke them), the
client's pubsubs and WATCHing pipelines are closed with it, and the provider's connection
pools refuse new connections (the provider seals them when it closes: see
:mod:`faulttol_redis._sealing`). A client built on a provider owns it (its ``close()`` closes
the provider); :meth:`FailoverRedis.client` makes clients that do not. The success path of a
command pays one attribute read for all this: it reads the generic provider's
``active_state`` (``.slot``, ``.closed``), which ``close()`` swaps for a closed gate and a
provider closed by anyone else marks closed; every other check is on the failure path.

What this client shares with the asyncio one (closed checks, the redis-py members answered by
the active database, replay and WATCH decisions, when a pubsub follows a switch) is in
:mod:`faulttol_redis._client_common`; this module holds the sync I/O.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from redis.client import Pipeline, PubSub, PubSubWorkerThread
from redis.cluster import RedisCluster

from faulttol import SwitchEvent

from ._client_common import (
    CLOSED_GATE,
    ClientMixin,
    PipelineMixin,
    PubSubMixin,
    ReadError,
    give_back,
    is_watch,
)
from ._cluster import pubsub_node_pool
from .config import MultiDbConfig
from .errors import ClientClosedError
from .provider import Database, FailoverProvider

__all__ = ["FailoverPipeline", "FailoverPubSub", "FailoverRedis"]

_log = logging.getLogger("faulttol_redis.client")


def _run_command(db: Database, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    return db.client.execute_command(*args, **options)


class FailoverRedis(ClientMixin, redis.Redis):
    """A ``redis.Redis`` whose commands run on the provider's active database.

    Build it from a provider (``FailoverRedis(provider)``) or a config
    (``FailoverRedis.from_config(config)``). ``close()`` closes the provider too (see the
    module docstring for what a closed client does).

    The redis-py members that assume one connection pool answer for the active database
    (``connection_pool``, ``get_encoder()``...), apply to every database (callbacks, HIMPORT
    fieldsets) or say why they cannot work (``set_retry``, ``from_url``, ``from_pool``).
    """

    connection: None
    """Always None: the client holds no connection of its own (redis-py: the connection of
    a single-connection client)."""

    single_connection_client: bool
    """Always False: commands run on pooled connections of the active database."""

    auto_close_connection_pool: bool
    """False: the client has no pool; the provider owns the databases' pools (and closes
    them when the client that owns the provider closes)."""

    def __init__(self, provider: FailoverProvider) -> None:  # no super(): no own pool
        if not isinstance(provider, FailoverProvider):
            raise TypeError(f"provider must be a FailoverProvider, got {type(provider).__name__}")
        self._setup(provider, started=True)
        self._lock = threading.Lock()
        self.single_connection_lock = threading.RLock()

    @classmethod
    def from_config(cls, config: MultiDbConfig) -> FailoverRedis:
        """Build the provider for ``config`` and a client on it."""
        return cls(FailoverProvider(config))

    @property
    def provider(self) -> FailoverProvider:
        """The failover provider this client runs on."""
        return self._provider  # type: ignore[no-any-return]

    # ------------------------------------------------------------------------ commands

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command on the active database, with retry and failover.

        The success path is :meth:`faulttol.OrderedProvider.execute_with`'s, written out
        here: every command pays it, and one frame and one re-packing of the arguments less
        is a third of this layer's cost. Any failure goes to the provider's shared slow path
        (``ordered_provider.recover``). A closed client reads the closed gate here (its slot
        is never healthy), and a closed provider's state says ``closed``: both fall through
        to :meth:`_slow`.
        """
        gate = self._gate
        slot = gate.slot
        breaker = slot.breaker
        if slot.healthy is not False and not gate.closed and breaker.try_acquire_permission():
            now = self._now
            start = now()
            try:
                result = slot.target.client.execute_command(*args, **options)
            except BaseException as exc:
                return self._failed(slot, breaker, now() - start, exc, args, options)
            breaker.on_result(now() - start, result)
            return result
        return self._slow(args, options, slot, None)

    def _failed(self, slot: Any, breaker: Any, duration: float, exc: BaseException,
                args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """The first attempt failed: record it and recover, unless the client closed."""
        if self._is_closed():
            give_back(breaker)  # the close broke the call: nothing to count
            raise self._after_close(exc)
        breaker.on_error(duration, exc)
        return self._slow(args, options, slot, exc)

    def _slow(self, args: tuple[Any, ...], options: dict[str, Any], slot: Any,
              exc: BaseException | None) -> Any:
        """The provider's slow path (retry, probe, failover), with the closed checks."""
        if self._is_closed():
            raise self._closed_error(exc)
        try:
            return self._ordered.recover(
                self._attempt, (args, options), None, self._may_replay, slot=slot, exc=exc
            )
        except BaseException as error:
            if self._is_closed():
                raise self._after_close(error)  # noqa: B904 - the cause is set
            raise

    def _attempt(self, db: Database, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """One attempt of the slow path; stops it at once if the client closed meanwhile."""
        self._check_attempt()
        return db.client.execute_command(*args, **options)

    # Attributes redis-py's helpers read from a client: answered by the active database.

    @property
    def connection_pool(self) -> Any:  # type: ignore[override]
        """The active database's connection pool (read-only; None for a cluster database)."""
        return getattr(self._provider.client(), "connection_pool", None)

    @property
    def response_callbacks(self) -> Any:  # type: ignore[override]
        return getattr(self._provider.client(), "response_callbacks", {})

    def get_cache(self) -> Any:
        """The active database's client-side cache (None unless its client has one)."""
        get_cache = getattr(self._provider.client(), "get_cache", None)
        return get_cache() if get_cache is not None else None

    # HIMPORT fieldsets (redis-py 8.1+) live in each client's registry: declared on every
    # database, so that HIMPORT SET keeps working after a switch.

    def _himport(self, name: str, *args: Any) -> list[Any]:
        return [method(*args) for method in self._himport_methods(name)]

    def himport_prepare(self, fieldset_name: str, fields: Iterable[Any]) -> bool:
        """Declare an HIMPORT fieldset on every database's client."""
        self._himport("himport_prepare", fieldset_name, list(fields))
        return True

    def himport_discard(self, fieldset_name: str) -> int:
        """Remove an HIMPORT fieldset from every database's client (1 if it was declared)."""
        return 1 if any(self._himport("himport_discard", fieldset_name)) else 0

    def himport_discard_all(self) -> int:
        """Remove every HIMPORT fieldset from every database's client; returns how many
        were declared."""
        return max(self._himport("himport_discard_all"), default=0)

    # ---------------------------------------------------------------- pipelines, pubsub

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> FailoverPipeline:
        """A pipeline that runs on the database active when it executes."""
        self._check_open()
        return FailoverPipeline(self, transaction, shard_hint)

    def pubsub(self, **kwargs: Any) -> FailoverPubSub:
        """An independent PubSub that follows switches, re-subscribing on the new database.

        ``close()`` on this client closes it too."""
        self._check_open()
        pubsub = FailoverPubSub(self._provider, **kwargs)
        with self._lock:
            if not self._closed:
                self._pubsubs.add(pubsub)
                return pubsub
        pubsub.close()  # the client closed meanwhile
        raise self._closed_error()

    def monitor(self) -> Any:
        """MONITOR on the active database (does not follow switches)."""
        self._check_open()
        client: Any = self._provider.client()
        return client.monitor()

    def client(self) -> FailoverRedis:
        """Another client on the same provider (redis-py: a client sharing the pool).

        Its ``close()`` closes only it (and its pubsubs and WATCHing pipelines), not the
        provider; closing the provider (or the client that owns it) closes it too. Unlike
        redis-py's, it is not pinned to one connection: for commands that must share a
        connection use a pipeline (``watch()``/``multi()``/``execute()``), which is bound
        to one database and one connection while it WATCHes.
        """
        child: FailoverRedis = self._child()
        return child

    # --------------------------------------------------------------------------- close

    def close(self) -> None:
        """Close the client for good: its pubsubs, its WATCHing pipelines and, when it owns
        the provider (built with ``FailoverRedis(provider)`` or ``from_config``, not by
        :meth:`client`), the provider (health checks, every connection). Idempotent."""
        lock = getattr(self, "_lock", None)
        if lock is None:  # a failed __init__
            return
        with lock:
            if self._closed:
                return
            self._closed = True
            self._gate = CLOSED_GATE
            pubsubs, pipes = list(self._pubsubs), list(self._watching)
        for pubsub in pubsubs:
            try:
                pubsub.close()
            except Exception:  # pragma: no cover - best effort on shutdown
                _log.debug("closing a pubsub failed", exc_info=True)
        for pipe in pipes:
            pipe._abandon()
        if self._owns_provider:
            self._provider.close()  # which seals its pools

    def __enter__(self) -> FailoverRedis:
        self._check_open()
        return self

    def __del__(self) -> None:
        pass  # the provider owns the connections; close() releases them explicitly


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


class FailoverPipeline(PipelineMixin, Pipeline):
    """A redis-py ``Pipeline`` whose buffered commands run on the database active at ``execute()``.

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
        self._bound: Database | None = None
        self._real: Pipeline | None = None
        active: Any = client.provider.client()
        # commands are buffered here and replayed on db.client.pipeline(): the pool is unused
        pool: Any = getattr(active, "connection_pool", None)
        super().__init__(pool,
                         getattr(active, "response_callbacks", {}), transaction, shard_hint)

    def _check_open(self) -> None:
        if self._client._is_closed():
            self.reset()
            raise self._client._closed_error()

    # While WATCHing, everything goes to the real pipeline on the bound database.

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        real: Any = self._real
        if real is not None:
            self._check_open()
            try:
                result = real.execute_command(*args, **kwargs)
            except BaseException as exc:
                if self._client._is_closed():
                    self.reset()
                    raise self._client._after_close(exc)  # noqa: B904 - the cause is set
                raise
            return self if result is real else result  # a buffered command returns the pipe
        if args and is_watch(args[0]) and not self.explicit_transaction:
            return self._bind_and_watch(*args, **kwargs)
        return self.pipeline_execute_command(*args, **kwargs)

    def _bind_and_watch(self, *args: Any, **kwargs: Any) -> Any:
        if self.command_stack:
            raise redis.RedisError("Cannot issue a WATCH after commands were queued")
        self._check_open()
        client = self._client
        db = client._ordered.active
        real = db.client.pipeline(self.transaction, self.shard_hint)
        with client._lock:
            if client._closed:
                raise client._closed_error()
            client._watching.add(self)
        try:
            result = real.execute_command(*args, **kwargs)
        except BaseException as exc:
            client._watching.discard(self)
            real.reset()
            if client._is_closed():
                raise client._after_close(exc)  # noqa: B904 - the cause is set
            raise
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
        self._check_open()
        client = self._client
        real = self._real
        if real is not None:
            try:
                self._check_still_bound()
                real.scripts |= self.scripts
                results: list[Any] = real.execute(raise_on_error)
                return results
            except BaseException as exc:
                if client._is_closed():
                    raise client._after_close(exc)  # noqa: B904 - the cause is set
                raise
            finally:
                self.reset()
        stack = self.command_stack
        if not stack:
            return []
        try:
            return client._ordered.execute_with(  # type: ignore[no-any-return]
                self._attempt,
                (stack, self.scripts, self.transaction, self.shard_hint, raise_on_error),
                None,
                self._may_replay,
            )
        except BaseException as exc:
            if client._is_closed():
                raise client._after_close(exc)  # noqa: B904 - the cause is set
            raise
        finally:
            self.reset()

    def _attempt(self, db: Database, *call: Any) -> list[Any]:
        """One attempt of the pipeline; stops the provider at once if the client closed."""
        self._client._check_attempt()
        return _run_pipeline(db, *call)

    def reset(self) -> None:  # type: ignore[override]
        real, self._real, self._bound = self._real, None, None
        self._client._watching.discard(self)
        if real is not None:
            if self._client._is_closed():
                real.watching = False  # no UNWATCH: the close ended the connection's WATCH
            real.reset()
        self.command_stack = []
        self.scripts = set()
        self.watching = False
        self.explicit_transaction = False

    def _abandon(self) -> None:
        """The client is closing: disconnect the WATCHing connection (which ends the WATCH).

        Called from the closing thread, so the pipeline's own state is left to its owner:
        its next call finds the client closed and resets it.
        """
        real: Any = self._real
        conn = getattr(real, "connection", None)
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # pragma: no cover - best effort on shutdown
                _log.debug("closing a WATCHing pipeline's connection failed", exc_info=True)

    def unwatch(self) -> Any:
        if self._real is not None:
            self._check_open()
            result = self._real.unwatch()
            self.reset()
            return result
        return True

    def __del__(self) -> None:
        pass


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


class FailoverPubSub(PubSubMixin, PubSub):
    """A redis-py ``PubSub`` that moves its subscriptions to the new database after a switch.

    The move happens on the thread that next uses the pubsub (``get_message``, ``listen``,
    ``run_in_thread``'s worker, or a (un)subscribe call); a reader blocked on the old database
    is woken by closing that connection. Subscribe confirmations for the re-subscribed channels
    arrive again, as after a redis-py reconnect.

    ``close()`` (also called by the client's ``close()``) is final: the pubsub unsubscribes
    from everything by dropping its connection, a reader blocked on it gets
    :class:`~faulttol_redis.ClientClosedError`, its ``run_in_thread`` workers stop, and every
    later use raises ``ClientClosedError`` (it never reconnects nor re-subscribes). So does
    a pubsub whose provider was closed. ``reset()`` (and ``with``) keep redis-py's meaning:
    unsubscribe from everything, usable again.
    """

    def __init__(self, provider: FailoverProvider, **kwargs: Any) -> None:
        self._setup_following(provider)
        self._moving = threading.Event()
        self._workers: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        super().__init__(_pubsub_pool(self._db), **kwargs)
        self._start_following(self._on_switch)

    def _is_moving(self) -> bool:
        return self._moving.is_set()

    def _on_switch(self, event: SwitchEvent) -> None:
        self._moving.set()
        conn: Any = self.connection
        if conn is not None and self._active_db() is not self._db:
            try:
                conn.disconnect()  # wakes a reader blocked on the old database
            except Exception:
                _log.debug("closing the old pubsub connection failed", exc_info=True)

    def _follow(self) -> None:
        """Move to the active database if it changed."""
        target = self._active_db()
        if target is self._db:
            self._moving.clear()
            return
        with self._lock:
            target = self._active_db()
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

    # ----------------------------------------------------------------------- lifecycle

    def _check_open(self) -> None:
        if self._is_closed():
            if not self._closed:  # the provider was closed: release what is left
                self.close()
            raise self._closed_pubsub_error()

    def _in_stopped_worker(self) -> bool:
        """Whether the caller is one of this pubsub's ``run_in_thread`` workers, which the
        close stops: it ends quietly instead of dying on ``ClientClosedError``."""
        current = threading.current_thread()
        if current in self._workers:
            if isinstance(current, PubSubWorkerThread):
                current.stop()
            return True
        return False

    def close(self) -> None:
        """Close the pubsub for good (see the class docstring). Idempotent."""
        if not self.__dict__.get("_closed", True):
            self._closed = True
            for worker in list(self._workers):
                if isinstance(worker, PubSubWorkerThread):
                    worker.stop()  # ends after its current read, which the close wakes
            self._stop_following()
        super().close()

    def _reconnect(self, conn: Any, *args: Any, **kwargs: Any) -> None:
        """redis-py reconnects a pubsub connection after a read error; a closed one stays
        closed."""
        if self._is_closed():
            conn.disconnect()
            return
        super()._reconnect(conn, *args, **kwargs)

    # ----------------------------------------------------------------------------- I/O

    def execute_command(self, *args: Any) -> None:
        self._check_open()
        if self._must_follow():
            self._follow()
        try:
            super().execute_command(*args)  # type: ignore[no-untyped-call]
        except Exception as exc:
            if self._is_closed():
                raise self._closed_error_after(exc)  # noqa: B904 - the cause is set
            raise

    def parse_response(self, block: bool = True, timeout: float = 0) -> Any:
        self._check_open()
        if self._must_follow():
            self._follow()
        try:
            return super().parse_response(block, timeout)  # type: ignore[no-untyped-call]
        except Exception as exc:
            return self._on_read_error(exc)

    def get_message(self, ignore_subscribe_messages: bool = False,
                    timeout: float | None = 0.0) -> Any:
        try:
            self._check_open()
            return super().get_message(ignore_subscribe_messages, timeout)  # type: ignore[arg-type]
        except ClientClosedError:
            if self._in_stopped_worker():
                return None
            raise

    def listen(self) -> Iterator[Any]:
        self._check_open()
        yield from super().listen()  # type: ignore[no-untyped-call]

    def run_in_thread(self, *args: Any, **kwargs: Any) -> PubSubWorkerThread:
        self._check_open()
        worker = super().run_in_thread(*args, **kwargs)
        self._workers.add(worker)
        return worker

    def _on_read_error(self, exc: Exception) -> Any:
        """Reading failed: follow a switch, or fail over if the database is down."""
        if self._is_closed():
            raise self._closed_error_after(exc)
        action = self._read_error(exc)
        if action is ReadError.RAISE:
            raise exc
        if action is ReadError.PROBE:
            ordered = self._provider.ordered_provider
            slot = self._state.slot
            if ordered.probe(slot, exc):
                if self._reconnects_after(exc):
                    self._reconnect_same()  # a broken connection to a live database
                return None
            ordered.mark_unhealthy(slot, exc)
            if self._stays_after_failed_probe():
                raise exc  # nowhere to go: the caller sees the failure
        self._follow()  # a switch closed our connection under the reader, or we failed over
        return None

    def _reconnect_same(self) -> None:
        with self._lock:
            if self._is_closed():
                return  # closed meanwhile: the next use raises
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

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
