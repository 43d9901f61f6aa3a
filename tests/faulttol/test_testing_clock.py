"""``faulttol.testing.use_clock``: a FakeClock as the default clock of components made in a block.

The default is read when a component is created: a component created inside the block keeps
the clock after it, one created outside never sees it. It lives in a ``contextvars.ContextVar``:
asyncio tasks inherit it, threads do not unless they run in a copied context.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Callable

import pytest

from faulttol import (
    SYSTEM_CLOCK,
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerRegistry,
    Clock,
    OrderedProvider,
    Retry,
    RetryConfig,
    RetryRegistry,
    State,
)
from faulttol.health import HealthMonitor, run_probes, run_probes_async
from faulttol.interop.pybreaker import PyBreakerAdapter
from faulttol.testing import FakeClock, use_clock
from faulttol_redis import DatabaseConfig, FailoverProvider, MultiDbConfig
from faulttol_redis.asyncio import FailoverProvider as AsyncFailoverProvider
from faulttol_redis.testing import RedisServer

TRIP_ON_ONE_FAILURE = CircuitBreakerConfig(
    sliding_window_size=1,
    minimum_number_of_calls=1,
    wait_duration_in_open_state=60.0,
    permitted_number_of_calls_in_half_open_state=1,
)


def _fail() -> None:
    raise ConnectionError("down")


def _trip(breaker: CircuitBreaker) -> None:
    with pytest.raises(ConnectionError):
        breaker.call(_fail)
    assert breaker.state is State.OPEN


def test_breaker_created_inside_use_clock_follows_the_fake_clock() -> None:
    with use_clock(FakeClock()) as clock:
        breaker = CircuitBreaker("db", TRIP_ON_ONE_FAILURE)
        assert breaker.clock is clock
        _trip(breaker)
        clock.advance(59.0)
        with pytest.raises(CallNotPermittedError):
            breaker.call(lambda: "ok")
    # The block is over, but the breaker keeps the clock it was created with.
    clock.advance(1.0)
    assert breaker.call(lambda: "ok") == "ok"  # the open wait passed on the fake clock
    assert breaker.state is State.CLOSED


def test_retry_created_inside_use_clock_waits_on_the_fake_clock() -> None:
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise TimeoutError
        return "ok"

    with use_clock(FakeClock()) as clock:
        retry = Retry("r", RetryConfig(max_attempts=3, wait_duration=30.0))
    assert retry.clock is clock
    assert retry.call(flaky) == "ok"  # would block for 90 s on the system clock
    assert clock.sleeps == [30.0, 60.0]


def test_components_created_outside_the_block_keep_the_system_clock() -> None:
    before = CircuitBreaker("before")
    with use_clock(FakeClock()):
        pass
    after = Retry("after")
    assert before.clock is SYSTEM_CLOCK
    assert after.clock is SYSTEM_CLOCK


def test_an_explicit_clock_wins_over_the_default() -> None:
    mine = FakeClock(start=100.0)
    with use_clock(FakeClock()):
        assert CircuitBreaker("b", clock=mine).clock is mine
        assert Retry("r", clock=mine).clock is mine
        assert Retry("s", clock=SYSTEM_CLOCK).clock is SYSTEM_CLOCK


def test_nested_blocks_restore_the_outer_default() -> None:
    outer, inner = FakeClock(), FakeClock()
    with use_clock(outer):
        assert CircuitBreaker("a").clock is outer
        with use_clock(inner) as entered:
            assert entered is inner
            assert CircuitBreaker("b").clock is inner
        assert CircuitBreaker("c").clock is outer
    assert CircuitBreaker("d").clock is SYSTEM_CLOCK


def test_the_default_is_restored_when_the_block_raises() -> None:
    with pytest.raises(KeyError), use_clock(FakeClock()):
        raise KeyError("boom")
    assert CircuitBreaker("after").clock is SYSTEM_CLOCK


def test_registries_provider_monitor_and_adapter_use_the_default() -> None:
    pybreaker = pytest.importorskip("pybreaker")
    with use_clock(FakeClock()) as clock:
        breakers = CircuitBreakerRegistry()
        retries = RetryRegistry()
        provider = OrderedProvider(["a", "b"])
        monitor = HealthMonitor(lambda: 1, lambda index: True)
        adapter = PyBreakerAdapter(pybreaker.CircuitBreaker())
    try:
        # Registries read the default when they are created, and hand it to what they make.
        assert breakers.circuit_breaker("x").clock is clock
        assert retries.retry("y").clock is clock
        assert provider.clock is clock
        assert provider.breaker(1).clock is clock
        assert monitor._clock is clock
        assert adapter._clock is clock
    finally:
        provider.close()
        monitor.close()


def test_run_probes_waits_on_the_default_clock() -> None:
    with use_clock(FakeClock()) as clock:
        # HEALTHY_ALL (the default policy) runs every probe of a passing round.
        assert run_probes(lambda: True, probes=3, delay=20.0) is True
        assert asyncio.run(_passing_async_round()) is True
    assert clock.sleeps == [20.0, 20.0, 20.0, 20.0]


async def _passing_async_round() -> bool:
    async def probe() -> bool:
        return True

    return await run_probes_async(probe, probes=3, delay=20.0)


def test_asyncio_tasks_inherit_the_default() -> None:
    async def make_breaker() -> CircuitBreaker:
        await asyncio.sleep(0)
        return CircuitBreaker("in-task")

    async def main() -> list[CircuitBreaker]:
        return list(await asyncio.gather(make_breaker(), asyncio.create_task(make_breaker())))

    with use_clock(FakeClock()) as clock:
        made = asyncio.run(main())
    assert [breaker.clock for breaker in made] == [clock, clock]


async def test_use_clock_inside_a_task_does_not_leak_to_other_tasks() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def scoped() -> Clock:
        with use_clock(FakeClock()) as clock:
            started.set()
            await release.wait()
            assert CircuitBreaker("scoped").clock is clock
            return clock

    async def other() -> Clock:
        await started.wait()
        clock = CircuitBreaker("other").clock
        release.set()
        return clock

    scoped_clock, other_clock = await asyncio.gather(scoped(), other())
    assert isinstance(scoped_clock, FakeClock)
    assert other_clock is SYSTEM_CLOCK


def _clock_seen_by_thread(run: Callable[[Callable[[], None]], Callable[[], None]]) -> Clock:
    seen: list[Clock] = []
    thread = threading.Thread(target=run(lambda: seen.append(CircuitBreaker("t").clock)))
    thread.start()
    thread.join(10)
    assert seen, "the thread did not run"
    return seen[0]


def test_threads_do_not_inherit_the_default_unless_the_context_is_copied() -> None:
    inherits = bool(getattr(sys.flags, "thread_inherit_context", False))  # Python 3.14+
    with use_clock(FakeClock()) as clock:
        plain = _clock_seen_by_thread(lambda fn: fn)
        context = contextvars.copy_context()
        copied = _clock_seen_by_thread(lambda fn: lambda: context.run(fn))
    assert plain is (clock if inherits else SYSTEM_CLOCK)
    assert copied is clock


def test_use_clock_rejects_what_is_not_a_clock() -> None:
    with pytest.raises(TypeError, match="clock"):
        use_clock(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock"):
        use_clock(None)  # type: ignore[arg-type]


def test_a_use_clock_block_cannot_be_entered_twice_at_once() -> None:
    scope = use_clock(FakeClock())
    with scope, pytest.raises(RuntimeError, match="already"), scope:
        pass
    assert CircuitBreaker("after").clock is SYSTEM_CLOCK


def test_redis_failover_providers_created_inside_use_clock_use_it(
    redis_server: RedisServer,
) -> None:
    config = MultiDbConfig([DatabaseConfig(redis_server.host, redis_server.port)])
    with use_clock(FakeClock()) as clock:
        provider = FailoverProvider(config, start_health_checks=False)
        async_provider = AsyncFailoverProvider(config, start_health_checks=False)
    try:
        assert provider.clock is clock
        assert provider.breaker(1).clock is clock
        assert async_provider.clock is clock
    finally:
        provider.close()
        asyncio.run(async_provider.aclose())
