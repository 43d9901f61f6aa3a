"""faulttol.chaos: Polly's chaos strategies (fault, latency, outcome, behavior)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import Any

import pytest

from faulttol import (
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    ConfigTypeError,
    Decorators,
    Retry,
    RetryConfig,
)
from faulttol.chaos import (
    PROCEED,
    ChaosBehavior,
    ChaosFault,
    ChaosLatency,
    ChaosOnBehaviorEvent,
    ChaosOnFaultEvent,
    ChaosOnLatencyEvent,
    ChaosOnOutcomeEvent,
    ChaosOutcome,
    ChaosStrategy,
)
from faulttol.testing import FakeClock


def strategies(rate: float, **kwargs: Any) -> list[ChaosStrategy]:
    return [
        ChaosFault(rate, ValueError, **kwargs),
        ChaosLatency(rate, 1.0, clock=FakeClock(), **kwargs),
        ChaosOutcome(rate, "fake", **kwargs),
        ChaosBehavior(rate, lambda: None, **kwargs),
    ]


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [-0.1, 1.000001, math.nan, math.inf, -math.inf])
def test_a_rate_outside_zero_one_is_a_value_error(rate: float) -> None:
    for make in (
        lambda: ChaosFault(rate, ValueError),
        lambda: ChaosLatency(rate, 1.0),
        lambda: ChaosOutcome(rate, 1),
        lambda: ChaosBehavior(rate, lambda: None),
    ):
        with pytest.raises(ValueError, match="injection_rate") as raised:
            make()
        assert not isinstance(raised.value, ConfigTypeError)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ChaosFault("0.5", ValueError), "injection_rate"),  # type: ignore[arg-type]
        (lambda: ChaosFault(True, ValueError), "injection_rate"),
        (lambda: ChaosFault(0.5, "boom"), "fault"),  # type: ignore[arg-type]
        (lambda: ChaosFault(0.5, ValueError, enabled="yes"), "enabled"),  # type: ignore[arg-type]
        (lambda: ChaosFault(0.5, ValueError, random=42), "random"),  # type: ignore[arg-type]
        (lambda: ChaosFault(0.5, ValueError, name=1), "name"),  # type: ignore[arg-type]
        (lambda: ChaosLatency(0.5, "1s"), "latency"),  # type: ignore[arg-type]
        (lambda: ChaosBehavior(0.5, 3), "behavior"),  # type: ignore[arg-type]
    ],
)
def test_a_value_of_the_wrong_kind_is_a_config_type_error(make: Any, field: str) -> None:
    with pytest.raises(ConfigTypeError, match=field):
        make()


@pytest.mark.parametrize("latency", [-1.0, math.nan, math.inf])
def test_a_bad_latency_is_a_value_error(latency: float) -> None:
    with pytest.raises(ValueError, match="latency"):
        ChaosLatency(0.5, latency)


def test_names_and_reprs() -> None:
    assert [s.name for s in strategies(0.5)] == [
        "Chaos.Fault", "Chaos.Latency", "Chaos.Outcome", "Chaos.Behavior"]
    assert ChaosFault(0.5, ValueError, name="db1").name == "db1"
    assert repr(ChaosOutcome(0.25, 1)) == "ChaosOutcome(name='Chaos.Outcome', injection_rate=0.25)"


# --- what each strategy does -------------------------------------------------------------------


def test_fault_raises_instead_of_running_the_call() -> None:
    calls: list[int] = []
    fault = ChaosFault(1.0, lambda: ConnectionError("chaos"))
    guarded = fault(lambda: calls.append(1))
    with pytest.raises(ConnectionError, match="chaos"):
        guarded()
    with pytest.raises(ConnectionError):
        fault.call(calls.append, 2)
    assert calls == []


def test_a_fault_factory_makes_a_fresh_exception_each_time_and_a_value_is_raised_as_is() -> None:
    factory = ChaosFault(1.0, KeyError)
    seen = []
    for _ in range(2):
        with pytest.raises(KeyError) as raised:
            factory.call(lambda: None)
        seen.append(raised.value)
    assert seen[0] is not seen[1]
    the_error = TimeoutError("always this one")
    value = ChaosFault(1.0, the_error)
    for _ in range(3):
        with pytest.raises(TimeoutError) as raised:
            value.call(lambda: None)
        assert raised.value is the_error
    bad = ChaosFault(1.0, lambda: "not an exception")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not an exception"):
        bad.call(lambda: None)


def test_latency_sleeps_on_the_clock_before_the_call() -> None:
    clock = FakeClock()
    order: list[str] = []
    latency = ChaosLatency(1.0, 2.5, clock=clock)
    guarded = latency(lambda: order.append(f"call at {clock.monotonic()}") or 7)
    assert guarded() == 7
    assert clock.sleeps == [2.5]
    assert order == ["call at 2.5"]


def test_outcome_replaces_the_result_and_the_call_does_not_run() -> None:
    calls: list[int] = []
    counter = iter(range(100))
    outcome = ChaosOutcome(1.0, lambda: next(counter))
    guarded = outcome(lambda: calls.append(1) or "real")
    assert [guarded(), guarded()] == [0, 1]
    assert calls == []
    assert ChaosOutcome(1.0, {"cached": False}).call(lambda: "real") == {"cached": False}
    assert ChaosOutcome(1.0, None).call(lambda: "real") is None


def test_behavior_runs_before_the_call() -> None:
    order: list[str] = []
    behavior = ChaosBehavior(1.0, lambda: order.append("behavior"))
    assert behavior.call(lambda: order.append("call") or 3) == 3
    assert order == ["behavior", "call"]

    def fails() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        ChaosBehavior(1.0, fails).call(lambda: order.append("not run"))
    assert "not run" not in order


def test_rate_zero_never_injects_and_rate_one_always() -> None:
    for s in strategies(0.0):
        assert all(s.call(lambda: "real") == "real" for _ in range(200))
        assert not s.should_inject()
    assert all(s.should_inject() for s in strategies(1.0) for _ in range(50))


def test_enabled_is_checked_on_every_call() -> None:
    switch = {"on": False}
    fault = ChaosFault(1.0, RuntimeError, enabled=lambda: switch["on"])
    guarded = fault(lambda: "ok")
    assert guarded() == "ok"
    switch["on"] = True
    with pytest.raises(RuntimeError):
        guarded()
    switch["on"] = False
    assert guarded() == "ok"
    assert ChaosFault(1.0, RuntimeError, enabled=False).call(lambda: "ok") == "ok"


def test_a_seeded_random_is_reproducible_and_follows_the_rate() -> None:
    def run(seed: int) -> list[bool]:
        outcome = ChaosOutcome(0.3, "chaos", random=random.Random(seed))
        return [outcome.call(lambda: "real") == "chaos" for _ in range(2000)]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first != other
    assert 0.25 < sum(first) / len(first) < 0.35


def test_disabled_calls_draw_no_random_number() -> None:
    generator = random.Random(1)
    switch = {"on": False}
    fault = ChaosFault(0.5, ValueError, enabled=lambda: switch["on"], random=generator)
    state = generator.getstate()
    for _ in range(10):
        fault.call(lambda: None)
    assert generator.getstate() == state


# --- events --------------------------------------------------------------------------------------


def test_events(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(start=5.0)
    seen: list[Any] = []
    fault = ChaosFault(1.0, ValueError("x"), name="f", clock=clock)
    latency = ChaosLatency(1.0, 0.5, name="l", clock=clock)
    outcome = ChaosOutcome(1.0, 42, name="o", clock=clock)
    behavior = ChaosBehavior(1.0, lambda: None, name="b", clock=clock)
    fault.events.on_fault(seen.append)
    latency.events.on_latency(seen.append)
    outcome.events.on_outcome(seen.append)
    behavior.events.on_behavior(seen.append)

    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    outcome.events.on_event(broken)
    with pytest.raises(ValueError):
        fault.call(lambda: None)
    with caplog.at_level(logging.ERROR, logger="faulttol.events"):
        latency.call(lambda: None)
        assert outcome.call(lambda: None) == 42
        behavior.call(lambda: None)
    assert [type(e) for e in seen] == [ChaosOnFaultEvent, ChaosOnLatencyEvent,
                                       ChaosOnOutcomeEvent, ChaosOnBehaviorEvent]
    assert [e.name for e in seen] == ["f", "l", "o", "b"]
    assert isinstance(seen[0].fault, ValueError)
    assert seen[1].latency == 0.5
    assert seen[2].outcome == 42
    assert seen[0].created_at == 5.0
    assert "listener bug" in caplog.text


# --- asyncio ------------------------------------------------------------------------------------


def test_async_functions_keep_being_coroutines_and_get_the_chaos() -> None:
    class AsyncOnlyClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            raise AssertionError("an asyncio caller must not block the loop")

        async def sleep_async(self, seconds: float) -> None:
            self.advance(seconds)
            await asyncio.sleep(0)

    clock = AsyncOnlyClock()
    awaited: list[str] = []

    async def async_behavior() -> None:
        awaited.append("behavior")

    async def work() -> str:
        return "real"

    latency = ChaosLatency(1.0, 3.0, clock=clock)
    slowed = latency(work)
    assert asyncio.iscoroutinefunction(slowed)

    async def main() -> None:
        assert await slowed() == "real"
        assert clock.monotonic() == 3.0
        assert await ChaosOutcome(1.0, "fake")(work)() == "fake"
        with pytest.raises(ConnectionError):
            await ChaosFault(1.0, ConnectionError)(work)()
        assert await ChaosBehavior(1.0, async_behavior).call_async(work) == "real"
        assert await ChaosOutcome(0.0, "fake").call_async(work) == "real"
        assert await latency.inject_async() is PROCEED

    asyncio.run(main())
    assert awaited == ["behavior"]


# --- composition -------------------------------------------------------------------------------


def test_with_chaos_rehearses_the_layers_added_after_it() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("dep", CircuitBreakerConfig(
        sliding_window_size=4, minimum_number_of_calls=4, record_exceptions=(ConnectionError,)),
        clock=clock)
    retry = Retry("dep", RetryConfig(max_attempts=2, wait_duration=0.1,
                                     retry_exceptions=(ConnectionError,)), clock=clock)
    attempts: list[int] = []
    guarded = (
        Decorators.of(lambda: attempts.append(1) or "real")
        .with_chaos(ChaosFault(1.0, lambda: ConnectionError("chaos")))
        .with_circuit_breaker(breaker)
        .with_retry(retry)
        .with_fallback((ConnectionError, CallNotPermittedError), lambda exc: "fallback")
        .decorate()
    )
    assert [guarded() for _ in range(3)] == ["fallback"] * 3
    assert attempts == []
    assert breaker.metrics.number_of_failed_calls == 4  # 2 attempts, then OPEN
    with pytest.raises(TypeError):
        Decorators.of(lambda: 1).with_chaos(object())  # type: ignore[arg-type]


def test_an_unlikely_fault_at_rate_zero_point_one_hits_about_a_tenth() -> None:
    fault = ChaosFault(0.1, ValueError, random=random.Random(2024))
    guarded = fault(lambda: None)
    failures = 0
    for _ in range(5000):
        try:
            guarded()
        except ValueError:
            failures += 1
    assert 400 < failures < 600
