"""The asyncio FailoverProvider: the sync provider's semantics, driven by the event loop.

It is the same :class:`faulttol.provider.OrderedProvider` state machine (failover, failback,
eligibility, breakers, retries) as the sync provider, over ``redis.asyncio`` clients; only the
I/O differs: commands run through ``execute_with_async``, probes and health checks await
``HealthCheck.check_async`` on probe clients with ``health_check_timeout``, and the periodic
health checks are one asyncio task per provider instead of a thread.

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

The sync-only entry points inherited from :class:`~faulttol.provider.OrderedProvider`
(``execute``, ``execute_with``) raise ``TypeError``; ``start_on_first_healthy``,
``set_active_index`` and ``run_health_checks`` are coroutines here.

A database switched to by ``set_active_index``, or found healthy again by a health check after
it was unhealthy, has its idle connections dropped first: a connection that died while the
database was away is never used for a command (redis-py's asyncio pool does not check idle
connections on checkout while maintenance notifications are on, its default).

``aclose()`` cancels the health-check task and an unfinished listener delivery, waits for them,
and closes every connection of every database (including removed ones).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import redis.asyncio
import redis.asyncio.cluster
from redis.exceptions import TimeoutError as RedisTimeoutError

from faulttol._clock import SystemClock
from faulttol.health import run_probes_async

from .._clients import create_async_client
from .._provider_base import PROVIDER_NAME, _DatabaseBase, _RedisProviderBase
from ..config import DatabaseConfig, MultiDbConfig

if TYPE_CHECKING:
    from faulttol.provider import _Slot

__all__ = ["AsyncDatabase", "FailoverProvider"]

_log = logging.getLogger("faulttol_redis.asyncio")

R = TypeVar("R")

_FAKE_CLOCK_POLL = 0.005
"""Real seconds between two looks at a non-system clock by the health-check task."""

_DELIVERING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "faulttol_redis_delivering_switch_events", default=False
)
"""True inside switch-listener delivery (a listener's own switches are delivered after it)."""


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
        for c in self._clients()[1:]:
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
        for c in self._clients():
            await _aclose_quietly(c, self.config.display_name)


def _sync_path_unsupported(*_args: object) -> bool:
    raise RuntimeError(
        "the asyncio FailoverProvider checks databases with check_async(); "
        "use its coroutine API (await provider.set_active_index(...), run_health_checks())"
    )


class FailoverProvider(_RedisProviderBase[AsyncDatabase]):
    """Fails over between the databases of a :class:`MultiDbConfig`, for asyncio.

    The same semantics as :class:`faulttol_redis.FailoverProvider`; see the module docstring
    for startup, listeners and closing. ``set_active_index``, ``remove_database``,
    ``run_health_checks``, ``start_on_first_healthy``, ``initialize`` and ``aclose`` are
    coroutines; ``add_database``, ``set_weight``, ``add_health_check`` and ``status`` are plain
    methods; the sync ``execute``/``execute_with`` raise ``TypeError``.
    ``start_health_checks=False`` leaves the periodic checks off (tests drive them with
    ``await run_health_checks()`` and a ``FakeClock``).
    """

    def __init__(self, config: MultiDbConfig, *, clock: Any = None,
                 start_health_checks: bool = True) -> None:
        super().__init__(config, clock=clock, health_check=_sync_path_unsupported,
                         probe=_sync_path_unsupported)
        self._start_health_checks = start_health_checks
        self._initialized = False
        self._init_lock = asyncio.Lock()
        self._health_task: asyncio.Task[None] | None = None
        self._delivery_task: asyncio.Task[None] | None = None
        self._aclosed = False

    def _new_database(self, config: DatabaseConfig) -> AsyncDatabase:
        return AsyncDatabase(config, self.config.health_check_timeout)

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
        if self._closed:
            raise RuntimeError("the provider is closed")
        async with self._init_lock:
            if self.initialized:  # another task may have finished startup meanwhile
                return
            await self._choose_initial()
            self._initialized = True
            self._start_monitor()

    def _start_monitor(self) -> None:
        """Start the health-check task (once started up, on the running loop)."""
        if (not self._initialized or not self._start_health_checks or self._closed
                or self._monitor is None or self._health_task is not None):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop here: started on the next use inside one
        self._health_task = loop.create_task(self._health_loop(), name=f"{PROVIDER_NAME}-health")

    async def _choose_initial(self) -> None:
        slot = self._stored_slot()
        if slot is not None and await self._run_probe_async(slot, None):
            self._start_on_stored(slot)
            return
        await self._connect_in_order()
        self._log_start()

    async def _connect_in_order(self) -> None:
        """Probe databases in strategy order; the first healthy one becomes active (no
        listener call: nothing switched from the application's point of view)."""
        if not self._has_probe():
            return
        for slot in self._ranked(self._slots):
            ok = await self._run_probe_async(slot, None)  # one probe, not a full round
            if ok and slot.healthy is False:
                await slot.target.drop_idle_connections()
            self._set_health(slot, ok)
            if ok:
                with self._lock:
                    self._active = slot
                break

    async def start_on_first_healthy(self) -> int:  # type: ignore[override]
        """Probe databases in strategy order and make the first healthy one active.

        The coroutine twin of the sync provider's method (startup runs it by itself; this
        re-runs it). Returns the active index. Switch listeners are not called.
        """
        await self.initialize()
        await self._connect_in_order()
        return self.active_index

    # ----------------------------------------------------------------- sync-only entry points

    def execute(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available here: use ``await provider.execute_async(fn, ...)``."""
        raise TypeError(
            "the asyncio FailoverProvider runs calls with 'await provider.execute_async(fn, ...)'"
        )

    def execute_with(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available here: use ``await provider.execute_with_async(fn, ...)``."""
        raise TypeError(
            "the asyncio FailoverProvider runs calls with "
            "'await provider.execute_with_async(fn, args, kwargs, may_replay)'"
        )

    # ------------------------------------------------------------------------ health checks

    async def _checks_pass_async(self, db: AsyncDatabase, *, fast: bool = False) -> bool:
        client = await db.probe_client(fast=fast)
        for check in self._checks:
            if not await check.check_async(client, db.config):
                return False
        return True

    async def _check_database_async(self, db: AsyncDatabase) -> bool:
        cfg = self.config
        return await run_probes_async(
            lambda: self._checks_pass_async(db),
            probes=cfg.health_check_probes,
            policy=cfg.health_check_policy,
            delay=cfg.health_check_probe_delay,
            clock=self.clock,
        )

    async def _run_probe_async(self, slot: _Slot[AsyncDatabase], exc: BaseException | None) -> bool:
        """One probe right after a failed command; quick when the command timed out."""
        if not self._checks:
            return True
        try:
            return await self._checks_pass_async(
                slot.target, fast=isinstance(exc, RedisTimeoutError)
            )
        except Exception:
            _log.debug("probe of %s raised", slot.name, exc_info=True)
            return False

    async def run_health_checks(self) -> None:  # type: ignore[override]
        """Run one health-check round of every database now (then the failback check)."""
        await self.initialize()
        await self._health_round()

    async def _health_round(self) -> None:
        if self._monitor is not None:
            slots = list(self._slots)
            epochs = [s.health_epoch for s in slots]
            # Databases are checked concurrently. return_exceptions: when this task is
            # cancelled, gather returns only once every check has finished.
            results = await asyncio.gather(
                *(self._check_database_async(s.target) for s in slots), return_exceptions=True
            )
            healthy = [r is True for r in results]
            # A database back from unhealthy loses its idle connections (they may have died
            # with it) before it is marked healthy, so before any command can choose it.
            back = [s for s, ok in zip(slots, healthy, strict=True) if ok and s.healthy is False]
            if back:
                await asyncio.gather(*(s.target.drop_idle_connections() for s in back))
            # Record every result first, so that a failover triggered below chooses with
            # this round's knowledge of all databases. A result computed across a manual
            # switch to its database is stale: dropped.
            recorded = [
                bool(self._index_of(slot)) and self._record_check(slot, ok, epoch)
                for slot, ok, epoch in zip(slots, healthy, epochs, strict=True)
            ]
            for slot, ok, kept in zip(slots, healthy, recorded, strict=True):
                index = self._index_of(slot)
                if index and kept:  # 0: removed meanwhile
                    self._monitor.mark(index, ok)  # a flip may fail over
        self._maybe_failback()
        await self._deliver_pending()

    async def _health_loop(self) -> None:
        interval = self.config.health_check_interval
        while not self._closed:
            try:
                await self._health_round()
            except Exception:
                _log.exception("%s: health check round failed", self.name)
            await self._sleep(interval)

    async def _sleep(self, seconds: float) -> None:
        clock = self.clock
        if isinstance(clock, SystemClock):
            await asyncio.sleep(seconds)
            return
        due = clock.monotonic() + seconds
        while clock.monotonic() < due:
            await asyncio.sleep(_FAKE_CLOCK_POLL)

    # --------------------------------------------------------------------- switch listeners

    def _deliver_events(self) -> None:
        """Switches made by the sync state machine are delivered by :meth:`_deliver_pending`,
        which every coroutine that can switch awaits."""

    async def _deliver_pending(self) -> None:
        """Run the listeners for every queued event, in order; return once the events
        queued so far (including ones another task is delivering) are delivered.

        Delivery runs in one task of the provider's, awaited through :func:`asyncio.shield`:
        a caller cancelled meanwhile stops waiting, but the delivery goes on, so every
        listener gets every event.
        """
        if _DELIVERING.get():
            return  # called from a listener: the delivery loop above picks the event up
        task = self._delivery_task
        if task is None or task.done():
            if not self._events or self._aclosed:
                return
            task = asyncio.get_running_loop().create_task(
                self._drain_events(), name=f"{PROVIDER_NAME}-switch-listeners"
            )
            self._delivery_task = task
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # Task.cancelling() is Python 3.11+; before it, a cancelled delivery task is
            # taken as aclose()'s doing.
            cancelling = getattr(asyncio.current_task(), "cancelling", None)
            caller_cancelled = bool(cancelling()) if cancelling is not None else False
            if task.cancelled() and not caller_cancelled:
                return  # aclose() cancelled the delivery, not our caller
            raise

    async def _drain_events(self) -> None:
        """The delivery task: run the listeners for queued events until none is left."""
        _DELIVERING.set(True)  # this task's own context: a listener's switches come here
        while True:
            with self._events_lock:
                if not self._events:
                    return
                event = self._events.popleft()
            _log.warning(
                "%s: switched from database %d to %d (%s)",
                self.name, event.previous_index, event.index, event.reason.value,
            )
            for listener in self._listeners:
                try:
                    result = listener(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    _log.exception("%s: switch listener %r failed", self.name, listener)

    async def _recover_async(
        self,
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        may_replay: Callable[[BaseException, tuple[Any, ...]], bool],
        slot: _Slot[AsyncDatabase],
        exc: BaseException | None,
    ) -> R:
        try:
            return await super()._recover_async(fn, args, kwargs, may_replay, slot, exc)
        finally:
            if self._events or self._delivery_task is not None:
                await self._deliver_pending()

    # -------------------------------------------------------------------------- switching

    async def set_active_index(  # type: ignore[override]
        self, index: int, *, force: bool = False
    ) -> None:
        """Make database ``index`` (1-based) active: manual failover or failback.

        Unless ``force``, the database is probed now and refused with ``ValueError`` if
        unhealthy. Switching to the active index is a no-op. The database's breaker closes,
        its idle connections are dropped (they may have died while it was not used), and an
        unhealthy mark is reset: the switch sticks until a command fails there or a health
        check run after it fails.
        """
        await self.initialize()
        self._check_index_range(index)
        slot = self._slots[index - 1]
        if not force and self._has_probe():
            ok = await self._run_probe_async(slot, None)
            self._set_health(slot, ok)
            if not ok:
                raise ValueError(f"database {index} ({slot.name}) is unhealthy; use force=True")
        if slot is not self._active:
            await slot.target.drop_idle_connections()
            self._close_breaker(slot)  # no await from here to the switch
            self._manual_switch(slot, index)
        await self._deliver_pending()

    # ------------------------------------------------------------------------------ queries

    def client(self, index: int | None = None) -> redis.asyncio.Redis:
        """The ``redis.asyncio`` client of database ``index`` (default: the active one)."""
        if index is None:
            return self._active.target.client  # type: ignore[no-any-return]
        self._check_index_range(index)
        return self._slots[index - 1].target.client  # type: ignore[no-any-return]

    # ------------------------------------------------------------------- live reconfiguration

    async def remove_database(self, index: int) -> None:
        """Remove database ``index``; the active one is switched away from first (listeners
        see ``SwitchEvent(old, new, MANUAL)`` when the active database or its index changes,
        also with equal numbers). Its in-flight commands finish; its idle connections close
        now, the rest with the provider."""
        db = self._remove_and_keep(index)
        try:
            await self._deliver_pending()
        finally:
            await db.retire()

    # ------------------------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Stop the health-check task and close every connection. Idempotent."""
        if self._aclosed:
            return
        self._aclosed = True
        super().close()
        tasks = [t for t in (self._health_task, self._delivery_task)
                 if t is not None and not t.done()]
        self._health_task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        with self._events_lock:
            self._events.clear()
        for db in self._all_databases():
            await db.aclose()

    async def close(self) -> None:  # type: ignore[override]
        """Alias of :meth:`aclose` (as in ``redis.asyncio``)."""
        await self.aclose()

    async def __aenter__(self) -> FailoverProvider:
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __enter__(self) -> FailoverProvider:
        raise TypeError("use 'async with' with the asyncio FailoverProvider")
