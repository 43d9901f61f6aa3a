"""Concurrency tests of the circuit breaker: no lost counts, no deadlock, no lock held
across the protected call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from faulttol.breaker import (
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    SlidingWindowType,
    State,
)
from faulttol.events import CircuitBreakerEvent
from faulttol.testing import FakeClock

THREADS = 8
JOIN_TIMEOUT = 30.0


class Boom(Exception):
    pass


def run_threads(worker: Callable[[int], object], n: int = THREADS) -> None:
    """Run ``worker(i)`` on ``n`` threads started together; fail on errors or hangs."""
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            start.wait()
            worker(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "threads hung (deadlock?)"
    assert not errors, errors


def ok() -> int:
    return 1


def boom() -> None:
    raise Boom()


@pytest.mark.parametrize("window", [SlidingWindowType.COUNT_BASED, SlidingWindowType.TIME_BASED])
def test_hammering_threads_lose_no_counts(window: SlidingWindowType) -> None:
    calls_each, fail_every = 5_000, 10
    # A window larger than all the calls, and a threshold no mix reaches: nothing evicted,
    # nothing tripped. The first 1,000 calls are recorded under the lock, the later
    # successes on the lock-free path: both must add up.
    config = CircuitBreakerConfig(
        sliding_window_type=window,
        sliding_window_size=THREADS * calls_each + 1 if window.name == "COUNT_BASED" else 1000,
        minimum_number_of_calls=1_000,
        failure_rate_threshold=100.0,
    )
    cb = CircuitBreaker("hammer", config, clock=FakeClock())
    guarded_ok, guarded_boom = cb.decorate(ok), cb.decorate(boom)

    def worker(i: int) -> None:
        for n in range(calls_each):
            if n % fail_every == fail_every - 1:
                with pytest.raises(Boom):
                    guarded_boom()
            else:
                guarded_ok()

    run_threads(worker)
    snap = cb.metrics.snapshot()
    assert snap.total_calls == THREADS * calls_each
    assert snap.failed_calls == THREADS * calls_each // fail_every
    assert cb.state is State.CLOSED


def test_hammering_low_level_api_loses_no_counts() -> None:
    cb = CircuitBreaker(
        "low-level",
        CircuitBreakerConfig(
            sliding_window_size=100_000, minimum_number_of_calls=10, failure_rate_threshold=100.0
        ),
        clock=FakeClock(),
    )

    def worker(i: int) -> None:
        for n in range(3_000):
            assert cb.try_acquire_permission()
            if n % 3 == 0:
                cb.on_error(0.0, Boom())
            else:
                cb.on_success(0.0)

    run_threads(worker)
    m = cb.metrics
    assert m.number_of_buffered_calls == THREADS * 3_000
    assert m.number_of_failed_calls == THREADS * 1_000


def test_half_open_permits_are_never_over_granted() -> None:
    cb = CircuitBreaker(
        "permits",
        CircuitBreakerConfig(permitted_number_of_calls_in_half_open_state=5),
        clock=FakeClock(),
    )
    cb.transition_to_half_open_state()
    granted: list[bool] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for _ in range(50):
            result = cb.try_acquire_permission()
            with lock:
                granted.append(result)

    run_threads(worker, 16)
    assert granted.count(True) == 5
    assert cb.metrics.number_of_not_permitted_calls == 16 * 50 - 5


def test_protected_calls_run_without_the_lock() -> None:
    cb = CircuitBreaker("overlap")
    inside = threading.Barrier(THREADS, timeout=10.0)

    @cb
    def rendezvous() -> int:
        # Every thread must be inside the protected call at the same time to pass.
        return inside.wait()

    run_threads(lambda i: rendezvous())
    assert cb.metrics.number_of_successful_calls == THREADS


def test_protected_calls_overlap_in_half_open_too() -> None:
    cb = CircuitBreaker(
        "overlap-half-open",
        CircuitBreakerConfig(permitted_number_of_calls_in_half_open_state=THREADS),
    )
    cb.transition_to_half_open_state()
    inside = threading.Barrier(THREADS, timeout=10.0)
    run_threads(lambda i: cb.call(inside.wait))
    assert cb.state is State.CLOSED


async def test_async_calls_overlap() -> None:
    cb = CircuitBreaker("async-overlap")
    arrived = 0
    all_inside = asyncio.Event()

    @cb
    async def rendezvous() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == THREADS:
            all_inside.set()
        await asyncio.wait_for(all_inside.wait(), 10.0)

    await asyncio.gather(*(rendezvous() for _ in range(THREADS)))
    assert cb.metrics.number_of_successful_calls == THREADS


def test_listeners_calling_back_into_the_breaker_do_not_deadlock() -> None:
    clock = FakeClock()
    cb = CircuitBreaker(
        "reentrant",
        CircuitBreakerConfig(
            sliding_window_size=4,
            minimum_number_of_calls=4,
            wait_duration_in_open_state=0.0,
            permitted_number_of_calls_in_half_open_state=2,
        ),
        clock=clock,
    )
    seen: list[CircuitBreakerEvent] = []
    seen_lock = threading.Lock()

    local = threading.local()

    def listener(event: CircuitBreakerEvent) -> None:
        with seen_lock:
            seen.append(event)
        if getattr(local, "inside", False):
            return  # the callback's own events: do not recurse forever
        local.inside = True
        try:
            # Every kind of call back into the breaker, from inside the notification.
            _ = cb.state, cb.metrics.failure_rate, repr(cb)
            if cb.try_acquire_permission():
                cb.on_success(0.0)
        finally:
            local.inside = False

    def on_transition(event: CircuitBreakerEvent) -> None:
        if len(seen) % 7 == 0:
            cb.reset()

    cb.events.on_event(listener)
    cb.events.on_state_transition(on_transition)
    guarded_boom = cb.decorate(boom)

    def worker(i: int) -> None:
        for n in range(300):
            try:
                if (n + i) % 2:
                    guarded_boom()
                else:
                    cb.call(ok)
            except (Boom, CallNotPermittedError):
                pass

    run_threads(worker)
    assert len(seen) > THREADS * 300  # every call published at least one event
    assert any(type(e).__name__ == "CircuitBreakerOnStateTransitionEvent" for e in seen)


def test_concurrent_listener_registration_keeps_success_events() -> None:
    # Registering a success listener switches the lock-free success path off; calls racing
    # with the registration may go either way, but every later call is published.
    cb = CircuitBreaker("register", CircuitBreakerConfig(minimum_number_of_calls=1))
    cb.call(ok)
    stop = threading.Event()
    counted: list[int] = []

    def caller() -> None:
        while not stop.is_set():
            cb.call(ok)

    callers = [threading.Thread(target=caller, daemon=True) for _ in range(4)]
    for t in callers:
        t.start()
    cb.events.on_success(lambda e: counted.append(1))
    stop.set()
    for t in callers:
        t.join(JOIN_TIMEOUT)
    before = len(counted)
    for _ in range(100):
        cb.call(ok)
    assert len(counted) == before + 100
