"""The circuit breaker: a state machine over a sliding window of call outcomes.

Semantics are resilience4j's (see DESIGN.md, "Contract: faulttol"). CLOSED admits every call
and opens when the failure rate or the slow-call rate of the window reaches its threshold;
OPEN rejects calls until its wait has passed, then HALF_OPEN admits a few trial calls and
decides between CLOSED and OPEN from their outcomes. DISABLED admits everything and records
nothing, FORCED_OPEN rejects everything, METRICS_ONLY records and reports but never trips.
As in resilience4j, DISABLED and FORCED_OPEN publish no success/error events (FORCED_OPEN
publishes a not-permitted event per rejected call), and a transition to the state the
breaker is already in publishes nothing.

Performance: the lock guards bookkeeping only, never the protected call. In CLOSED (and the
other admitting states) permission is a lock-free read of one attribute, and a fast success
is queued in the window without the lock when it cannot change any decision (see
:meth:`CountWindow.try_queue_success`); everything else is recorded under one short lock
acquisition against running totals. Events are built only when somebody listens, and are
published after the lock is released, so a listener may call back into the breaker.

Besides the window (``metrics``), the breaker keeps cumulative call counters since its
creation (``counters``): recorded outcomes are counted under the lock they already take, and
queued successes are counted by the window when it folds them, so counting adds no lock and
no event to the lock-free success path, and nobody has to subscribe to per-call events to
count calls (which would turn that path off).

Time-driven transitions (an elapsed open wait with automatic transition enabled, an elapsed
half-open time limit) are applied whenever the breaker is read or called, under any clock;
on the real clock a daemon timer also applies them when nobody is looking.

How the breaker behaves in each state is one small class per state (``_Closed``,
``_Open``, ``_HalfOpen``, ``_Disabled``, ``_ForcedOpen``, ``_MetricsOnly``: resilience4j's
model), entered by ``_enter`` and consulted under the lock when a call needs a permit or an
outcome is recorded; the lock-free success path does not consult them.

This module holds the breaker (its state, permissions, transitions and timer) and its error.
Its guarded calls (``call``, ``call_async`` and the decorator's wrappers: ``_breaker_calls``),
how it records an outcome (``_breaker_recording``), its states (``_breaker_states``), its
configuration (``CircuitBreakerConfig``, ``SlidingWindowType``, the ``DEFAULT_*`` constants:
``_breaker_config``), its metrics and counters, and the ``State`` enum live in modules of their
own; the public names are re-exported here, so ``from faulttol.breaker import
CircuitBreakerConfig`` keeps working.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

from . import _breaker_config
from ._breaker_calls import GuardedCalls
from ._breaker_config import *  # noqa: F403 - the configuration's public names, re-exported
from ._breaker_config import CircuitBreakerConfig, SlidingWindowType
from ._breaker_metrics import CircuitBreakerCounters, CircuitBreakerMetrics
from ._breaker_recording import OutcomeRecording
from ._breaker_states import STATES as _STATES
from ._breaker_states import BreakerState as _BreakerState
from ._breaker_states import Events as _Events
from ._breaker_states import Window as _Window
from ._clock import Clock, SystemClock, resolve_clock
from ._errors import ConfigTypeError as ConfigTypeError  # importable from here before the split
from ._state import State
from .events import (
    CircuitBreakerEvent,
    CircuitBreakerEvents,
    CircuitBreakerOnCallNotPermittedEvent,
    CircuitBreakerOnResetEvent,
    CircuitBreakerOnStateTransitionEvent,
    CircuitBreakerOnSuccessEvent,
)
from .events import (  # importable from here before the split
    CircuitBreakerOnErrorEvent as CircuitBreakerOnErrorEvent,
)
from .events import (
    CircuitBreakerOnFailureRateExceededEvent as CircuitBreakerOnFailureRateExceededEvent,
)
from .events import (
    CircuitBreakerOnIgnoredErrorEvent as CircuitBreakerOnIgnoredErrorEvent,
)
from .events import (
    CircuitBreakerOnSlowCallRateExceededEvent as CircuitBreakerOnSlowCallRateExceededEvent,
)
from .events import Event as Event  # importable from here before the split
from .window import CountWindow, Snapshot, TimeWindow
from .window import rate as rate  # importable from here before the split

__all__ = [
    "CallNotPermittedError",
    "CircuitBreaker",
    "CircuitBreakerCounters",
    "CircuitBreakerMetrics",
    "State",
]
__all__ += _breaker_config.__all__  # the configuration's names, re-exported

_log = logging.getLogger("faulttol.breaker")


_CLOSED = State.CLOSED
_OPEN = State.OPEN
_HALF_OPEN = State.HALF_OPEN
_DISABLED = State.DISABLED
_FORCED_OPEN = State.FORCED_OPEN
_METRICS_ONLY = State.METRICS_ONLY

# --- errors ----------------------------------------------------------------------------


class CallNotPermittedError(Exception):
    """Raised instead of running a call that the breaker does not admit."""

    def __init__(self, breaker_name: str, state: State | None = None) -> None:
        self.breaker_name = breaker_name
        self.state = state
        shown = f"is {state.value} and " if state is not None else ""
        super().__init__(f"CircuitBreaker {breaker_name!r} {shown}does not permit further calls")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.breaker_name, self.state))


# Outcome of classifying an exception.


# --- the breaker -----------------------------------------------------------------------


class CircuitBreaker(GuardedCalls, OutcomeRecording):
    """A resilience4j-style circuit breaker; also a decorator for sync and async functions.

    >>> breaker = CircuitBreaker("db", CircuitBreakerConfig(sliding_window_size=10))
    >>> @breaker
    ... def query() -> int: ...
    """

    def __init__(
        self, name: str, config: CircuitBreakerConfig | None = None, *, clock: Clock | None = None
    ) -> None:
        self.name = name
        self.config = config if config is not None else CircuitBreakerConfig()
        self.clock: Clock = resolve_clock(clock)
        self.events: CircuitBreakerEvents = CircuitBreakerEvents(self._listeners_changed)
        self._metrics = CircuitBreakerMetrics(self)
        self._monotonic = self.clock.monotonic
        self._lock = threading.Lock()
        cfg = self.config
        self._record_types = cfg.record_exceptions
        self._ignore_types = cfg.ignore_exceptions
        self._record_predicate = cfg.record_exception
        self._ignore_predicate = cfg.ignore_exception
        self._record_result = cfg.record_result
        self._failure_threshold = float(cfg.failure_rate_threshold)
        self._slow_threshold = float(cfg.slow_call_rate_threshold)
        self._slow_duration = float(cfg.slow_call_duration_threshold)  # the windows' rule
        self._main_window: _Window
        if cfg.sliding_window_type is SlidingWindowType.COUNT_BASED:
            self._main_window = CountWindow(
                cfg.sliding_window_size, cfg.slow_call_duration_threshold
            )
            self._main_minimum = min(cfg.minimum_number_of_calls, cfg.sliding_window_size)
        else:
            self._main_window = TimeWindow(
                cfg.sliding_window_size, cfg.slow_call_duration_threshold
            )
            self._main_minimum = cfg.minimum_number_of_calls
        # The hot path calls this bound method of the one main window (reset in place).
        self._queue_success = self._main_window.try_queue_success
        # Bookkeeping, guarded by _lock. _state, _behavior and _admits_all are also read
        # without it (single attribute reads: a racing call sees the old or the new value).
        self._behavior: _BreakerState = _STATES[_CLOSED]  # how the breaker acts in _state
        self._state = _CLOSED
        self._admits_all = True  # CLOSED, DISABLED, METRICS_ONLY: no permission bookkeeping
        self._window: _Window = self._main_window
        self._minimum_calls = self._main_minimum
        self._not_permitted = 0
        self._open_attempts = 0  # OPEN entries since last CLOSED
        self._open_until = 0.0
        self._half_open_permits = 0
        self._half_open_deadline = math.inf
        self._reported_failure_rate = False  # METRICS_ONLY: exceeded-event already published
        self._reported_slow_rate = False
        self._timer: threading.Timer | None = None
        self._epoch = 0  # incremented on every transition; stale timers compare it
        # Cumulative counters (guarded by _lock, never reset). Queued successes are not in
        # _count_successful: the main window counts them as it folds them (folded_successes).
        self._count_successful = 0
        self._count_failed = 0
        self._count_ignored = 0
        self._count_not_permitted = 0
        self._count_slow_successful = 0
        self._count_slow_failed = 0

    # --- public state and metrics ------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state, after any transition that time has made due.

        An elapsed open wait with automatic transition enabled gives HALF_OPEN, an elapsed
        half-open time limit gives OPEN; this holds under any clock (also a fake one).
        """
        behavior = self._behavior
        if behavior.timed:
            now = self._monotonic()
            if behavior.time_due(self, now) is not None:
                out: _Events = []
                with self._lock:
                    self._apply_time(now, out)
                    behavior = self._behavior
                self._publish(out)
        return behavior.state

    @property
    def metrics(self) -> CircuitBreakerMetrics:
        """The live metrics of the current window."""
        return self._metrics

    @property
    def counters(self) -> CircuitBreakerCounters:
        """The cumulative call counts since creation (see :class:`CircuitBreakerCounters`).

        Includes the successes queued by the lock-free path: they are folded in first.
        """
        with self._lock:
            main = self._main_window
            main.fold_queued()
            return CircuitBreakerCounters(
                self._count_successful + main.folded_successes,
                self._count_failed,
                self._count_ignored,
                self._count_not_permitted,
                self._count_slow_successful,
                self._count_slow_failed,
            )

    # --- manual transitions ------------------------------------------------------------
    # Each enters its state afresh even when the breaker is already in it (fresh metrics,
    # a new open wait, new trial permits), but publishes a state-transition event only when
    # the state changes.

    def transition_to_closed_state(self) -> None:
        """Close the breaker with fresh metrics (also when it is already CLOSED)."""
        self._transition_from_outside(_CLOSED)

    def transition_to_open_state(self) -> None:
        """Open the breaker (keeping the current metrics) for the open wait."""
        self._transition_from_outside(_OPEN)

    def transition_to_half_open_state(self) -> None:
        """Start admitting the permitted trial calls."""
        self._transition_from_outside(_HALF_OPEN)

    def transition_to_forced_open_state(self) -> None:
        """Reject every call (each publishes a not-permitted event and is counted) until
        another manual transition."""
        self._transition_from_outside(_FORCED_OPEN)

    def transition_to_disabled_state(self) -> None:
        """Admit every call, record nothing and publish no success/error events until
        another manual transition."""
        self._transition_from_outside(_DISABLED)

    def transition_to_metrics_only_state(self) -> None:
        """Admit every call, record and report, but never trip."""
        self._transition_from_outside(_METRICS_ONLY)

    def reset(self) -> None:
        """Back to CLOSED with fresh metrics; publishes a reset event."""
        out: _Events = []
        now = self._monotonic()
        with self._lock:
            if self._state is _CLOSED:
                self._enter(_CLOSED, now)
            else:
                self._transition(_CLOSED, now, out)
            self._emit(out, CircuitBreakerOnResetEvent, now)
        self._publish(out)

    # --- low-level API -----------------------------------------------------------------

    def try_acquire_permission(self) -> bool:
        """Whether a call may run now; in HALF_OPEN this takes one of the trial permits.

        When refused, the not-permitted call has been counted and its event published.
        """
        if self._admits_all:
            return True
        out: _Events = []
        now = self._monotonic()
        with self._lock:
            permitted = self._acquire(now, out)
        if out:
            self._publish(out)
        return permitted

    def is_call_permitted(self) -> bool:
        """Whether a call would be admitted now, without taking a permit or counting.

        For callers that choose between breakers (failover): OPEN whose wait has passed
        counts as admitting (the next call would be a half-open trial call).
        """
        if self._admits_all:
            return True
        out: _Events = []
        now = self._monotonic()
        with self._lock:
            self._apply_time(now, out)
            permitted = self._behavior.would_admit(self, now)
        if out:
            self._publish(out)
        return permitted

    def acquire_permission(self) -> None:
        """Like :meth:`try_acquire_permission`, but raise :class:`CallNotPermittedError`."""
        if not self._admits_all and not self.try_acquire_permission():
            raise CallNotPermittedError(self.name, self._state)

    def release_permission(self) -> None:
        """Give back a permit taken for a call that did not run (e.g. cancelled)."""
        with self._lock:
            self._release()

    def on_success(self, duration: float) -> None:
        """Record a permitted call that returned, ``duration`` seconds long."""
        now = self._monotonic()
        if not self._queue_success(duration, now):
            self._record(duration, now, False, None, None)

    def on_error(self, duration: float, exc: BaseException) -> None:
        """Classify ``exc`` and record the call as a failure, a success, or not at all.

        Ignored exceptions (``ignore_exceptions`` / ``ignore_exception``) are not counted and
        give back a half-open permit; recorded ones (``record_exceptions`` /
        ``record_exception``) are failures; any other :class:`Exception` is a success. A
        ``BaseException`` that is neither (``KeyboardInterrupt``, a cancellation) means the
        call did not complete: its permit is released and nothing is counted.
        """
        self._on_error_at(duration, exc, self._monotonic())

    def on_result(self, duration: float, result: object) -> None:
        """Record a call that returned ``result``: a failure when ``record_result`` says so."""
        now = self._monotonic()
        if not self._queue_success(duration, now):
            self._on_result_at(duration, result, now)

    def _refresh_fast_path(self) -> None:
        """Decide whether a fast success may skip the lock (held by the caller).

        Only in CLOSED, with no result predicate and no success listener, and once the
        window holds the minimum number of calls: then a success cannot trip the breaker.
        """
        self._main_window.allow_queue(
            self._state is _CLOSED
            and self._record_result is None
            and not self.events.wants(CircuitBreakerOnSuccessEvent)
            and self._main_window.total_calls >= self._main_minimum
        )

    def _listeners_changed(self) -> None:
        with self._lock:
            self._refresh_fast_path()

    # --- permissions -------------------------------------------------------------------

    def _acquire(self, now: float, out: _Events) -> bool:
        self._apply_time(now, out)
        if self._behavior.acquire(self, now, out):
            return True
        self._not_permitted += 1
        self._count_not_permitted += 1
        if self.events.wants(CircuitBreakerOnCallNotPermittedEvent):
            out.append(CircuitBreakerOnCallNotPermittedEvent(self.name, created_at=now))
        return False

    def _release(self) -> None:
        self._behavior.release(self)

    # --- transitions -------------------------------------------------------------------

    def _apply_time(self, now: float, out: _Events) -> None:
        """Make the transition that time has made due, if any (lock held)."""
        due = self._behavior.time_due(self, now)
        if due is not None:
            self._transition(due, now, out)

    def _transition_from_outside(self, to: State) -> None:
        out: _Events = []
        now = self._monotonic()
        with self._lock:
            self._transition(to, now, out)
        self._publish(out)

    def _transition(self, to: State, now: float, out: _Events) -> None:
        """Enter state ``to`` and announce it (lock held).

        Entering the state the breaker is already in sets the state up afresh (fresh metrics
        for CLOSED, a new wait for OPEN...) but publishes nothing: resilience4j filters such
        "internal" transitions out.
        """
        previous = self._state
        self._enter(to, now)
        if previous is not to and self.events.wants(CircuitBreakerOnStateTransitionEvent):
            out.append(
                CircuitBreakerOnStateTransitionEvent(
                    self.name, created_at=now, from_state=previous, to_state=to
                )
            )

    def _enter(self, to: State, now: float) -> None:
        """Set up state ``to``: metrics, permits, deadlines, timers (lock held)."""
        self._epoch += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        behavior = _STATES[to]
        self._behavior = behavior
        self._state = to
        self._admits_all = behavior.admits_all
        self._half_open_deadline = math.inf
        behavior.enter(self, now)
        self._refresh_fast_path()

    def _fresh_metrics(self, window: _Window) -> None:
        window.reset()
        self._window = window
        self._not_permitted = 0

    def _open_wait(self, attempt: int) -> float:
        fn = self.config.wait_interval_function_in_open_state
        if fn is None:
            return float(self.config.wait_duration_in_open_state)
        try:
            wait = float(fn(attempt))
        except Exception:
            _log.exception("wait_interval_function_in_open_state failed for %r", self.name)
            return float(self.config.wait_duration_in_open_state)
        if not 0 <= wait < math.inf:
            _log.error("wait_interval_function_in_open_state returned %r for %r", wait, self.name)
            return float(self.config.wait_duration_in_open_state)
        return wait

    def _start_timer(self, delay: float) -> None:
        """Schedule the time-driven transition on a daemon thread (lock held).

        Only on the real clock: other clocks' time is not real time, so a timer would fire
        at a meaningless moment (and make tests on a fake clock nondeterministic). Reads and
        calls apply due transitions under any clock.
        """
        if not isinstance(self.clock, SystemClock):
            return
        timer = threading.Timer(delay, self._on_timer, args=(self._epoch,))
        timer.daemon = True
        timer.name = f"faulttol-breaker-{self.name}"
        self._timer = timer
        timer.start()

    def _on_timer(self, epoch: int) -> None:
        out: _Events = []
        now = self._monotonic()
        with self._lock:
            if epoch != self._epoch:
                return  # a transition happened since this timer was started
            self._timer = None
            behavior = self._behavior
            if behavior.time_due(self, now) is not None:
                self._apply_time(now, out)
            else:  # woke a hair early: wait for the rest
                self._start_timer(max(behavior.deadline(self) - now, 0.001))
        self._publish(out)

    # --- events and reads --------------------------------------------------------------

    def _emit(
        self, out: _Events, kind: type[CircuitBreakerEvent], now: float
    ) -> None:
        if self.events.wants(kind):
            out.append(kind(self.name, created_at=now))

    def _publish(self, out: _Events) -> None:
        publish = self.events.publish
        for event in out:
            publish(event)

    def _read_metrics(self) -> tuple[Snapshot, int, int]:
        out: _Events = []
        now = self._monotonic()
        with self._lock:
            self._apply_time(now, out)
            result = (self._window.snapshot(now), self._minimum_calls, self._not_permitted)
            self._refresh_fast_path()  # a time window may have rolled below its minimum
        if out:
            self._publish(out)
        return result

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self.state.value})"
