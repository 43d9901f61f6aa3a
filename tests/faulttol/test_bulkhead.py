"""Tests for faulttol.Bulkhead: config, slots, waiting (threads and asyncio), cancellation,
events, metrics, decorators, the registry and Decorators.with_bulkhead."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import pickle
import threading
import time
from typing import Any

import pytest

from faulttol import (
    Bulkhead,
    BulkheadConfig,
    BulkheadFullError,
    BulkheadRegistry,
    ConfigTypeError,
    Decorators,
    Retry,
    RetryConfig,
)
from faulttol.bulkhead import (
    DEFAULT_MAX_CONCURRENT_CALLS,
    DEFAULT_MAX_WAIT_DURATION,
    BulkheadEvent,
    BulkheadOnCallFinishedEvent,
    BulkheadOnCallPermittedEvent,
    BulkheadOnCallRejectedEvent,
)
from faulttol.registry import ConfigurationNotFoundError
from faulttol.testing import FakeClock, use_clock

# --- configuration ---------------------------------------------------------------------------


def test_config_defaults_are_resilience4js() -> None:
    config = BulkheadConfig()
    assert config.max_concurrent_calls == DEFAULT_MAX_CONCURRENT_CALLS == 25
    assert config.max_wait_duration == DEFAULT_MAX_WAIT_DURATION == 0.0


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BulkheadConfig().max_concurrent_calls = 3  # type: ignore[misc]


OUT_OF_RANGE = [
    ("max_concurrent_calls", -1),
    ("max_wait_duration", -0.001),
    ("max_wait_duration", float("nan")),
    ("max_wait_duration", float("inf")),
    ("max_wait_duration", 10**400),
]


@pytest.mark.parametrize(("field", "value"), OUT_OF_RANGE)
def test_config_out_of_range_is_a_value_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field) as raised:
        BulkheadConfig(**{field: value})  # type: ignore[arg-type]
    assert not isinstance(raised.value, ConfigTypeError)


WRONG_KIND = [
    ("max_concurrent_calls", 2.0),
    ("max_concurrent_calls", True),
    ("max_concurrent_calls", "5"),
    ("max_concurrent_calls", None),
    ("max_wait_duration", "1"),
    ("max_wait_duration", False),
    ("max_wait_duration", None),
]


@pytest.mark.parametrize(("field", "value"), WRONG_KIND)
def test_config_wrong_kind_is_a_config_type_error_naming_the_field(
    field: str, value: object
) -> None:
    with pytest.raises(ConfigTypeError, match=field):
        BulkheadConfig(**{field: value})  # type: ignore[arg-type]


def test_config_boundaries_are_accepted() -> None:
    assert BulkheadConfig(max_concurrent_calls=0, max_wait_duration=0).max_concurrent_calls == 0
    assert BulkheadConfig(max_wait_duration=3).max_wait_duration == 3


def test_bulkhead_refuses_a_bad_name_or_config() -> None:
    with pytest.raises(ConfigTypeError, match="name"):
        Bulkhead(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigTypeError, match="config"):
        Bulkhead("b", {"max_concurrent_calls": 3})  # type: ignore[arg-type]


def test_properties_and_repr() -> None:
    clock = FakeClock()
    config = BulkheadConfig(max_concurrent_calls=3)
    bulkhead = Bulkhead("inventory", config, clock=clock)
    assert bulkhead.name == "inventory"
    assert bulkhead.config is config
    assert bulkhead.clock is clock
    assert "inventory" in repr(bulkhead)
    assert bulkhead.metrics.max_allowed_concurrent_calls == 3
    assert bulkhead.metrics.available_concurrent_calls == 3
    assert "available_concurrent_calls=3" in repr(bulkhead.metrics)


def test_default_clock_comes_from_use_clock() -> None:
    with use_clock(FakeClock()) as clock:
        assert Bulkhead("b").clock is clock


# --- slots ----------------------------------------------------------------------------------


def test_calls_beyond_the_limit_are_rejected_at_once_by_default() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=2))
    seen: list[int] = []

    @bulkhead
    def inner() -> str:
        return "inner"

    @bulkhead
    def outer(depth: int) -> Any:
        seen.append(bulkhead.metrics.available_concurrent_calls)
        if depth:
            return outer(depth - 1)
        return inner()  # the third concurrent call: refused

    with pytest.raises(BulkheadFullError) as raised:
        outer(1)
    assert raised.value.bulkhead_name == "b"
    assert "'b' is full" in str(raised.value)
    assert seen == [1, 0]
    assert bulkhead.metrics.available_concurrent_calls == 2


def test_zero_concurrent_calls_admits_nothing() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=0))
    with pytest.raises(BulkheadFullError):
        bulkhead.call(lambda: 1)
    assert bulkhead.try_acquire_permission() is False


def test_slot_is_returned_after_an_exception() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1))

    @bulkhead
    def boom() -> None:
        raise KeyError("x")

    for _ in range(3):
        with pytest.raises(KeyError):
            boom()
    assert bulkhead.metrics.available_concurrent_calls == 1


async def test_slot_is_returned_after_an_async_exception_and_a_cancellation() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1))
    entered = asyncio.Event()

    @bulkhead
    async def work(fail: bool) -> None:
        if fail:
            raise KeyError("x")
        entered.set()
        await asyncio.Event().wait()

    with pytest.raises(KeyError):
        await work(True)
    assert bulkhead.metrics.available_concurrent_calls == 1
    task = asyncio.create_task(work(False))
    await entered.wait()
    assert bulkhead.metrics.available_concurrent_calls == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bulkhead.metrics.available_concurrent_calls == 1


def test_raw_permissions() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=2))
    assert bulkhead.try_acquire_permission()
    bulkhead.acquire_permission()
    assert bulkhead.metrics.available_concurrent_calls == 0
    assert not bulkhead.try_acquire_permission()
    with pytest.raises(BulkheadFullError):
        bulkhead.acquire_permission()
    bulkhead.release_permission()
    bulkhead.on_complete()
    assert bulkhead.metrics.available_concurrent_calls == 2


def test_giving_back_a_slot_that_was_not_taken_is_refused() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1))
    with pytest.raises(RuntimeError, match="not taken"):
        bulkhead.release_permission()
    assert bulkhead.metrics.available_concurrent_calls == 1


async def test_raw_async_permissions() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1))
    assert await bulkhead.try_acquire_permission_async()
    assert not await bulkhead.try_acquire_permission_async()
    with pytest.raises(BulkheadFullError):
        await bulkhead.acquire_permission_async()
    bulkhead.release_permission()
    await bulkhead.acquire_permission_async()
    bulkhead.on_complete()
    assert bulkhead.metrics.available_concurrent_calls == 1


def test_call_and_call_async_pass_arguments() -> None:
    bulkhead = Bulkhead("b")
    assert bulkhead.call(lambda a, *, b: a + b, 1, b=2) == 3

    async def add(a: int, *, b: int) -> int:
        return a + b

    assert asyncio.run(bulkhead.call_async(add, 1, b=2)) == 3
    assert bulkhead.metrics.available_concurrent_calls == 25


def test_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(BulkheadFullError("b")))
    assert isinstance(error, BulkheadFullError)
    assert error.bulkhead_name == "b"


# --- waiting (time driven by FakeClock) --------------------------------------------------------


def test_a_full_bulkhead_makes_a_caller_wait_max_wait_duration_then_rejects() -> None:
    clock = FakeClock()
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1, max_wait_duration=0.5),
                        clock=clock)
    bulkhead.acquire_permission()
    with pytest.raises(BulkheadFullError):
        bulkhead.call(lambda: 1)
    assert clock.sleeps == [0.5]
    assert clock.monotonic() == 0.5
    bulkhead.release_permission()
    assert bulkhead.call(lambda: 1) == 1
    assert clock.sleeps == [0.5]  # a free slot: no wait


async def test_an_async_caller_waits_max_wait_duration_on_the_clock_then_rejects() -> None:
    clock = FakeClock()
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1, max_wait_duration=2.0),
                        clock=clock)
    await bulkhead.acquire_permission_async()

    @bulkhead
    async def work() -> int:
        return 1

    with pytest.raises(BulkheadFullError):
        await work()
    assert clock.sleeps == [2.0]
    assert clock.monotonic() == 2.0
    bulkhead.release_permission()
    assert await work() == 1


def test_no_wait_at_all_when_max_wait_duration_is_zero() -> None:
    clock = FakeClock()
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1), clock=clock)
    bulkhead.acquire_permission()
    assert not bulkhead.try_acquire_permission()
    assert clock.sleeps == []


def test_rejection_after_a_real_timed_wait() -> None:
    # The system clock's path: a timed lock acquire (10 ms), then the slot is refused.
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1, max_wait_duration=0.01))
    bulkhead.acquire_permission()
    started = time.monotonic()
    assert not bulkhead.try_acquire_permission()
    assert time.monotonic() - started >= 0.009
    bulkhead.release_permission()
    assert bulkhead.metrics.available_concurrent_calls == 1


async def test_rejection_after_a_real_timed_wait_in_asyncio() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1, max_wait_duration=0.01))
    await bulkhead.acquire_permission_async()
    assert not await bulkhead.try_acquire_permission_async()
    bulkhead.release_permission()
    assert bulkhead.metrics.available_concurrent_calls == 1
    assert await bulkhead.try_acquire_permission_async()


async def test_waiting_tasks_time_out_in_arrival_order_on_one_loop_timer() -> None:
    # The system clock's path: one loop timer serves every waiter's deadline, re-armed for
    # the next one; a waiter granted a slot meanwhile is skipped.
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1, max_wait_duration=0.05))
    await bulkhead.acquire_permission_async()
    loop = asyncio.get_running_loop()
    ended: dict[str, float] = {}

    async def wait(tag: str) -> bool:
        granted = await bulkhead.try_acquire_permission_async()
        ended[tag] = loop.time()
        return granted

    started = loop.time()
    first = asyncio.create_task(wait("first"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(wait("second"))
    third = asyncio.create_task(wait("third"))
    await asyncio.sleep(0)
    bulkhead.release_permission()  # handed to `first`
    assert await first is True
    assert await second is False and await third is False
    assert ended["second"] - started >= 0.05  # its own deadline, not first's
    assert bulkhead.metrics.available_concurrent_calls == 0
    bulkhead.release_permission()
    assert bulkhead.metrics.available_concurrent_calls == 1


# --- waiting for a slot: hand-over ------------------------------------------------------------


async def test_asyncio_waiters_are_served_in_arrival_order() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1, max_wait_duration=60))
    order: list[int] = []

    @bulkhead
    async def work(n: int) -> None:
        order.append(n)
        await asyncio.sleep(0)

    await bulkhead.acquire_permission_async()
    tasks = [asyncio.create_task(work(n)) for n in range(6)]
    await asyncio.sleep(0)  # every task is now queued
    assert order == []
    bulkhead.on_complete()
    await asyncio.gather(*tasks)
    assert order == list(range(6))
    assert bulkhead.metrics.available_concurrent_calls == 1


async def test_waiting_never_blocks_the_event_loop() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1, max_wait_duration=60))
    await bulkhead.acquire_permission_async()
    waiter = asyncio.create_task(bulkhead.acquire_permission_async())
    ticks = 0
    for _ in range(20):  # the loop keeps running other tasks while the waiter waits
        await asyncio.sleep(0)
        ticks += 1
    assert ticks == 20 and not waiter.done()
    bulkhead.release_permission()
    await waiter
    assert bulkhead.metrics.available_concurrent_calls == 0
    bulkhead.release_permission()


async def test_one_thousand_cancelled_asyncio_waiters_leave_every_slot_available() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=10, max_wait_duration=60))
    release = asyncio.Event()

    @bulkhead
    async def hold() -> None:
        await release.wait()

    @bulkhead
    async def quick() -> str:
        return "ran"

    holders = [asyncio.create_task(hold()) for _ in range(10)]
    await asyncio.sleep(0)
    assert bulkhead.metrics.available_concurrent_calls == 0
    waiters = [asyncio.create_task(quick()) for _ in range(1000)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    for w in waiters:
        w.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    release.set()
    await asyncio.gather(*holders)
    assert bulkhead.metrics.available_concurrent_calls == 10
    # Every slot is usable again, and nobody was left queued that could steal one.
    assert await asyncio.gather(*(quick() for _ in range(10))) == ["ran"] * 10
    assert [await bulkhead.try_acquire_permission_async() for _ in range(10)] == [True] * 10
    assert bulkhead.metrics.available_concurrent_calls == 0


async def test_a_waiter_cancelled_as_its_slot_is_handed_over_passes_the_slot_on() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1, max_wait_duration=60))
    await bulkhead.acquire_permission_async()
    first = asyncio.create_task(bulkhead.acquire_permission_async())
    second = asyncio.create_task(bulkhead.acquire_permission_async())
    await asyncio.sleep(0)
    bulkhead.release_permission()  # handed to `first`, which has not run yet...
    first.cancel()  # ...and is cancelled before it could
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 5)  # `second` got the slot `first` gave up
    assert bulkhead.metrics.available_concurrent_calls == 0
    bulkhead.release_permission()
    assert bulkhead.metrics.available_concurrent_calls == 1


async def test_a_slot_freed_in_another_thread_wakes_an_asyncio_waiter() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1, max_wait_duration=60))
    taken = threading.Event()
    go = threading.Event()

    def hold_slot() -> None:
        bulkhead.acquire_permission()
        taken.set()
        go.wait()
        bulkhead.release_permission()

    thread = threading.Thread(target=hold_slot)
    thread.start()
    await asyncio.to_thread(taken.wait)
    waiter = asyncio.create_task(bulkhead.acquire_permission_async())
    await asyncio.sleep(0)
    assert not waiter.done()
    go.set()
    await asyncio.wait_for(waiter, 5)
    thread.join()
    bulkhead.release_permission()
    assert bulkhead.metrics.available_concurrent_calls == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the abandoned task's coroutine
def test_a_slot_handed_to_a_task_of_a_closed_loop_goes_back() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1, max_wait_duration=60))
    bulkhead.acquire_permission()
    loop = asyncio.new_event_loop()
    waiter = loop.create_task(bulkhead.acquire_permission_async())
    loop.run_until_complete(asyncio.sleep(0))  # the task is queued for a slot...
    assert not waiter.done()
    loop.close()  # ...and its loop is closed under it (the task is never resumed)
    bulkhead.release_permission()  # the hand-over fails: the slot must not be lost
    assert bulkhead.metrics.available_concurrent_calls == 1
    assert bulkhead.try_acquire_permission()


def test_threads_hammering_a_bulkhead_never_exceed_its_limit() -> None:
    limit = 3
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=limit, max_wait_duration=30))
    lock = threading.Lock()
    inside = 0
    most = 0
    done = 0

    @bulkhead
    def work() -> None:
        nonlocal inside, most, done
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.0002)  # overlap the calls (the bulkhead, not the sleep, is under test)
        with lock:
            inside -= 1
            done += 1

    def worker() -> None:
        for _ in range(150):
            work()

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done == 12 * 150  # every caller got a slot within max_wait_duration
    assert most == limit
    assert bulkhead.metrics.available_concurrent_calls == limit


async def test_threads_and_tasks_share_one_bulkhead_within_its_limit() -> None:
    limit = 2
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=limit, max_wait_duration=30))
    lock = threading.Lock()
    inside = 0
    most = 0

    def enter() -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)

    def leave() -> None:
        nonlocal inside
        with lock:
            inside -= 1

    @bulkhead
    def sync_work() -> None:
        enter()
        time.sleep(0.0002)
        leave()

    @bulkhead
    async def async_work() -> None:
        enter()
        await asyncio.sleep(0.0002)
        leave()

    def thread_worker() -> None:
        for _ in range(100):
            sync_work()

    threads = [threading.Thread(target=thread_worker) for _ in range(3)]
    for t in threads:
        t.start()
    await asyncio.gather(*(async_work() for _ in range(300)))
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    assert most <= limit
    assert bulkhead.metrics.available_concurrent_calls == limit


# --- events -----------------------------------------------------------------------------------


def test_events_permitted_rejected_and_finished_also_after_an_exception() -> None:
    clock = FakeClock(5.0)
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1), clock=clock)
    seen: list[BulkheadEvent] = []
    bulkhead.events.on_event(seen.append)
    kinds: list[str] = []
    bulkhead.events.on_call_permitted(lambda e: kinds.append("permitted"))
    bulkhead.events.on_call_rejected(lambda e: kinds.append("rejected"))
    bulkhead.events.on_call_finished(lambda e: kinds.append("finished"))

    @bulkhead
    def outer(fail: bool) -> None:
        with pytest.raises(BulkheadFullError):
            outer(False)  # rejected: the only slot is taken
        if fail:
            raise ValueError("x")

    outer(False)
    with pytest.raises(ValueError):
        outer(True)
    assert kinds == ["permitted", "rejected", "finished"] * 2
    assert [type(e) for e in seen[:3]] == [
        BulkheadOnCallPermittedEvent,
        BulkheadOnCallRejectedEvent,
        BulkheadOnCallFinishedEvent,
    ]
    assert all(e.name == "b" and e.created_at == 5.0 for e in seen)


async def test_async_events_and_raw_api_events() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1))
    kinds: list[str] = []
    bulkhead.events.on_event(lambda e: kinds.append(type(e).__name__))

    @bulkhead
    async def work() -> None:
        with pytest.raises(BulkheadFullError):
            await work()

    await work()
    assert kinds == [
        "BulkheadOnCallPermittedEvent",
        "BulkheadOnCallRejectedEvent",
        "BulkheadOnCallFinishedEvent",
    ]
    kinds.clear()
    assert bulkhead.try_acquire_permission()
    bulkhead.release_permission()  # the call did not run: no finished event
    assert bulkhead.try_acquire_permission()
    bulkhead.on_complete()
    assert kinds == [
        "BulkheadOnCallPermittedEvent",
        "BulkheadOnCallPermittedEvent",
        "BulkheadOnCallFinishedEvent",
    ]


def test_listener_exceptions_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    bulkhead = Bulkhead("b")

    def broken(event: BulkheadEvent) -> None:
        raise RuntimeError("listener bug")

    bulkhead.events.on_call_permitted(broken)
    with caplog.at_level(logging.ERROR, logger="faulttol.events"):
        assert bulkhead.call(lambda: 7) == 7
    assert "listener bug" in caplog.text


def test_a_listener_registered_later_starts_receiving() -> None:
    bulkhead = Bulkhead("b")
    guarded = bulkhead.decorate(lambda: 1)
    guarded()
    seen: list[BulkheadEvent] = []
    bulkhead.events.on_call_finished(seen.append)
    guarded()
    assert [type(e) for e in seen] == [BulkheadOnCallFinishedEvent]


# --- decorators keep signatures -----------------------------------------------------------------


def test_decorators_keep_signatures_sync_and_async() -> None:
    bulkhead = Bulkhead("b")

    def fetch(key: str, *, default: int = 0) -> int:
        """Fetch a key."""
        return default

    async def afetch(key: str, *, default: int = 0) -> int:
        return default

    guarded = bulkhead(fetch)
    aguarded = bulkhead(afetch)
    assert inspect.signature(guarded) == inspect.signature(fetch)
    assert inspect.signature(aguarded) == inspect.signature(afetch)
    assert guarded.__name__ == "fetch" and guarded.__doc__ == "Fetch a key."
    assert guarded.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(aguarded)
    assert not inspect.iscoroutinefunction(guarded)
    assert guarded("k", default=3) == 3
    assert asyncio.run(aguarded("k", default=4)) == 4
    with pytest.raises(TypeError, match="callable"):
        bulkhead.decorate(5)  # type: ignore[arg-type]


def test_decorators_with_bulkhead_wraps_what_was_built_so_far() -> None:
    bulkhead = Bulkhead("b", BulkheadConfig(max_concurrent_calls=1))
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        assert bulkhead.metrics.available_concurrent_calls == 0  # inside the bulkhead
        if attempts < 3:
            raise ConnectionError
        return "ok"

    retry = Retry("r", RetryConfig(wait_duration=0), clock=FakeClock())
    guarded = Decorators.of(flaky).with_retry(retry).with_bulkhead(bulkhead).decorate()
    assert guarded() == "ok"  # the whole retry loop holds one slot
    assert attempts == 3
    with pytest.raises(TypeError, match="with_bulkhead"):
        Decorators.of(flaky).with_bulkhead(object())  # type: ignore[arg-type]


# --- registry -----------------------------------------------------------------------------------


def test_registry_gets_or_creates_by_name_with_named_configs() -> None:
    clock = FakeClock()
    small = BulkheadConfig(max_concurrent_calls=2)
    registry = BulkheadRegistry(configs={"small": small}, clock=clock)
    first = registry.bulkhead("inventory")
    assert registry.bulkhead("inventory") is first
    assert first.config == BulkheadConfig() and first.clock is clock
    named = registry.bulkhead("reports", "small")
    assert named.config is small
    assert registry.bulkhead("reports", small) is named
    with pytest.raises(ValueError, match="different configuration"):
        registry.bulkhead("reports", BulkheadConfig(max_concurrent_calls=3))
    with pytest.raises(ConfigurationNotFoundError):
        registry.bulkhead("x", "missing")
    assert set(registry.names()) == {"inventory", "reports"}
    assert BulkheadRegistry(BulkheadConfig(max_concurrent_calls=7)).bulkhead("a").config == (
        BulkheadConfig(max_concurrent_calls=7)
    )


# --- metrics export -------------------------------------------------------------------------------


def test_exported_to_prometheus_under_resilience4js_names() -> None:
    from prometheus_client import CollectorRegistry

    from faulttol.metrics.prometheus import PrometheusExporter

    registry = CollectorRegistry()
    exporter = PrometheusExporter(registry)
    bulkhead = Bulkhead("inventory", BulkheadConfig(max_concurrent_calls=4))
    assert exporter.register_bulkhead(bulkhead) is exporter
    exporter.register_bulkhead(bulkhead)  # the same object again: a no-op
    with pytest.raises(ValueError, match="already registered"):
        exporter.register_bulkhead(Bulkhead("inventory"))
    bulkhead.acquire_permission()
    labels = {"name": "inventory"}
    available = "resilience4j_bulkhead_available_concurrent_calls"
    assert registry.get_sample_value(available, labels) == 3.0
    assert registry.get_sample_value(
        "resilience4j_bulkhead_max_allowed_concurrent_calls", labels) == 4.0
    bulkhead.release_permission()
    assert registry.get_sample_value(available, labels) == 4.0


def test_exported_to_opentelemetry_under_resilience4js_names() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from faulttol.metrics.opentelemetry import OpenTelemetryExporter

    reader = InMemoryMetricReader()
    exporter = OpenTelemetryExporter(MeterProvider(metric_readers=[reader]))
    bulkhead = Bulkhead("inventory", BulkheadConfig(max_concurrent_calls=4))
    exporter.register_bulkhead(bulkhead, name="inv")
    bulkhead.acquire_permission()
    data = reader.get_metrics_data()
    assert data is not None
    values = {
        m.name: [(dict(p.attributes or {}), p.value) for p in m.data.data_points]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert values["resilience4j.bulkhead.available.concurrent.calls"] == [({"name": "inv"}, 3)]
    assert values["resilience4j.bulkhead.max.allowed.concurrent.calls"] == [({"name": "inv"}, 4)]
