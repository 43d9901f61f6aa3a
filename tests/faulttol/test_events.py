"""The event publisher on its own: routing by type, catch-all consumers, isolation of failures."""

from __future__ import annotations

import logging
import threading

import pytest

from faulttol import State
from faulttol.events import (
    CircuitBreakerEvents,
    CircuitBreakerOnErrorEvent,
    CircuitBreakerOnResetEvent,
    CircuitBreakerOnStateTransitionEvent,
    CircuitBreakerOnSuccessEvent,
    Event,
    EventPublisher,
    RetryEvents,
    RetryOnRetryEvent,
)


def test_a_typed_consumer_gets_only_its_type_and_a_catch_all_gets_everything() -> None:
    events = CircuitBreakerEvents()
    successes: list[Event] = []
    everything: list[Event] = []
    events.on_success(successes.append)
    events.on_event(everything.append)
    ok = CircuitBreakerOnSuccessEvent("b", elapsed=0.1)
    error = CircuitBreakerOnErrorEvent("b", elapsed=0.2, exception=ValueError("x"))
    events.publish(ok)
    events.publish(error)
    assert successes == [ok]
    assert everything == [ok, error]


def test_typed_consumers_run_before_catch_all_ones_in_registration_order() -> None:
    events = CircuitBreakerEvents()
    order: list[str] = []
    events.on_event(lambda e: order.append("all-1"))
    events.on_state_transition(lambda e: order.append("typed-1"))
    events.on_state_transition(lambda e: order.append("typed-2"))
    events.on_event(lambda e: order.append("all-2"))
    events.publish(CircuitBreakerOnStateTransitionEvent("b", from_state=State.CLOSED,
                                                        to_state=State.OPEN))
    assert order == ["typed-1", "typed-2", "all-1", "all-2"]


def test_a_failing_consumer_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = RetryEvents()
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("consumer bug")

    events.on_retry(broken)
    events.on_retry(got.append)
    event = RetryOnRetryEvent("r", attempt=1, wait=0.5, exception=OSError("down"))
    with caplog.at_level(logging.ERROR, logger="faulttol.events"):
        events.publish(event)  # never raises
    assert got == [event]
    assert any("consumer bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_wants_and_has_consumers_tell_whether_an_event_would_be_delivered() -> None:
    publisher: EventPublisher[Event] = CircuitBreakerEvents()
    assert not publisher.has_consumers
    assert not publisher.wants(CircuitBreakerOnSuccessEvent)
    events = CircuitBreakerEvents()
    events.on_error(lambda e: None)
    assert events.has_consumers
    assert events.wants(CircuitBreakerOnErrorEvent)
    assert not events.wants(CircuitBreakerOnSuccessEvent)
    events.on_event(lambda e: None)
    assert events.wants(CircuitBreakerOnSuccessEvent)


def test_on_methods_return_the_consumer_so_they_work_as_decorators() -> None:
    events = CircuitBreakerEvents()

    def on_reset(event: Event) -> None:
        pass

    assert events.on_reset(on_reset) is on_reset
    assert events.wants(CircuitBreakerOnResetEvent)


def test_a_consumer_may_register_another_during_delivery_which_sees_later_events_only() -> None:
    events = CircuitBreakerEvents()
    late: list[Event] = []

    def register_more(event: Event) -> None:
        if not late and events.wants(CircuitBreakerOnSuccessEvent):
            events.on_error(late.append)

    events.on_success(register_more)
    first = CircuitBreakerOnErrorEvent("b", elapsed=0.0, exception=ValueError())
    events.publish(CircuitBreakerOnSuccessEvent("b", elapsed=0.0))
    events.publish(first)
    assert late == [first]


def test_registration_from_many_threads_loses_no_consumer() -> None:
    events = CircuitBreakerEvents()
    counts = [0] * 8
    barrier = threading.Barrier(8)

    def register(i: int) -> None:
        barrier.wait()
        for _ in range(50):
            events.on_success(lambda e, i=i: counts.__setitem__(i, counts[i] + 1))

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events.publish(CircuitBreakerOnSuccessEvent("b", elapsed=0.0))
    assert counts == [50] * 8
