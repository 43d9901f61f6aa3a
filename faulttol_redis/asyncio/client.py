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

The sync client's twin: everything the two share with no I/O lives in
:mod:`faulttol_redis._client_common`, so this module is the asyncio I/O (awaited commands,
pipelines and pubsub connections) around it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

import redis.asyncio

from .._client_common import CLOSED_GATE, ClientMixin, give_back
from ..config import MultiDbConfig
from ._pipeline import FailoverPipeline
from ._pubsub import FailoverPubSub
from .provider import AsyncDatabase, FailoverProvider

__all__ = ["FailoverPipeline", "FailoverPubSub", "FailoverRedis"]

_log = logging.getLogger("faulttol_redis.asyncio")


def _run_command(db: AsyncDatabase, args: tuple[Any, ...],
                 options: dict[str, Any]) -> Awaitable[Any]:
    return db.execute(*args, **options)  # type: ignore[no-any-return]


class FailoverRedis(ClientMixin, redis.asyncio.Redis):  # type: ignore[misc, override]
    """A ``redis.asyncio.Redis`` whose commands run on the provider's active database.

    Build it from a provider (``FailoverRedis(provider)``) or a config
    (``FailoverRedis.from_config(config)``); no I/O happens until first use (see
    :mod:`faulttol_redis.asyncio.provider` for startup). ``async with`` initializes it and
    closes it on exit; ``aclose()`` closes the client, its pubsubs and its provider (see the
    module docstring for what a closed client does). The redis-py members that assume one
    connection pool behave as on the sync :class:`faulttol_redis.FailoverRedis`.
    """

    def __init__(self, provider: FailoverProvider) -> None:  # no super(): no own pool
        if not isinstance(provider, FailoverProvider):
            raise TypeError(
                f"provider must be an asyncio FailoverProvider, got {type(provider).__name__}"
            )
        self._setup(provider, started=provider.initialized)
        self._usage = 0
        self._hedge_losers: set[asyncio.Future[Any]] = set()
        """Reads that lost to their hedge, left waiting (see :meth:`_hedged`)."""

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
        if self._hedge_after is not None and self._hedgeable(args, options):
            return await self._hedged(args, options)
        gate = self._gate
        slot = gate.slot
        breaker = slot.breaker
        if slot.healthy is not False and not gate.closed and breaker.try_acquire_permission():
            now = self._now
            start = now()
            try:
                result = await slot.target.execute(*args, **options)
            except BaseException as exc:
                return await self._failed(slot, breaker, now() - start, exc, args, options)
            breaker.on_result(now() - start, result)
            return result
        return await self._slow(args, options, slot, None)

    async def _unhedged(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """A read through the provider (retry, failover), as if not hedged."""
        self._check_open()
        if not self._provider.initialized:
            await self.initialize()
        with self._closing_errors():
            return await self._ordered.execute_with(_run_command, (args, options), None,
                                                    self._may_replay)

    async def _hedged(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """A read-only command, hedged (see the sync client's ``_hedged``).

        A hedge that lost is cancelled. A read that lost to its hedge keeps waiting in the
        background, as the sync client's thread does, until its database answers or hang
        detection releases it: cancelling it would leave no command on a frozen database
        for the watchdog to see, and a database serving only reads would never be found
        hung. Those reads are cancelled when the caller is, or when the client closes.
        """
        sent_to = self._ordered.active_index
        main = asyncio.ensure_future(self._unhedged(args, options))
        tasks = {main}
        hedge_won = False
        try:
            done, _ = await asyncio.wait(tasks, timeout=self._hedge_after)
            if done:
                return main.result()
            slot = self._hedge_slot(sent_to)
            if slot is None:
                return await main
            db = slot.target
            db.count_hedge_sent()
            hedge = asyncio.ensure_future(_run_command(db, args, options))
            tasks.add(hedge)
            pending = set(tasks)
            error: BaseException | None = None
            while pending:
                done, pending = await asyncio.wait(pending,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        if task is hedge:
                            db.count_hedge_win()
                            hedge_won = True
                        return task.result()
                    if task is main or error is None:
                        error = exc
            assert error is not None
            raise error
        finally:
            for task in tasks:
                if task.done():
                    if not task.cancelled():
                        task.exception()  # retrieved: no "never retrieved" warning
                elif task is main and hedge_won and not self._closed:
                    self._hedge_losers.add(task)
                    task.add_done_callback(self._hedge_loser_done)
                else:
                    task.cancel()

    def _hedge_loser_done(self, task: asyncio.Future[Any]) -> None:
        self._hedge_losers.discard(task)
        if not task.cancelled():
            task.exception()  # its outcome is nobody's: retrieved, never logged

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
        with self._closing_errors():
            return await self._ordered.recover(
                self._attempt, (args, options), None, self._may_replay, slot=slot, exc=exc
            )

    def _attempt(self, db: AsyncDatabase, args: tuple[Any, ...],
                 options: dict[str, Any]) -> Awaitable[Any]:
        """One attempt of the slow path; stops it at once if the client closed meanwhile."""
        self._check_attempt()
        return db.execute(*args, **options)  # type: ignore[no-any-return]

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
        for task in list(self._hedge_losers):
            task.cancel()
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
