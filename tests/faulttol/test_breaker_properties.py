"""Property tests: random call sequences through a breaker agree with a naive model.

The reference model keeps every recorded call and recomputes the window, the rates, the
counts and the state from scratch at each step, with none of the breaker's machinery
(running totals, ring buffers, lock-free queued successes, buckets). Hypothesis drives both
with the same random sequence of calls (successes, failures, slow calls, ignored and
unrecorded errors), clock advances, reads and manual transitions, through both window types.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faulttol.breaker import (
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    SlidingWindowType,
    State,
)
from faulttol.events import (
    CircuitBreakerEvent,
    CircuitBreakerOnFailureRateExceededEvent,
    CircuitBreakerOnSlowCallRateExceededEvent,
    CircuitBreakerOnStateTransitionEvent,
)
from faulttol.testing import FakeClock

SLOW_THRESHOLD = 1.0
ADMITTING = (State.CLOSED, State.DISABLED, State.METRICS_ONLY)


class Failure(OSError):
    """Recorded (record_exceptions=(OSError,))."""


class Ignored(KeyError):
    """Ignored (ignore_exceptions=(KeyError,))."""


class Unrecorded(ValueError):
    """Neither recorded nor ignored: counts as a success."""


@dataclass(frozen=True)
class Call:
    end: float
    duration: float
    failed: bool

    @property
    def slow(self) -> bool:
        return self.duration > SLOW_THRESHOLD


@dataclass
class Model:
    """resilience4j's rules, written as plainly as possible."""

    config: CircuitBreakerConfig
    state: State = State.CLOSED
    calls: list[Call] = field(default_factory=list)  # since the metrics were last fresh
    half_open_metrics: bool = False
    not_permitted: int = 0
    attempts: int = 0
    open_until: float = 0.0
    permits: int = 0
    half_open_deadline: float = math.inf
    reported: tuple[bool, bool] = (False, False)
    events: list[tuple[str, Any]] = field(default_factory=list)

    # -- window -------------------------------------------------------------------------

    def window(self, now: float) -> list[Call]:
        c = self.config
        if self.half_open_metrics:
            return self.calls[-c.permitted_number_of_calls_in_half_open_state :]
        if c.sliding_window_type is SlidingWindowType.COUNT_BASED:
            return self.calls[-c.sliding_window_size :]
        oldest_second = math.floor(now) - c.sliding_window_size + 1
        return [call for call in self.calls if math.floor(call.end) >= oldest_second]

    def minimum(self) -> int:
        c = self.config
        if self.half_open_metrics:
            return c.permitted_number_of_calls_in_half_open_state
        if c.sliding_window_type is SlidingWindowType.COUNT_BASED:
            return min(c.minimum_number_of_calls, c.sliding_window_size)
        return c.minimum_number_of_calls

    def rates(self, now: float) -> tuple[float, float]:
        w = self.window(now)
        if not w:
            return 0.0, 0.0
        failed = sum(call.failed for call in w)
        slow = sum(call.slow for call in w)
        return failed * 100.0 / len(w), slow * 100.0 / len(w)

    def exceeded(self, now: float, min_failures: int) -> tuple[bool, bool]:
        w = self.window(now)
        if len(w) < self.minimum():
            return False, False
        failure_rate, slow_rate = self.rates(now)
        failed = sum(call.failed for call in w)
        return (
            failed >= min_failures and failure_rate >= self.config.failure_rate_threshold,
            slow_rate >= self.config.slow_call_rate_threshold,
        )

    def publish_exceeded(self, now: float, failure: bool, slow: bool) -> None:
        failure_rate, slow_rate = self.rates(now)
        if failure:
            self.events.append(("failure_rate", failure_rate))
        if slow:
            self.events.append(("slow_rate", slow_rate))

    # -- transitions --------------------------------------------------------------------

    def transition(self, to: State, now: float) -> None:
        if to is not self.state:  # a transition to the current state publishes nothing
            self.events.append(("transition", (self.state, to)))
        self.enter(to, now)

    def enter(self, to: State, now: float) -> None:
        c = self.config
        self.half_open_deadline = math.inf
        if to is State.OPEN:
            self.attempts += 1
            fn = c.wait_interval_function_in_open_state
            wait = fn(self.attempts) if fn is not None else c.wait_duration_in_open_state
            self.open_until = now + wait
        elif to is State.HALF_OPEN:
            self.fresh(half_open=True)
            self.permits = c.permitted_number_of_calls_in_half_open_state
            if c.max_wait_duration_in_half_open_state > 0:
                self.half_open_deadline = now + c.max_wait_duration_in_half_open_state
        else:
            if to is State.CLOSED:
                self.attempts = 0
            self.fresh(half_open=False)
            self.reported = (False, False)
        self.state = to

    def fresh(self, *, half_open: bool) -> None:
        self.calls = []
        self.half_open_metrics = half_open
        self.not_permitted = 0

    def apply_time(self, now: float) -> None:
        auto = self.config.automatic_transition_from_open_to_half_open_enabled
        if self.state is State.OPEN and auto and now >= self.open_until:
            self.transition(State.HALF_OPEN, now)
        elif self.state is State.HALF_OPEN and now >= self.half_open_deadline:
            self.transition(State.OPEN, now)

    # -- calls --------------------------------------------------------------------------

    def acquire(self, now: float) -> bool:
        if self.state in ADMITTING:
            return True
        self.apply_time(now)
        if self.state is State.OPEN and now >= self.open_until:
            self.transition(State.HALF_OPEN, now)
        if self.state is State.HALF_OPEN and self.permits > 0:
            self.permits -= 1
            return True
        if self.state in ADMITTING:
            return True
        self.not_permitted += 1
        return False

    def release(self) -> None:
        if self.state is State.HALF_OPEN:
            limit = self.config.permitted_number_of_calls_in_half_open_state
            self.permits = min(self.permits + 1, limit)

    def record(self, end: float, duration: float, failed: bool) -> None:
        self.apply_time(end)
        if self.state in (State.DISABLED, State.FORCED_OPEN):
            return
        self.calls.append(Call(end, duration, failed))
        if self.state is State.CLOSED:
            failure, slow = self.exceeded(end, self.config.minimum_number_of_failures)
            if failure or slow:
                self.publish_exceeded(end, failure, slow)
                self.transition(State.OPEN, end)
        elif self.state is State.HALF_OPEN:
            if len(self.window(end)) >= self.minimum():
                failure, slow = self.exceeded(end, 0)
                if failure or slow:
                    self.publish_exceeded(end, failure, slow)
                    self.transition(State.OPEN, end)
                else:
                    self.transition(State.CLOSED, end)
        elif self.state is State.METRICS_ONLY:
            failure, slow = self.exceeded(end, self.config.minimum_number_of_failures)
            self.publish_exceeded(
                end, failure and not self.reported[0], slow and not self.reported[1]
            )
            self.reported = (failure, slow)

    def reset(self, now: float) -> None:
        if self.state is State.CLOSED:
            self.enter(State.CLOSED, now)
        else:
            self.transition(State.CLOSED, now)


# --- strategies --------------------------------------------------------------------------


def doubling(attempt: int) -> float:
    return 2.0 * attempt


@st.composite
def configs(draw: st.DrawFn) -> CircuitBreakerConfig:
    time_based = draw(st.booleans())
    return CircuitBreakerConfig(
        sliding_window_type=(
            SlidingWindowType.TIME_BASED if time_based else SlidingWindowType.COUNT_BASED
        ),
        sliding_window_size=draw(st.integers(1, 5 if time_based else 7)),
        minimum_number_of_calls=draw(st.integers(1, 8)),
        failure_rate_threshold=draw(st.sampled_from([20.0, 50.0, 60.0, 100.0, 100 / 3])),
        minimum_number_of_failures=draw(st.integers(0, 3)),
        slow_call_rate_threshold=draw(st.sampled_from([25.0, 50.0, 100.0])),
        slow_call_duration_threshold=SLOW_THRESHOLD,
        wait_duration_in_open_state=draw(st.sampled_from([0.0, 3.0, 10.0])),
        wait_interval_function_in_open_state=draw(st.sampled_from([None, doubling])),
        automatic_transition_from_open_to_half_open_enabled=draw(st.booleans()),
        permitted_number_of_calls_in_half_open_state=draw(st.integers(1, 3)),
        max_wait_duration_in_half_open_state=draw(st.sampled_from([0.0, 4.0])),
        record_exceptions=(OSError,),
        ignore_exceptions=(KeyError,),
    )


MANUAL = ("closed", "open", "half_open", "forced_open", "disabled", "metrics_only", "reset")
DURATIONS = [0.0, 0.25, 1.0, 1.5, 3.0]  # 1.0 is not slow: slow means longer than 1.0

calls = st.tuples(
    st.just("call"),
    st.sampled_from(["success"] * 3 + ["failure"] * 3 + ["ignored", "unrecorded"]),
    st.sampled_from(DURATIONS),
)
OPERATIONS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "call": calls,
    "advance": st.tuples(st.just("advance"), st.sampled_from([0.3, 1.0, 2.5, 4.0, 11.0])),
    "read": st.tuples(st.just("read"), st.sampled_from(["state", "metrics"])),
    "manual": st.tuples(st.just("manual"), st.sampled_from(MANUAL)),
    # Low-level permits: take one without completing a call, or give one back.
    "permit": st.tuples(st.sampled_from(["acquire", "release"])),
}
# Weighted: mostly calls, so that windows fill up and thresholds are reached.
operations = st.sampled_from(
    ["call"] * 12 + ["advance"] * 2 + ["read"] * 2 + ["manual", "permit"]
).flatmap(OPERATIONS.__getitem__)


# --- the property ------------------------------------------------------------------------


def observed(events: list[CircuitBreakerEvent]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for e in events:
        if isinstance(e, CircuitBreakerOnStateTransitionEvent):
            out.append(("transition", (e.from_state, e.to_state)))
        elif isinstance(e, CircuitBreakerOnFailureRateExceededEvent):
            out.append(("failure_rate", e.failure_rate))
        elif isinstance(e, CircuitBreakerOnSlowCallRateExceededEvent):
            out.append(("slow_rate", e.slow_call_rate))
    return out


def check_metrics(cb: CircuitBreaker, model: Model, now: float) -> None:
    # Each metrics read is an observation that applies a due time-driven transition (with a
    # zero open wait, OPEN becomes HALF_OPEN at the very next read): mirror every read.
    model.apply_time(now)
    snap = cb.metrics.snapshot()
    window = model.window(now)
    assert snap.total_calls == len(window)
    assert snap.failed_calls == sum(c.failed for c in window)
    assert snap.slow_calls == sum(c.slow for c in window)
    assert snap.slow_failed_calls == sum(c.slow and c.failed for c in window)
    assert snap.total_duration == pytest.approx(sum(c.duration for c in window), abs=1e-9)
    model.apply_time(now)
    failure_rate = cb.metrics.failure_rate
    enough = len(model.window(now)) >= model.minimum()
    assert failure_rate == (model.rates(now)[0] if enough else -1.0)
    model.apply_time(now)
    slow_call_rate = cb.metrics.slow_call_rate
    enough = len(model.window(now)) >= model.minimum()
    assert slow_call_rate == (model.rates(now)[1] if enough else -1.0)
    model.apply_time(now)
    assert cb.metrics.number_of_not_permitted_calls == model.not_permitted


def run_call(cb: CircuitBreaker, model: Model, clock: FakeClock, kind: str, d: float) -> None:
    def protected() -> str:
        clock.advance(d)
        if kind == "failure":
            raise Failure("down")
        if kind == "ignored":
            raise Ignored("ignored")
        if kind == "unrecorded":
            raise Unrecorded("neither recorded nor ignored")
        return "ok"

    start = clock.monotonic()
    permitted = model.acquire(start)
    try:
        cb.call(protected)
    except CallNotPermittedError:
        assert not permitted, "the breaker rejected a call the model admits"
        return
    except (Failure, Ignored, Unrecorded):
        pass
    assert permitted, "the breaker admitted a call the model rejects"
    end = clock.monotonic()
    if kind == "ignored":
        model.release()
    else:
        # The measured duration, as the breaker sees it (116.8 + 1.0 - 116.8 is not 1.0).
        model.record(end, end - start, failed=kind == "failure")


def run_manual(cb: CircuitBreaker, model: Model, now: float, name: str) -> None:
    if name == "reset":
        cb.reset()
        model.reset(now)
        return
    method: Callable[[], None] = getattr(cb, f"transition_to_{name}_state")
    method()
    model.transition(State[name.upper()], now)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), ops=st.lists(operations, min_size=20, max_size=100))
def test_breaker_agrees_with_naive_model(
    config: CircuitBreakerConfig, ops: list[tuple[Any, ...]]
) -> None:
    clock = FakeClock(100.0)
    cb = CircuitBreaker("prop", config, clock=clock)
    events: list[CircuitBreakerEvent] = []
    # Not on_success/on_event: an unobserved success keeps the lock-free path in play.
    cb.events.on_state_transition(events.append)
    cb.events.on_failure_rate_exceeded(events.append)
    cb.events.on_slow_call_rate_exceeded(events.append)
    model = Model(config)
    for op in ops:
        if op[0] == "call":
            run_call(cb, model, clock, op[1], op[2])
        elif op[0] == "advance":
            clock.advance(op[1])
        elif op[0] == "read" and op[1] == "state":
            model.apply_time(clock.monotonic())
            assert cb.state is model.state
        elif op[0] == "read":
            check_metrics(cb, model, clock.monotonic())
        elif op[0] == "acquire":
            assert cb.try_acquire_permission() is model.acquire(clock.monotonic())
        elif op[0] == "release":
            cb.release_permission()
            model.release()
        else:
            run_manual(cb, model, clock.monotonic(), op[1])
        assert cb._state is model.state  # the stored state, without applying time
        assert observed(events) == model.events
    check_metrics(cb, model, clock.monotonic())
    model.apply_time(clock.monotonic())
    assert cb.state is model.state
    assert observed(events) == model.events
