"""The asyncio FailoverProvider: the sync provider's semantics, driven by the event loop.

It is built on :class:`faulttol.AsyncOrderedProvider` by composition (the same decisions as the
sync provider's :class:`faulttol.OrderedProvider`, over ``redis.asyncio`` clients); only the
I/O differs: probes and health checks await ``HealthCheck.check_async`` on probe clients with
``health_check_timeout``, and the periodic health checks are one asyncio task per provider
(:class:`faulttol.health.AsyncHealthMonitor`) instead of a thread.

Startup is lazy. Constructing the provider does no I/O (and needs no running loop); the first
thing that needs a database — a command, :meth:`FailoverProvider.initialize`, ``async with``,
:meth:`~FailoverProvider.set_active_index` or :meth:`~FailoverProvider.run_health_checks` —
connects in order: the stored index (``active_index_store``) if it answers, else the first
healthy database in strategy order. Then the health-check task starts on the running loop. So
``FailoverRedis.from_config(config)`` followed by ``await client.set(...)`` just works; call
``await provider.initialize()`` to pay the startup cost up front. One provider belongs to one
event loop.

Switch listeners may be plain functions or coroutine functions. Every listener runs, in
registration order, for each switch before the call that made the switch returns (a command
that failed over, ``set_active_index``, ``remove_database``, a health-check round); coroutine
listeners are awaited. Listeners run one event at a time, in the order of the switches, in a
delivery task of the provider's own that callers await (shielded): a caller cancelled while a
listener runs does not cut delivery short, every listener still gets every event. A switch
caused by a command run *inside* a listener is delivered after that listener returns.
Listener exceptions are logged, never raised.

The 0.1.0 sync entry points ``execute`` and ``execute_with`` raise ``TypeError``;
``set_active_index``, ``remove_database``, ``run_health_checks`` and ``aclose`` are coroutines.

A database switched to by ``set_active_index``, or found healthy again by a health check after
it was unhealthy, has its idle connections dropped first: a connection that died while the
database was away is never used for a command (redis-py's asyncio pool does not check idle
connections on checkout while maintenance notifications are on, its default).

``aclose()`` cancels the health-check task and an unfinished listener delivery, waits for them,
and closes every connection of every database (including removed ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import redis.asyncio
import redis.asyncio.cluster
from redis.exceptions import TimeoutError as RedisTimeoutError

from faulttol import AsyncOrderedProvider, CircuitBreakerRegistry, Clock
from faulttol.health import run_probes_async

from .._clients import create_async_client
from .._connection import release_waiting
from .._deprecation import MayReplayOrNone, call_args, deprecated
from .._hang import due_databases, record_hung, scan_interval
from .._provider_base import _DatabaseBase, _RedisProviderBase
from .._sealing import owned_pools, seal_async_pool
from ..config import DatabaseConfig, MultiDbConfig
from ..errors import OutcomeUnknownError

__all__ = ["AsyncDatabase", "FailoverProvider"]

_log = logging.getLogger("faulttol_redis.asyncio")

R = TypeVar("R")

_monotonic = time.monotonic


async def _aclose_quietly(client: Any, owner: str) -> None:
    try:
        await client.aclose()
    except Exception:  # pragma: no cover - best effort on shutdown
        _log.debug("closing a client of %s failed", owner, exc_info=True)


class AsyncDatabase(_DatabaseBase):
    """One database: its config, the ``redis.asyncio`` command client, and probe clients."""

    __slots__ = ()

    def _new_client(self, **overrides: Any) -> Any:
        return create_async_client(self.config, **overrides)

    async def hang_probe(self) -> bool:
        """The hang probe: one PING on a connection of its own, ``hang_probe_timeout``."""
        try:
            return bool(await self._get_hang_probe_client().ping())
        except Exception:
            return False

    async def probe_client(self, *, fast: bool = False) -> Any:
        """A client with short timeouts for health checks (a cluster client is initialized,
        so that a check sees its primaries)."""
        client = self._get_probe_client(fast)
        if isinstance(client, redis.asyncio.cluster.RedisCluster):
            await client.initialize()
        return client

    async def retire(self) -> None:
        """The database was removed: close its probe clients and idle connections now;
        in-flight commands finish on theirs (closed by :meth:`aclose`)."""
        for c in self.clients()[1:]:
            await _aclose_quietly(c, self.config.display_name)
        await self.drop_idle_connections()

    async def drop_idle_connections(self) -> None:
        """Disconnect the command pool's idle connections (they reconnect on their next use).

        For a database that was away: a connection that died meanwhile must not carry a
        command. Connections in use are left alone. A cluster client manages its nodes'
        connections itself (it reconnects and reloads its topology on a connection error).
        """
        pool = getattr(self.client, "connection_pool", None)
        if pool is None:
            return
        try:
            await pool.disconnect(inuse_connections=False)
        except Exception:
            _log.debug("dropping idle connections of %s failed", self.config.display_name,
                       exc_info=True)

    async def aclose(self) -> None:
        """Close every client (and connection) of this database."""
        for c in self.clients():
            await _aclose_quietly(c, self.config.display_name)

    async def seal(self) -> None:
        """The provider closed: its standalone clients' pools refuse new connections (see
        :mod:`faulttol_redis._sealing`). A cluster database's node connections are not
        pooled this way in ``redis.asyncio``: ``aclose()`` of its client closes them, and the
        closed checks keep new commands away from it."""
        for client in self.clients():
            for pool in owned_pools(client, cluster_nodes=False):
                try:
                    seal_async_pool(pool)
                    await pool.disconnect()  # what connected while the provider was closing
                except Exception:  # pragma: no cover - best effort on shutdown
                    _log.debug("sealing a pool of %s failed", self, exc_info=True)


class FailoverProvider(_RedisProviderBase[AsyncDatabase, AsyncOrderedProvider[AsyncDatabase]]):
    """Fails over between the databases of a :class:`MultiDbConfig`, for asyncio.

    The same semantics as :class:`faulttol_redis.FailoverProvider`; see the module docstring
    for startup, listeners and closing. ``set_active_index``, ``remove_database``,
    ``run_health_checks``, ``initialize`` and ``aclose`` are coroutines; ``add_database``,
    ``set_weight``, ``add_health_check`` and ``status`` are plain methods.
    ``start_health_checks=False`` leaves the periodic checks off (tests drive them with
    ``await run_health_checks()`` and a ``FakeClock``).
    """

    def __init__(self, config: MultiDbConfig, *, clock: Clock | None = None,
                 start_health_checks: bool = True,
                 breaker_registry: CircuitBreakerRegistry | None = None) -> None:
        super().__init__(config, AsyncOrderedProvider, clock=clock,
                         breaker_registry=breaker_registry,
                         health_check=self._check_database, probe=self._probe_database,
                         before_reuse=AsyncDatabase.drop_idle_connections)
        self._start_health_checks = start_health_checks
        self._initialized = False
        self._init_lock = asyncio.Lock()
        self._aclosed = False
        self._watchdog: asyncio.Task[None] | None = None

    def _new_database(self, config: DatabaseConfig) -> AsyncDatabase:
        cfg = self.config
        return AsyncDatabase(config, cfg.health_check_timeout, cfg.hang_probe_timeout,
                             cfg.hang_detection_after)

    # ------------------------------------------------------------------------ hang detection

    async def _watch_hangs(self, interval: float) -> None:
        """The watchdog task: a scan every ``interval`` seconds until the provider closes."""
        while not self._aclosed:
            await asyncio.sleep(interval)
            try:
                await self.scan_hangs()
            except Exception:  # pragma: no cover - a scan must never kill the watchdog
                _log.exception("hang watchdog scan failed")

    async def scan_hangs(self) -> int:
        """One scan of the watchdog (see :meth:`faulttol_redis.FailoverProvider.scan_hangs`):
        the same decisions, for asyncio. Returns how many databases were found hung."""
        found = 0
        for index, slot in due_databases(self._ordered, lambda: self._aclosed):
            db = slot.target
            if await db.hang_probe():
                db.hang_watch.alive(_monotonic())
                continue
            name = record_hung(index, db)
            await self._ordered.mark_unhealthy(slot, OutcomeUnknownError(name))
            found += 1
            release_waiting(db.client, name)
        return found

    # ------------------------------------------------------------------------------ startup

    @property
    def initialized(self) -> bool:
        """Whether startup (choosing the first database) has run."""
        return self._initialized

    async def initialize(self) -> None:
        """Choose the starting database and start the health-check task; idempotent.

        Runs by itself on first use; call it to pay the startup cost up front.
        """
        if self._initialized:
            return
        if self.closed:
            raise RuntimeError("the provider is closed")
        async with self._init_lock:
            if self.initialized:  # another task may have finished startup meanwhile
                return
            stored = self._stored_index()
            await self._ordered.start_on_first_healthy(prefer=stored)
            self._log_start(stored)
            self._initialized = True
            if self._start_health_checks:
                self._ordered.start_health_checks()
            after = self.config.hang_detection_after
            if after is not None:
                self._watchdog = asyncio.get_running_loop().create_task(
                    self._watch_hangs(scan_interval(after)),
                    name="faulttol-redis-hang-watchdog",
                )

    # ------------------------------------------------------------------------ health checks

    async def _checks_pass(self, db: AsyncDatabase, *, fast: bool = False) -> bool:
        client = await db.probe_client(fast=fast)
        for check in self._checks:
            if not await check.check_async(client, db.config):
                return False
        return True

    async def _check_database(self, db: AsyncDatabase) -> bool:
        cfg = self.config
        return await run_probes_async(
            lambda: self._checks_pass(db),
            probes=cfg.health_check_probes,
            policy=cfg.health_check_policy,
            delay=cfg.health_check_probe_delay,
            clock=self.clock,
        )

    async def _probe_database(self, db: AsyncDatabase, exc: BaseException) -> bool:
        """One probe right after a failed command; quick when the command timed out (none
        after hang detection released it: the watchdog's probe has just failed)."""
        if isinstance(exc, OutcomeUnknownError):
            return False
        return await self._checks_pass(db, fast=isinstance(exc, RedisTimeoutError))

    async def run_health_checks(self) -> None:
        """Run one health-check round of every database now (databases are checked
        concurrently), then the failback check."""
        await self.initialize()
        await self._ordered.run_health_checks()

    # -------------------------------------------------------------------------- switching

    async def set_active_index(self, index: int, *, force: bool = False) -> None:
        """Make database ``index`` (1-based) active: manual failover or failback.

        Unless ``force``, the database is probed now and refused with ``ValueError`` if
        unhealthy. Switching to the active index is a no-op. The database's breaker closes,
        its idle connections are dropped (they may have died while it was not used), and an
        unhealthy mark is reset: the switch sticks until a command fails there or a health
        check run after it fails.
        """
        await self.initialize()
        await self._ordered.set_active_index(index, force=force)

    # ------------------------------------------------------------------------------ queries

    def client(self, index: int | None = None) -> redis.asyncio.Redis:
        """The ``redis.asyncio`` client of database ``index`` (default: the active one)."""
        ordered = self._ordered
        db = ordered.active if index is None else ordered.slot(index).target
        return db.client  # type: ignore[no-any-return]

    # ------------------------------------------------------------------- live reconfiguration

    async def remove_database(self, index: int) -> None:
        """Remove database ``index``; the active one is switched away from first (listeners
        see ``SwitchEvent(old, new, MANUAL)`` when the active database or its index changes,
        also with equal numbers). Its in-flight commands finish; its idle connections close
        now, the rest with the provider."""
        db = self._ordered.slot(index).target
        try:
            await self._ordered.remove_target(index)
        finally:
            if self._removed(db):
                await db.retire()

    # ------------------------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Stop the health-check task and close every connection (the pools are sealed: a
        command still running reconnects nowhere). Idempotent."""
        if self._aclosed:
            return
        self._aclosed = True
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watchdog
        await self._ordered.aclose()
        databases = self._all_databases()
        for db in databases:
            await db.aclose()
        for db in databases:
            await db.seal()

    async def close(self) -> None:
        """Alias of :meth:`aclose` (as in ``redis.asyncio``)."""
        await self.aclose()

    async def __aenter__(self) -> FailoverProvider:
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __enter__(self) -> FailoverProvider:
        raise TypeError("use 'async with' with the asyncio FailoverProvider")

    def __exit__(self, *exc_info: object) -> None:
        # Never called (__enter__ refuses), but Python 3.10 looks __exit__ up first and would
        # raise AttributeError instead of the TypeError above.
        raise TypeError("use 'async with' with the asyncio FailoverProvider")

    # ------------------------------------------------------------------ 0.1.0 names

    def execute(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available here: commands run through :class:`FailoverRedis`."""
        raise TypeError(
            "the asyncio FailoverProvider has no sync execute(): commands run through "
            "FailoverRedis; to run your own coroutine function through failover use "
            "'await provider.ordered_provider.execute(fn, ...)' (the 0.1.0 "
            "'await provider.execute_async(fn, ...)' still works, deprecated)"
        )

    def execute_with(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available here: commands run through :class:`FailoverRedis`."""
        raise TypeError(
            "the asyncio FailoverProvider has no sync execute_with(): use "
            "'await provider.ordered_provider.execute_with(fn, args, kwargs, may_replay)' "
            "(the 0.1.0 'await provider.execute_with_async(...)' still works, deprecated)"
        )

    async def execute_async(self, fn: Callable[..., Awaitable[R]], *args: Any,
                            **kwargs: Any) -> R:
        """Deprecated: use ``await provider.ordered_provider.execute(fn, ...)``."""
        deprecated("execute_async()", "use provider.ordered_provider.execute()")
        await self.initialize()
        return await self._ordered.execute(fn, *args, **kwargs)

    async def execute_with_async(
        self,
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        may_replay: MayReplayOrNone = None,
    ) -> R:
        """Deprecated: use ``await provider.ordered_provider.execute_with(...)``."""
        deprecated("execute_with_async()", "use provider.ordered_provider.execute_with()")
        await self.initialize()
        return await self._ordered.execute_with(fn, *call_args(args, kwargs, may_replay))

    async def start_on_first_healthy(self) -> int:
        """Deprecated: startup does it (``await provider.initialize()``); re-run it with
        ``await provider.ordered_provider.start_on_first_healthy()``."""
        deprecated("start_on_first_healthy()",
                    "use await provider.ordered_provider.start_on_first_healthy()")
        await self.initialize()
        return await self._ordered.start_on_first_healthy()

    async def remove_target(self, index: int) -> AsyncDatabase:
        """Deprecated: use :meth:`remove_database`."""
        deprecated("remove_target()", "use await FailoverProvider.remove_database()")
        db = self._ordered.slot(index).target
        await self.remove_database(index)
        return db
