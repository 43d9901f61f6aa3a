"""OrderedProvider: run calls against one of N ordered targets and fail over between them.

Each target has its own circuit breaker. A call runs as Fallback(Retry(CircuitBreaker(fn)))
on the active target: every attempt is recorded by that target's breaker, a retryable failure is
retried, and when the outcome is one of ``fallback_exceptions`` the provider fails over to the
next eligible target and runs the call there. Targets are numbered from 1 (Jedis's convention).

Two providers, one for threads (:class:`OrderedProvider`, here) and one for asyncio
(:class:`AsyncOrderedProvider`, in ``faulttol._async_provider`` and re-exported here), are built
by composition on the same decision logic (``faulttol._failover``, which does no I/O); they only
differ where they call the target, sleep, probe, run the health monitor or deliver events.
Neither subclasses the other.

Design choices where the contract leaves room (documented in docs/provider.md):

* On a failure the provider can probe the target at once (``probe=``); a failed probe marks the
  target unhealthy and fails over immediately (reason HEALTH_CHECK), without waiting for the
  breaker's window or the retry's backoff. A call replayed on another target does not wait.
* ``may_replay(exc)`` (per call) says whether a failed call may run again; a call whose outcome
  is ambiguous is never replayed unless the caller says so, but the provider still switches away
  from a dead target.
* When no target is eligible by the strict rule, a target whose last health check passed is used
  even if its breaker's open wait has not elapsed: a client never refuses a healthy target when
  it has nothing else.
* No user code runs under the provider's lock: switch listeners, breaker listeners (of the
  transitions a switch makes, and of time-driven ones seen while choosing a target) and log
  handlers all run after it is released, so any of them may use the provider, from any thread.
* Switch events are delivered in the order the switches happened, through one queue per
  provider: the thread that switched delivers, unless another thread is already delivering, in
  which case that one delivers the event after the earlier ones (see
  :meth:`OrderedProvider._deliver_events`).
* A manual switch resets the target's health to "unknown" when it was unhealthy (a forced
  switch is not undone by the next call), and results of health checks that were already
  running when it happened are dropped.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import _failover_ops as ops
from . import _provider_config
from ._async_provider import AsyncOrderedProvider
from ._failover_ops import IO, Kind, MayReplay, Op, always_replay
from ._failover_types import (
    ActiveState,
    NoValidTargetError,
    Slot,
    SwitchEvent,
    SwitchReason,
    TargetStatus,
    TemporaryUnavailableError,
)
from ._health_monitor import HealthMonitor
from ._provider_common import ProviderBase
from ._provider_config import *  # noqa: F403 - the configuration's public names, re-exported

__all__ = [
    "ActiveState",
    "AsyncOrderedProvider",
    "NoValidTargetError",
    "OrderedProvider",
    "Slot",
    "SwitchEvent",
    "SwitchReason",
    "TargetStatus",
    "TemporaryUnavailableError",
]
__all__ += _provider_config.__all__  # the configuration's names, re-exported

_log = logging.getLogger("faulttol.provider")

T = TypeVar("T")
R = TypeVar("R")

_DEPRECATED_NAMES = {
    "TargetsTemporarilyUnavailableError": ("TemporaryUnavailableError", TemporaryUnavailableError),
    "NoEligibleTargetError": ("NoValidTargetError", NoValidTargetError),
}


def __getattr__(name: str) -> Any:
    """The 0.1.0 error names, kept as deprecated aliases of the new pair."""
    found = _DEPRECATED_NAMES.get(name)
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    new_name, cls = found
    warnings.warn(
        f"faulttol.provider.{name} is deprecated: use faulttol.{new_name} (the same class)",
        DeprecationWarning,
        stacklevel=2,
    )
    return cls


class OrderedProvider(ProviderBase[T]):
    """Fail over between ordered targets, for threads; see the module docstring, DESIGN.md
    and docs/provider.md.

    Args:
        targets: the targets in priority order (index 1 first).
        config: the policies (:class:`ProviderConfig`); the keywords below that are also its
            fields override it when they differ from their defaults.
        circuit_breaker: a :class:`CircuitBreakerConfig` used for one new breaker per target,
            or a sequence of ready breakers (anything with faulttol's breaker API), one per
            target, or ``None``.
        retry: a :class:`RetryConfig` or :class:`Retry`; ``None`` means the config's.
        fallback_exceptions: outcomes that make the provider fail over to the next target.
        health_check: ``check(target) -> bool`` run for every target every
            ``health_check_interval`` seconds on one background thread.
        health_check_interval: see :class:`ProviderConfig`.
        auto_failback_interval: see :class:`ProviderConfig`.
        clock: the clock (``None``: the default clock).
        names: a name per target.
        weights: a weight per target.
        probe: ``probe(target, exc) -> bool`` run at once when a call fails with a retryable
            or fallback exception; defaults to ``health_check`` (ignoring ``exc``).
        initial_index: the index to start on (``None``: the strategy's first choice).
        breaker_registry: a :class:`CircuitBreakerRegistry` the new breakers are made in
            (named ``"<name>:<target name>"``), so they can be found by name.
        unavailable_error: ``factory(permanent, message)`` for the "no eligible target" errors.
        name: the provider's name, in logs, breaker names and metrics.
        noun: what a target is called in messages and logs.
        before_reuse: ``hook(target)`` called before a target takes calls again after a time
            away (a manual switch or failback to it, a health check finding it healthy after
            it was marked unhealthy), e.g. to drop connections that may have died meanwhile.
        start_health_checks: start the health-check thread now.

    The 0.1.0 keywords ``strategy``, ``auto_failback_grace_period``, ``failover_attempts`` and
    ``failover_delay`` still work, with a ``DeprecationWarning``: they are
    :class:`ProviderConfig` fields (``strategy`` is ``failover_strategy``).
    """

    _monitor: HealthMonitor | None = None
    _monitor_class = HealthMonitor

    def start_health_checks(self) -> None:
        """Start the background health checks (for a provider built with
        ``start_health_checks=False``, or once a health check is installed). Idempotent."""
        self._autostart = True
        if self._monitor is not None and not self._core.state.closed:
            self._monitor.start()

    def set_health_check(
        self,
        health_check: Callable[[T], bool],
        probe: Callable[[T, BaseException], bool] | None = None,
    ) -> None:
        """Install (or replace) the health check and the probe; a provider built without
        one gets its monitor now (started if health checks are on)."""
        if self._set_checks(health_check, probe):
            self._install_monitor()

    # ------------------------------------------------------------------------- execution

    def execute(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run ``fn(active_target, *args, **kwargs)`` with retry, breaker and failover."""
        return self.execute_with(fn, args, kwargs)

    def execute_with(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        may_replay: MayReplay = always_replay,
    ) -> R:
        """Like :meth:`execute`; ``may_replay(exc, args)`` says whether a failed call may run
        again (on the same target or another); an ambiguous failure should answer False."""
        core = self._core
        slot = core.state.slot
        if slot.healthy is not False and slot.breaker.try_acquire_permission():
            start = self._clock.monotonic()
            try:
                result = fn(slot.target, *args, **(kwargs or {}))
            except BaseException as exc:
                slot.breaker.on_error(self._clock.monotonic() - start, exc)
                return self.recover(fn, args, kwargs, may_replay, slot=slot, exc=exc)
            slot.breaker.on_result(self._clock.monotonic() - start, result)
            if core.unavailable_since is not None:
                core.unavailable_since = None  # a target answered: the "none" spell is over
            return result
        return self.recover(fn, args, kwargs, may_replay, slot=slot, exc=None)

    def recover(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        may_replay: MayReplay,
        *,
        slot: Slot[T],
        exc: BaseException | None,
    ) -> R:
        """Continue a call whose first attempt, on ``slot``, failed with ``exc`` (recorded
        by the caller on ``slot.breaker``) or could not run (``exc`` None: ``slot`` was
        unhealthy or its breaker rejected the call): retry, probe, fail over, as
        :meth:`execute_with` would have. For callers that run the success path themselves
        (reading :attr:`active_state`)."""
        result: R = self._drive(ops.recover(self._core, fn, args, kwargs, may_replay, slot, exc))
        return result

    def _drive(self, op: Op[R]) -> R:
        """Run an operation of the core, performing its I/O requests on this thread."""
        return ops.drive(op, self._perform)

    def _perform(self, request: IO) -> Any:
        kind = request.kind
        if kind is Kind.CALL:
            assert request.fn is not None and request.slot is not None
            return request.fn(request.slot.target, *request.args, **(request.kwargs or {}))
        if kind is Kind.PROBE:
            assert request.slot is not None
            return self.probe(request.slot, request.exc)
        if kind is Kind.CHECK:
            assert request.slot is not None
            return self._run_check(request.slot)
        if kind is Kind.SLEEP:
            self._clock.sleep(request.seconds)
        elif kind is Kind.REUSE:
            assert request.slot is not None
            if self._before_reuse is not None:
                self._before_reuse(request.slot.target)
        elif kind is Kind.DELIVER:
            self._deliver_events()
        elif kind is Kind.RAISE:
            assert request.error is not None
            raise request.error
        return None

    async def execute_async(self, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any) -> R:
        """Deprecated: use :class:`AsyncOrderedProvider` (this one probes synchronously,
        blocking the event loop). ``await fn(active_target, ...)`` with failover."""
        _warn_async("execute_async")
        return await self._run_async(fn, args, kwargs, always_replay)

    async def execute_with_async(
        self, fn: Callable[..., Awaitable[R]], args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None, may_replay: MayReplay = always_replay,
    ) -> R:
        """Deprecated: use :class:`AsyncOrderedProvider`. The asyncio twin of
        :meth:`execute_with`."""
        _warn_async("execute_with_async")
        return await self._run_async(fn, args, kwargs, may_replay)

    async def _run_async(
        self, fn: Callable[..., Awaitable[R]], args: tuple[Any, ...],
        kwargs: dict[str, Any] | None, may_replay: MayReplay,
    ) -> R:
        async def perform(request: IO) -> Any:  # the call awaited, the rest synchronous
            value = self._perform(request)
            return await value if request.kind is Kind.CALL else value

        return await ops.drive_async(ops.run(self._core, fn, args, kwargs, may_replay), perform)

    # ---------------------------------------------------------------------------- probing

    def probe(self, slot: Slot[T], exc: BaseException | None = None) -> bool:
        """Run the on-the-spot probe of ``slot``'s target now (``probe``, else the health
        check; True without either). A probe that raises counts as failed. Records nothing:
        see :meth:`mark_unhealthy`."""
        try:
            return bool(self._call_probe(slot, exc))
        except Exception:
            _log.debug("%s: probe of %s raised", self.name, slot.name, exc_info=True)
            return False

    def mark_unhealthy(self, slot: Slot[T], exc: BaseException | None = None) -> None:
        """``slot``'s target failed (a probe after ``exc``): mark it unhealthy and, if it is
        the active one, fail over now (reason HEALTH_CHECK), listeners included."""
        self._drive(ops.mark_unhealthy(self._core, slot, exc))

    # ------------------------------------------------------------------------- listeners

    def _deliver_events(self) -> None:
        """Run the listeners for the queued events, in order, on this thread.

        Called by every thread that switched, after releasing the provider's lock. If another
        thread is delivering already, this returns at once and that thread delivers the new
        events after the ones before them: so listeners see switches one at a time, in the
        order they happened, and a listener may wait for a thread that switches without a
        deadlock. A listener that switches (on the delivering thread) returns at once too;
        its event is delivered after the current one has reached every listener.
        """
        events = self._core.events
        if not events.claim():
            return
        try:
            while (event := events.pop()) is not None:
                self._run_listeners(event)
        except BaseException:  # KeyboardInterrupt or the like: let the next switch go on
            events.release()
            raise

    def _run_listeners(self, event: SwitchEvent) -> None:
        self._log_switch(event)
        for listener in self._core.listeners:
            try:
                result = listener(event)
            except Exception:
                _log.exception("%s: switch listener %r failed", self.name, listener)
                continue
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                _log.error("%s: a coroutine switch listener needs the asyncio provider",
                           self.name)

    # -------------------------------------------------------------------------- switching

    def set_active_index(self, index: int, *, force: bool = False) -> None:
        """Make target ``index`` (1-based) active: manual failover or failback.

        Unless ``force``, a target whose health check fails is refused with ``ValueError``
        (with a health check configured it is probed on the spot). Switching to the active
        index is a no-op. The target's breaker is closed; when it was marked unhealthy, its
        health is reset to unknown (treated as healthy), so the switch sticks until a call
        fails there or a health check run after it fails.
        """
        self._drive(ops.set_active_index(self._core, index, force))

    def start_on_first_healthy(self, *, prefer: int | None = None) -> int:
        """Probe targets in strategy order and make the first healthy one active.

        Used at startup ("connect in order"); ``prefer`` (an index, e.g. the one persisted
        before a restart) is probed first and kept when it passes. Without a health check
        (or probe) it keeps the current target. Returns the active index. Switch listeners
        are not called (nothing switched from the application's point of view).
        """
        return self._drive(ops.start_on_first_healthy(self._core, prefer))

    # ------------------------------------------------------------------------------ health

    def _run_check(self, slot: Slot[T]) -> bool:
        check = self._health_check
        try:
            return True if check is None else bool(check(slot.target))
        except Exception:
            _log.debug("%s: health check of %s raised", self.name, slot.name, exc_info=True)
            return False

    def _check_index(self, index: int) -> bool:
        """The monitor's check: run the health check and record it on the slot."""
        return self._drive(ops.check_target(self._core, index))

    def _on_health_change(self, index: int, healthy: bool) -> None:
        self._drive(ops.health_changed(self._core, index, healthy))

    def run_health_checks(self) -> None:
        """Run one health-check round now (and the failback check), on this thread."""
        if self._monitor is not None:
            self._monitor.run_once()
        else:
            self._failback()

    def _failback(self) -> None:
        """Automatic failback, when due (checked at the end of every health-check round)."""
        self._drive(ops.failback(self._core))

    # ------------------------------------------------------------------- live reconfiguration

    def remove_target(self, index: int) -> T:
        """Remove target ``index``; the active one is switched away from first.

        Listeners receive ``SwitchEvent(old, new, MANUAL)`` (old index in the old numbering,
        new in the new one) when the active target is removed, even when the numbers are
        equal (removing active target 1 makes target 2 the new target 1), and when the active
        index shifts down because a target before it was removed.
        """
        slot = self._drive(ops.remove(self._core, index))
        self._forget_breaker(slot)
        return slot.target

    # ------------------------------------------------------------------------------ close

    def close(self) -> None:
        """Stop the background health checks. Idempotent."""
        self._core.state.closed = True
        if self._monitor is not None:
            self._monitor.close()

    def __enter__(self) -> OrderedProvider[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _warn_async(name: str) -> None:
    warnings.warn(
        f"OrderedProvider.{name}() is deprecated: use faulttol.AsyncOrderedProvider, whose "
        "probes and health checks never block the event loop",
        DeprecationWarning,
        stacklevel=3,
    )
