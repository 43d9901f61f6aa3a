"""The circuit breaker's states, one small class each (resilience4j's model).

Split out of :mod:`faulttol.breaker` so that the breaker module reads as the breaker: each
class here says how the breaker behaves in one :class:`~faulttol.State` (admit, record,
time out); the data (window, permits, deadlines) stays on the
:class:`~faulttol.breaker.CircuitBreaker`. Private: reach it through the breaker.
"""

from __future__ import annotations

import math
from typing import ClassVar, Protocol, TypeAlias

from ._breaker_config import CircuitBreakerConfig
from ._state import State
from .events import CircuitBreakerEvent
from .window import CountWindow, TimeWindow

__all__ = ["STATES", "BreakerState", "Events", "StateHost", "Window"]

Window: TypeAlias = CountWindow | TimeWindow
"""The window a state reads: the main one, or HALF_OPEN's own count window."""
Events: TypeAlias = list[CircuitBreakerEvent]
"""Events collected under the breaker's lock, published after it is released."""


class StateHost(Protocol):
    """What the states read and change on the breaker (the breaker is the one host): a
    protocol, so that this module does not import :mod:`faulttol.breaker` back."""

    _behavior: BreakerState
    _main_window: Window
    _main_minimum: int
    _minimum_calls: int
    _open_attempts: int
    _open_until: float
    _half_open_permits: int
    _half_open_deadline: float
    _reported_failure_rate: bool
    _reported_slow_rate: bool

    @property
    def config(self) -> CircuitBreakerConfig: ...

    def _exceeded(self, window: Window, min_failures: int) -> tuple[bool, bool]: ...

    def _emit_exceeded(
        self, out: Events, window: Window, failure: bool, slow: bool, now: float
    ) -> None: ...

    def _report_once(self, window: Window, now: float, out: Events) -> None: ...

    def _refresh_fast_path(self) -> None: ...

    def _transition(self, to: State, now: float, out: Events) -> None: ...

    def _fresh_metrics(self, window: Window) -> None: ...

    def _open_wait(self, attempt: int) -> float: ...

    def _start_timer(self, delay: float) -> None: ...


# resilience4j's model: one small class per state says how the breaker behaves in it. Each
# is a stateless singleton; the data (window, permits, deadlines) stays on the breaker, and
# every method is called with the breaker's lock held (``enter`` from ``_enter``, the others
# from the recording and permission paths). The lock-free success path never reaches them:
# it reads ``_admits_all`` and queues the success in the window.


class BreakerState:
    """How the breaker behaves in one :class:`State` (the base: admits nothing, records
    outcomes, changes nothing on its own)."""

    __slots__ = ()

    state: ClassVar[State]
    admits_all: ClassVar[bool] = False
    """Every call is admitted without permission bookkeeping (the lock-free path)."""
    records: ClassVar[bool] = True
    """Outcomes go to the window and publish success/error events."""
    timed: ClassVar[bool] = False
    """Time alone may move the breaker out of this state."""

    def enter(self, breaker: StateHost, now: float) -> None:
        """Set this state up: metrics, permits, deadlines, timers."""

    def acquire(self, breaker: StateHost, now: float, out: Events) -> bool:
        """Admit one call (taking a permit where there are permits)?"""
        return self.admits_all

    def would_admit(self, breaker: StateHost, now: float) -> bool:
        """Would a call be admitted now (no permit taken, nothing counted)?"""
        return self.admits_all

    def release(self, breaker: StateHost) -> None:
        """Give back the permit of a call that did not complete."""

    def on_recorded(self, breaker: StateHost, window: Window, now: float, out: Events) -> None:
        """Act on the window right after an outcome was recorded in it."""

    def time_due(self, breaker: StateHost, now: float) -> State | None:
        """The state that elapsed time has made due, if any."""
        return None

    def deadline(self, breaker: StateHost) -> float:
        """When :meth:`time_due` will answer (for the timer)."""
        return math.inf


class _FreshMainWindow(BreakerState):
    """States that start with fresh metrics in the main window."""

    __slots__ = ()

    def enter(self, breaker: StateHost, now: float) -> None:
        breaker._main_window.reset()
        breaker._fresh_metrics(breaker._main_window)
        breaker._minimum_calls = breaker._main_minimum
        breaker._reported_failure_rate = breaker._reported_slow_rate = False


class _Closed(_FreshMainWindow):
    """Admits every call; opens when a rate of the window reaches its threshold."""

    __slots__ = ()
    state = State.CLOSED
    admits_all = True

    def enter(self, breaker: StateHost, now: float) -> None:
        breaker._open_attempts = 0
        super().enter(breaker, now)

    def on_recorded(self, breaker: StateHost, window: Window, now: float, out: Events) -> None:
        failure, slow = breaker._exceeded(window, breaker.config.minimum_number_of_failures)
        if failure or slow:
            breaker._emit_exceeded(out, window, failure, slow, now)
            breaker._transition(State.OPEN, now, out)
        else:
            breaker._refresh_fast_path()


class _Open(BreakerState):
    """Rejects calls until its wait has passed; the metrics carry over (from CLOSED, or
    from HALF_OPEN's trial calls). The next call after the wait, or the timer when the
    automatic transition is enabled, moves it to HALF_OPEN."""

    __slots__ = ()
    state = State.OPEN
    timed = True

    def enter(self, breaker: StateHost, now: float) -> None:
        breaker._open_attempts += 1
        wait = breaker._open_wait(breaker._open_attempts)
        breaker._open_until = now + wait
        if breaker.config.automatic_transition_from_open_to_half_open_enabled:
            breaker._start_timer(wait)

    def acquire(self, breaker: StateHost, now: float, out: Events) -> bool:
        if now < breaker._open_until:
            return False
        breaker._transition(State.HALF_OPEN, now, out)
        return breaker._behavior.acquire(breaker, now, out)

    def would_admit(self, breaker: StateHost, now: float) -> bool:
        return now >= breaker._open_until  # the next call would be a trial call

    def time_due(self, breaker: StateHost, now: float) -> State | None:
        if (
            breaker.config.automatic_transition_from_open_to_half_open_enabled
            and now >= breaker._open_until
        ):
            return State.HALF_OPEN
        return None

    def deadline(self, breaker: StateHost) -> float:
        return breaker._open_until


class _HalfOpen(BreakerState):
    """Admits the permitted trial calls, then decides CLOSED or OPEN from their outcomes
    (rates only: ``minimum_number_of_failures`` does not apply); goes back to OPEN when it
    lasts longer than ``max_wait_duration_in_half_open_state`` (if set)."""

    __slots__ = ()
    state = State.HALF_OPEN
    timed = True

    def enter(self, breaker: StateHost, now: float) -> None:
        cfg = breaker.config
        permitted = cfg.permitted_number_of_calls_in_half_open_state
        breaker._fresh_metrics(CountWindow(permitted, cfg.slow_call_duration_threshold))
        breaker._minimum_calls = permitted
        breaker._half_open_permits = permitted
        if cfg.max_wait_duration_in_half_open_state > 0:
            breaker._half_open_deadline = now + cfg.max_wait_duration_in_half_open_state
            breaker._start_timer(cfg.max_wait_duration_in_half_open_state)

    def acquire(self, breaker: StateHost, now: float, out: Events) -> bool:
        if breaker._half_open_permits > 0:
            breaker._half_open_permits -= 1
            return True
        return False

    def would_admit(self, breaker: StateHost, now: float) -> bool:
        return breaker._half_open_permits > 0

    def release(self, breaker: StateHost) -> None:
        breaker._half_open_permits = min(
            breaker._half_open_permits + 1,
            breaker.config.permitted_number_of_calls_in_half_open_state,
        )

    def on_recorded(self, breaker: StateHost, window: Window, now: float, out: Events) -> None:
        if window.total_calls >= breaker._minimum_calls:
            failure, slow = breaker._exceeded(window, 0)
            if failure or slow:
                breaker._emit_exceeded(out, window, failure, slow, now)
                breaker._transition(State.OPEN, now, out)
            else:
                breaker._transition(State.CLOSED, now, out)

    def time_due(self, breaker: StateHost, now: float) -> State | None:
        return State.OPEN if now >= breaker._half_open_deadline else None

    def deadline(self, breaker: StateHost) -> float:
        return breaker._half_open_deadline


class _Disabled(_FreshMainWindow):
    """Admits every call, records nothing, publishes no success/error events."""

    __slots__ = ()
    state = State.DISABLED
    admits_all = True
    records = False


class _ForcedOpen(_FreshMainWindow):
    """Rejects every call (each counted, with a not-permitted event) until another manual
    transition; records nothing."""

    __slots__ = ()
    state = State.FORCED_OPEN
    records = False


class _MetricsOnly(_FreshMainWindow):
    """Admits every call, records and reports each exceeded rate once, never trips."""

    __slots__ = ()
    state = State.METRICS_ONLY
    admits_all = True

    def on_recorded(self, breaker: StateHost, window: Window, now: float, out: Events) -> None:
        breaker._report_once(window, now, out)


STATES: dict[State, BreakerState] = {
    behavior.state: behavior
    for behavior in (_Closed(), _Open(), _HalfOpen(), _Disabled(), _ForcedOpen(), _MetricsOnly())
}
