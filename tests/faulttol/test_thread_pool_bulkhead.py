"""Tests for faulttol.ThreadPoolBulkhead: config, where a call goes (idle thread, core
thread, queue, extra thread, refusal), keep-alive on the clock, close semantics, the
Executor API, asyncio use, events and decorators."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import inspect
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from faulttol import (
    BulkheadFullError,
    ConfigTypeError,
    Decorators,
    ThreadPoolBulkhead,
    ThreadPoolBulkheadConfig,
)
from faulttol.bulkhead import (
    DEFAULT_CORE_THREAD_POOL_SIZE,
    DEFAULT_KEEP_ALIVE_DURATION,
    DEFAULT_MAX_THREAD_POOL_SIZE,
    DEFAULT_QUEUE_CAPACITY,
    BulkheadEvent,
)
from faulttol.testing import FakeClock

WAIT = 10.0  # real seconds a test waits for a thread at most (it normally takes microseconds)


def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait (bounded) for a condition that a pool thread makes true asynchronously."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


@pytest.fixture
def pools() -> Iterator[list[ThreadPoolBulkhead]]:
    """Pools created by a test; closed (and their blockers released) at teardown."""
    created: list[ThreadPoolBulkhead] = []
    yield created
    for pool in created:
        pool.shutdown(wait=False, cancel_futures=True)


class Blockers:
    """Calls that block until released: ``hold()`` returns a callable for ``submit``."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def __call__(self, value: Any = None) -> Any:
        self.started.release()
        assert self.release.wait(WAIT)
        return value

    def wait_started(self, n: int) -> None:
        for _ in range(n):
            assert self.started.acquire(timeout=WAIT)


# --- configuration ----------------------------------------------------------------------------


def test_config_defaults_are_resilience4js() -> None:
    config = ThreadPoolBulkheadConfig()
    cpus = os.cpu_count() or 1
    assert config.max_thread_pool_size == DEFAULT_MAX_THREAD_POOL_SIZE == cpus
    assert config.core_thread_pool_size == DEFAULT_CORE_THREAD_POOL_SIZE == max(1, cpus - 1)
    assert config.queue_capacity == DEFAULT_QUEUE_CAPACITY == 100
    assert config.keep_alive_duration == DEFAULT_KEEP_ALIVE_DURATION == 0.02
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.queue_capacity = 3  # type: ignore[misc]


OUT_OF_RANGE: list[tuple[dict[str, Any], str]] = [
    ({"max_thread_pool_size": 0, "core_thread_pool_size": 1}, "max_thread_pool_size"),
    ({"max_thread_pool_size": 2, "core_thread_pool_size": 0}, "core_thread_pool_size"),
    ({"max_thread_pool_size": 2, "core_thread_pool_size": 3}, "core_thread_pool_size"),
    ({"queue_capacity": -1}, "queue_capacity"),
    ({"keep_alive_duration": -0.5}, "keep_alive_duration"),
    ({"keep_alive_duration": float("nan")}, "keep_alive_duration"),
    ({"keep_alive_duration": float("inf")}, "keep_alive_duration"),
]


@pytest.mark.parametrize(("kwargs", "field"), OUT_OF_RANGE)
def test_config_out_of_range_is_a_value_error_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field) as raised:
        ThreadPoolBulkheadConfig(**kwargs)
    assert not isinstance(raised.value, ConfigTypeError)


WRONG_KIND = [
    ("max_thread_pool_size", 2.0),
    ("core_thread_pool_size", True),
    ("queue_capacity", "10"),
    ("queue_capacity", None),
    ("keep_alive_duration", "0.02"),
    ("keep_alive_duration", None),
]


@pytest.mark.parametrize(("field", "value"), WRONG_KIND)
def test_config_wrong_kind_is_a_config_type_error_naming_the_field(
    field: str, value: object
) -> None:
    with pytest.raises(ConfigTypeError, match=field):
        ThreadPoolBulkheadConfig(**{field: value})


def test_config_boundaries_are_accepted() -> None:
    config = ThreadPoolBulkheadConfig(
        max_thread_pool_size=1, core_thread_pool_size=1, queue_capacity=0, keep_alive_duration=0
    )
    assert (config.max_thread_pool_size, config.queue_capacity) == (1, 0)


def test_refuses_a_bad_name_or_config() -> None:
    with pytest.raises(ConfigTypeError, match="name"):
        ThreadPoolBulkhead(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigTypeError, match="config"):
        ThreadPoolBulkhead("p", object())  # type: ignore[arg-type]


# --- running calls ----------------------------------------------------------------------------


def test_submit_returns_a_future_with_the_result_or_the_exception(
    pools: list[ThreadPoolBulkhead],
) -> None:
    pool = ThreadPoolBulkhead("p")
    pools.append(pool)
    assert isinstance(pool, concurrent.futures.Executor)
    future = pool.submit(lambda a, *, b: a + b, 1, b=2)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(WAIT) == 3

    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        pool.submit(boom).result(WAIT)
    assert list(pool.map(lambda x: x * 2, range(5))) == [0, 2, 4, 6, 8]
    assert pool.call(lambda: "called") == "called"


def test_where_calls_go_core_thread_queue_extra_thread_then_refusal(
    pools: list[ThreadPoolBulkhead],
) -> None:
    pool = ThreadPoolBulkhead(
        "p",
        ThreadPoolBulkheadConfig(max_thread_pool_size=2, core_thread_pool_size=1, queue_capacity=1),
    )
    pools.append(pool)
    blockers = Blockers()
    m = pool.metrics
    first = pool.submit(blockers, "first")  # a core thread starts
    blockers.wait_started(1)
    assert (m.thread_pool_size, m.queue_depth) == (1, 0)
    queued = pool.submit(blockers, "queued")  # the core thread is busy: the queue
    assert (m.thread_pool_size, m.queue_depth) == (1, 1)
    extra = pool.submit(blockers, "extra")  # the queue is full: an extra thread
    blockers.wait_started(1)
    assert (m.thread_pool_size, m.queue_depth, m.active_thread_count) == (2, 1, 2)
    with pytest.raises(BulkheadFullError) as raised:  # every thread busy, queue full
        pool.submit(blockers, "refused")
    assert raised.value.bulkhead_name == "p"
    blockers.release.set()
    assert [f.result(WAIT) for f in (first, queued, extra)] == ["first", "queued", "extra"]
    assert m.queue_depth == 0
    assert (m.queue_capacity, m.core_thread_pool_size, m.max_thread_pool_size) == (1, 1, 2)
    assert m.remaining_queue_capacity == 1


def test_an_idle_thread_is_reused_before_a_new_one_starts(
    pools: list[ThreadPoolBulkhead],
) -> None:
    pool = ThreadPoolBulkhead(
        "p", ThreadPoolBulkheadConfig(max_thread_pool_size=4, core_thread_pool_size=4)
    )
    pools.append(pool)
    names = {pool.submit(lambda: threading.current_thread().name).result(WAIT) for _ in range(20)}
    assert len(names) == 1
    assert names.pop().startswith("faulttol-bulkhead-p-")
    assert pool.metrics.thread_pool_size == 1


def test_a_queue_of_zero_needs_a_free_thread(pools: list[ThreadPoolBulkhead]) -> None:
    pool = ThreadPoolBulkhead(
        "p",
        ThreadPoolBulkheadConfig(max_thread_pool_size=1, core_thread_pool_size=1, queue_capacity=0),
    )
    pools.append(pool)
    blockers = Blockers()
    busy = pool.submit(blockers)
    blockers.wait_started(1)
    with pytest.raises(BulkheadFullError):
        pool.submit(blockers)
    blockers.release.set()
    busy.result(WAIT)
    eventually(lambda: pool.metrics.active_thread_count == 0)
    assert pool.submit(lambda: 1).result(WAIT) == 1


def test_extra_threads_end_after_keep_alive_on_the_clock_core_threads_stay(
    pools: list[ThreadPoolBulkhead],
) -> None:
    clock = FakeClock()
    pool = ThreadPoolBulkhead(
        "p",
        ThreadPoolBulkheadConfig(max_thread_pool_size=3, core_thread_pool_size=1, queue_capacity=0,
                                 keep_alive_duration=0.02),
        clock=clock,
    )
    pools.append(pool)
    blockers = Blockers()
    futures = [pool.submit(blockers) for _ in range(3)]
    blockers.wait_started(3)
    blockers.release.set()
    for f in futures:
        f.result(WAIT)
    eventually(lambda: pool.metrics.active_thread_count == 0)
    assert pool.metrics.thread_pool_size == 3  # fake time has not moved: nobody retires
    clock.advance(0.02)
    eventually(lambda: pool.metrics.thread_pool_size == 1)  # the core thread stays
    assert pool.submit(lambda: "still works").result(WAIT) == "still works"


def test_calls_run_in_the_submitters_context(pools: list[ThreadPoolBulkhead]) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    pool = ThreadPoolBulkhead("p")
    pools.append(pool)
    var.set("submitter")
    assert pool.submit(var.get).result(WAIT) == "submitter"


# --- closing ----------------------------------------------------------------------------------


def test_close_lets_queued_work_finish_refuses_new_calls_and_joins_threads() -> None:
    pool = ThreadPoolBulkhead(
        "p",
        ThreadPoolBulkheadConfig(max_thread_pool_size=1, core_thread_pool_size=1, queue_capacity=5),
    )
    blockers = Blockers()
    running = pool.submit(blockers, "running")
    blockers.wait_started(1)
    queued = [pool.submit(lambda n=n: n) for n in range(3)]
    closer = threading.Thread(target=pool.close)
    closer.start()
    eventually(lambda: pool.closed)
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(lambda: 1)
    assert closer.is_alive()  # close() waits for the queued work
    blockers.release.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert running.result(0) == "running"
    assert [f.result(0) for f in queued] == [0, 1, 2]
    assert pool.metrics.thread_pool_size == 0
    pool.close()  # idempotent


def test_shutdown_with_cancel_futures_cancels_the_queued_calls() -> None:
    pool = ThreadPoolBulkhead(
        "p",
        ThreadPoolBulkheadConfig(max_thread_pool_size=1, core_thread_pool_size=1, queue_capacity=5),
    )
    blockers = Blockers()
    running = pool.submit(blockers, "running")
    blockers.wait_started(1)
    queued = [pool.submit(lambda: "never") for _ in range(3)]
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    blockers.release.set()
    assert running.result(WAIT) == "running"
    eventually(lambda: pool.metrics.thread_pool_size == 0)


def test_with_block_closes_and_close_from_a_pool_thread_does_not_deadlock() -> None:
    with ThreadPoolBulkhead("p") as pool:
        assert pool.submit(lambda: 1).result(WAIT) == 1
    assert pool.closed and pool.metrics.thread_pool_size == 0
    pool2 = ThreadPoolBulkhead("p2")
    pool2.submit(pool2.close).result(WAIT)  # returns: the calling thread is not joined
    assert pool2.closed
    eventually(lambda: pool2.metrics.thread_pool_size == 0)


# --- asyncio and decorators -------------------------------------------------------------------


async def test_call_async_awaits_without_blocking_the_loop(
    pools: list[ThreadPoolBulkhead],
) -> None:
    pool = ThreadPoolBulkhead("p")
    pools.append(pool)
    gate = threading.Event()
    task = asyncio.create_task(pool.call_async(lambda: gate.wait(WAIT) and "done"))
    for _ in range(10):
        await asyncio.sleep(0)  # the loop runs while the call waits on its thread
    assert not task.done()
    gate.set()
    assert await task == "done"


async def test_cancelling_the_awaiting_task_cancels_a_queued_call(
    pools: list[ThreadPoolBulkhead],
) -> None:
    pool = ThreadPoolBulkhead(
        "p",
        ThreadPoolBulkheadConfig(max_thread_pool_size=1, core_thread_pool_size=1, queue_capacity=5),
    )
    pools.append(pool)
    blockers = Blockers()
    running = pool.submit(blockers)
    await asyncio.to_thread(blockers.wait_started, 1)
    ran: list[bool] = []
    waiter = asyncio.create_task(pool.call_async(lambda: ran.append(True)))
    await asyncio.sleep(0)
    assert pool.metrics.queue_depth == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    blockers.release.set()
    await asyncio.wrap_future(running)
    await asyncio.to_thread(eventually, lambda: pool.metrics.active_thread_count == 0)
    assert ran == []


def test_decorators_keep_signatures_and_run_on_the_pool(pools: list[ThreadPoolBulkhead]) -> None:
    pool = ThreadPoolBulkhead("p")
    pools.append(pool)

    def where(tag: str, *, upper: bool = False) -> str:
        """Say where it ran."""
        name = threading.current_thread().name
        return (tag.upper() if upper else tag) + ":" + name

    async def awhere(tag: str) -> str:
        await asyncio.sleep(0)
        return tag + ":" + threading.current_thread().name

    guarded = pool(where)
    aguarded = pool(awhere)
    assert inspect.signature(guarded) == inspect.signature(where)
    assert inspect.signature(aguarded) == inspect.signature(awhere)
    assert guarded.__doc__ == "Say where it ran."
    assert inspect.iscoroutinefunction(aguarded) and not inspect.iscoroutinefunction(guarded)
    assert guarded("x", upper=True).startswith("X:faulttol-bulkhead-p-")
    assert asyncio.run(aguarded("y")).startswith("y:faulttol-bulkhead-p-")
    assert pool.call(awhere, "z").startswith("z:faulttol-bulkhead-p-")
    guarded_stack = Decorators.of(where).with_bulkhead(pool).decorate()
    assert guarded_stack("s").startswith("s:faulttol-bulkhead-p-")
    with pytest.raises(TypeError, match="callable"):
        pool.decorate(3)  # type: ignore[arg-type]


# --- events -----------------------------------------------------------------------------------


def test_events_permitted_rejected_and_finished(pools: list[ThreadPoolBulkhead]) -> None:
    clock = FakeClock(3.0)
    pool = ThreadPoolBulkhead(
        "p",
        ThreadPoolBulkheadConfig(max_thread_pool_size=1, core_thread_pool_size=1, queue_capacity=0),
        clock=clock,
    )
    pools.append(pool)
    seen: list[BulkheadEvent] = []
    finished = threading.Event()
    pool.events.on_event(seen.append)
    pool.events.on_call_finished(lambda e: finished.set())
    blockers = Blockers()

    def boom() -> None:
        blockers()
        raise ValueError("x")

    future = pool.submit(boom)
    blockers.wait_started(1)
    with pytest.raises(BulkheadFullError):
        pool.submit(lambda: 1)
    blockers.release.set()
    with pytest.raises(ValueError):
        future.result(WAIT)
    assert finished.wait(WAIT)
    assert [type(e).__name__ for e in seen] == [
        "BulkheadOnCallPermittedEvent",
        "BulkheadOnCallRejectedEvent",
        "BulkheadOnCallFinishedEvent",  # also after an exception
    ]
    assert all(e.name == "p" and e.created_at == 3.0 for e in seen)
    assert "queue_capacity=0" in repr(pool.metrics) and "'p'" in repr(pool)


# --- metrics export -------------------------------------------------------------------------------


def test_exported_to_prometheus_under_resilience4js_names(pools: list[ThreadPoolBulkhead]) -> None:
    from prometheus_client import CollectorRegistry

    from faulttol.metrics.prometheus import PrometheusExporter

    pool = ThreadPoolBulkhead(
        "work",
        ThreadPoolBulkheadConfig(max_thread_pool_size=2, core_thread_pool_size=1, queue_capacity=3),
    )
    pools.append(pool)
    registry = CollectorRegistry()
    PrometheusExporter(registry).register_bulkhead(pool)
    blockers = Blockers()
    futures = [pool.submit(blockers) for _ in range(2)]  # one runs, one waits in the queue
    blockers.wait_started(1)

    def value(metric: str) -> float | None:
        return registry.get_sample_value(f"resilience4j_thread_pool_bulkhead_{metric}",
                                         {"name": "work"})

    assert value("queue_depth") == 1.0
    assert value("queue_capacity") == 3.0
    assert value("thread_pool_size") == 1.0
    assert value("core_thread_pool_size") == 1.0
    assert value("max_thread_pool_size") == 2.0
    blockers.release.set()
    for f in futures:
        f.result(WAIT)
    assert value("queue_depth") == 0.0
    # A Bulkhead's metrics are not mixed in.
    assert registry.get_sample_value("resilience4j_bulkhead_available_concurrent_calls",
                                     {"name": "work"}) is None


def test_a_thread_that_cannot_start_is_not_counted(
    pools: list[ThreadPoolBulkhead], monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = ThreadPoolBulkhead(
        "p", ThreadPoolBulkheadConfig(max_thread_pool_size=1, core_thread_pool_size=1)
    )
    pools.append(pool)

    def cannot_start(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", cannot_start)
        with pytest.raises(RuntimeError, match="can't start"):
            pool.submit(lambda: 1)
    assert pool.metrics.thread_pool_size == 0
    assert pool.submit(lambda: "started").result(WAIT) == "started"
