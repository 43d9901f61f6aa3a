"""OrderedProvider: run calls against one of N ordered targets and fail over between them.

Each target has its own circuit breaker. A call runs as Fallback(Retry(CircuitBreaker(fn)))
on the active target: every attempt is recorded by that target's breaker, a retryable failure is
retried, and when the outcome is one of ``fallback_exceptions`` the provider fails over to the
next eligible target and runs the call there. Targets are numbered from 1 (Jedis's convention).

The decision logic lives once, in :class:`_FailoverCore` methods that do no I/O; the sync
(:meth:`OrderedProvider.execute`) and asyncio (:meth:`OrderedProvider.execute_async`) loops only
differ where they call the target, sleep, or probe.

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
  which case that one delivers the event after the earlier ones (see :meth:`_deliver_events`).
* A manual switch resets the target's health to "unknown" when it was unhealthy (a forced
  switch is not undone by the next call), and results of health checks that were already
  running when it happened are dropped.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._clock import Clock, resolve_clock
from .breaker import CallNotPermittedError, CircuitBreaker, CircuitBreakerConfig, State
from .health import HealthMonitor
from .retry import Retry, RetryConfig

__all__ = [
    "DEFAULT_FAILOVER_ATTEMPTS",
    "DEFAULT_FAILOVER_DELAY",
    "DEFAULT_HEALTH_CHECK_INTERVAL",
    "NoEligibleTargetError",
    "OrderedProvider",
    "SwitchEvent",
    "SwitchReason",
    "TargetsTemporarilyUnavailableError",
]

_log = logging.getLogger("faulttol.provider")

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_HEALTH_CHECK_INTERVAL = 5.0
DEFAULT_FAILOVER_ATTEMPTS = 10
DEFAULT_FAILOVER_DELAY = 12.0
STRATEGIES = ("ordered", "weighted")

_ADMITTING_STATES = frozenset({State.CLOSED, State.HALF_OPEN, State.DISABLED, State.METRICS_ONLY})


class SwitchReason(enum.Enum):
    """Why the active target changed."""

    CIRCUIT_BREAKER = "CIRCUIT_BREAKER"
    HEALTH_CHECK = "HEALTH_CHECK"
    FAILBACK = "FAILBACK"
    MANUAL = "MANUAL"


@dataclass(frozen=True, slots=True)
class SwitchEvent:
    """The active target moved from ``previous_index`` to ``index`` (both 1-based)."""

    previous_index: int
    index: int
    reason: SwitchReason


class TargetsTemporarilyUnavailableError(Exception):
    """No target is eligible, for less than ``failover_attempts x failover_delay`` so far."""


class NoEligibleTargetError(Exception):
    """No target has been eligible for ``failover_attempts x failover_delay`` or longer."""


def _default_unavailable_error(permanent: bool, message: str) -> Exception:
    if permanent:
        return NoEligibleTargetError(message)
    return TargetsTemporarilyUnavailableError(message)


def _always(_exc: BaseException, _args: tuple[Any, ...]) -> bool:
    return True


class _Slot(Generic[T]):
    """One target with its breaker, weight and last known health.

    ``health_epoch`` counts the manual switches to this target: a health-check result computed
    across one (the check started before it) is stale and is dropped.
    """

    __slots__ = ("breaker", "health_epoch", "healthy", "healthy_since", "name", "target",
                 "weight")

    def __init__(self, target: T, breaker: Any, weight: float, name: str) -> None:
        self.target = target
        self.breaker = breaker
        self.weight = weight
        self.name = name
        self.healthy: bool | None = None  # None: not checked yet (treated as healthy)
        self.healthy_since: float | None = None
        self.health_epoch = 0


_BreakerView = dict[int, tuple[bool, Any]]
"""id(slot) -> (its breaker would admit a call, its state), read outside the provider's lock."""


class OrderedProvider(Generic[T]):
    """Fail over between ordered targets; see the module docstring and DESIGN.md.

    Args:
        targets: the targets in priority order (index 1 first).
        circuit_breaker: a :class:`CircuitBreakerConfig` used for one new breaker per target,
            a sequence of ready breakers (faulttol or pybreaker), one per target, or ``None``.
        retry: a :class:`RetryConfig` or :class:`Retry`; ``None`` means the default config.
        fallback_exceptions: outcomes that make the provider fail over to the next target.
        health_check: ``check(target) -> bool`` run for every target every
            ``health_check_interval`` seconds on one background thread.
        auto_failback_interval: when set, every so many seconds the provider returns to a
            better-ranked healthy target (healthy for at least ``auto_failback_grace_period``).
        probe: ``probe(target, exc) -> bool`` run at once when a call fails with a retryable
            or fallback exception; defaults to ``health_check`` (ignoring ``exc``).
        strategy: ``"ordered"`` (lowest eligible index) or ``"weighted"`` (highest weight,
            ties by index).
        unavailable_error: ``factory(permanent, message)`` for the "no eligible target" errors.
    """

    def __init__(
        self,
        targets: Iterable[T],
        *,
        circuit_breaker: CircuitBreakerConfig | Sequence[Any] | None = None,
        retry: RetryConfig | Retry | None = None,
        fallback_exceptions: tuple[type[BaseException], ...] = (CallNotPermittedError,),
        health_check: Callable[[T], bool] | None = None,
        health_check_interval: float = DEFAULT_HEALTH_CHECK_INTERVAL,
        auto_failback_interval: float | None = None,
        clock: Clock | None = None,
        names: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        strategy: str = "ordered",
        probe: Callable[[T, BaseException], bool] | None = None,
        auto_failback_grace_period: float | None = None,
        failover_attempts: int = DEFAULT_FAILOVER_ATTEMPTS,
        failover_delay: float = DEFAULT_FAILOVER_DELAY,
        initial_index: int | None = None,
        unavailable_error: Callable[[bool, str], BaseException] = _default_unavailable_error,
        name: str = "provider",
        start_health_checks: bool = True,
    ) -> None:
        target_list = list(targets)
        if not target_list:
            raise ValueError("targets must not be empty")
        if health_check_interval <= 0:
            raise ValueError(
                f"health_check_interval must be > 0 seconds, got {health_check_interval!r}"
            )
        if auto_failback_interval is not None and auto_failback_interval <= 0:
            raise ValueError(
                "auto_failback_interval must be > 0 seconds or None, "
                f"got {auto_failback_interval!r}"
            )
        if auto_failback_grace_period is not None and auto_failback_grace_period < 0:
            raise ValueError(
                "auto_failback_grace_period must be >= 0 seconds or None, "
                f"got {auto_failback_grace_period!r}"
            )
        if failover_attempts < 1:
            raise ValueError(f"failover_attempts must be >= 1, got {failover_attempts!r}")
        if failover_delay < 0:
            raise ValueError(f"failover_delay must be >= 0 seconds, got {failover_delay!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if not isinstance(fallback_exceptions, tuple) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in fallback_exceptions
        ):
            raise TypeError("fallback_exceptions must be a tuple of exception types")
        n = len(target_list)
        if names is not None and len(names) != n:
            raise ValueError(f"names must have one entry per target ({n}), got {len(names)}")
        if weights is not None:
            if len(weights) != n:
                raise ValueError(
                    f"weights must have one entry per target ({n}), got {len(weights)}"
                )
            for w in weights:
                _check_weight(w)
        self.name = name
        self._clock = resolve_clock(clock)
        self._breaker_config = (
            circuit_breaker if isinstance(circuit_breaker, CircuitBreakerConfig) else None
        )
        breakers = self._make_breakers(circuit_breaker, n, names)
        self._retry = (
            retry if isinstance(retry, Retry) else Retry(f"{name}-retry", retry, clock=self._clock)
        )
        self._fallback_exceptions = fallback_exceptions
        self._health_check = health_check
        self._probe = probe
        self._strategy = strategy
        self._failover_window = failover_attempts * failover_delay
        self._unavailable_error = unavailable_error
        self._auto_failback_interval = auto_failback_interval
        self._grace = (
            auto_failback_grace_period
            if auto_failback_grace_period is not None
            else health_check_interval
        )
        self._last_failback_check = self._clock.monotonic()
        self._lock = threading.RLock()
        self._listeners: tuple[Callable[[SwitchEvent], object], ...] = ()
        # Switch events waiting for delivery, appended under _lock in switch order; the
        # thread delivering them (if any) is _drainer. _events_lock guards both (never held
        # while a listener runs).
        self._events: deque[SwitchEvent] = deque()
        self._events_lock = threading.Lock()
        self._drainer: int | None = None
        self._slots: list[_Slot[T]] = [
            _Slot(
                t,
                breakers[i],
                1.0 if weights is None else float(weights[i]),
                names[i] if names is not None else f"target-{i + 1}",
            )
            for i, t in enumerate(target_list)
        ]
        self._unavailable_since: float | None = None
        self._closed = False
        self._active: _Slot[T] = self._initial_slot(initial_index)
        self._health_check_interval = health_check_interval
        self._monitor: HealthMonitor | None = None
        if health_check is not None:
            self._enable_health_checks(health_check, probe)
            if start_health_checks:
                self._start_monitor()

    def _enable_health_checks(
        self, health_check: Callable[[T], bool], probe: Callable[[T, BaseException], bool] | None
    ) -> None:
        """Install the health check (and the probe) and create the monitor, not started."""
        self._health_check = health_check
        self._probe = probe
        self._monitor = HealthMonitor(
            self._slot_count,
            self._check_index,
            interval=self._health_check_interval,
            on_change=self._on_health_change,
            clock=self._clock,
            name=f"{self.name}-health",
        )

    def _start_monitor(self) -> None:
        """Start the background health checks (the asyncio provider runs a task instead)."""
        if self._monitor is not None and not self._closed:
            self._monitor.start()

    # ----------------------------------------------------------------- construction helpers

    def _make_breakers(
        self, spec: CircuitBreakerConfig | Sequence[Any] | None, n: int, names: Sequence[str] | None
    ) -> list[Any]:
        if spec is None or isinstance(spec, CircuitBreakerConfig):
            return [
                self._new_breaker(names[i] if names else f"target-{i + 1}", spec) for i in range(n)
            ]
        items = list(spec)
        if len(items) != n:
            raise ValueError(
                f"circuit_breaker must have one breaker per target ({n}), got {len(items)}"
            )
        from .interop.pybreaker import as_faulttol_breaker

        return [as_faulttol_breaker(b) for b in items]

    def _new_breaker(self, label: str, config: CircuitBreakerConfig | None) -> CircuitBreaker:
        return CircuitBreaker(f"{self.name}:{label}", config, clock=self._clock)

    def _initial_slot(self, initial_index: int | None) -> _Slot[T]:
        if initial_index is not None:
            self._check_index_range(initial_index)
            return self._slots[initial_index - 1]
        return self._ranked(self._slots)[0]

    def start_on_first_healthy(self) -> int:
        """Probe targets in strategy order and make the first healthy one active.

        Used at startup ("connect in order"); without a health check it keeps the current
        target. Returns the active index. Switch listeners are not called (nothing switched
        from the application's point of view).
        """
        if not self._has_probe():
            return self.active_index
        for slot in self._ranked(self._slots):
            ok = self._run_probe(slot, None)  # one probe: a start-up needs no full round
            self._set_health(slot, ok)
            if ok:
                with self._lock:
                    self._active = slot
                break
        return self.active_index

    # ----------------------------------------------------------------------------- queries

    @property
    def active_index(self) -> int:
        """The 1-based index of the active target."""
        return self._index_of(self._active)

    @property
    def active(self) -> T:
        """The active target."""
        return self._active.target

    @property
    def targets(self) -> tuple[T, ...]:
        """All targets in order."""
        return tuple(s.target for s in self._slots)

    @property
    def retry(self) -> Retry:
        """The retry policy shared by all targets."""
        return self._retry

    @property
    def clock(self) -> Clock:
        return self._clock

    def __len__(self) -> int:
        return len(self._slots)

    def breaker(self, index: int) -> Any:
        """The circuit breaker of target ``index`` (1-based)."""
        self._check_index_range(index)
        return self._slots[index - 1].breaker

    def is_healthy(self, index: int) -> bool:
        """Whether target ``index``'s last health check passed (True before the first)."""
        self._check_index_range(index)
        return self._slots[index - 1].healthy is not False

    def is_eligible(self, index: int) -> bool:
        """Whether target ``index`` could take calls now (breaker admits, health not failed)."""
        self._check_index_range(index)
        return self._eligible(self._slots[index - 1])

    def status(self) -> list[dict[str, Any]]:
        """One dict per target, in order: index, name, weight, healthy, breaker, active."""
        active = self._active
        out = []
        for i, s in enumerate(list(self._slots), start=1):
            out.append(
                {
                    "index": i,
                    "name": s.name,
                    "weight": s.weight,
                    "healthy": s.healthy is not False,
                    "breaker_state": s.breaker.state,
                    "breaker_metrics": getattr(s.breaker, "metrics", None),
                    "active": s is active,
                }
            )
        return out

    def _index_of(self, slot: _Slot[T]) -> int:
        try:
            return self._slots.index(slot) + 1
        except ValueError:  # removed concurrently
            return 0

    def _check_index_range(self, index: int) -> None:
        n = len(self._slots)
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= n:
            raise ValueError(f"index must be an integer in 1..{n}, got {index!r}")

    def _slot_count(self) -> int:
        return len(self._slots)

    # ------------------------------------------------------------------------- listeners

    def add_switch_listener(self, listener: Callable[[SwitchEvent], object]) -> None:
        """Call ``listener(SwitchEvent)`` after every switch, on the switching thread."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type(listener).__name__}")
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_switch_listener(self, listener: Callable[[SwitchEvent], object]) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    def _publish_locked(self, event: SwitchEvent) -> None:
        """Queue ``event`` for the listeners (``_lock`` held: the queue keeps switch order)."""
        with self._events_lock:
            self._events.append(event)

    def _deliver_events(self) -> None:
        """Run the listeners for the queued events, in order, on this thread.

        Called by every thread that switched, after releasing the provider's lock. If another
        thread is delivering already, this returns at once and that thread delivers the new
        events after the ones before them: so listeners see switches one at a time, in the
        order they happened, and a listener may wait for a thread that switches without a
        deadlock. A listener that switches (on the delivering thread) returns at once too;
        its event is delivered after the current one has reached every listener.
        """
        with self._events_lock:
            if self._drainer is not None or not self._events:
                return
            self._drainer = threading.get_ident()
        try:
            while True:
                with self._events_lock:
                    if not self._events:
                        self._drainer = None
                        return
                    event = self._events.popleft()
                self._run_listeners(event)
        except BaseException:  # KeyboardInterrupt or the like: let the next switch go on
            with self._events_lock:
                self._drainer = None
            raise

    def _run_listeners(self, event: SwitchEvent) -> None:
        _log.warning(
            "%s: switched from target %d to %d (%s)",
            self.name,
            event.previous_index,
            event.index,
            event.reason.value,
        )
        for listener in self._listeners:
            try:
                result = listener(event)
            except Exception:
                _log.exception("%s: switch listener %r failed", self.name, listener)
                continue
            if isinstance(result, Awaitable):
                self._on_awaitable_listener_result(result)

    def _on_awaitable_listener_result(self, result: Awaitable[object]) -> None:
        """Sync providers cannot await a coroutine listener: close it and say so."""
        close = getattr(result, "close", None)
        if close is not None:
            close()
        _log.error("%s: a coroutine switch listener needs the asyncio provider", self.name)

    # -------------------------------------------------------------------------- switching

    def set_active_index(self, index: int, *, force: bool = False) -> None:
        """Make target ``index`` (1-based) active: manual failover or failback.

        Unless ``force``, a target whose health check fails is refused with ``ValueError``
        (with a health check configured it is probed on the spot). Switching to the active
        index is a no-op. The target's breaker is closed; when it was marked unhealthy, its
        health is reset to unknown (treated as healthy), so the switch sticks until a call
        fails there or a health check run after it fails.
        """
        self._check_index_range(index)
        slot = self._slots[index - 1]
        if not force and self._has_probe():
            ok = self._run_probe(slot, None)
            self._set_health(slot, ok)
            if not ok:
                raise ValueError(f"target {index} ({slot.name}) is unhealthy; use force=True")
        if slot is self._active:
            return
        self._prepare_for_switch_to(slot)
        self._close_breaker(slot)  # before it is active: no call meets the old OPEN state
        self._manual_switch(slot, index)
        self._deliver_events()

    def _manual_switch(self, slot: _Slot[T], index: int) -> SwitchEvent | None:
        """Switch to ``slot`` (reason MANUAL); the breaker was closed by the caller."""
        with self._lock:
            if self._slots[index - 1] is not slot:
                raise ValueError(f"target {index} changed while switching; try again")
            if slot is self._active:
                return None
            self._reset_health_locked(slot, index)
            return self._switch_locked(slot, SwitchReason.MANUAL)

    def _reset_health_locked(self, slot: _Slot[T], index: int) -> None:
        """A manual switch to ``slot``: forget an unhealthy mark and drop the results of
        health checks already running (``_lock`` held)."""
        slot.health_epoch += 1
        if slot.healthy is False:
            slot.healthy = None
            slot.healthy_since = None
        if self._monitor is not None:
            self._monitor.forget(index)

    def _prepare_for_switch_to(self, slot: _Slot[T]) -> None:
        """``slot`` is about to become active by a manual switch or failback (no lock held).

        A hook for subclasses that hold resources per target which may have gone stale while
        it was not used (the Redis providers drop its idle connections). Default: nothing.
        """

    def _on_target_recovered(self, slot: _Slot[T]) -> None:
        """A health check found ``slot`` healthy after it was marked unhealthy (no lock held,
        before it is marked healthy, so before any call can be sent to it). Default: nothing.
        """

    @staticmethod
    def _close_breaker(slot: _Slot[T]) -> None:
        if slot.breaker.state is not State.CLOSED:
            slot.breaker.transition_to_closed_state()

    def _switch_locked(self, slot: _Slot[T], reason: SwitchReason) -> SwitchEvent:
        """Make ``slot`` active and queue the event (``_lock`` held; the caller delivers)."""
        previous = self._active
        self._active = slot
        self._unavailable_since = None
        event = SwitchEvent(self._index_of(previous), self._index_of(slot), reason)
        self._publish_locked(event)
        return event

    def _failover(self, from_slot: _Slot[T], reason: SwitchReason, tried: set[int]) -> _Slot[T]:
        """Switch away from ``from_slot`` to the best eligible target not yet ``tried``.

        Returns the slot to run on next. Raises the "unavailable" error when there is none.
        Breaker states are read, and breakers moved, outside the lock (their listeners may
        use the provider): a destination that needs a trial is moved to HALF_OPEN before it
        becomes active, the target left has its breaker opened after the switch.
        """
        prepared: set[int] = set()
        while True:
            view = self._breaker_view()
            with self._lock:
                current = self._active
                if (
                    current is not from_slot
                    and id(current) not in tried
                    and self._eligible(current, view)
                ):
                    return current  # another thread already failed over
                candidates = [s for s in self._slots if id(s) not in tried and s is not from_slot]
                chosen = self._best_eligible(candidates, view)
                if chosen is None:
                    raise self._unavailable_locked()
                if id(chosen) in prepared or not self._needs_trial(chosen, view):
                    leaving = from_slot is current and chosen is not current
                    if chosen is not current:
                        self._switch_locked(chosen, reason)
                    break
            # The destination's breaker would reject: give it a trial, then choose again
            # (the world may have changed meanwhile).
            self._prepare_destination(chosen)
            prepared.add(id(chosen))
        if leaving:
            self._open_left(from_slot)
        self._deliver_events()
        return chosen

    def _open_left(self, slot: _Slot[T]) -> None:
        """A target left by failover has its breaker opened, whatever the reason: it is a
        destination again only after its open wait (or by failback)."""
        if slot is self._active:
            return  # switched back to meanwhile (e.g. manually): leave it usable
        if slot.breaker.state in (State.CLOSED, State.HALF_OPEN):
            slot.breaker.transition_to_open_state()

    def _prepare_destination(self, slot: _Slot[T]) -> None:
        """A destination whose breaker would reject must get a trial: move it to HALF_OPEN."""
        if slot.breaker.state is State.OPEN and not _admits(slot.breaker):
            slot.breaker.transition_to_half_open_state()

    @staticmethod
    def _needs_trial(slot: _Slot[T], view: _BreakerView) -> bool:
        seen = view.get(id(slot))
        if seen is None:
            return False
        admits, state = seen
        return not admits and state is State.OPEN

    def _unavailable_locked(self) -> BaseException:
        now = self._clock.monotonic()
        if self._unavailable_since is None:
            self._unavailable_since = now
        waited = now - self._unavailable_since
        permanent = waited >= self._failover_window
        if permanent:
            msg = (
                f"{self.name}: no target has been eligible for {waited:.1f}s "
                f"(limit {self._failover_window:g}s)"
            )
        else:
            msg = f"{self.name}: no target is eligible at the moment; try again later"
        return self._unavailable_error(permanent, msg)

    # ------------------------------------------------------------------------- eligibility

    def _breaker_view(self) -> _BreakerView:
        """Every breaker's admission and state, read now, without the provider's lock.

        Reading a breaker applies the transitions time has made due and calls its listeners,
        which must not run under the lock: choices made under it use this view instead.
        """
        return {id(s): (_admits(s.breaker), s.breaker.state) for s in list(self._slots)}

    def _eligible(self, slot: _Slot[T], view: _BreakerView | None = None) -> bool:
        if slot.healthy is False:
            return False
        seen = view.get(id(slot)) if view is not None else None
        return seen[0] if seen is not None else _admits(slot.breaker)

    def _ranked(self, slots: Iterable[_Slot[T]]) -> list[_Slot[T]]:
        items = list(slots)
        if self._strategy == "weighted":
            order = {id(s): i for i, s in enumerate(self._slots)}
            return sorted(items, key=lambda s: (-s.weight, order.get(id(s), 0)))
        return items  # config order

    def _best_eligible(
        self, candidates: Iterable[_Slot[T]], view: _BreakerView | None = None
    ) -> _Slot[T] | None:
        ranked = self._ranked(candidates)
        for slot in ranked:
            if self._eligible(slot, view):
                return slot
        if self._health_check is not None:
            # Nothing eligible by the strict rule: a target whose health check passed is used
            # even though its breaker's open wait has not elapsed.
            for slot in ranked:
                seen = view.get(id(slot)) if view is not None else None
                state = seen[1] if seen is not None else slot.breaker.state
                if slot.healthy is True and state is not State.FORCED_OPEN:
                    return slot
        return None

    # ------------------------------------------------------------------------------ health

    def _run_check(self, slot: _Slot[T]) -> bool:
        check = self._health_check
        if check is None:
            return True
        try:
            return bool(check(slot.target))
        except Exception:
            _log.debug("%s: health check of %s raised", self.name, slot.name, exc_info=True)
            return False

    def _check_index(self, index: int) -> bool:
        """The monitor's check: run the health check, record it, then consider failback."""
        slots = self._slots
        if not 1 <= index <= len(slots):
            return True
        slot = slots[index - 1]
        epoch = slot.health_epoch
        ok = self._run_check(slot)
        if ok and slot.healthy is False:
            self._on_target_recovered(slot)
        self._record_check(slot, ok, epoch)
        if index == len(slots):  # the end of a round
            self._maybe_failback()
        return ok

    def _record_check(self, slot: _Slot[T], ok: bool, epoch: int) -> bool:
        """Record a health-check result unless a manual switch to ``slot`` happened since the
        check started (``epoch``): then the result is stale and dropped. Returns whether it
        was recorded."""
        with self._lock:
            if slot.health_epoch != epoch:
                return False
            self._set_health(slot, ok)
            return True

    def _set_health(self, slot: _Slot[T], ok: bool) -> None:
        if ok and slot.healthy is not True:
            slot.healthy_since = self._clock.monotonic()
            self._unavailable_since = None
        elif not ok:
            slot.healthy_since = None
        slot.healthy = ok

    def _on_health_change(self, index: int, healthy: bool) -> None:
        """The monitor saw target ``index``'s health flip; the result is already recorded on
        the slot (unless it was dropped as stale: then the flip is ignored)."""
        slots = self._slots
        if not 1 <= index <= len(slots):
            return
        slot = slots[index - 1]
        if (slot.healthy is not False) != healthy:
            return  # a stale result (a manual switch happened while it was computed)
        _log.info(
            "%s: target %d (%s) is %s",
            self.name,
            index,
            slot.name,
            "healthy" if healthy else "unhealthy",
        )
        if not healthy and slot is self._active:
            try:
                self._failover(slot, SwitchReason.HEALTH_CHECK, {id(slot)})
            except Exception as exc:
                _log.warning(
                    "%s: target %d is unhealthy and no other is eligible: %s", self.name, index, exc
                )

    def run_health_checks(self) -> None:
        """Run one health-check round now (and the failback check), on this thread."""
        if self._monitor is not None:
            self._monitor.run_once()
        else:
            self._maybe_failback()

    def _maybe_failback(self) -> None:
        interval = self._auto_failback_interval
        if interval is None:
            return
        now = self._clock.monotonic()
        if now - self._last_failback_check < interval:
            return
        self._last_failback_check = now
        view = self._breaker_view()
        with self._lock:
            active = self._active
            target = self._failback_target_locked(active, now, view)
        if target is None:
            return
        # Made usable before it is active (no lock held: the breaker's listeners may use the
        # provider), then switched to if nothing changed meanwhile.
        self._prepare_for_switch_to(target)
        self._close_breaker(target)
        with self._lock:
            if self._active is active and target.healthy is True and self._index_of(target):
                self._switch_locked(target, SwitchReason.FAILBACK)
        self._deliver_events()

    def _failback_target_locked(
        self, active: _Slot[T], now: float, view: _BreakerView | None = None
    ) -> _Slot[T] | None:
        """The best-ranked target ahead of ``active`` healthy for the grace period, if any."""
        for slot in self._ranked(self._slots):
            if slot is active:
                return None
            seen = view.get(id(slot)) if view is not None else None
            state = seen[1] if seen is not None else slot.breaker.state
            if (
                slot.healthy is True
                and slot.healthy_since is not None
                and now - slot.healthy_since >= self._grace
                and state is not State.FORCED_OPEN
            ):
                return slot
        return None

    # ------------------------------------------------------------------------- execution

    def execute(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run ``fn(active_target, *args, **kwargs)`` with retry, breaker and failover."""
        return self.execute_with(fn, args, kwargs)

    def execute_with(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        may_replay: Callable[[BaseException, tuple[Any, ...]], bool] = _always,
    ) -> R:
        """Like :meth:`execute`; ``may_replay(exc, args)`` says whether a failed call may run
        again (on the same target or another); an ambiguous failure should answer False."""
        slot = self._active
        breaker = slot.breaker
        if slot.healthy is not False and breaker.try_acquire_permission():
            now = self._clock.monotonic
            start = now()
            try:
                result = fn(slot.target, *args, **(kwargs or {}))
            except BaseException as exc:
                breaker.on_error(now() - start, exc)
                return self._recover(fn, args, kwargs, may_replay, slot, exc)
            breaker.on_result(now() - start, result)
            return result
        return self._recover(fn, args, kwargs, may_replay, slot, None)

    async def execute_async(self, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any) -> R:
        """The asyncio twin of :meth:`execute`: ``await fn(active_target, ...)``."""
        return await self.execute_with_async(fn, args, kwargs)

    async def execute_with_async(
        self,
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        may_replay: Callable[[BaseException, tuple[Any, ...]], bool] = _always,
    ) -> R:
        slot = self._active
        breaker = slot.breaker
        if slot.healthy is not False and breaker.try_acquire_permission():
            now = self._clock.monotonic
            start = now()
            try:
                result = await fn(slot.target, *args, **(kwargs or {}))
            except BaseException as exc:
                breaker.on_error(now() - start, exc)
                return await self._recover_async(fn, args, kwargs, may_replay, slot, exc)
            breaker.on_result(now() - start, result)
            return result
        return await self._recover_async(fn, args, kwargs, may_replay, slot, None)

    # The slow path. ``_Attempt`` carries the state of one call; ``_next_step`` decides.

    def _recover(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        may_replay: Callable[[BaseException, tuple[Any, ...]], bool],
        slot: _Slot[T],
        exc: BaseException | None,
    ) -> R:
        state = _Attempt(slot, exc)
        while True:
            step = self._next_step(state, may_replay, args)
            if step.kind is _Step.PROBE:
                ok = self._run_probe(state.slot, state.exc)
                self._after_probe(state, ok)
                continue
            if step.kind is _Step.WAIT:
                self._clock.sleep(step.wait)
            elif step.kind is _Step.RAISE:
                raise step.error
            slot = state.slot
            breaker = slot.breaker
            if not breaker.try_acquire_permission():
                state.rejected()
                continue
            now = self._clock.monotonic
            start = now()
            try:
                result = fn(slot.target, *args, **(kwargs or {}))
            except BaseException as e:
                breaker.on_error(now() - start, e)
                state.failed(e)
                continue
            breaker.on_result(now() - start, result)
            self._on_recovered(state)
            return result

    async def _recover_async(
        self,
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        may_replay: Callable[[BaseException, tuple[Any, ...]], bool],
        slot: _Slot[T],
        exc: BaseException | None,
    ) -> R:
        state = _Attempt(slot, exc)
        while True:
            step = self._next_step(state, may_replay, args)
            if step.kind is _Step.PROBE:
                ok = await self._run_probe_async(state.slot, state.exc)
                self._after_probe(state, ok)
                continue
            if step.kind is _Step.WAIT:
                await self._clock.sleep_async(step.wait)
            elif step.kind is _Step.RAISE:
                raise step.error
            slot = state.slot
            breaker = slot.breaker
            if not breaker.try_acquire_permission():
                state.rejected()
                continue
            now = self._clock.monotonic
            start = now()
            try:
                result = await fn(slot.target, *args, **(kwargs or {}))
            except BaseException as e:
                breaker.on_error(now() - start, e)
                state.failed(e)
                continue
            breaker.on_result(now() - start, result)
            self._on_recovered(state)
            return result

    def _run_probe(self, slot: _Slot[T], exc: BaseException | None) -> bool:
        probe = self._probe
        try:
            if probe is not None:
                return bool(probe(slot.target, exc or Exception()))
            return self._run_check(slot)
        except Exception:
            return False

    async def _run_probe_async(self, slot: _Slot[T], exc: BaseException | None) -> bool:
        """Overridden by asyncio adapters; the generic provider probes synchronously."""
        return self._run_probe(slot, exc)

    def _has_probe(self) -> bool:
        return self._probe is not None or self._health_check is not None

    def _next_step(
        self,
        st: _Attempt[T],
        may_replay: Callable[[BaseException, tuple[Any, ...]], bool],
        args: tuple[Any, ...],
    ) -> _StepT:
        """Decide what the slow path does next. No I/O here: shared by sync and async."""
        exc = st.exc
        if exc is None:
            # Not run yet on st.slot: it is unhealthy or its breaker rejected the call.
            if st.slot is not self._active and self._eligible(self._active):
                st.move_to(self._active)
                return _RUN
            reason = (
                SwitchReason.HEALTH_CHECK
                if st.slot.healthy is False
                else SwitchReason.CIRCUIT_BREAKER
            )
            return self._failover_step(st, reason)
        if st.total_failures > self._retry.config.max_attempts * len(self._slots):
            return _Raise(exc)  # a bound on one call's work, whatever other threads do
        if isinstance(exc, CallNotPermittedError):
            return self._failover_step(st, SwitchReason.CIRCUIT_BREAKER)
        retryable = self._retry.is_retryable(exc)
        fallback = isinstance(exc, self._fallback_exceptions)
        if not (retryable or fallback):
            return _Raise(exc)
        replay = may_replay(exc, args)
        if not st.probed and self._has_probe():
            return _PROBE
        if st.slot.healthy is False:
            # The probe failed: the target is down. Switch (for everybody), then replay here
            # only when that is safe.
            try:
                self._failover(st.slot, SwitchReason.HEALTH_CHECK, st.tried)
            except Exception as unavailable:
                return _Raise(unavailable if replay else exc, cause=exc)
            if not replay:
                return _Raise(exc)
            st.move_to(self._active)
            return _RUN
        if not replay:
            return _Raise(exc)
        if retryable and st.failures < self._retry.config.max_attempts:
            wait = self._retry.wait_for(st.failures)
            self._retry.record_retry(st.total_failures, wait, exception=exc)
            st.retrying()
            if self._active is not st.slot and self._eligible(self._active):
                st.move_to(self._active)  # another thread switched: no need to wait
                return _RUN
            return _Wait(wait) if wait > 0 else _RUN
        if retryable:
            self._retry.record_error(st.failures, exception=exc)
        if fallback:
            return self._failover_step(st, SwitchReason.CIRCUIT_BREAKER)
        return _Raise(exc)

    def _failover_step(self, st: _Attempt[T], reason: SwitchReason) -> _StepT:
        try:
            slot = self._failover(st.slot, reason, st.tried)
        except Exception as unavailable:
            return _Raise(unavailable, cause=st.exc)
        st.move_to(slot)
        return _RUN

    def _after_probe(self, st: _Attempt[T], ok: bool) -> None:
        st.probed = True
        if not ok:
            index = self._index_of(st.slot)
            if self._monitor is not None and index:
                self._monitor.mark(index, False, notify=False)
            self._set_health(st.slot, False)
            _log.warning(
                "%s: target %d (%s) failed a probe after %r", self.name, index, st.slot.name, st.exc
            )

    def _after_probe_failed(self, slot: _Slot[T], exc: BaseException) -> None:
        """Mark ``slot`` down after a failed probe and switch away from it if it is active."""
        self._after_probe(_Attempt(slot, exc), False)
        if slot is self._active:
            try:
                self._failover(slot, SwitchReason.HEALTH_CHECK, {id(slot)})
            except Exception as unavailable:
                _log.warning("%s: no target to fail over to: %s", self.name, unavailable)

    def _on_recovered(self, st: _Attempt[T]) -> None:
        if st.retries:
            self._retry.record_success(st.retries + 1)

    # ------------------------------------------------------------------- live reconfiguration

    def add_target(
        self, target: T, *, name: str | None = None, weight: float = 1.0, breaker: Any = None
    ) -> int:
        """Append a target; returns its 1-based index."""
        _check_weight(weight)
        with self._lock:
            index = len(self._slots) + 1
            label = name or f"target-{index}"
            b = breaker if breaker is not None else self._new_breaker(label, self._breaker_config)
            self._slots = [*self._slots, _Slot(target, b, float(weight), label)]
        return index

    def remove_target(self, index: int) -> T:
        """Remove target ``index``; the active one is switched away from first.

        Listeners receive ``SwitchEvent(old, new, MANUAL)`` (old index in the old numbering,
        new in the new one) when the active target is removed, even when the numbers are
        equal (removing active target 1 makes target 2 the new target 1), and when the active
        index shifts down because a target before it was removed.
        """
        view = self._breaker_view()
        with self._lock:
            self._check_index_range(index)
            if len(self._slots) == 1:
                raise ValueError("cannot remove the last target")
            slot = self._slots[index - 1]
            previous_index = self._index_of(self._active)
            removing_active = slot is self._active
            if removing_active:
                others = [s for s in self._slots if s is not slot]
                self._active = self._best_eligible(others, view) or self._ranked(others)[0]
                self._unavailable_since = None
            self._slots = [s for s in self._slots if s is not slot]
            if self._monitor is not None:
                self._monitor.remove(index)
            new_index = self._index_of(self._active)
            if removing_active or new_index != previous_index:
                self._publish_locked(SwitchEvent(previous_index, new_index, SwitchReason.MANUAL))
        self._deliver_events()
        return slot.target

    def set_weight(self, index: int, weight: float) -> None:
        """Change target ``index``'s weight; affects later choices only."""
        _check_weight(weight)
        with self._lock:
            self._check_index_range(index)
            self._slots[index - 1].weight = float(weight)

    # ------------------------------------------------------------------------------ close

    def close(self) -> None:
        """Stop the background health checks. Idempotent."""
        self._closed = True
        if self._monitor is not None:
            self._monitor.close()

    def __enter__(self) -> OrderedProvider[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"OrderedProvider(name={self.name!r}, targets={len(self._slots)}, "
            f"active_index={self.active_index})"
        )


def _check_weight(weight: float) -> None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise ValueError(f"weight must be a number >= 0, got {weight!r}")


def _admits(breaker: Any) -> bool:
    """Whether ``breaker`` would admit a call now, without taking a permit or counting."""
    check = getattr(breaker, "is_call_permitted", None)
    if check is not None:
        return bool(check())
    return breaker.state in _ADMITTING_STATES


# --- the slow path's small state machine ---------------------------------------------------


class _Step(enum.Enum):
    RUN = "run"
    WAIT = "wait"
    PROBE = "probe"
    RAISE = "raise"


class _StepT:
    __slots__ = ("error", "kind", "wait")

    def __init__(self, kind: _Step, wait: float = 0.0, error: BaseException | None = None) -> None:
        self.kind = kind
        self.wait = wait
        self.error: BaseException = error if error is not None else RuntimeError("no error")


_RUN = _StepT(_Step.RUN)
_PROBE = _StepT(_Step.PROBE)


def _Wait(seconds: float) -> _StepT:
    return _StepT(_Step.WAIT, wait=seconds)


def _Raise(error: BaseException, cause: BaseException | None = None) -> _StepT:
    if cause is not None and error is not cause and error.__cause__ is None:
        error.__cause__ = cause
    return _StepT(_Step.RAISE, error=error)


class _Attempt(Generic[T]):
    """Where one call stands: the slot it runs on, its last failure, what was tried."""

    __slots__ = ("exc", "failures", "probed", "retries", "slot", "total_failures", "tried")

    def __init__(self, slot: _Slot[T], exc: BaseException | None) -> None:
        self.slot = slot
        self.exc = exc
        self.tried: set[int] = {id(slot)}
        self.failures = 0 if exc is None else 1  # failed attempts on the current slot
        self.total_failures = self.failures
        self.retries = 0
        self.probed = False

    def failed(self, exc: BaseException) -> None:
        self.exc = exc
        self.failures += 1
        self.total_failures += 1

    def rejected(self) -> None:
        self.exc = None

    def retrying(self) -> None:
        self.retries += 1

    def move_to(self, slot: _Slot[T]) -> None:
        if slot is not self.slot:
            self.slot = slot
            self.failures = 0
            self.probed = False
        self.exc = None
        self.tried.add(id(slot))
