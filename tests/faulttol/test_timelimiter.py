"""Tests for faulttol.TimeLimiter: config, sync calls on an executor, async calls as tasks,
deadlines on a FakeClock (and the system clock's path), cancel vs no-cancel, events, metrics,
decorators, the registry and Decorators.with_time_limiter."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import inspect
import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from faulttol import (
    BulkheadFullError,
    ConfigTypeError,
    Decorators,
    ThreadPoolBulkhead,
    ThreadPoolBulkheadConfig,
    TimeLimiter,
    TimeLimiterConfig,
    TimeLimiterRegistry,
    TimeLimitExceededError,
)
from faulttol.testing import FakeClock
from faulttol.timelimiter import (
    DEFAULT_CANCEL_RUNNING_FUTURE,
    DEFAULT_TIMEOUT_DURATION,
    TimeLimiterEvent,
    TimeLimiterOnErrorEvent,
    TimeLimiterOnSuccessEvent,
    TimeLimiterOnTimeoutEvent,
    default_executor,
)

WAIT = 10.0  # real seconds a test waits for a thread at most


@pytest.fixture
def pool() -> Iterator[ThreadPoolBulkhead]:
    """One thread, a queue of 5: a call can be held running while others queue."""
    executor = ThreadPoolBulkhead(
        "tl-pool",
        ThreadPoolBulkheadConfig(max_thread_pool_size=1, core_thread_pool_size=1, queue_capacity=5),
    )
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def recorder(limiter: TimeLimiter) -> list[TimeLimiterEvent]:
    seen: list[TimeLimiterEvent] = []
    limiter.events.on_event(seen.append)
    return seen


def kinds(seen: list[TimeLimiterEvent]) -> list[str]:
    return [type(e).__name__.removeprefix("TimeLimiterOn").removesuffix("Event") for e in seen]


def counts(limiter: TimeLimiter) -> tuple[int, int, int]:
    m = limiter.metrics
    return m.number_of_successful_calls, m.number_of_failed_calls, m.number_of_timed_out_calls


# --- configuration ----------------------------------------------------------------------------


def test_config_defaults_are_resilience4js() -> None:
    config = TimeLimiterConfig()
    assert config.timeout_duration == DEFAULT_TIMEOUT_DURATION == 1.0
    assert config.cancel_running_future is DEFAULT_CANCEL_RUNNING_FUTURE is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeout_duration = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), -(10**400)])
def test_config_out_of_range_is_a_value_error_naming_the_field(value: object) -> None:
    with pytest.raises(ValueError, match="timeout_duration") as raised:
        TimeLimiterConfig(timeout_duration=value)  # type: ignore[arg-type]
    assert not isinstance(raised.value, ConfigTypeError)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_duration", "1"),
        ("timeout_duration", None),
        ("timeout_duration", True),
        ("cancel_running_future", 1),
        ("cancel_running_future", "yes"),
        ("cancel_running_future", None),
    ],
)
def test_config_wrong_kind_is_a_config_type_error_naming_the_field(
    field: str, value: object
) -> None:
    with pytest.raises(ConfigTypeError, match=field):
        TimeLimiterConfig(**{field: value})  # type: ignore[arg-type]


def test_limiter_refuses_a_bad_name_config_or_executor() -> None:
    with pytest.raises(ConfigTypeError, match="name"):
        TimeLimiter(1)  # type: ignore[arg-type]
    with pytest.raises(ConfigTypeError, match="config"):
        TimeLimiter("t", TimeLimiterConfig)  # type: ignore[arg-type]
    with pytest.raises(ConfigTypeError, match="executor"):
        TimeLimiter("t", executor=lambda fn: fn())  # type: ignore[arg-type]


def test_properties_and_the_shared_default_executor(pool: ThreadPoolBulkhead) -> None:
    clock = FakeClock()
    limiter = TimeLimiter("t", clock=clock)
    assert (limiter.name, limiter.clock, limiter.config) == ("t", clock, TimeLimiterConfig())
    assert limiter.executor is default_executor() is TimeLimiter("u").executor
    assert isinstance(default_executor(), ThreadPoolBulkhead)
    assert TimeLimiter("v", executor=pool).executor is pool
    assert "'t'" in repr(limiter)


def test_error_is_a_timeout_error_and_pickles() -> None:
    error = TimeLimitExceededError("t", 1.5)
    assert isinstance(error, TimeoutError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.time_limiter_name, copy.timeout_duration) == ("t", 1.5)
    assert "1.5 s" in str(copy)


# --- sync calls -------------------------------------------------------------------------------


def test_sync_success_and_error_within_the_deadline(pool: ThreadPoolBulkhead) -> None:
    limiter = TimeLimiter("t", clock=FakeClock(), executor=pool)
    seen = recorder(limiter)
    assert limiter.call(lambda a, *, b: a + b, 1, b=2) == 3

    def boom() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        limiter.call(boom)
    assert kinds(seen) == ["Success", "Error"]
    error_event = seen[1]
    assert isinstance(error_event, TimeLimiterOnErrorEvent)
    assert isinstance(error_event.exception, KeyError)
    assert counts(limiter) == (1, 1, 0)


def test_a_sync_call_that_ends_after_its_deadline_times_out_and_publishes_only_on_timeout(
    pool: ThreadPoolBulkhead,
) -> None:
    clock = FakeClock()
    limiter = TimeLimiter("t", TimeLimiterConfig(timeout_duration=1.0), clock=clock, executor=pool)
    seen = recorder(limiter)

    def slow() -> str:
        clock.sleep(2.0)  # two fake seconds: past the 1 s deadline
        return "late"

    def quick() -> str:
        clock.sleep(0.5)
        return "in time"

    with pytest.raises(TimeLimitExceededError) as raised:
        limiter.call(slow)
    assert raised.value.time_limiter_name == "t" and raised.value.timeout_duration == 1.0
    assert limiter.call(quick) == "in time"
    assert kinds(seen) == ["Timeout", "Success"]
    assert counts(limiter) == (1, 0, 1)


def test_the_sync_caller_gets_the_error_at_the_deadline_while_the_call_runs_on(
    pool: ThreadPoolBulkhead,
) -> None:
    clock = FakeClock()
    limiter = TimeLimiter("t", clock=clock, executor=pool)
    gate = threading.Event()
    finished = threading.Event()

    def hung() -> None:
        clock.advance(1.5)  # the deadline passes while the call is still running
        gate.wait(WAIT)
        finished.set()

    with pytest.raises(TimeLimitExceededError):
        limiter.call(hung)
    assert not finished.is_set()  # a thread cannot be killed: it runs on
    gate.set()
    assert finished.wait(WAIT)


def test_a_queued_sync_call_is_cancelled_at_the_deadline_only_with_cancel_running_future(
    pool: ThreadPoolBulkhead,
) -> None:
    clock = FakeClock()
    gate = threading.Event()
    busy = pool.submit(gate.wait, WAIT)  # the pool's only thread is taken
    ran: list[str] = []

    def queued(tag: str) -> None:
        ran.append(tag)

    cancelling = TimeLimiter("c", clock=clock, executor=pool)
    keeping = TimeLimiter(
        "k", TimeLimiterConfig(cancel_running_future=False), clock=clock, executor=pool
    )
    advancer = threading.Timer(0.05, clock.advance, (1.5,))
    advancer.start()
    with pytest.raises(TimeLimitExceededError):
        cancelling.call(queued, "cancelled")
    advancer.join()
    advancer = threading.Timer(0.05, clock.advance, (1.5,))
    advancer.start()
    with pytest.raises(TimeLimitExceededError):
        keeping.call(queued, "kept")
    advancer.join()
    gate.set()
    busy.result(WAIT)
    pool.submit(lambda: None).result(WAIT)  # everything queued before has run
    assert ran == ["kept"]


def test_the_system_clock_path_times_out_in_real_time() -> None:
    limiter = TimeLimiter("t", TimeLimiterConfig(timeout_duration=0.05))
    gate = threading.Event()
    started = time.monotonic()
    with pytest.raises(TimeLimitExceededError):
        limiter.call(gate.wait, WAIT)
    assert 0.04 <= time.monotonic() - started < WAIT
    gate.set()
    assert limiter.call(lambda: "fast") == "fast"


def test_a_timeout_error_raised_by_the_call_itself_is_an_error_not_a_timeout() -> None:
    # On the system clock's path the caller waits with future.result(timeout): the call's
    # own TimeoutError must not be taken for the deadline.
    limiter = TimeLimiter("t", TimeLimiterConfig(timeout_duration=5.0))
    seen = recorder(limiter)

    def own_timeout() -> None:
        raise TimeoutError("the call's own")

    with pytest.raises(TimeoutError, match="the call's own") as raised:
        limiter.call(own_timeout)
    assert not isinstance(raised.value, TimeLimitExceededError)
    assert kinds(seen) == ["Error"] and counts(limiter) == (0, 1, 0)


def test_a_full_executor_is_an_error_of_the_call(pool: ThreadPoolBulkhead) -> None:
    tiny = ThreadPoolBulkhead(
        "tiny",
        ThreadPoolBulkheadConfig(max_thread_pool_size=1, core_thread_pool_size=1, queue_capacity=0),
    )
    gate = threading.Event()
    try:
        tiny.submit(gate.wait, WAIT)
        limiter = TimeLimiter("t", clock=FakeClock(), executor=tiny)
        seen = recorder(limiter)
        with pytest.raises(BulkheadFullError):
            limiter.call(lambda: 1)
        assert kinds(seen) == ["Error"] and counts(limiter) == (0, 1, 0)
    finally:
        gate.set()
        tiny.close()


def test_sync_calls_run_in_the_callers_context_on_any_executor() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        limiter = TimeLimiter("t", executor=executor)
        assert limiter.call(var.get) == "caller"


def test_call_refuses_an_async_function() -> None:
    async def coro() -> None: ...

    with pytest.raises(TypeError, match="call_async"):
        TimeLimiter("t").call(coro)  # type: ignore[arg-type]


# --- async calls ------------------------------------------------------------------------------


async def test_async_success_and_error_within_the_deadline() -> None:
    limiter = TimeLimiter("t", clock=FakeClock())
    seen = recorder(limiter)

    async def add(a: int, *, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    async def boom() -> None:
        raise KeyError("k")

    assert await limiter.call_async(add, 1, b=2) == 3
    with pytest.raises(KeyError):
        await limiter.call_async(boom)
    assert kinds(seen) == ["Success", "Error"] and counts(limiter) == (1, 1, 0)


async def test_an_async_call_past_its_deadline_is_cancelled_and_unwound_first() -> None:
    clock = FakeClock()
    limiter = TimeLimiter("t", clock=clock)
    seen = recorder(limiter)
    steps: list[str] = []

    async def hung() -> None:
        clock.advance(1.5)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise
        finally:
            steps.append("cleaned up")

    with pytest.raises(TimeLimitExceededError):
        await limiter.call_async(hung)
    assert steps == ["cancelled", "cleaned up"]  # before the caller got the error
    assert kinds(seen) == ["Timeout"]


async def test_without_cancel_running_future_an_async_call_runs_on_after_the_timeout() -> None:
    clock = FakeClock()
    limiter = TimeLimiter("t", TimeLimiterConfig(cancel_running_future=False), clock=clock)
    gate = asyncio.Event()
    steps: list[str] = []

    async def slow() -> str:
        clock.advance(1.5)
        await gate.wait()
        steps.append("finished")
        return "late"

    with pytest.raises(TimeLimitExceededError):
        await limiter.call_async(slow)
    assert steps == []
    gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert steps == ["finished"]
    assert counts(limiter) == (0, 0, 1)


async def test_an_async_call_that_ends_after_its_deadline_times_out() -> None:
    clock = FakeClock()
    limiter = TimeLimiter("t", TimeLimiterConfig(timeout_duration=1.0), clock=clock)

    async def slow() -> str:
        await clock.sleep_async(2.0)
        return "late"

    async def quick() -> str:
        await clock.sleep_async(0.5)
        return "in time"

    with pytest.raises(TimeLimitExceededError):
        await limiter.call_async(slow)
    assert await limiter.call_async(quick) == "in time"


async def test_the_system_clock_path_cancels_an_async_call_in_real_time() -> None:
    limiter = TimeLimiter("t", TimeLimiterConfig(timeout_duration=0.02))
    cancelled: list[bool] = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(TimeLimitExceededError):
        await limiter.call_async(forever)
    assert cancelled == [True]


async def test_a_cancelled_caller_cancels_the_call() -> None:
    limiter = TimeLimiter("t", TimeLimiterConfig(timeout_duration=60))
    entered = asyncio.Event()
    cancelled: list[bool] = []

    async def forever() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    caller = asyncio.create_task(limiter.call_async(forever))
    await entered.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0)
    assert cancelled == [True]
    assert counts(limiter) == (0, 0, 0)  # neither a failure nor a timeout


async def test_call_async_runs_a_sync_function_on_the_executor_without_blocking_the_loop(
    pool: ThreadPoolBulkhead,
) -> None:
    clock = FakeClock()
    limiter = TimeLimiter("t", clock=clock, executor=pool)
    gate = threading.Event()
    task = asyncio.create_task(limiter.call_async(lambda: gate.wait(WAIT) and "done"))
    for _ in range(10):
        await asyncio.sleep(0)  # the loop keeps running
    assert not task.done()
    gate.set()
    assert await task == "done"

    def hung() -> None:
        clock.advance(2)
        gate.wait(WAIT)

    with pytest.raises(TimeLimitExceededError):
        await limiter.call_async(hung)


# --- decorators -------------------------------------------------------------------------------


def test_decorators_keep_signatures_sync_and_async(pool: ThreadPoolBulkhead) -> None:
    limiter = TimeLimiter("t", executor=pool)

    def fetch(key: str, *, default: int = 0) -> int:
        """Fetch."""
        return default

    async def afetch(key: str, *, default: int = 0) -> int:
        return default

    limited = limiter(fetch)
    alimited = limiter(afetch)
    assert inspect.signature(limited) == inspect.signature(fetch)
    assert inspect.signature(alimited) == inspect.signature(afetch)
    assert limited.__doc__ == "Fetch." and limited.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(alimited) and not inspect.iscoroutinefunction(limited)
    assert limited("k", default=2) == 2
    assert asyncio.run(alimited("k", default=3)) == 3
    with pytest.raises(TypeError, match="callable"):
        limiter.decorate(None)  # type: ignore[arg-type]


async def test_decorators_with_time_limiter_bounds_what_was_built_so_far() -> None:
    clock = FakeClock()
    limiter = TimeLimiter("t", clock=clock)

    async def slow(n: int) -> int:
        await clock.sleep_async(n)
        return n

    limited = Decorators.of(slow).with_time_limiter(limiter).decorate()
    assert await limited(0) == 0
    with pytest.raises(TimeLimitExceededError):
        await limited(5)
    with pytest.raises(TypeError, match="with_time_limiter"):
        Decorators.of(slow).with_time_limiter(object())  # type: ignore[arg-type]


# --- registry ---------------------------------------------------------------------------------


def test_registry_gets_or_creates_by_name() -> None:
    clock = FakeClock()
    short = TimeLimiterConfig(timeout_duration=0.1)
    registry = TimeLimiterRegistry(configs={"short": short}, clock=clock)
    limiter = registry.time_limiter("search", "short")
    assert registry.time_limiter("search") is limiter
    assert limiter.config is short and limiter.clock is clock
    assert registry.time_limiter("other").config == TimeLimiterConfig()
    with pytest.raises(ValueError, match="different configuration"):
        registry.time_limiter("search", TimeLimiterConfig(timeout_duration=9))


def test_events_carry_the_clock_time() -> None:
    clock = FakeClock(7.0)
    limiter = TimeLimiter("t", clock=clock)
    seen: list[Any] = []
    limiter.events.on_success(seen.append)
    limiter.events.on_timeout(seen.append)
    limiter.events.on_error(seen.append)
    limiter.call(lambda: 1)
    assert [type(e) for e in seen] == [TimeLimiterOnSuccessEvent]
    assert seen[0].name == "t" and seen[0].created_at == 7.0
    assert TimeLimiterOnTimeoutEvent("t").name == "t"


def test_calls_by_kind_are_exported_from_registration_on(pool: ThreadPoolBulkhead) -> None:
    from prometheus_client import CollectorRegistry

    from faulttol.metrics.prometheus import PrometheusExporter

    clock = FakeClock()
    limiter = TimeLimiter("search", clock=clock, executor=pool)
    limiter.call(lambda: "before registration")
    registry = CollectorRegistry()
    exporter = PrometheusExporter(registry).register_time_limiter(limiter)
    with pytest.raises(ValueError, match="already registered"):
        exporter.register_time_limiter(TimeLimiter("search"))

    def boom() -> None:
        raise KeyError("k")

    def slow() -> None:
        clock.sleep(2)

    limiter.call(lambda: "ok")
    limiter.call(lambda: "ok")
    with pytest.raises(KeyError):
        limiter.call(boom)
    with pytest.raises(TimeLimitExceededError):
        limiter.call(slow)

    def value(kind: str) -> float | None:
        return registry.get_sample_value("resilience4j_timelimiter_calls_total",
                                         {"name": "search", "kind": kind})

    assert (value("successful"), value("failed"), value("timeout")) == (2.0, 1.0, 1.0)
    assert counts(limiter) == (3, 1, 1)  # the limiter's own counts start at its creation
