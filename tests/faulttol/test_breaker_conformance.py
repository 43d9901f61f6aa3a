"""resilience4j conformance of the circuit breaker's events (issue 7, item 16).

* DISABLED publishes no success, error or ignored-error event: only state transitions and
  resets (resilience4j's ``DisabledState.shouldPublishEvents``).
* FORCED_OPEN publishes only a not-permitted event for each call it rejects (and counts
  them); a call admitted before the breaker was forced open publishes nothing when it ends.
* A transition to the state the breaker is already in publishes nothing (resilience4j
  filters these "internal" transitions), while the state is still entered afresh as
  DESIGN.md says (e.g. metrics start afresh on entering CLOSED).

All time logic runs on a FakeClock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from faulttol.breaker import (
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    State,
)
from faulttol.events import (
    CircuitBreakerEvent,
    CircuitBreakerOnCallNotPermittedEvent,
    CircuitBreakerOnErrorEvent,
    CircuitBreakerOnIgnoredErrorEvent,
    CircuitBreakerOnResetEvent,
    CircuitBreakerOnStateTransitionEvent,
    CircuitBreakerOnSuccessEvent,
)
from faulttol.testing import FakeClock

OUTCOME_EVENTS = (
    CircuitBreakerOnSuccessEvent,
    CircuitBreakerOnErrorEvent,
    CircuitBreakerOnIgnoredErrorEvent,
)


class Boom(Exception):
    """A recorded failure."""


class Ignored(Exception):
    """An ignored exception."""


class NotRecorded(Exception):
    """Neither recorded nor ignored: counts as a success."""


def make(clock: FakeClock, **config: Any) -> CircuitBreaker:
    config.setdefault("sliding_window_size", 5)
    config.setdefault("minimum_number_of_calls", 5)
    config.setdefault("wait_duration_in_open_state", 10.0)
    config.setdefault("permitted_number_of_calls_in_half_open_state", 3)
    config.setdefault("record_exceptions", (Boom,))
    config.setdefault("ignore_exceptions", (Ignored,))
    config.setdefault("record_result", lambda result: result == "bad")
    return CircuitBreaker("conformance", CircuitBreakerConfig(**config), clock=clock)


def record(cb: CircuitBreaker) -> list[CircuitBreakerEvent]:
    events: list[CircuitBreakerEvent] = []
    cb.events.on_event(events.append)
    return events


def kinds(events: list[CircuitBreakerEvent]) -> list[type[CircuitBreakerEvent]]:
    return [type(e) for e in events]


def transitions(events: list[CircuitBreakerEvent]) -> list[tuple[State | None, State | None]]:
    return [
        (e.from_state, e.to_state)
        for e in events
        if isinstance(e, CircuitBreakerOnStateTransitionEvent)
    ]


def raiser(exc: BaseException) -> Callable[[], None]:
    def raise_it() -> None:
        raise exc

    return raise_it


def every_outcome(cb: CircuitBreaker) -> None:
    """One call of each kind, through ``call``, the decorator and the low-level API."""
    assert cb.call(lambda: "ok") == "ok"
    assert cb.call(lambda: "bad") == "bad"  # a failure by result
    for exc in (Boom(), Ignored(), NotRecorded()):
        with pytest.raises(type(exc)):
            cb.call(raiser(exc))
    guarded = cb.decorate(lambda: "ok")
    assert guarded() == "ok"
    with pytest.raises(Boom):
        cb.decorate(raiser(Boom()))()
    cb.on_success(0.0)
    cb.on_error(0.0, Boom())
    cb.on_error(0.0, Ignored())
    cb.on_result(0.0, "bad")


async def every_outcome_async(cb: CircuitBreaker) -> None:
    async def ok() -> str:
        return "ok"

    async def boom() -> None:
        raise Boom

    async def ignored() -> None:
        raise Ignored

    assert await cb.call_async(ok) == "ok"
    assert await cb.decorate(ok)() == "ok"
    with pytest.raises(Boom):
        await cb.call_async(boom)
    with pytest.raises(Ignored):
        await cb.decorate(ignored)()


# --- DISABLED --------------------------------------------------------------------------


def test_disabled_publishes_no_success_or_error_events() -> None:
    clock = FakeClock(100.0)
    cb = make(clock)
    events = record(cb)
    successes: list[CircuitBreakerEvent] = []
    cb.events.on_success(successes.append)  # a type-specific listener too
    cb.transition_to_disabled_state()
    every_outcome(cb)
    asyncio.run(every_outcome_async(cb))
    assert cb.state is State.DISABLED
    assert kinds(events) == [CircuitBreakerOnStateTransitionEvent]
    assert transitions(events) == [(State.CLOSED, State.DISABLED)]
    assert successes == []
    assert cb.metrics.number_of_buffered_calls == 0  # and records nothing, as before

    cb.reset()  # transitions and resets are still published
    assert kinds(events)[1:] == [CircuitBreakerOnStateTransitionEvent, CircuitBreakerOnResetEvent]
    assert transitions(events)[1:] == [(State.DISABLED, State.CLOSED)]


def test_disabled_calls_are_still_counted_by_the_counters() -> None:
    clock = FakeClock()
    cb = make(clock)
    record(cb)
    cb.transition_to_disabled_state()
    assert cb.call(lambda: "ok") == "ok"
    with pytest.raises(Boom):
        cb.call(raiser(Boom()))
    with pytest.raises(Ignored):
        cb.call(raiser(Ignored()))
    counters = cb.counters
    assert (counters.successful_calls, counters.failed_calls, counters.ignored_calls) == (1, 1, 1)


def test_leaving_disabled_publishes_outcome_events_again() -> None:
    clock = FakeClock()
    cb = make(clock)
    cb.transition_to_disabled_state()
    events = record(cb)
    cb.transition_to_closed_state()
    assert cb.call(lambda: "ok") == "ok"
    with pytest.raises(Boom):
        cb.call(raiser(Boom()))
    assert kinds(events) == [
        CircuitBreakerOnStateTransitionEvent,
        CircuitBreakerOnSuccessEvent,
        CircuitBreakerOnErrorEvent,
    ]
    cb.transition_to_metrics_only_state()  # METRICS_ONLY records and publishes outcomes
    with pytest.raises(Ignored):
        cb.call(raiser(Ignored()))
    assert kinds(events)[-1] is CircuitBreakerOnIgnoredErrorEvent


# --- FORCED_OPEN -----------------------------------------------------------------------


def test_forced_open_publishes_only_not_permitted_events() -> None:
    clock = FakeClock()
    cb = make(clock)
    events = record(cb)
    cb.transition_to_forced_open_state()
    for _ in range(3):
        with pytest.raises(CallNotPermittedError):
            cb.call(lambda: "ok")
    assert not cb.try_acquire_permission()
    # calls admitted before the breaker was forced open end now: no outcome event
    every_outcome_low_level(cb)
    assert kinds(events) == [CircuitBreakerOnStateTransitionEvent] + [
        CircuitBreakerOnCallNotPermittedEvent
    ] * 4
    assert cb.metrics.number_of_not_permitted_calls == 4
    assert cb.counters.not_permitted_calls == 4
    assert cb.metrics.number_of_buffered_calls == 0


def every_outcome_low_level(cb: CircuitBreaker) -> None:
    cb.on_success(0.0)
    cb.on_result(0.0, "bad")
    cb.on_error(0.0, Boom())
    cb.on_error(0.0, Ignored())
    cb.on_error(0.0, NotRecorded())


def test_call_running_when_forced_open_ends_without_an_outcome_event() -> None:
    clock = FakeClock()
    cb = make(clock)
    events = record(cb)

    def force_open_then(result: object) -> Callable[[], object]:
        def run() -> object:
            cb.transition_to_forced_open_state()
            if isinstance(result, BaseException):
                raise result
            return result

        return run

    assert cb.call(force_open_then("ok")) == "ok"
    assert kinds(events) == [CircuitBreakerOnStateTransitionEvent]
    cb.transition_to_closed_state()
    with pytest.raises(Boom):
        cb.call(force_open_then(Boom()))
    cb.transition_to_closed_state()
    with pytest.raises(Ignored):
        cb.call(force_open_then(Ignored()))
    assert [type(e) for e in events if isinstance(e, OUTCOME_EVENTS)] == []
    assert transitions(events) == [
        (State.CLOSED, State.FORCED_OPEN),
        (State.FORCED_OPEN, State.CLOSED),
        (State.CLOSED, State.FORCED_OPEN),
        (State.FORCED_OPEN, State.CLOSED),
        (State.CLOSED, State.FORCED_OPEN),
    ]


# --- transitions to the current state ------------------------------------------------------


TRANSITIONS = {
    State.CLOSED: "transition_to_closed_state",
    State.OPEN: "transition_to_open_state",
    State.HALF_OPEN: "transition_to_half_open_state",
    State.DISABLED: "transition_to_disabled_state",
    State.FORCED_OPEN: "transition_to_forced_open_state",
    State.METRICS_ONLY: "transition_to_metrics_only_state",
}


@pytest.mark.parametrize("target", list(TRANSITIONS), ids=lambda s: s.name)
def test_transition_to_the_current_state_publishes_nothing(target: State) -> None:
    clock = FakeClock()
    cb = make(clock)
    events = record(cb)
    transition = getattr(cb, TRANSITIONS[target])
    transition()
    transition()
    transition()
    assert cb.state is target
    expected = [] if target is State.CLOSED else [(State.CLOSED, target)]
    assert transitions(events) == expected
    assert kinds(events) == [CircuitBreakerOnStateTransitionEvent] * len(expected)


def test_forced_open_twice_publishes_one_event() -> None:
    cb = make(FakeClock())
    seen: list[CircuitBreakerOnStateTransitionEvent] = []
    cb.events.on_state_transition(seen.append)
    cb.transition_to_forced_open_state()
    cb.transition_to_forced_open_state()
    assert [(e.from_state, e.to_state) for e in seen] == [(State.CLOSED, State.FORCED_OPEN)]


def test_closing_a_closed_breaker_publishes_nothing_and_starts_metrics_afresh() -> None:
    clock = FakeClock()
    cb = make(clock)
    events = record(cb)
    assert cb.call(lambda: "ok") == "ok"
    with pytest.raises(Boom):
        cb.call(raiser(Boom()))
    assert cb.metrics.number_of_buffered_calls == 2
    del events[:]
    cb.transition_to_closed_state()
    assert events == []
    # DESIGN.md: metrics start afresh on entering CLOSED (kept as it was)
    assert cb.metrics.number_of_buffered_calls == 0
    assert cb.metrics.number_of_failed_calls == 0


def test_reentering_open_or_half_open_publishes_nothing_but_restarts_the_state() -> None:
    clock = FakeClock()
    cb = make(clock, permitted_number_of_calls_in_half_open_state=2)
    events = record(cb)
    cb.transition_to_open_state()
    clock.advance(6.0)
    cb.transition_to_open_state()  # a new open wait of 10 s starts now
    clock.advance(6.0)
    with pytest.raises(CallNotPermittedError):
        cb.call(lambda: "ok")
    clock.advance(4.0)
    assert cb.call(lambda: "ok") == "ok"  # the wait passed: a half-open trial call
    assert cb.state is State.HALF_OPEN
    cb.transition_to_half_open_state()  # fresh trial permits and metrics
    assert cb.metrics.number_of_buffered_calls == 0
    assert cb.try_acquire_permission() and cb.try_acquire_permission()
    assert not cb.try_acquire_permission()
    assert transitions(events) == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
    ]


def test_reset_of_a_closed_breaker_publishes_only_the_reset() -> None:
    cb = make(FakeClock())
    events = record(cb)
    cb.reset()
    assert kinds(events) == [CircuitBreakerOnResetEvent]
