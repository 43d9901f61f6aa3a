"""RateLimiter: resilience4j's cycle arithmetic, driven by fake clocks (no sleeps)."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from faulttol import (
    ConfigTypeError,
    Decorators,
    RateLimiter,
    RateLimiterConfig,
    RateLimiterRegistry,
    RequestNotPermittedError,
)
from faulttol.ratelimiter import (
    DEFAULT_LIMIT_FOR_PERIOD,
    DEFAULT_LIMIT_REFRESH_PERIOD,
    DEFAULT_TIMEOUT_DURATION,
    RateLimiterOnFailureEvent,
    RateLimiterOnSuccessEvent,
)
from faulttol.testing import FakeClock


class NsClock:
    """A fake clock on an integer nanosecond scale: the tests' times are exact."""

    def __init__(self, ns: int = 0) -> None:
        self.ns = ns
        self.sleeps: list[int] = []

    def monotonic(self) -> float:
        return self.ns / 1e9

    def sleep(self, seconds: float) -> None:
        step = round(seconds * 1e9)
        self.sleeps.append(step)
        self.ns += step

    async def sleep_async(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


class BlockingClock:
    """A fake clock whose waits block until released: to watch callers while they wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.release = threading.Event()
        self.async_release: asyncio.Event | None = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert self.release.wait(10), "the waiting thread was never released"

    async def sleep_async(self, seconds: float) -> None:
        if self.async_release is None:
            self.async_release = asyncio.Event()
        await self.async_release.wait()


def limiter(limit: int = 3, period: float = 1.0, timeout: float = 5.0,
            clock: Any = None) -> RateLimiter:
    config = RateLimiterConfig(limit_for_period=limit, limit_refresh_period=period,
                               timeout_duration=timeout)
    return RateLimiter("rl", config, clock=FakeClock() if clock is None else clock)


# --- configuration ------------------------------------------------------------------------------


def test_defaults_are_resilience4js() -> None:
    config = RateLimiterConfig()
    assert (config.limit_for_period, config.limit_refresh_period, config.timeout_duration) == (
        50, 500e-9, 5.0)
    assert (DEFAULT_LIMIT_FOR_PERIOD, DEFAULT_LIMIT_REFRESH_PERIOD, DEFAULT_TIMEOUT_DURATION) == (
        50, 500e-9, 5.0)
    assert RateLimiter("x").config == config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("limit_for_period", 0),
        ("limit_for_period", -1),
        ("limit_refresh_period", 0),
        ("limit_refresh_period", -0.5),
        ("limit_refresh_period", math.nan),
        ("limit_refresh_period", math.inf),
        ("timeout_duration", -1.0),
        ("timeout_duration", math.nan),
        ("timeout_duration", math.inf),
    ],
)
def test_out_of_range_values_raise_value_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field) as raised:
        RateLimiterConfig(**{field: value})
    assert not isinstance(raised.value, ConfigTypeError)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("limit_for_period", 2.0),
        ("limit_for_period", True),
        ("limit_for_period", "5"),
        ("limit_refresh_period", "1s"),
        ("limit_refresh_period", None),
        ("timeout_duration", True),
        ("timeout_duration", [1]),
    ],
)
def test_values_of_the_wrong_kind_raise_config_type_error(field: str, value: object) -> None:
    with pytest.raises(ConfigTypeError, match=field):
        RateLimiterConfig(**{field: value})


def test_limiter_arguments_are_checked() -> None:
    with pytest.raises(ConfigTypeError, match="config"):
        RateLimiter("x", {"limit_for_period": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigTypeError, match="name"):
        RateLimiter(3)  # type: ignore[arg-type]
    rl = limiter()
    for bad in (0, -2):
        with pytest.raises(ValueError, match="permits"):
            rl.acquire_permission(bad)
        with pytest.raises(ValueError, match="permits"):
            rl.reserve_permission(bad)
    with pytest.raises(ConfigTypeError, match="permits"):
        rl.acquire_permission(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit_for_period"):
        rl.change_limit_for_period(0)
    with pytest.raises(ValueError, match="timeout_duration"):
        rl.change_timeout_duration(math.nan)
    with pytest.raises(ConfigTypeError, match="timeout_duration"):
        rl.change_timeout_duration("1")  # type: ignore[arg-type]


# --- cycles ------------------------------------------------------------------------------------


def test_each_cycle_grants_the_limit_and_unused_permissions_do_not_carry_over() -> None:
    clock = FakeClock()
    rl = limiter(limit=3, period=1.0, timeout=0.0, clock=clock)
    assert [rl.acquire_permission() for _ in range(4)] == [True, True, True, False]
    clock.advance(1.0)
    assert rl.metrics.available_permissions == 3
    assert rl.acquire_permission()
    clock.advance(5.0)  # four idle cycles: still 3, not 3 + 2 + 4 * 3
    assert rl.metrics.available_permissions == 3
    assert [rl.acquire_permission() for _ in range(4)] == [True, True, True, False]
    assert clock.sleeps == []


def test_cycles_start_when_the_limiter_is_created() -> None:
    clock = FakeClock(start=100.7)
    rl = limiter(limit=1, period=1.0, timeout=0.0, clock=clock)
    assert rl.acquire_permission()
    clock.advance(0.9)  # 101.6: still the first cycle (it ends at 101.7)
    assert not rl.acquire_permission()
    clock.advance(0.1)  # 101.7: the second cycle
    assert rl.acquire_permission()


def test_a_caller_waits_for_the_next_cycle_on_the_clock() -> None:
    clock = FakeClock()
    rl = limiter(limit=2, period=1.0, timeout=5.0, clock=clock)
    rl.acquire_permission()
    clock.advance(0.25)
    rl.acquire_permission()
    assert clock.sleeps == []
    assert rl.acquire_permission()  # waits for the next cycle: 0.75 s
    assert clock.sleeps == [0.75]
    assert clock.monotonic() == pytest.approx(1.0)


def test_a_wait_longer_than_the_timeout_is_refused_without_waiting() -> None:
    clock = FakeClock()
    rl = limiter(limit=1, period=1.0, timeout=0.5, clock=clock)
    calls: list[int] = []
    guarded = rl.decorate(lambda: calls.append(1))
    guarded()
    with pytest.raises(RequestNotPermittedError) as raised:
        guarded()
    assert raised.value.rate_limiter_name == "rl"
    assert "'rl'" in str(raised.value)
    assert calls == [1]
    assert clock.sleeps == []
    assert rl.metrics.available_permissions == 0  # the refused call reserved nothing
    with pytest.raises(RequestNotPermittedError):
        rl.call(calls.append, 2)
    assert calls == [1]


def test_a_wait_equal_to_the_timeout_is_admitted() -> None:
    clock = FakeClock()
    rl = limiter(limit=1, period=1.0, timeout=1.0, clock=clock)
    rl.acquire_permission()
    assert rl.acquire_permission()
    assert clock.sleeps == [1.0]


def test_reservations_are_served_in_order_and_count_negative() -> None:
    clock = FakeClock()
    rl = limiter(limit=2, period=1.0, timeout=3.0, clock=clock)
    clock.advance(0.5)
    waits = [rl.reserve_permission() for _ in range(8)]
    assert waits == [0.0, 0.0, 0.5, 0.5, 1.5, 1.5, 2.5, 2.5]
    assert rl.metrics.available_permissions == -6
    assert rl.reserve_permission() == -1.0  # 3.5 s > timeout: nothing reserved
    assert rl.metrics.available_permissions == -6
    clock.advance(0.5)  # cycle 1: its 2 permissions pay two reservations
    assert rl.metrics.available_permissions == -4
    clock.advance(3.0)  # cycle 4: every reservation is paid, 2 fresh permissions
    assert rl.metrics.available_permissions == 2


def test_several_permits_at_once() -> None:
    clock = FakeClock()
    rl = limiter(limit=3, period=1.0, timeout=10.0, clock=clock)
    assert rl.reserve_permission(2) == 0.0
    assert rl.reserve_permission(2) == 1.0  # one of this cycle, one of the next
    assert rl.metrics.available_permissions == -1
    assert rl.reserve_permission(7) == 3.0  # the next cycle's 2 left, then 3, then 2
    assert rl.metrics.available_permissions == -8
    rl2 = limiter(limit=3, period=1.0, timeout=0.5, clock=clock)
    rl2.acquire_permission()
    assert not rl2.acquire_permission(3)  # refused: the two it could take stay
    assert rl2.metrics.available_permissions == 2


def test_drain_takes_what_is_left_of_this_cycle_only() -> None:
    clock = FakeClock()
    rl = limiter(limit=5, period=1.0, timeout=0.0, clock=clock)
    rl.acquire_permission()
    rl.drain_permissions()
    assert rl.metrics.available_permissions == 0
    assert not rl.acquire_permission()
    clock.advance(1.0)
    assert rl.metrics.available_permissions == 5
    rl3 = limiter(limit=1, period=1.0, timeout=5.0, clock=clock)
    rl3.acquire_permission()
    rl3.reserve_permission()
    rl3.drain_permissions()  # reservations ahead stay
    assert rl3.metrics.available_permissions == -1


def test_change_limit_for_period_applies_from_the_next_cycle() -> None:
    clock = FakeClock()
    rl = limiter(limit=2, period=1.0, timeout=0.0, clock=clock)
    rl.acquire_permission()
    rl.change_limit_for_period(5)
    assert rl.config.limit_for_period == 5
    assert rl.metrics.available_permissions == 1  # this cycle keeps its 2
    assert [rl.acquire_permission() for _ in range(2)] == [True, False]
    clock.advance(1.0)
    assert rl.metrics.available_permissions == 5
    rl.change_limit_for_period(1)
    assert rl.metrics.available_permissions == 5
    clock.advance(1.0)
    assert rl.metrics.available_permissions == 1


def test_change_limit_for_period_after_idle_cycles_does_not_rewrite_them() -> None:
    clock = FakeClock()
    rl = limiter(limit=2, period=1.0, timeout=0.0, clock=clock)
    clock.advance(3.0)  # nothing read the limiter since cycle 0
    rl.change_limit_for_period(7)
    assert rl.metrics.available_permissions == 2  # cycle 3 is the current one: old limit


def test_change_timeout_duration_applies_from_the_next_cycle() -> None:
    clock = FakeClock()
    rl = limiter(limit=1, period=1.0, timeout=0.0, clock=clock)
    rl.acquire_permission()
    rl.change_timeout_duration(2.0)
    assert rl.config.timeout_duration == 2.0
    assert not rl.acquire_permission()  # this cycle: still no waiting
    assert clock.sleeps == []
    clock.advance(1.0)
    rl.acquire_permission()
    assert rl.acquire_permission()  # now it waits for the next cycle
    assert clock.sleeps == [1.0]


# --- events ---------------------------------------------------------------------------------------


def test_events_success_and_failure(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    rl = limiter(limit=1, period=1.0, timeout=0.0, clock=clock)
    seen: list[Any] = []
    everything: list[Any] = []
    rl.events.on_success(seen.append)
    rl.events.on_failure(seen.append)
    rl.events.on_event(everything.append)

    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    rl.events.on_success(broken)
    with caplog.at_level(logging.ERROR, logger="faulttol.events"):
        assert rl.acquire_permission()
        assert not rl.acquire_permission()
        assert rl.reserve_permission(2) == -1.0
    assert [type(e) for e in seen] == [RateLimiterOnSuccessEvent, RateLimiterOnFailureEvent,
                                       RateLimiterOnFailureEvent]
    assert [e.number_of_permits for e in seen] == [1, 1, 2]
    assert all(e.name == "rl" for e in seen)
    assert everything == seen
    assert "listener bug" in caplog.text


def test_the_decorator_publishes_success_on_its_fast_path() -> None:
    rl = limiter(limit=2, period=1.0, timeout=0.0)
    seen: list[Any] = []
    rl.events.on_event(seen.append)
    guarded = rl(lambda: 1)
    guarded()
    guarded()
    with pytest.raises(RequestNotPermittedError):
        guarded()
    assert [type(e) for e in seen] == [RateLimiterOnSuccessEvent, RateLimiterOnSuccessEvent,
                                       RateLimiterOnFailureEvent]


# --- threads and asyncio -------------------------------------------------------------------------


def test_waiting_threads_are_counted_and_no_lock_is_held_while_waiting() -> None:
    clock = BlockingClock()
    rl = limiter(limit=1, period=1.0, timeout=10.0, clock=clock)
    rl.acquire_permission()
    done: list[bool] = []
    waiter = threading.Thread(target=lambda: done.append(rl.acquire_permission()))
    waiter.start()
    try:
        for _ in range(1000):
            if rl.metrics.number_of_waiting_threads == 1:
                break
            threading.Event().wait(0.005)
        assert rl.metrics.number_of_waiting_threads == 1
        assert rl.metrics.available_permissions == -1
        assert rl.reserve_permission() == 2.0  # the limiter answers while a thread waits
    finally:
        clock.release.set()
        waiter.join(10)
    assert done == [True]
    assert rl.metrics.number_of_waiting_threads == 0


def test_an_asyncio_caller_waits_with_sleep_async_never_blocking() -> None:
    class AsyncOnlyClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            raise AssertionError("an asyncio caller must not block the loop")

        async def sleep_async(self, seconds: float) -> None:
            self.advance(seconds)
            await asyncio.sleep(0)

    clock = AsyncOnlyClock()
    rl = limiter(limit=1, period=1.0, timeout=5.0, clock=clock)
    calls: list[int] = []

    @rl
    async def work(n: int) -> int:
        calls.append(n)
        return n * 2

    async def main() -> list[int]:
        return [await work(1), await work(2), await rl.call_async(work.__wrapped__, 3)]

    assert asyncio.run(main()) == [2, 4, 6]
    assert calls == [1, 2, 3]
    assert clock.monotonic() == 2.0  # two waits of one cycle, through sleep_async
    assert asyncio.iscoroutinefunction(work)


def test_an_asyncio_caller_over_the_timeout_is_refused() -> None:
    rl = limiter(limit=1, period=1.0, timeout=0.0)

    @rl
    async def work() -> int:
        return 1

    async def main() -> None:
        assert await work() == 1
        with pytest.raises(RequestNotPermittedError):
            await work()
        assert not await rl.acquire_permission_async()

    asyncio.run(main())


def test_asyncio_waiters_are_counted() -> None:
    clock = BlockingClock()
    rl = limiter(limit=1, period=1.0, timeout=100.0, clock=clock)

    async def main() -> None:
        rl.acquire_permission()
        tasks = [asyncio.create_task(rl.acquire_permission_async()) for _ in range(3)]
        for _ in range(10):
            await asyncio.sleep(0)
        assert rl.metrics.number_of_waiting_threads == 3
        assert clock.async_release is not None
        clock.async_release.set()
        assert await asyncio.gather(*tasks) == [True, True, True]
        assert rl.metrics.number_of_waiting_threads == 0

    asyncio.run(main())


def test_a_thousand_cancelled_asyncio_waiters_leave_every_permit_available() -> None:
    clock = BlockingClock()
    rl = limiter(limit=10, period=1.0, timeout=10_000.0, clock=clock)

    async def main() -> None:
        for _ in range(10):
            assert await rl.acquire_permission_async()
        tasks = [asyncio.create_task(rl.acquire_permission_async()) for _ in range(1000)]
        for _ in range(10):
            await asyncio.sleep(0)
        assert rl.metrics.number_of_waiting_threads == 1000
        assert rl.metrics.available_permissions == -1000
        for task in tasks[::2] + tasks[1::2]:  # not in the order they reserved
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)

    asyncio.run(main())
    assert rl.metrics.number_of_waiting_threads == 0
    assert rl.metrics.available_permissions == 0  # this cycle's 10 were taken
    clock.now = 1.0
    assert rl.metrics.available_permissions == 10
    assert [rl.acquire_permission() for _ in range(10)] == [True] * 10


def test_a_cancelled_waiter_before_others_keeps_its_permission_taken() -> None:
    # Giving back a reservation while later ones still wait would let a later cycle
    # admit more than its limit: it stays taken until every later one is given back.
    clock = BlockingClock()
    rl = limiter(limit=1, period=1.0, timeout=100.0, clock=clock)

    async def main() -> None:
        rl.acquire_permission()
        first = asyncio.create_task(rl.acquire_permission_async())
        second = asyncio.create_task(rl.acquire_permission_async())
        for _ in range(5):
            await asyncio.sleep(0)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert rl.metrics.available_permissions == -2
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        assert rl.metrics.available_permissions == 0

    asyncio.run(main())


def test_an_interrupted_thread_gives_its_reservation_back() -> None:
    class InterruptingClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            raise KeyboardInterrupt

    rl = limiter(limit=1, period=1.0, timeout=5.0, clock=InterruptingClock())
    rl.acquire_permission()
    with pytest.raises(KeyboardInterrupt):
        rl.acquire_permission()
    assert rl.metrics.available_permissions == 0
    assert rl.metrics.number_of_waiting_threads == 0


def test_accuracy_ten_callers_for_two_seconds_at_ten_per_tenth_of_a_second() -> None:
    # The bench scenario (10 threads, 2 s, 100 per 0.1 s) at a smaller scale, on a fake
    # clock: every caller tries every millisecond; each of the 20 cycles admits 10.
    clock = FakeClock()
    rl = limiter(limit=10, period=0.1, timeout=0.0, clock=clock)
    admitted = 0
    for _ in range(2000):
        for _caller in range(10):
            admitted += rl.acquire_permission()
        clock.advance(0.001)
    assert admitted == 200


def test_accuracy_when_callers_wait_for_their_reservations() -> None:
    clock = NsClock()
    rl = limiter(limit=10, period=0.1, timeout=1.0, clock=clock)
    admitted = 0
    while True:
        assert rl.acquire_permission()
        if clock.ns >= 2 * 10**9:
            break
        admitted += 1
    assert admitted == 200


def test_real_threads_never_get_more_than_the_limit_of_a_cycle() -> None:
    rl = RateLimiter("threads", RateLimiterConfig(limit_for_period=500, limit_refresh_period=3600.0,
                                                  timeout_duration=0.0))
    admitted = [0] * 8
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(200):
            admitted[i] += rl.acquire_permission()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 500


# --- composition and registry ----------------------------------------------------------------


def test_decorators_with_rate_limiter() -> None:
    rl = limiter(limit=1, period=1.0, timeout=0.0)
    guarded = Decorators.of(lambda x: x + 1).with_rate_limiter(rl).decorate()
    assert guarded(1) == 2
    with pytest.raises(RequestNotPermittedError):
        guarded(1)
    with pytest.raises(TypeError):
        Decorators.of(lambda: 1).with_rate_limiter(object())  # type: ignore[arg-type]


def test_registry_get_or_create() -> None:
    clock = FakeClock()
    strict = RateLimiterConfig(limit_for_period=1, limit_refresh_period=1.0)
    registry = RateLimiterRegistry(configs={"strict": strict}, clock=clock)
    a = registry.rate_limiter("a")
    assert registry.rate_limiter("a") is a
    assert a.config == RateLimiterConfig()
    assert a.clock is clock
    b = registry.rate_limiter("b", "strict")
    assert b.config == strict
    with pytest.raises(ValueError, match="different configuration"):
        registry.rate_limiter("b", RateLimiterConfig(limit_for_period=2))
    assert set(registry.names()) == {"a", "b"}


def test_repr_and_metrics_repr() -> None:
    rl = limiter()
    assert "RateLimiter(name='rl'" in repr(rl)
    assert "available_permissions=3" in repr(rl.metrics)


# --- the cycle arithmetic against a reference model -------------------------------------------


class ReferenceModel:
    """Permissions as slots: cycle k has limit(k) slots; a reservation takes the earliest
    free slots from the current cycle on and waits for the start of the cycle of its last
    one; slots of a cycle that is over are gone. Reservations ahead are a queue that the
    cycles to come pay in order, each as much as its limit (resilience4j's): a new limit
    re-spreads the queue over the cycles after the current one."""

    def __init__(self, limit: int, period: int, timeout: int) -> None:
        self.period = period
        self.limits = [(0, limit)]  # (from cycle, limit): the last one that started wins
        self.timeouts = [(0, timeout)]
        self.used: defaultdict[int, int] = defaultdict(int)
        self.now = 0

    @staticmethod
    def _at(changes: list[tuple[int, int]], cycle: int) -> int:
        return [value for start, value in changes if start <= cycle][-1]

    @property
    def cycle(self) -> int:
        return self.now // self.period

    def reserve(self, permits: int) -> int:
        cycle, need, plan = self.cycle, permits, []
        k = cycle
        while need:
            take = min(need, self._at(self.limits, k) - self.used[k])
            if take > 0:
                plan.append((k, take))
                need -= take
            k += 1
        last = plan[-1][0]
        wait = 0 if last == cycle else last * self.period - self.now
        if wait > self._at(self.timeouts, cycle):
            return -1
        for k, take in plan:
            self.used[k] += take
        return wait

    def drain(self) -> None:
        self.used[self.cycle] = self._at(self.limits, self.cycle)

    def change_limit(self, limit: int) -> None:
        cycle = self.cycle
        self.limits.append((cycle + 1, limit))
        queued = sum(n for k, n in self.used.items() if k > cycle)
        for k in [k for k in self.used if k > cycle]:
            del self.used[k]
        k = cycle + 1
        while queued:
            self.used[k] = min(queued, limit)
            queued -= self.used[k]
            k += 1

    def available(self) -> int:
        ahead = sum(n for k, n in self.used.items() if k > self.cycle)
        return -ahead if ahead else self._at(self.limits, self.cycle) - self.used[self.cycle]


class LimiterMachine(RuleBasedStateMachine):
    """Random acquire / reserve / drain / change sequences: limiter and model agree."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = NsClock()
        self.rl: RateLimiter | None = None
        self.model: ReferenceModel | None = None

    @precondition(lambda self: self.rl is None)
    @rule(limit=st.integers(1, 4), period=st.integers(1, 10**9),
          timeout_periods=st.integers(0, 6), start=st.integers(0, 10**12))
    def create(self, limit: int, period: int, timeout_periods: int, start: int) -> None:
        self.clock.ns = start
        timeout = timeout_periods * period // 2
        self.rl = RateLimiter("model", RateLimiterConfig(
            limit_for_period=limit, limit_refresh_period=period / 1e9,
            timeout_duration=timeout / 1e9), clock=self.clock)
        self.model = ReferenceModel(limit, period, timeout)
        self.start = start

    def _sync_time(self) -> None:
        assert self.model is not None
        self.model.now = self.clock.ns - self.start

    @precondition(lambda self: self.rl is not None)
    @rule(fraction=st.sampled_from([0, 1, 2, 3, 4, 8, 16]))
    def advance(self, fraction: int) -> None:
        assert self.model is not None
        self.clock.ns += self.model.period * fraction // 4

    @precondition(lambda self: self.rl is not None)
    @rule(permits=st.integers(1, 6))
    def acquire(self, permits: int) -> None:
        assert self.rl is not None and self.model is not None
        before = self.clock.ns
        expected = self.model.reserve(permits)
        assert self.rl.acquire_permission(permits) is (expected >= 0)
        assert self.clock.ns - before == max(expected, 0)  # waited exactly that long
        self._sync_time()

    @precondition(lambda self: self.rl is not None)
    @rule(permits=st.integers(1, 6))
    def reserve(self, permits: int) -> None:
        assert self.rl is not None and self.model is not None
        expected = self.model.reserve(permits)
        wait = self.rl.reserve_permission(permits)
        if expected < 0:
            assert wait == -1.0
        else:
            assert round(wait * 1e9) == expected

    @precondition(lambda self: self.rl is not None)
    @rule()
    def drain(self) -> None:
        assert self.rl is not None and self.model is not None
        self.rl.drain_permissions()
        self.model.drain()

    @precondition(lambda self: self.rl is not None)
    @rule(limit=st.integers(1, 4))
    def change_limit(self, limit: int) -> None:
        assert self.rl is not None and self.model is not None
        self.rl.change_limit_for_period(limit)
        self.model.change_limit(limit)

    @precondition(lambda self: self.rl is not None)
    @rule(timeout_periods=st.integers(0, 6))
    def change_timeout(self, timeout_periods: int) -> None:
        assert self.rl is not None and self.model is not None
        timeout = timeout_periods * self.model.period // 2
        self.rl.change_timeout_duration(timeout / 1e9)
        self.model.timeouts.append((self.model.cycle + 1, timeout))

    @invariant()
    def available_permissions_agree(self) -> None:
        if self.rl is None or self.model is None:
            return
        self._sync_time()
        assert self.rl.metrics.available_permissions == self.model.available()


TestLimiterAgainstModel = LimiterMachine.TestCase
TestLimiterAgainstModel.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@given(st.integers(1, 50), st.floats(1e-9, 10.0), st.floats(0.0, 10.0))
def test_any_valid_config_is_accepted(limit: int, period: float, timeout: float) -> None:
    config = RateLimiterConfig(limit, period, timeout)
    assert RateLimiter("x", config, clock=FakeClock()).metrics.available_permissions == limit
