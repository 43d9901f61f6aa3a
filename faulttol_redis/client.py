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

import concurrent.futures
import logging
import threading
from collections.abc import Iterable
from typing import Any

import redis

from ._client_common import CLOSED_GATE, ClientMixin, give_back
from ._pipeline import FailoverPipeline
from ._pubsub import FailoverPubSub
from .config import MultiDbConfig
from .provider import Database, FailoverProvider

__all__ = ["FailoverPipeline", "FailoverPubSub", "FailoverRedis"]

_log = logging.getLogger("faulttol_redis.client")

HEDGE_THREADS = 256
"""Threads of a client's hedged-read pool (made on the first hedged read)."""


def _run_command(db: Database, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    return db.execute(*args, **options)


class FailoverRedis(ClientMixin, redis.Redis):  # type: ignore[misc, override]
    """A ``redis.Redis`` whose commands run on the provider's active database.

    Build it from a provider (``FailoverRedis(provider)``) or a config
    (``FailoverRedis.from_config(config)``). ``close()`` closes the provider too (see the
    module docstring for what a closed client does).

    The redis-py members that assume one connection pool answer for the active database
    (``connection_pool``, ``get_encoder()``...), apply to every database (callbacks, HIMPORT
    fieldsets) or say why they cannot work (``set_retry``, ``from_url``, ``from_pool``).
    """

    def __init__(self, provider: FailoverProvider) -> None:  # no super(): no own pool
        if not isinstance(provider, FailoverProvider):
            raise TypeError(f"provider must be a FailoverProvider, got {type(provider).__name__}")
        self._setup(provider, started=True)
        self._lock = threading.Lock()
        self._hedge_executor: concurrent.futures.ThreadPoolExecutor | None = None
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
        if self._hedge_after is not None and self._hedgeable(args, options):
            return self._hedged(args, options)
        gate = self._gate
        slot = gate.slot
        breaker = slot.breaker
        if slot.healthy is not False and not gate.closed and breaker.try_acquire_permission():
            now = self._now
            start = now()
            try:
                result = slot.target.execute(*args, **options)
            except BaseException as exc:
                return self._failed(slot, breaker, now() - start, exc, args, options)
            breaker.on_result(now() - start, result)
            return result
        return self._slow(args, options, slot, None)

    def _unhedged(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """A read through the provider (retry, failover), as if not hedged."""
        self._check_open()
        with self._closing_errors():
            return self._ordered.execute_with(_run_command, (args, options), None,
                                              self._may_replay)

    def _hedged(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """A read-only command, hedged: sent to the next eligible database too when the
        active one has not answered within ``hedge_reads_after``; the first reply wins."""
        pool = self._hedge_pool()
        sent_to = self._ordered.active_index
        main = pool.submit(self._unhedged, args, options)
        try:
            return main.result(timeout=self._hedge_after)
        except concurrent.futures.TimeoutError:
            pass
        slot = self._hedge_slot(sent_to)
        if slot is None:
            return main.result()
        db = slot.target
        db.count_hedge_sent()
        hedge = pool.submit(_run_command, db, args, options)
        pending = {main, hedge}
        error: BaseException | None = None
        while pending:
            done, pending = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                exc = future.exception()
                if exc is None:
                    if future is hedge:
                        db.count_hedge_win()
                    return future.result()
                if future is main or error is None:
                    error = exc
        assert error is not None
        raise error

    def _hedge_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            pool = self._hedge_executor
            if pool is None:
                # A read waiting on a frozen database holds its thread until the reply
                # comes or hang detection releases it: room for many of them.
                pool = self._hedge_executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=HEDGE_THREADS, thread_name_prefix="faulttol-redis-hedge")
            return pool

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
        with self._closing_errors():
            return self._ordered.recover(
                self._attempt, (args, options), None, self._may_replay, slot=slot, exc=exc
            )

    def _attempt(self, db: Database, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """One attempt of the slow path; stops it at once if the client closed meanwhile."""
        self._check_attempt()
        return db.execute(*args, **options)

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
        if self._hedge_executor is not None:
            self._hedge_executor.shutdown(wait=False)
        if self._owns_provider:
            self._provider.close()  # which seals its pools

    def __enter__(self) -> FailoverRedis:
        self._check_open()
        return self

    def __del__(self) -> None:
        pass  # the provider owns the connections; close() releases them explicitly
