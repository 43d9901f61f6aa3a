"""AsyncOrderedProvider: the ordered failover provider for asyncio (public as
``faulttol.AsyncOrderedProvider`` and ``faulttol.provider.AsyncOrderedProvider``).

The same decisions as :class:`~faulttol.OrderedProvider` (one ``FailoverCore``, composed, no
subclassing), with asyncio I/O: calls, probes, health checks and the ``before_reuse`` hook may
be coroutine functions (awaited), waits are ``clock.sleep_async``, the health checks run in an
:class:`~faulttol.health.AsyncHealthMonitor` task, and switch listeners — plain or coroutine
functions — run one event at a time, in switch order, in a delivery task of the provider's own
that the switching call awaits (shielded: a caller cancelled meanwhile does not cut delivery
short). Nothing here blocks the event loop. One provider belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import _failover_ops as ops
from ._failover_ops import IO, Kind, MayReplay, Op, always_replay
from ._failover_types import Slot
from ._health_monitor import AsyncHealthMonitor
from ._provider_common import ProviderBase

__all__ = ["AsyncOrderedProvider"]

_log = logging.getLogger("faulttol.provider")

T = TypeVar("T")
R = TypeVar("R")

_DELIVERING: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "faulttol_delivering_switch_events", default=None
)
"""The provider whose switch listeners the current task is running (a listener's own
switches are delivered after it returns, by the same loop)."""


async def _resolve(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


class AsyncOrderedProvider(ProviderBase[T]):
    """Fail over between ordered targets, for asyncio; see the module docstring.

    Takes the same arguments as :class:`~faulttol.OrderedProvider` (``config``, the contract
    keywords, ``names``, ``weights``, ``probe``, ``breaker_registry``, ``before_reuse``...);
    ``health_check``, ``probe`` and ``before_reuse`` may be coroutine functions. The health
    monitor task starts at construction when a loop is running, else on the provider's first
    coroutine call (``start_health_checks=False``: when :meth:`start_health_checks` is
    called). :meth:`execute`, :meth:`execute_with`, :meth:`recover`, :meth:`probe`,
    :meth:`mark_unhealthy`, :meth:`set_active_index`, :meth:`remove_target`,
    :meth:`run_health_checks`, :meth:`start_on_first_healthy` and :meth:`aclose` are
    coroutines; the queries, ``add_target``, ``set_weight`` and the listener registration are
    plain methods. ``async with`` closes it; after :meth:`aclose` no task of it is left.
    """

    _monitor: AsyncHealthMonitor | None = None
    _monitor_class = AsyncHealthMonitor
    _delivery: asyncio.Task[None] | None = None
    _start_pending = False
    """The monitor must start, but no loop was running: the next coroutine call starts it."""

    def start_health_checks(self) -> None:
        """Start the health-check task (on the running loop; without one, on the next
        coroutine call). Idempotent."""
        self._autostart = True
        self._ensure_monitor()

    def _ensure_monitor(self) -> None:
        monitor = self._monitor
        self._start_pending = False
        if (monitor is None or not self._autostart or monitor.running
                or self._core.state.closed):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._start_pending = True  # no loop here: started by the next coroutine call
            return
        monitor.start()

    def set_health_check(
        self,
        health_check: Callable[[T], bool | Awaitable[bool]],
        probe: Callable[[T, BaseException], bool | Awaitable[bool]] | None = None,
    ) -> None:
        """Install (or replace) the health check and the probe (plain or coroutine
        functions); a provider built without one gets its monitor now."""
        if self._set_checks(health_check, probe):
            self._install_monitor()

    # ------------------------------------------------------------------------- execution

    async def execute(self, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any) -> R:
        """``await fn(active_target, *args, **kwargs)`` with retry, breaker and failover."""
        return await self.execute_with(fn, args, kwargs)

    async def execute_with(
        self,
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        may_replay: MayReplay = always_replay,
    ) -> R:
        """Like :meth:`execute`; ``may_replay(exc, args)`` says whether a failed call may run
        again (see :meth:`faulttol.OrderedProvider.execute_with`)."""
        if self._start_pending:
            self._ensure_monitor()
        # The success path, written out (as OrderedProvider.execute_with's): no operation to
        # drive unless the call fails.
        core = self._core
        slot = core.state.slot
        if slot.healthy is not False and slot.breaker.try_acquire_permission():
            start = self._clock.monotonic()
            try:
                result = await fn(slot.target, *args, **(kwargs or {}))
            except BaseException as exc:
                slot.breaker.on_error(self._clock.monotonic() - start, exc)
                return await self.recover(fn, args, kwargs, may_replay, slot=slot, exc=exc)
            slot.breaker.on_result(self._clock.monotonic() - start, result)
            if core.unavailable_since is not None:
                core.unavailable_since = None  # a target answered: the "none" spell is over
            return result
        return await self.recover(fn, args, kwargs, may_replay, slot=slot, exc=None)

    async def recover(
        self, fn: Callable[..., Awaitable[R]], args: tuple[Any, ...],
        kwargs: dict[str, Any] | None, may_replay: MayReplay,
        *, slot: Slot[T], exc: BaseException | None,
    ) -> R:
        """Continue a call whose first attempt on ``slot`` failed with ``exc`` (recorded by
        the caller) or could not run (``exc`` None); see
        :meth:`faulttol.OrderedProvider.recover`. Switch listeners are awaited before it
        returns."""
        self._ensure_monitor()
        return await self._call(ops.recover(self._core, fn, args, kwargs, may_replay, slot, exc))

    async def _call(self, op: Op[R]) -> R:
        """Drive a call's operation; switch listeners (also of another task's switches
        being delivered) are awaited before it returns, whatever its outcome.

        A call that fails gives the event loop one turn before raising: with no eligible
        target it fails without any I/O, and a caller retrying in a loop would otherwise
        never yield, starving every other task, the health monitor that would find a
        target again included (a livelock)."""
        try:
            return await self._drive(op)
        except Exception:
            await asyncio.sleep(0)
            raise
        finally:
            if self._core.events or self._delivery is not None:
                await self._deliver()

    async def _drive(self, op: Op[R]) -> R:
        """Run an operation of the core, awaiting its I/O requests in this task."""
        return await ops.drive_async(op, self._perform)

    async def _perform(self, request: IO) -> Any:
        kind = request.kind
        if kind is Kind.CALL:
            assert request.fn is not None and request.slot is not None
            return await request.fn(request.slot.target, *request.args,
                                    **(request.kwargs or {}))
        if kind is Kind.PROBE:
            assert request.slot is not None
            return await self.probe(request.slot, request.exc)
        if kind is Kind.CHECK:
            assert request.slot is not None
            return await self._run_check(request.slot)
        if kind is Kind.SLEEP:
            await self._clock.sleep_async(request.seconds)
        elif kind is Kind.REUSE:
            assert request.slot is not None
            if self._before_reuse is not None:
                await _resolve(self._before_reuse(request.slot.target))
        elif kind is Kind.DELIVER:
            await self._deliver()
        elif kind is Kind.RAISE:
            assert request.error is not None
            raise request.error
        return None

    # ---------------------------------------------------------------------------- probing

    async def probe(self, slot: Slot[T], exc: BaseException | None = None) -> bool:
        """Run the on-the-spot probe of ``slot``'s target now (awaited when it is a
        coroutine function); a raise counts as failed. Records nothing."""
        try:
            return bool(await _resolve(self._call_probe(slot, exc)))
        except Exception:
            _log.debug("%s: probe of %s raised", self.name, slot.name, exc_info=True)
            return False

    async def mark_unhealthy(self, slot: Slot[T], exc: BaseException | None = None) -> None:
        """``slot``'s target failed: mark it unhealthy and, if active, fail over now
        (reason HEALTH_CHECK); listeners are awaited."""
        await self._drive(ops.mark_unhealthy(self._core, slot, exc))

    # ------------------------------------------------------------------------- listeners

    async def _deliver(self) -> None:
        """Run the listeners for every queued event, in order; return once the events
        queued so far (including ones being delivered already) are delivered.

        Delivery runs in one task of the provider's, awaited through :func:`asyncio.shield`:
        a caller cancelled meanwhile stops waiting, but the delivery goes on, so every
        listener gets every event. Called from a listener, it returns at once: the delivery
        loop picks the listener's own events up after it.
        """
        if _DELIVERING.get() is self:
            return
        task = self._delivery
        if task is None or task.done():
            if not self._core.events or self._core.state.closed:
                return
            task = asyncio.get_running_loop().create_task(
                self._drain(), name=f"{self.name}-switch-listeners"
            )
            self._delivery = task
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

    async def _drain(self) -> None:
        """The delivery task: run the listeners for queued events until none is left."""
        _DELIVERING.set(self)  # this task's own context: a listener's switches come here
        events = self._core.events
        if not events.claim():
            return
        try:
            while (event := events.pop()) is not None:
                self._log_switch(event)
                for listener in self._core.listeners:
                    try:
                        await _resolve(listener(event))
                    except Exception:
                        _log.exception("%s: switch listener %r failed", self.name, listener)
        finally:
            events.release()

    # -------------------------------------------------------------------------- switching

    async def set_active_index(self, index: int, *, force: bool = False) -> None:
        """Make target ``index`` (1-based) active; see
        :meth:`faulttol.OrderedProvider.set_active_index` (the probe and ``before_reuse`` are
        awaited, and so are the listeners)."""
        self._ensure_monitor()
        await self._drive(ops.set_active_index(self._core, index, force))

    async def start_on_first_healthy(self, *, prefer: int | None = None) -> int:
        """Probe targets in strategy order and make the first healthy one active (``prefer``
        first); see :meth:`faulttol.OrderedProvider.start_on_first_healthy`."""
        return await self._drive(ops.start_on_first_healthy(self._core, prefer))

    # ------------------------------------------------------------------------------ health

    async def _run_check(self, slot: Slot[T]) -> bool:
        check = self._health_check
        try:
            return True if check is None else bool(await _resolve(check(slot.target)))
        except Exception:
            _log.debug("%s: health check of %s raised", self.name, slot.name, exc_info=True)
            return False

    async def _check_index(self, index: int) -> bool:
        """The monitor's check: await the health check and record it on the slot."""
        return await self._drive(ops.check_target(self._core, index))

    async def _on_health_change(self, index: int, healthy: bool) -> None:
        await self._drive(ops.health_changed(self._core, index, healthy))

    async def run_health_checks(self) -> None:
        """Run one health-check round now, in this task (then the failback check); the
        targets are checked concurrently."""
        self._ensure_monitor()
        if self._monitor is not None:
            await self._monitor.run_once()
        else:
            await self._failback()

    async def _failback(self) -> None:
        await self._drive(ops.failback(self._core))

    # ------------------------------------------------------------------- live reconfiguration

    async def remove_target(self, index: int) -> T:
        """Remove target ``index``; see :meth:`faulttol.OrderedProvider.remove_target`
        (listeners are awaited)."""
        slot = await self._drive(ops.remove(self._core, index))
        self._forget_breaker(slot)
        return slot.target

    # ------------------------------------------------------------------------------ close

    async def aclose(self) -> None:
        """Stop the health-check task and an unfinished listener delivery, and wait for
        them: no task of the provider's is left. Idempotent."""
        core = self._core
        core.state.closed = True
        monitor = self._monitor
        if monitor is not None:
            await monitor.aclose()
        task, self._delivery = self._delivery, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        core.events.clear()

    async def close(self) -> None:
        """Alias of :meth:`aclose` (as in ``redis.asyncio``)."""
        await self.aclose()

    async def __aenter__(self) -> AsyncOrderedProvider[T]:
        self._ensure_monitor()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
