"""AsyncOrderedProvider: the ordered provider for asyncio, on the same decision core as
OrderedProvider (FakeClock, fake async targets; no real sleeps drive the logic)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import faulttol
from faulttol import (
    AsyncOrderedProvider,
    CallNotPermittedError,
    CircuitBreakerConfig,
    NoValidTargetError,
    OrderedProvider,
    ProviderConfig,
    RetryConfig,
    SwitchEvent,
    SwitchReason,
    TemporaryUnavailableError,
)
from faulttol.testing import FakeClock


class Down(ConnectionError):
    """What a dead target raises."""


class Target:
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.calls = 0
        self.checks = 0

    async def __call__(self, value: Any = None) -> Any:
        self.calls += 1
        await asyncio.sleep(0)
        if not self.up:
            raise Down(f"{self.name} is down")
        return (self.name, value)


async def run(target: Target, value: Any = None) -> Any:
    return await target(value)


async def health(target: Target) -> bool:
    target.checks += 1
    await asyncio.sleep(0)
    return target.up


def make(
    n: int = 3, *, health_check: Any = None, clock: FakeClock | None = None, **kwargs: Any
) -> tuple[AsyncOrderedProvider[Target], list[Target], list[SwitchEvent], FakeClock]:
    clock = clock or FakeClock()
    targets = [Target(f"t{i}") for i in range(1, n + 1)]
    kwargs.setdefault("retry", RetryConfig(retry_exceptions=(Down,)))
    kwargs.setdefault("fallback_exceptions", (CallNotPermittedError, Down))
    kwargs.setdefault(
        "circuit_breaker",
        CircuitBreakerConfig(sliding_window_size=10, minimum_number_of_calls=10,
                             record_exceptions=(Down,), wait_duration_in_open_state=30.0),
    )
    kwargs.setdefault("start_health_checks", False)
    provider: AsyncOrderedProvider[Target] = AsyncOrderedProvider(
        targets, health_check=health_check, clock=clock, **kwargs
    )
    events: list[SwitchEvent] = []
    provider.add_switch_listener(events.append)
    return provider, targets, events, clock


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def _until(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.002)
    return bool(predicate())


def test_neither_provider_subclasses_the_other() -> None:
    assert not issubclass(AsyncOrderedProvider, OrderedProvider)
    assert not issubclass(OrderedProvider, AsyncOrderedProvider)
    assert faulttol.provider.AsyncOrderedProvider is AsyncOrderedProvider


async def test_runs_on_the_first_target_and_retries_with_awaited_backoff() -> None:
    provider, targets, events, clock = make(n=2)
    assert await provider.execute(run, 7) == ("t1", 7)
    targets[0].up = False
    calls = 0

    async def flaky(target: Target) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Down("transient")
        return target.name

    assert await provider.execute(flaky) == "t1"
    assert clock.sleeps == [0.5, 1.0]  # awaited on the clock: RetryConfig's backoff
    assert events == []


async def test_fallback_exception_fails_over_and_opens_the_breaker_of_the_target_left() -> None:
    provider, targets, events, _ = make()
    targets[0].up = False
    assert (await provider.execute(run))[0] == "t2"
    assert targets[0].calls == 3  # the retry's attempts, then failover
    assert events == [SwitchEvent(1, 2, SwitchReason.CIRCUIT_BREAKER)]
    assert provider.breaker(1).state is faulttol.State.OPEN
    assert provider.active_index == 2


async def test_a_failed_coroutine_probe_fails_over_at_once_without_retry_waits() -> None:
    provider, targets, events, clock = make(health_check=health)
    targets[0].up = False
    assert (await provider.execute(run))[0] == "t2"
    assert targets[0].calls == 1 and targets[0].checks == 1
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
    assert clock.sleeps == []
    assert not provider.is_healthy(1)


async def test_an_ambiguous_failure_is_not_replayed_but_the_provider_switches() -> None:
    provider, targets, events, _ = make(health_check=health)
    targets[0].up = False
    with pytest.raises(Down):
        await provider.execute_with(run, (), None, lambda exc, args: False)
    assert targets[1].calls == 0
    assert provider.active_index == 2


async def test_unavailable_then_permanent_after_the_failover_window() -> None:
    config = ProviderConfig(failover_attempts=2, failover_delay=5.0)
    provider, targets, _, clock = make(n=2, health_check=health, config=config)
    for t in targets:
        t.up = False
    with pytest.raises(TemporaryUnavailableError) as info:
        await provider.execute(run)
    assert isinstance(info.value.__cause__, Down)
    clock.advance(10.0)
    with pytest.raises(NoValidTargetError):
        await provider.execute(run)
    targets[1].up = True
    await provider.run_health_checks()
    assert (await provider.execute(run))[0] == "t2"


async def test_coroutine_listeners_run_in_order_before_the_switching_call_returns() -> None:
    provider, targets, _, _ = make(health_check=health)
    seen: list[str] = []

    async def slow(event: SwitchEvent) -> None:
        await asyncio.sleep(0.01)
        seen.append(f"slow {event.index}")

    def plain(event: SwitchEvent) -> None:
        seen.append(f"plain {event.index}")

    provider.add_switch_listener(slow)
    provider.add_switch_listener(plain)
    targets[0].up = False
    await provider.execute(run)
    assert seen == ["slow 2", "plain 2"]  # both done when execute() returned
    await provider.set_active_index(3)
    assert seen == ["slow 2", "plain 2", "slow 3", "plain 3"]


async def test_a_switch_made_by_a_listener_is_delivered_after_the_current_event() -> None:
    provider, _, _, _ = make(health_check=health)
    seen: list[tuple[str, int]] = []

    async def first(event: SwitchEvent) -> None:
        seen.append(("first", event.index))
        if event.index == 2:
            await provider.set_active_index(3)  # returns at once: delivered after this one

    async def second(event: SwitchEvent) -> None:
        seen.append(("second", event.index))

    provider.add_switch_listener(first)
    provider.add_switch_listener(second)
    await provider.set_active_index(2)
    assert seen == [("first", 2), ("second", 2), ("first", 3), ("second", 3)]


async def test_a_cancelled_caller_does_not_cut_listener_delivery_short() -> None:
    provider, _, _, _ = make(health_check=health)
    release = asyncio.Event()
    done: list[int] = []

    async def blocking(event: SwitchEvent) -> None:
        await release.wait()
        done.append(event.index)

    provider.add_switch_listener(blocking)
    caller = asyncio.create_task(provider.set_active_index(2))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    assert await _until(lambda: done == [2])
    await provider.aclose()


async def test_set_active_index_probes_refuses_unhealthy_and_a_forced_switch_sticks() -> None:
    reused: list[str] = []

    async def before_reuse(target: Target) -> None:
        await asyncio.sleep(0)
        reused.append(target.name)

    provider, targets, events, _ = make(health_check=health, before_reuse=before_reuse)
    targets[1].up = False
    with pytest.raises(ValueError, match=r"target 2 .* unhealthy"):
        await provider.set_active_index(2)
    await provider.set_active_index(2, force=True)
    assert events == [SwitchEvent(1, 2, SwitchReason.MANUAL)]
    assert reused == ["t2"]
    assert provider.is_healthy(2)  # the unhealthy mark was reset: the switch sticks
    await provider.set_active_index(2, force=True)  # the active index: a no-op
    assert len(events) == 1 and reused == ["t2"]


async def test_health_monitor_task_fails_over_and_aclose_leaves_no_task() -> None:
    clock = FakeClock()
    provider, targets, events, _ = make(
        health_check=health, clock=clock, start_health_checks=True,
        config=ProviderConfig(health_check_interval=5.0),
    )
    # built inside a running loop: the task started at once (first round at once)
    assert await _until(lambda: all(t.checks >= 1 for t in targets))
    targets[0].up = False
    clock.advance(5.0)
    assert await _until(lambda: events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)])
    assert _other_tasks()
    await provider.aclose()
    assert _other_tasks() == set()
    assert provider.closed


async def test_health_checks_never_block_the_loop() -> None:
    """A slow coroutine health check lets other tasks run meanwhile."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def slow_health(target: Target) -> bool:
        await asyncio.sleep(0.03)
        return True

    provider, _, _, _ = make(health_check=slow_health)
    task = asyncio.create_task(ticker())
    await provider.run_health_checks()
    task.cancel()
    assert ticks > 5


async def test_automatic_failback_after_the_grace_period() -> None:
    config = ProviderConfig(health_check_interval=5.0, auto_failback_interval=10.0,
                            auto_failback_grace_period=10.0)
    provider, targets, events, clock = make(health_check=health, config=config)
    targets[0].up = False
    await provider.execute(run)
    targets[0].up = True
    for _ in range(5):
        clock.advance(5.0)
        await provider.run_health_checks()
    assert provider.active_index == 1
    assert [e.reason for e in events] == [SwitchReason.HEALTH_CHECK, SwitchReason.FAILBACK]


async def test_remove_target_is_an_awaited_manual_switch() -> None:
    provider, targets, events, _ = make()
    assert await provider.remove_target(1) is targets[0]
    assert events == [SwitchEvent(1, 1, SwitchReason.MANUAL)]
    assert provider.targets == (targets[1], targets[2])
    assert provider.add_target(targets[0], name="back") == 3


async def test_start_on_first_healthy_probes_in_order_with_coroutines() -> None:
    provider, targets, events, _ = make(health_check=health)
    targets[0].up = False
    assert await provider.start_on_first_healthy() == 2
    assert [row["healthy"] for row in provider.status()] == [False, True, True]
    assert events == []  # startup is no switch
    assert await provider.start_on_first_healthy(prefer=3) == 3


async def test_async_with_closes_and_status_rows_are_typed() -> None:
    async with AsyncOrderedProvider(["a", "b"], start_health_checks=False) as provider:
        row = provider.status()[0]
        assert set(row) == set(faulttol.TargetStatus.__annotations__)
        assert row["active"] and row["index"] == 1 and row["name"] == "target-1"
    assert provider.closed


def test_health_monitor_starts_on_the_first_coroutine_call_when_built_outside_a_loop() -> None:
    targets = [Target("t1"), Target("t2")]
    provider = AsyncOrderedProvider(targets, health_check=health, clock=FakeClock())

    async def main() -> int:
        assert await provider.execute(run) == ("t1", None)
        started = await _until(lambda: targets[1].checks >= 1)
        await provider.aclose()
        return int(started)

    assert asyncio.run(main()) == 1
