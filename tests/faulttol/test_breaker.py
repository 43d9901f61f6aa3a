"""Unit tests of the circuit breaker (faulttol.breaker).

Many scenarios are ports of resilience4j's CircuitBreakerStateMachineTest, adapted to this
contract. All time logic runs on a FakeClock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import pickle
import threading
from typing import Any, cast

import pytest

from faulttol import breaker as breaker_module
from faulttol.breaker import (
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    SlidingWindowType,
    State,
)
from faulttol.events import (
    CircuitBreakerEvent,
    CircuitBreakerOnCallNotPermittedEvent,
    CircuitBreakerOnErrorEvent,
    CircuitBreakerOnFailureRateExceededEvent,
    CircuitBreakerOnIgnoredErrorEvent,
    CircuitBreakerOnResetEvent,
    CircuitBreakerOnSlowCallRateExceededEvent,
    CircuitBreakerOnStateTransitionEvent,
    CircuitBreakerOnSuccessEvent,
)
from faulttol.testing import FakeClock

TIME = SlidingWindowType.TIME_BASED


class Boom(Exception):
    """A recorded failure."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def make(clock: FakeClock, name: str = "test", **config: Any) -> CircuitBreaker:
    config.setdefault("sliding_window_size", 5)
    config.setdefault("minimum_number_of_calls", 5)
    config.setdefault("wait_duration_in_open_state", 10.0)
    config.setdefault("permitted_number_of_calls_in_half_open_state", 3)
    return CircuitBreaker(name, CircuitBreakerConfig(**config), clock=clock)


def succeed(cb: CircuitBreaker, clock: FakeClock | None = None, duration: float = 0.0) -> None:
    def ok() -> str:
        if clock is not None and duration:
            clock.advance(duration)
        return "ok"

    assert cb.call(ok) == "ok"


def fail(
    cb: CircuitBreaker,
    exc: BaseException | None = None,
    clock: FakeClock | None = None,
    duration: float = 0.0,
) -> None:
    error = exc if exc is not None else Boom("boom")

    def bad() -> None:
        if clock is not None and duration:
            clock.advance(duration)
        raise error

    with pytest.raises(type(error)):
        cb.call(bad)


def rejected(cb: CircuitBreaker) -> bool:
    try:
        succeed(cb)
    except CallNotPermittedError:
        return True
    return False


def record(cb: CircuitBreaker) -> list[CircuitBreakerEvent]:
    events: list[CircuitBreakerEvent] = []
    cb.events.on_event(events.append)
    return events


def transitions(events: list[CircuitBreakerEvent]) -> list[tuple[State | None, State | None]]:
    return [
        (e.from_state, e.to_state)
        for e in events
        if isinstance(e, CircuitBreakerOnStateTransitionEvent)
    ]


def state(cb: CircuitBreaker) -> State:
    """``cb.state`` (a call, so that type checkers do not narrow it between reads)."""
    return cb.state


def trip(cb: CircuitBreaker, calls: int = 5) -> None:
    for _ in range(calls):
        fail(cb)
    assert state(cb) is State.OPEN


# --- configuration -----------------------------------------------------------------------


def test_config_defaults_are_the_contract() -> None:
    c = CircuitBreakerConfig()
    assert c.sliding_window_type is SlidingWindowType.COUNT_BASED
    assert c.sliding_window_size == 100
    assert c.minimum_number_of_calls == 100
    assert c.failure_rate_threshold == 50.0
    assert c.minimum_number_of_failures == 0
    assert c.slow_call_rate_threshold == 100.0
    assert c.slow_call_duration_threshold == 60.0
    assert c.wait_duration_in_open_state == 60.0
    assert c.wait_interval_function_in_open_state is None
    assert c.automatic_transition_from_open_to_half_open_enabled is False
    assert c.permitted_number_of_calls_in_half_open_state == 10
    assert c.max_wait_duration_in_half_open_state == 0.0
    assert c.record_exceptions == (Exception,)
    assert c.ignore_exceptions == ()
    assert c.record_exception is None and c.ignore_exception is None
    assert c.record_result is None


def test_config_defaults_are_named_constants() -> None:
    c = CircuitBreakerConfig()
    assert c.sliding_window_size == breaker_module.DEFAULT_SLIDING_WINDOW_SIZE
    assert c.minimum_number_of_calls == breaker_module.DEFAULT_MINIMUM_NUMBER_OF_CALLS
    assert c.failure_rate_threshold == breaker_module.DEFAULT_FAILURE_RATE_THRESHOLD
    assert c.wait_duration_in_open_state == breaker_module.DEFAULT_WAIT_DURATION_IN_OPEN_STATE


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CircuitBreakerConfig().sliding_window_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sliding_window_type", "COUNT_BASED"),
        ("sliding_window_size", 0),
        ("sliding_window_size", 2.5),
        ("minimum_number_of_calls", 0),
        ("minimum_number_of_failures", -1),
        ("permitted_number_of_calls_in_half_open_state", 0),
        ("failure_rate_threshold", 0),
        ("failure_rate_threshold", 100.1),
        ("failure_rate_threshold", float("nan")),
        ("slow_call_rate_threshold", -5),
        ("slow_call_rate_threshold", 101),
        ("slow_call_duration_threshold", -0.1),
        ("wait_duration_in_open_state", -1),
        ("wait_duration_in_open_state", float("inf")),
        ("max_wait_duration_in_half_open_state", -1),
        ("automatic_transition_from_open_to_half_open_enabled", "yes"),
        ("record_exceptions", (ValueError, int)),
        ("ignore_exceptions", "KeyError"),
        ("record_exception", 42),
        ("wait_interval_function_in_open_state", "fast"),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        CircuitBreakerConfig(**{field: cast(Any, value)})


def test_config_accepts_lists_and_single_types_for_exception_fields() -> None:
    c = CircuitBreakerConfig(record_exceptions=[OSError], ignore_exceptions=KeyError)  # type: ignore[arg-type]
    assert c.record_exceptions == (OSError,)
    assert c.ignore_exceptions == (KeyError,)


def test_config_boundaries_are_valid() -> None:
    CircuitBreakerConfig(
        failure_rate_threshold=100,
        slow_call_rate_threshold=0.001,
        slow_call_duration_threshold=0,
        wait_duration_in_open_state=0,
        sliding_window_size=1,
        minimum_number_of_calls=1,
    )


def test_count_based_minimum_calls_is_capped_at_window_size(clock: FakeClock) -> None:
    cb = make(clock, sliding_window_size=4, minimum_number_of_calls=50)
    assert cb.config.minimum_number_of_calls == 50  # the config keeps what it was given
    for _ in range(3):
        fail(cb)
    assert cb.metrics.failure_rate == -1.0
    fail(cb)
    assert state(cb) is State.OPEN
    assert cb.metrics.failure_rate == 100.0


def test_time_based_minimum_calls_is_not_capped(clock: FakeClock) -> None:
    cb = make(clock, sliding_window_type=TIME, sliding_window_size=4, minimum_number_of_calls=6)
    for _ in range(5):
        fail(cb)
    assert state(cb) is State.CLOSED
    assert cb.metrics.failure_rate == -1.0
    fail(cb)
    assert state(cb) is State.OPEN


# --- CLOSED -> OPEN ----------------------------------------------------------------------


def test_starts_closed_with_empty_metrics(clock: FakeClock) -> None:
    cb = make(clock)
    assert state(cb) is State.CLOSED
    m = cb.metrics
    assert (m.failure_rate, m.slow_call_rate) == (-1.0, -1.0)
    assert m.number_of_buffered_calls == m.number_of_failed_calls == 0
    assert m.number_of_not_permitted_calls == 0


def test_open_after_failure_rate_reached(clock: FakeClock) -> None:
    cb = make(clock, failure_rate_threshold=50)
    events = record(cb)
    succeed(cb)
    succeed(cb)
    fail(cb)
    fail(cb)
    assert state(cb) is State.CLOSED  # 4 calls < minimum 5
    assert cb.metrics.failure_rate == -1.0
    fail(cb)  # 3 of 5 = 60 %
    assert state(cb) is State.OPEN
    assert transitions(events) == [(State.CLOSED, State.OPEN)]
    exceeded = [e for e in events if isinstance(e, CircuitBreakerOnFailureRateExceededEvent)]
    assert [e.failure_rate for e in exceeded] == [60.0]
    # resilience4j order: the rate-exceeded event comes before the transition
    assert events.index(exceeded[0]) < next(
        i for i, e in enumerate(events) if isinstance(e, CircuitBreakerOnStateTransitionEvent)
    )


def test_trips_when_rate_equals_threshold(clock: FakeClock) -> None:
    cb = make(clock, sliding_window_size=4, minimum_number_of_calls=4, failure_rate_threshold=50)
    succeed(cb)
    succeed(cb)
    fail(cb)
    fail(cb)
    assert state(cb) is State.OPEN


def test_stays_closed_below_threshold(clock: FakeClock) -> None:
    cb = make(clock, sliding_window_size=10, minimum_number_of_calls=10)
    for i in range(30):
        fail(cb) if i % 3 == 0 else succeed(cb)
    assert state(cb) is State.CLOSED
    assert cb.metrics.failure_rate == 30.0


def test_a_success_can_trip_when_it_completes_the_minimum(clock: FakeClock) -> None:
    cb = make(clock)
    for _ in range(4):
        fail(cb)
    succeed(cb)  # 4 of 5 failed = 80 %, evaluated on this success (resilience4j)
    assert state(cb) is State.OPEN


def test_failures_rotate_out_of_count_window(clock: FakeClock) -> None:
    cb = make(clock, sliding_window_size=4, minimum_number_of_calls=4)
    fail(cb)
    for _ in range(10):
        succeed(cb)
    fail(cb)
    m = cb.metrics
    assert (m.number_of_buffered_calls, m.number_of_failed_calls) == (4, 1)
    assert m.number_of_successful_calls == 3
    assert state(cb) is State.CLOSED


def test_minimum_number_of_failures(clock: FakeClock) -> None:
    cb = make(
        clock, sliding_window_size=10, minimum_number_of_calls=2, minimum_number_of_failures=3
    )
    fail(cb)
    fail(cb)
    assert cb.metrics.failure_rate == 100.0
    assert state(cb) is State.CLOSED  # the rate alone is not enough
    fail(cb)
    assert state(cb) is State.OPEN


def test_slow_call_rate_trips(clock: FakeClock) -> None:
    cb = make(clock, slow_call_duration_threshold=2.0, slow_call_rate_threshold=60)
    events = record(cb)
    succeed(cb, clock, 2.0)  # not slow: must be longer than the threshold
    succeed(cb, clock, 2.5)
    succeed(cb, clock, 0.1)
    fail(cb, clock=clock, duration=3.0)
    assert state(cb) is State.CLOSED
    succeed(cb, clock, 5.0)  # 3 of 5 slow = 60 %
    assert state(cb) is State.OPEN
    m = cb.metrics
    assert (m.number_of_slow_calls, m.number_of_slow_failed_calls) == (3, 1)
    assert m.number_of_slow_successful_calls == 2
    assert m.slow_call_rate == 60.0
    assert m.failure_rate == 20.0
    assert [
        e.slow_call_rate for e in events if isinstance(e, CircuitBreakerOnSlowCallRateExceededEvent)
    ] == [60.0]
    assert not any(isinstance(e, CircuitBreakerOnFailureRateExceededEvent) for e in events)


def test_default_slow_threshold_needs_every_call_slow(clock: FakeClock) -> None:
    cb = make(clock, slow_call_duration_threshold=1.0)
    for _ in range(4):
        succeed(cb, clock, 2.0)
    succeed(cb)
    assert state(cb) is State.CLOSED  # 80 % < 100 %
    for _ in range(5):
        succeed(cb, clock, 2.0)
    assert state(cb) is State.OPEN


def test_time_based_window_expiry(clock: FakeClock) -> None:
    cb = make(clock, sliding_window_type=TIME, sliding_window_size=10, minimum_number_of_calls=4)
    fail(cb)
    fail(cb)
    succeed(cb)
    clock.advance(10.0)  # the three calls have left the window
    assert cb.metrics.number_of_buffered_calls == 0
    fail(cb)
    succeed(cb)
    succeed(cb)
    succeed(cb)
    assert state(cb) is State.CLOSED
    assert cb.metrics.failure_rate == 25.0


def test_time_based_expiry_raises_rate_on_next_call(clock: FakeClock) -> None:
    cb = make(clock, sliding_window_type=TIME, sliding_window_size=5, minimum_number_of_calls=4)
    for _ in range(6):
        succeed(cb)  # also exercises the lock-free success path
    clock.advance(3)
    fail(cb)
    fail(cb)
    fail(cb)
    assert state(cb) is State.CLOSED  # 3 of 9
    clock.advance(2)  # the six successes expire
    succeed(cb)  # 3 of 4 = 75 %
    assert state(cb) is State.OPEN


# --- OPEN --------------------------------------------------------------------------------


def test_open_rejects_and_counts_not_permitted(clock: FakeClock) -> None:
    cb = make(clock, name="db")
    events = record(cb)
    trip(cb)
    with pytest.raises(CallNotPermittedError) as info:
        succeed(cb)
    assert info.value.breaker_name == "db"
    assert str(info.value) == "CircuitBreaker 'db' is OPEN and does not permit further calls"
    assert not cb.try_acquire_permission()
    assert cb.metrics.number_of_not_permitted_calls == 2
    assert sum(isinstance(e, CircuitBreakerOnCallNotPermittedEvent) for e in events) == 2


def test_metrics_carry_over_from_closed_to_open(clock: FakeClock) -> None:
    cb = make(clock)
    succeed(cb)
    trip(cb, 4)
    m = cb.metrics
    assert (m.number_of_buffered_calls, m.number_of_failed_calls) == (5, 4)
    assert m.failure_rate == 80.0


def test_open_moves_to_half_open_lazily_on_next_call(clock: FakeClock) -> None:
    cb = make(clock)
    events = record(cb)
    trip(cb)
    clock.advance(9.9)
    assert rejected(cb)
    clock.advance(0.1)
    assert state(cb) is State.OPEN  # no automatic transition: only a call moves it
    succeed(cb)
    assert state(cb) is State.HALF_OPEN
    assert transitions(events) == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
    ]


def test_automatic_transition_is_reflected_on_read(clock: FakeClock) -> None:
    cb = make(clock, automatic_transition_from_open_to_half_open_enabled=True)
    events = record(cb)
    trip(cb)
    clock.advance(9.0)
    assert state(cb) is State.OPEN
    clock.advance(1.0)
    assert state(cb) is State.HALF_OPEN
    assert transitions(events)[-1] == (State.OPEN, State.HALF_OPEN)
    assert cb.metrics.number_of_buffered_calls == 0


def test_wait_interval_function_gets_open_attempts(clock: FakeClock) -> None:
    attempts: list[int] = []

    def wait(attempt: int) -> float:
        attempts.append(attempt)
        return 10.0 * attempt

    cb = make(
        clock,
        wait_interval_function_in_open_state=wait,
        permitted_number_of_calls_in_half_open_state=1,
    )
    trip(cb)
    clock.advance(10)
    fail(cb)  # half-open trial fails: OPEN again, attempt 2 waits 20 s
    assert state(cb) is State.OPEN
    clock.advance(19.9)
    assert rejected(cb)
    clock.advance(0.1)
    fail(cb)
    clock.advance(30)
    succeed(cb)  # trial succeeds: CLOSED, attempts start over
    assert state(cb) is State.CLOSED
    trip(cb)
    assert attempts == [1, 2, 3, 1]


def test_failing_wait_interval_function_falls_back_to_wait_duration(clock: FakeClock) -> None:
    def broken(attempt: int) -> float:
        raise RuntimeError("bug")

    cb = make(clock, wait_interval_function_in_open_state=broken)
    trip(cb)
    clock.advance(9.9)
    assert rejected(cb)
    clock.advance(0.1)
    succeed(cb)
    assert state(cb) is State.HALF_OPEN


# --- HALF_OPEN ---------------------------------------------------------------------------


def half_open(clock: FakeClock, **config: Any) -> CircuitBreaker:
    cb = make(clock, **config)
    cb.transition_to_open_state()
    cb.transition_to_half_open_state()
    return cb


def test_half_open_to_closed_after_permitted_successes(clock: FakeClock) -> None:
    cb = half_open(clock)
    events = record(cb)
    assert cb.metrics.number_of_buffered_calls == 0  # fresh metrics
    succeed(cb)
    succeed(cb)
    assert state(cb) is State.HALF_OPEN
    assert cb.metrics.failure_rate == -1.0  # below the permitted number of calls
    succeed(cb)
    assert state(cb) is State.CLOSED
    assert transitions(events) == [(State.HALF_OPEN, State.CLOSED)]
    assert cb.metrics.number_of_buffered_calls == 0  # fresh again


def test_half_open_to_open_on_failures(clock: FakeClock) -> None:
    cb = half_open(clock, failure_rate_threshold=50)
    events = record(cb)
    fail(cb)
    succeed(cb)
    fail(cb)  # 2 of 3
    assert state(cb) is State.OPEN
    assert transitions(events) == [(State.HALF_OPEN, State.OPEN)]
    assert any(isinstance(e, CircuitBreakerOnFailureRateExceededEvent) for e in events)
    m = cb.metrics  # the trial calls carry over into OPEN
    assert (m.number_of_buffered_calls, m.number_of_failed_calls) == (3, 2)


def test_half_open_ignores_minimum_number_of_failures(clock: FakeClock) -> None:
    cb = half_open(clock, minimum_number_of_failures=50, minimum_number_of_calls=3)
    fail(cb)
    fail(cb)
    succeed(cb)
    assert state(cb) is State.OPEN


def test_half_open_slow_calls_reopen(clock: FakeClock) -> None:
    cb = half_open(clock, slow_call_duration_threshold=1.0, slow_call_rate_threshold=50)
    succeed(cb, clock, 2.0)
    succeed(cb, clock, 2.0)
    succeed(cb)
    assert state(cb) is State.OPEN


def test_not_permitted_in_half_open_after_permits_taken(clock: FakeClock) -> None:
    cb = half_open(clock)
    assert all(cb.try_acquire_permission() for _ in range(3))
    assert not cb.try_acquire_permission()
    with pytest.raises(CallNotPermittedError, match="HALF_OPEN"):
        cb.acquire_permission()
    assert cb.metrics.number_of_not_permitted_calls == 2
    cb.on_success(0.0)
    cb.on_success(0.0)
    assert not cb.try_acquire_permission()  # still waiting for the third trial call
    cb.on_success(0.0)
    assert state(cb) is State.CLOSED
    assert cb.try_acquire_permission()


def test_release_permission_gives_a_permit_back(clock: FakeClock) -> None:
    cb = half_open(clock)
    for _ in range(3):
        assert cb.try_acquire_permission()
    cb.release_permission()
    assert cb.try_acquire_permission()
    assert not cb.try_acquire_permission()


def test_ignored_error_in_half_open_releases_permit(clock: FakeClock) -> None:
    cb = half_open(clock, ignore_exceptions=(KeyError,))
    events = record(cb)
    for _ in range(3):
        assert cb.try_acquire_permission()
    cb.on_error(0.5, KeyError("k"))
    ignored = [e for e in events if isinstance(e, CircuitBreakerOnIgnoredErrorEvent)]
    assert len(ignored) == 1
    assert ignored[0].elapsed == 0.5 and isinstance(ignored[0].exception, KeyError)
    assert cb.metrics.number_of_buffered_calls == 0
    assert cb.try_acquire_permission()
    assert not cb.try_acquire_permission()


def test_half_open_max_wait_opens_on_read(clock: FakeClock) -> None:
    cb = half_open(clock, max_wait_duration_in_half_open_state=5.0)
    events = record(cb)
    succeed(cb)
    clock.advance(4.9)
    assert state(cb) is State.HALF_OPEN
    clock.advance(0.1)
    assert state(cb) is State.OPEN
    assert transitions(events) == [(State.HALF_OPEN, State.OPEN)]
    assert rejected(cb)
    clock.advance(10)
    succeed(cb)
    assert state(cb) is State.HALF_OPEN


def test_half_open_without_max_wait_waits_forever(clock: FakeClock) -> None:
    cb = half_open(clock)
    clock.advance(1e6)
    assert state(cb) is State.HALF_OPEN


# --- special states ----------------------------------------------------------------------


def test_forced_open_counts_not_permitted_and_records_nothing(clock: FakeClock) -> None:
    cb = make(clock)
    succeed(cb)
    events = record(cb)
    cb.transition_to_forced_open_state()
    assert state(cb) is State.FORCED_OPEN
    assert transitions(events) == [(State.CLOSED, State.FORCED_OPEN)]
    assert cb.metrics.number_of_buffered_calls == 0
    for _ in range(3):
        assert rejected(cb)
    clock.advance(1e6)
    assert rejected(cb)
    assert state(cb) is State.FORCED_OPEN
    assert cb.metrics.number_of_not_permitted_calls == 4
    # A call admitted before forcing open finishes: nothing is recorded.
    cb.on_error(0.1, Boom())
    assert cb.metrics.number_of_buffered_calls == 0


def test_disabled_records_nothing_and_admits_everything(clock: FakeClock) -> None:
    cb = make(clock)
    trip(cb)
    cb.transition_to_disabled_state()
    for _ in range(20):
        fail(cb)
    assert state(cb) is State.DISABLED
    m = cb.metrics
    assert (m.number_of_buffered_calls, m.failure_rate, m.number_of_not_permitted_calls) == (
        0,
        -1.0,
        0,
    )


def test_metrics_only_records_but_never_trips(clock: FakeClock) -> None:
    cb = make(clock, sliding_window_size=4, minimum_number_of_calls=4)
    succeed(cb)
    cb.transition_to_metrics_only_state()
    assert cb.metrics.number_of_buffered_calls == 0  # fresh
    events = record(cb)
    for _ in range(10):
        fail(cb)
    assert state(cb) is State.METRICS_ONLY
    assert cb.metrics.failure_rate == 100.0
    exceeded = [e for e in events if isinstance(e, CircuitBreakerOnFailureRateExceededEvent)]
    assert len(exceeded) == 1  # once, not on every call
    for _ in range(3):
        succeed(cb)  # 25 %: below again
    fail(cb)  # 25 %
    assert len([e for e in events if isinstance(e, CircuitBreakerOnFailureRateExceededEvent)]) == 1
    fail(cb)  # 50 %: exceeded again
    exceeded = [e for e in events if isinstance(e, CircuitBreakerOnFailureRateExceededEvent)]
    assert len(exceeded) == 2
    assert transitions(events) == []


def test_metrics_only_reports_slow_rate_once(clock: FakeClock) -> None:
    cb = make(clock, slow_call_duration_threshold=1.0, minimum_number_of_calls=2)
    cb.transition_to_metrics_only_state()
    events = record(cb)
    for _ in range(6):
        succeed(cb, clock, 2.0)
    slow = [e for e in events if isinstance(e, CircuitBreakerOnSlowCallRateExceededEvent)]
    assert [e.slow_call_rate for e in slow] == [100.0]


def test_manual_transitions_and_fresh_metrics(clock: FakeClock) -> None:
    cb = make(clock)
    events = record(cb)
    succeed(cb)
    cb.transition_to_open_state()
    assert state(cb) is State.OPEN
    assert cb.metrics.number_of_buffered_calls == 1  # carried over
    cb.transition_to_half_open_state()
    assert cb.metrics.number_of_buffered_calls == 0
    cb.transition_to_closed_state()
    cb.transition_to_disabled_state()
    cb.transition_to_metrics_only_state()
    cb.transition_to_forced_open_state()
    cb.transition_to_closed_state()
    assert transitions(events) == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
        (State.CLOSED, State.DISABLED),
        (State.DISABLED, State.METRICS_ONLY),
        (State.METRICS_ONLY, State.FORCED_OPEN),
        (State.FORCED_OPEN, State.CLOSED),
    ]


def test_reset_closes_with_fresh_metrics_and_publishes(clock: FakeClock) -> None:
    cb = make(clock)
    trip(cb)
    assert rejected(cb)
    events = record(cb)
    cb.reset()
    assert state(cb) is State.CLOSED
    assert cb.metrics.number_of_buffered_calls == 0
    assert cb.metrics.number_of_not_permitted_calls == 0
    assert transitions(events) == [(State.OPEN, State.CLOSED)]
    assert isinstance(events[-1], CircuitBreakerOnResetEvent)
    cb.reset()  # already CLOSED: only the reset event
    assert transitions(events) == [(State.OPEN, State.CLOSED)]
    assert sum(isinstance(e, CircuitBreakerOnResetEvent) for e in events) == 2


def test_reset_restarts_open_attempts(clock: FakeClock) -> None:
    seen: list[int] = []

    def wait(attempt: int) -> float:
        seen.append(attempt)
        return 1.0

    cb = make(clock, wait_interval_function_in_open_state=wait)
    trip(cb)
    cb.transition_to_open_state()
    cb.reset()
    trip(cb)
    assert seen == [1, 2, 1]


# --- classification ----------------------------------------------------------------------


def test_unrecorded_exception_counts_as_success(clock: FakeClock) -> None:
    cb = make(clock, record_exceptions=(OSError,))
    events = record(cb)
    fail(cb, ValueError("not recorded"))
    fail(cb, ConnectionError("recorded: an OSError"))
    m = cb.metrics
    assert (m.number_of_successful_calls, m.number_of_failed_calls) == (1, 1)
    assert [type(e) for e in events] == [CircuitBreakerOnSuccessEvent, CircuitBreakerOnErrorEvent]


def test_ignored_exceptions_are_not_counted(clock: FakeClock) -> None:
    cb = make(clock, ignore_exceptions=(KeyError,))
    events = record(cb)
    for _ in range(10):
        fail(cb, KeyError("k"))
    assert cb.metrics.number_of_buffered_calls == 0
    assert sum(isinstance(e, CircuitBreakerOnIgnoredErrorEvent) for e in events) == 10


def test_ignore_wins_over_record(clock: FakeClock) -> None:
    cb = make(clock, record_exceptions=(LookupError,), ignore_exceptions=(KeyError,))
    fail(cb, KeyError("k"))
    fail(cb, IndexError("i"))
    m = cb.metrics
    assert (m.number_of_buffered_calls, m.number_of_failed_calls) == (1, 1)


def test_predicates_are_or_ed_with_lists(clock: FakeClock) -> None:
    cb = make(
        clock,
        record_exceptions=(OSError,),
        record_exception=lambda e: "fatal" in str(e),
        ignore_exception=lambda e: "ignore me" in str(e),
    )
    fail(cb, OSError("listed"))
    fail(cb, ValueError("fatal error"))  # by predicate
    fail(cb, ValueError("benign"))  # neither: success
    fail(cb, OSError("ignore me"))  # the ignore predicate wins
    m = cb.metrics
    assert (m.number_of_buffered_calls, m.number_of_failed_calls) == (3, 2)


def test_base_exception_is_not_counted_and_releases_permit(clock: FakeClock) -> None:
    cb = half_open(clock)
    fail(cb, KeyboardInterrupt())
    assert cb.metrics.number_of_buffered_calls == 0
    assert all(cb.try_acquire_permission() for _ in range(3))


def test_record_result_predicate(clock: FakeClock) -> None:
    cb = make(clock, record_result=lambda r: r is None)
    events = record(cb)
    assert cb.call(lambda: None) is None
    assert cb.call(lambda: 1) == 1
    m = cb.metrics
    assert (m.number_of_failed_calls, m.number_of_successful_calls) == (1, 1)
    error = next(e for e in events if isinstance(e, CircuitBreakerOnErrorEvent))
    assert error.exception is None and error.result is None
    cb.on_result(0.0, None)
    cb.on_result(0.0, "x")
    assert cb.metrics.number_of_failed_calls == 2


def test_record_result_trips(clock: FakeClock) -> None:
    cb = make(clock, record_result=lambda r: r == "bad")
    for _ in range(5):
        cb.call(lambda: "bad")
    assert state(cb) is State.OPEN


# --- events ------------------------------------------------------------------------------


def test_success_and_error_events_carry_elapsed(clock: FakeClock) -> None:
    cb = make(clock)
    successes: list[CircuitBreakerOnSuccessEvent] = []
    errors: list[CircuitBreakerOnErrorEvent] = []
    cb.events.on_success(successes.append)
    cb.events.on_error(errors.append)
    succeed(cb, clock, 0.25)
    fail(cb, clock=clock, duration=0.5)
    assert [e.elapsed for e in successes] == [0.25]
    assert [e.elapsed for e in errors] == [0.5]
    assert isinstance(errors[0].exception, Boom)
    assert successes[0].name == "test"
    assert successes[0].created_at == 1000.25


def test_listener_added_late_sees_every_success(clock: FakeClock) -> None:
    # Once the window is full, successes skip the lock; a new listener must switch that off.
    cb = make(clock)
    for _ in range(20):
        succeed(cb)
    seen: list[CircuitBreakerEvent] = []
    cb.events.on_success(seen.append)
    for _ in range(7):
        succeed(cb)
    assert len(seen) == 7


def test_events_published_outside_the_lock_listener_can_call_back(clock: FakeClock) -> None:
    cb = make(clock)
    seen: list[tuple[State | None, State, int]] = []

    def on_transition(event: CircuitBreakerOnStateTransitionEvent) -> None:
        seen.append((event.to_state, cb.state, cb.metrics.number_of_buffered_calls))
        if event.to_state is State.OPEN:
            cb.transition_to_forced_open_state()

    cb.events.on_state_transition(on_transition)
    for _ in range(5):
        fail(cb)  # the 5th trips; the listener forces it open from inside the notification
    assert state(cb) is State.FORCED_OPEN
    assert seen[0] == (State.OPEN, State.OPEN, 5)
    assert seen[1][0] is State.FORCED_OPEN


def test_failing_listener_does_not_break_calls(clock: FakeClock) -> None:
    cb = make(clock)

    def broken(event: CircuitBreakerEvent) -> None:
        raise RuntimeError("listener bug")

    cb.events.on_event(broken)
    succeed(cb)
    trip(cb, 4)


def test_events_not_built_without_listeners(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    for cls in (
        CircuitBreakerOnSuccessEvent,
        CircuitBreakerOnErrorEvent,
        CircuitBreakerOnStateTransitionEvent,
        CircuitBreakerOnCallNotPermittedEvent,
        CircuitBreakerOnFailureRateExceededEvent,
    ):
        original = cls.__init__

        def spy(self: Any, *a: Any, __original: Any = original, **k: Any) -> None:
            built.append(type(self).__name__)
            __original(self, *a, **k)

        monkeypatch.setattr(cls, "__init__", spy)
    cb = make(clock)
    succeed(cb)
    trip(cb, 4)
    assert rejected(cb)
    assert built == []
    cb.events.on_state_transition(lambda e: None)
    cb.transition_to_closed_state()
    assert built == ["CircuitBreakerOnStateTransitionEvent"]


# --- low-level API -----------------------------------------------------------------------


def test_low_level_api_records_like_call(clock: FakeClock) -> None:
    cb = make(clock)
    for _ in range(4):
        assert cb.try_acquire_permission()
        cb.on_error(0.0, Boom())
    cb.acquire_permission()
    cb.on_success(0.1)
    assert state(cb) is State.OPEN
    with pytest.raises(CallNotPermittedError):
        cb.acquire_permission()


def test_call_not_permitted_error_pickles() -> None:
    err = CallNotPermittedError("db", State.FORCED_OPEN)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.breaker_name, copy.state, str(copy)) == ("db", State.FORCED_OPEN, str(err))
    assert str(CallNotPermittedError("x")) == "CircuitBreaker 'x' does not permit further calls"


def test_repr(clock: FakeClock) -> None:
    cb = make(clock, name="db")
    assert repr(cb) == "CircuitBreaker(name='db', state=CLOSED)"
    trip(cb)
    assert "OPEN" in repr(cb)
    assert "failure_rate=100.0" in repr(cb.metrics)


# --- decorating --------------------------------------------------------------------------


def test_decorator_keeps_metadata_and_arguments(clock: FakeClock) -> None:
    cb = make(clock)

    @cb
    def add(a: int, b: int = 0, *, c: int = 0) -> int:
        """Adds."""
        return a + b + c

    assert add(1, 2, c=3) == 6
    assert add.__name__ == "add" and add.__doc__ == "Adds."
    assert cb.decorate(add)(1) == 1  # guarded twice: both layers record
    assert cb.metrics.number_of_buffered_calls == 3


def test_decorator_records_and_rejects(clock: FakeClock) -> None:
    cb = make(clock)

    @cb.decorate
    def boom() -> None:
        raise Boom()

    for _ in range(5):
        with pytest.raises(Boom):
            boom()
    with pytest.raises(CallNotPermittedError):
        boom()


def test_decorating_a_non_callable_raises_type_error(clock: FakeClock) -> None:
    with pytest.raises(TypeError):
        make(clock).decorate(42)  # type: ignore[arg-type]


async def test_async_decorator(clock: FakeClock) -> None:
    cb = make(clock, slow_call_duration_threshold=1.0)

    @cb
    async def fetch(x: int) -> int:
        await clock.sleep_async(2.0)
        if x < 0:
            raise Boom()
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch(3) == 6
    for _ in range(4):
        with pytest.raises(Boom):
            await fetch(-1)
    assert state(cb) is State.OPEN
    assert cb.metrics.number_of_slow_calls == 5
    with pytest.raises(CallNotPermittedError):
        await fetch(1)


async def test_call_async(clock: FakeClock) -> None:
    cb = make(clock)

    async def value(x: int) -> int:
        await asyncio.sleep(0)
        return x

    assert await cb.call_async(value, 5) == 5
    assert cb.metrics.number_of_successful_calls == 1


async def test_async_cancellation_is_not_counted(clock: FakeClock) -> None:
    cb = half_open(clock)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(cb.call_async(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cb.metrics.number_of_buffered_calls == 0
    assert all(cb.try_acquire_permission() for _ in range(3))  # the permit came back


# --- timers (real clock) -----------------------------------------------------------------


def raw_state(cb: CircuitBreaker) -> State:
    """The stored state, without the time-driven transitions a ``.state`` read applies:
    it shows what the timer did."""
    return cb._state


def raise_boom() -> None:
    raise Boom()


def _wait_for(cb: CircuitBreaker, state: State) -> threading.Event:
    reached = threading.Event()
    cb.events.on_state_transition(lambda e: reached.set() if e.to_state is state else None)
    return reached


def test_timer_moves_open_to_half_open_on_the_real_clock() -> None:
    cb = CircuitBreaker(
        "timer",
        CircuitBreakerConfig(
            sliding_window_size=1,
            minimum_number_of_calls=1,
            wait_duration_in_open_state=0.05,
            automatic_transition_from_open_to_half_open_enabled=True,
        ),
    )
    reached = _wait_for(cb, State.HALF_OPEN)
    with pytest.raises(Boom):
        cb.call(raise_boom)
    assert raw_state(cb) is State.OPEN
    assert reached.wait(5.0), "the timer did not fire"
    assert raw_state(cb) is State.HALF_OPEN


def test_timer_is_cancelled_by_a_transition() -> None:
    cb = CircuitBreaker(
        "timer",
        CircuitBreakerConfig(
            wait_duration_in_open_state=0.05,
            automatic_transition_from_open_to_half_open_enabled=True,
        ),
    )
    cb.transition_to_open_state()
    timer = cb._timer
    assert timer is not None
    cb.transition_to_closed_state()
    timer.join(5.0)
    assert state(cb) is State.CLOSED


def test_timer_reopens_after_half_open_time_limit() -> None:
    cb = CircuitBreaker("timer", CircuitBreakerConfig(max_wait_duration_in_half_open_state=0.05))
    reached = _wait_for(cb, State.OPEN)
    cb.transition_to_half_open_state()
    assert reached.wait(5.0), "the half-open time limit did not fire"
    assert raw_state(cb) is State.OPEN


def test_no_timer_under_fake_clock_reads_apply_the_transition(clock: FakeClock) -> None:
    cb = make(
        clock,
        wait_duration_in_open_state=0.01,
        automatic_transition_from_open_to_half_open_enabled=True,
    )
    cb.transition_to_open_state()
    assert cb._timer is None  # real-time timers would fire at meaningless fake times
    assert raw_state(cb) is State.OPEN
    clock.advance(0.01)
    assert raw_state(cb) is State.OPEN
    assert state(cb) is State.HALF_OPEN


def test_success_after_a_read_expired_the_minimum_is_evaluated(clock: FakeClock) -> None:
    # A metrics read rolls a time window: old successes expire and the window falls below
    # its minimum, so the next success must be evaluated (not queued past the lock).
    cb = make(clock, sliding_window_type=TIME, sliding_window_size=2, minimum_number_of_calls=4)
    for _ in range(7):
        succeed(cb)
    clock.advance(1)
    for _ in range(3):
        fail(cb)
    assert state(cb) is State.CLOSED  # 3 of 10
    clock.advance(1)  # the seven successes expire
    assert cb.metrics.number_of_buffered_calls == 3
    succeed(cb)  # 3 of 4 = 75 %
    assert state(cb) is State.OPEN


def test_is_call_permitted_has_no_side_effects(clock: FakeClock) -> None:
    cb = make(clock)
    assert cb.is_call_permitted()
    trip(cb)
    assert not cb.is_call_permitted()
    assert cb.metrics.number_of_not_permitted_calls == 0  # not counted
    clock.advance(10)
    assert cb.is_call_permitted()  # the next call would be a trial call
    assert state(cb) is State.OPEN  # ... but nothing moved
    cb.transition_to_half_open_state()
    for _ in range(3):
        assert cb.is_call_permitted()
        assert cb.try_acquire_permission()
    assert not cb.is_call_permitted()
    cb.transition_to_forced_open_state()
    assert not cb.is_call_permitted()
    cb.transition_to_disabled_state()
    assert cb.is_call_permitted()


# --- cumulative counters -----------------------------------------------------------------


def counts(cb: CircuitBreaker) -> tuple[int, int, int, int, int, int]:
    c = cb.counters
    return (c.successful_calls, c.failed_calls, c.ignored_calls, c.not_permitted_calls,
            c.slow_successful_calls, c.slow_failed_calls)


def queued_now(cb: CircuitBreaker) -> int:
    """Successes waiting in the lock-free queue (white-box: proves the fast path was taken)."""
    return len(cb._main_window._queued)


class Interrupted(BaseException):
    """Neither an Exception nor recorded: the call did not complete."""


def test_counters_start_at_zero_and_are_frozen(clock: FakeClock) -> None:
    cb = make(clock)
    c = cb.counters
    assert c == breaker_module.CircuitBreakerCounters()
    assert counts(cb) == (0, 0, 0, 0, 0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.successful_calls = 1  # type: ignore[misc]
    assert "CircuitBreakerCounters" in breaker_module.__all__


@pytest.mark.parametrize("window", [SlidingWindowType.COUNT_BASED, TIME])
def test_counters_count_every_outcome_like_the_events(
    clock: FakeClock, window: SlidingWindowType
) -> None:
    cb = make(
        clock,
        sliding_window_type=window,
        sliding_window_size=100,
        minimum_number_of_calls=100,
        slow_call_duration_threshold=1.0,
        record_exceptions=(Boom,),
        ignore_exceptions=(KeyError,),
        record_result=lambda r: r == "bad",
    )
    events = record(cb)
    succeed(cb)
    succeed(cb, clock, duration=2.0)  # slow success
    fail(cb, ValueError("neither recorded nor ignored"))  # a success
    fail(cb)  # failure
    fail(cb, clock=clock, duration=1.5)  # slow failure
    assert cb.call(lambda: "bad") == "bad"  # failure by result
    fail(cb, KeyError("ignored"))
    fail(cb, Interrupted())  # not counted at all
    assert counts(cb) == (3, 3, 1, 0, 1, 1)
    by_kind = [type(e) for e in events]
    assert by_kind.count(CircuitBreakerOnSuccessEvent) == 3
    assert by_kind.count(CircuitBreakerOnErrorEvent) == 3
    assert by_kind.count(CircuitBreakerOnIgnoredErrorEvent) == 1


def test_counters_count_rejections_in_every_rejecting_state(clock: FakeClock) -> None:
    cb = make(clock, permitted_number_of_calls_in_half_open_state=1)
    trip(cb)
    assert rejected(cb)  # OPEN
    clock.advance(10.0)
    permit = cb.try_acquire_permission()  # HALF_OPEN: the one trial permit
    assert permit
    assert rejected(cb)  # HALF_OPEN, no permit left
    cb.transition_to_forced_open_state()
    assert rejected(cb)
    assert not cb.is_call_permitted()  # a question, not a rejection: not counted
    assert cb.counters.not_permitted_calls == 3
    assert cb.counters.failed_calls == 5


def test_counters_survive_transitions_and_reset(clock: FakeClock) -> None:
    cb = make(clock)
    trip(cb)
    assert rejected(cb)
    before = cb.counters
    assert cb.metrics.number_of_not_permitted_calls == 1
    cb.reset()
    assert cb.metrics.number_of_buffered_calls == 0  # the window starts afresh...
    assert cb.metrics.number_of_not_permitted_calls == 0
    assert cb.counters == before  # ...the counters do not
    for transition in (
        cb.transition_to_half_open_state,
        cb.transition_to_open_state,
        cb.transition_to_disabled_state,
        cb.transition_to_metrics_only_state,
        cb.transition_to_closed_state,
    ):
        transition()
        assert cb.counters == before


def test_disabled_and_metrics_only_calls_are_counted(clock: FakeClock) -> None:
    cb = make(clock)
    cb.transition_to_disabled_state()
    succeed(cb)
    fail(cb)
    assert cb.metrics.number_of_buffered_calls == 0  # DISABLED records nothing in the window
    cb.transition_to_metrics_only_state()
    succeed(cb)
    fail(cb)
    assert counts(cb) == (2, 2, 0, 0, 0, 0)


@pytest.mark.parametrize("window", [SlidingWindowType.COUNT_BASED, TIME])
def test_counters_include_queued_successes(clock: FakeClock, window: SlidingWindowType) -> None:
    cb = make(clock, sliding_window_type=window, sliding_window_size=10,
              minimum_number_of_calls=10)
    guarded = cb.decorate(lambda: None)
    for _ in range(10):  # below the minimum: recorded under the lock
        guarded()
    for _ in range(7):  # now a success cannot trip the breaker: queued, lock-free
        guarded()
    assert queued_now(cb) == 7
    assert cb.counters.successful_calls == 17  # the read folds the queue in first
    assert queued_now(cb) == 0
    # The last 10 calls, or all calls of the last 10 seconds (the clock did not move).
    assert cb.metrics.number_of_buffered_calls == (10 if window is not TIME else 17)


@pytest.mark.parametrize("window", [SlidingWindowType.COUNT_BASED, TIME])
def test_more_queued_successes_than_the_queue_holds_are_all_counted(
    clock: FakeClock, window: SlidingWindowType
) -> None:
    from faulttol.window import MAX_QUEUED_SUCCESSES

    cb = make(clock, sliding_window_type=window)
    guarded = cb.decorate(lambda: None)
    n = 3 * MAX_QUEUED_SUCCESSES + 17
    peak = 0
    for _ in range(n):
        guarded()
        peak = max(peak, queued_now(cb))
    assert peak == MAX_QUEUED_SUCCESSES  # queued up to the bound, never beyond (memory)
    assert cb.counters.successful_calls == n  # none dropped
    assert cb.metrics.number_of_buffered_calls == (5 if window is not TIME else n)


@pytest.mark.parametrize("window", [SlidingWindowType.COUNT_BASED, TIME])
@pytest.mark.parametrize(
    "leave",
    ["reset", "transition_to_half_open_state", "transition_to_disabled_state",
     "transition_to_forced_open_state", "transition_to_open_state"],
)
def test_queued_successes_discarded_by_a_transition_are_still_counted(
    clock: FakeClock, window: SlidingWindowType, leave: str
) -> None:
    cb = make(clock, sliding_window_type=window)
    for _ in range(5):
        succeed(cb)
    for _ in range(4):
        succeed(cb)
    assert queued_now(cb) == 4
    getattr(cb, leave)()
    assert cb.counters.successful_calls == 9
    cb.transition_to_closed_state()
    assert cb.counters.successful_calls == 9


def test_counters_subtract_to_the_counts_between_two_readings(clock: FakeClock) -> None:
    cb = make(clock)
    succeed(cb)
    fail(cb)
    first = cb.counters
    succeed(cb)
    succeed(cb)
    delta = cb.counters - first
    assert delta == breaker_module.CircuitBreakerCounters(successful_calls=2)
    assert first - first == breaker_module.CircuitBreakerCounters()


def test_reading_counters_keeps_the_lock_free_success_path(clock: FakeClock) -> None:
    cb = make(clock)
    for _ in range(5):
        succeed(cb)
    for _ in range(3):
        succeed(cb)
        assert queued_now(cb) == 1
        assert cb.counters.successful_calls >= 6  # folds...
        assert queued_now(cb) == 0  # ...and the next success is queued again
    assert cb.counters.successful_calls == 8


def test_counters_are_exact_under_threads_with_queued_successes() -> None:
    cb = CircuitBreaker(
        "threads",
        CircuitBreakerConfig(sliding_window_size=50, minimum_number_of_calls=50,
                             ignore_exceptions=(KeyError,), failure_rate_threshold=100.0),
        clock=FakeClock(),
    )
    guarded = cb.decorate(lambda: None)
    n_threads, n_calls = 8, 3000
    readings: list[int] = []

    def boom() -> None:
        raise KeyError("x")

    def work(worker: int) -> None:
        for i in range(n_calls):
            if i % 10 == 0:
                with pytest.raises(KeyError):
                    cb.call(boom)
            elif i % 501 == 0 and worker == 0:
                readings.append(cb.counters.successful_calls)  # concurrent folds
            else:
                guarded()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ignored = n_threads * (n_calls // 10)
    reads = len(readings)
    assert reads == 5
    assert readings == sorted(readings)  # monotonic
    assert counts(cb) == (n_threads * n_calls - ignored - reads, 0, ignored, 0, 0, 0)
