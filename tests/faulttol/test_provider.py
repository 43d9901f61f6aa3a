"""OrderedProvider: failover, failback, health, retries and the "unavailable" errors (FakeClock)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from faulttol import (
    CallNotPermittedError,
    CircuitBreakerConfig,
    OrderedProvider,
    RetryConfig,
    State,
    SwitchEvent,
    SwitchReason,
)
from faulttol.provider import NoEligibleTargetError, TargetsTemporarilyUnavailableError
from faulttol.testing import FakeClock


class Down(ConnectionError):
    """What a dead target raises."""


class Target:
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, value: Any = None) -> Any:
        with self.lock:
            self.calls += 1
        if not self.up:
            raise Down(f"{self.name} is down")
        return (self.name, value)


def run(target: Target, value: Any = None) -> Any:
    return target(value)


def health(target: Target) -> bool:
    return target.up


def make(
    n: int = 3,
    *,
    clock: FakeClock | None = None,
    health_check: Any = None,
    **kwargs: Any,
) -> tuple[OrderedProvider[Target], list[Target], list[SwitchEvent], FakeClock]:
    clock = clock or FakeClock()
    targets = [Target(f"t{i}") for i in range(1, n + 1)]
    kwargs.setdefault("retry", RetryConfig(retry_exceptions=(Down,)))
    kwargs.setdefault("fallback_exceptions", (CallNotPermittedError, Down))
    kwargs.setdefault(
        "circuit_breaker",
        CircuitBreakerConfig(sliding_window_size=10, minimum_number_of_calls=10,
                             record_exceptions=(Down,), wait_duration_in_open_state=30.0),
    )
    provider = OrderedProvider(targets, health_check=health_check, clock=clock,
                               start_health_checks=False, **kwargs)
    events: list[SwitchEvent] = []
    provider.add_switch_listener(events.append)
    return provider, targets, events, clock


def test_runs_on_the_first_target_by_default() -> None:
    provider, targets, events, _ = make()
    assert provider.active_index == 1
    assert provider.active is targets[0]
    assert provider.execute(run, 7) == ("t1", 7)
    assert targets[0].calls == 1 and targets[1].calls == 0
    assert events == []


def test_retry_then_success_on_the_same_target_waits_the_backoff() -> None:
    provider, targets, events, clock = make()
    outcomes = iter([Down("x"), Down("y"), None])

    def flaky(target: Target) -> str:
        exc = next(outcomes)
        if exc is not None:
            raise exc
        return target.name

    assert provider.execute(flaky) == "t1"
    assert clock.sleeps == [0.5, 1.0]
    assert events == []
    assert provider.breaker(1).metrics.number_of_failed_calls == 2
    assert provider.breaker(1).metrics.number_of_successful_calls == 1


def test_fallback_exception_fails_over_to_the_next_target_and_opens_the_breaker() -> None:
    provider, targets, events, clock = make()
    targets[0].up = False
    assert provider.execute(run, "v") == ("t2", "v")
    assert targets[0].calls == 3  # max_attempts on the first target
    assert events == [SwitchEvent(1, 2, SwitchReason.CIRCUIT_BREAKER)]
    assert provider.active_index == 2
    assert provider.breaker(1).state is State.OPEN


def test_no_automatic_failback_by_default() -> None:
    provider, targets, events, clock = make()
    targets[0].up = False
    provider.execute(run)
    targets[0].up = True
    clock.advance(3600)
    provider.run_health_checks()
    for _ in range(5):
        assert provider.execute(run)[0] == "t2"
    assert provider.active_index == 2
    assert len(events) == 1


def test_manual_failback_closes_the_breaker_and_publishes_manual() -> None:
    provider, targets, events, _ = make()
    targets[0].up = False
    provider.execute(run)
    targets[0].up = True
    provider.set_active_index(1)
    assert provider.active_index == 1
    assert provider.breaker(1).state is State.CLOSED
    assert events[-1] == SwitchEvent(2, 1, SwitchReason.MANUAL)
    assert provider.execute(run)[0] == "t1"


def test_set_active_index_validates_and_is_a_no_op_for_the_active_index() -> None:
    provider, targets, events, _ = make(health_check=health)
    for bad in (0, 4, -1, True, 1.0, "1"):
        with pytest.raises(ValueError, match=r"1\.\.3"):
            provider.set_active_index(bad)  # type: ignore[arg-type]
    provider.set_active_index(1)
    assert events == []
    targets[1].up = False
    with pytest.raises(ValueError, match="unhealthy"):
        provider.set_active_index(2)
    assert provider.active_index == 1
    provider.set_active_index(2, force=True)
    assert provider.active_index == 2
    assert events == [SwitchEvent(1, 2, SwitchReason.MANUAL)]


def test_non_retryable_non_fallback_exception_propagates_without_switching() -> None:
    provider, targets, events, clock = make()

    def boom(target: Target) -> None:
        raise KeyError("not a connection problem")

    with pytest.raises(KeyError):
        provider.execute(boom)
    assert events == [] and clock.sleeps == []
    # counted as a success by the breaker: not a recorded exception
    assert provider.breaker(1).metrics.number_of_failed_calls == 0


def test_a_rejected_call_is_not_retried_on_the_same_target() -> None:
    provider, targets, events, clock = make()
    provider.breaker(1).transition_to_forced_open_state()
    assert provider.execute(run)[0] == "t2"
    assert targets[0].calls == 0
    assert clock.sleeps == []
    assert events == [SwitchEvent(1, 2, SwitchReason.CIRCUIT_BREAKER)]


def test_failed_probe_fails_over_at_once_without_retry_waits() -> None:
    provider, targets, events, clock = make(health_check=health)
    targets[0].up = False
    assert provider.execute(run)[0] == "t2"
    assert targets[0].calls == 1
    assert clock.sleeps == []
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
    assert not provider.is_healthy(1)


def test_passing_probe_keeps_retrying_on_the_same_target() -> None:
    provider, targets, events, clock = make(health_check=lambda t: True)
    outcomes = iter([Down("x"), None])

    def once(target: Target) -> str:
        exc = next(outcomes)
        if exc:
            raise exc
        return target.name

    assert provider.execute(once) == "t1"
    assert clock.sleeps == [0.5]
    assert events == []


def test_an_ambiguous_failure_is_not_replayed_but_the_provider_still_switches() -> None:
    provider, targets, events, _ = make(health_check=health)
    targets[0].up = False
    with pytest.raises(Down):
        provider.execute_with(run, (), None, lambda exc, args: False)
    assert targets[0].calls == 1 and targets[1].calls == 0
    assert provider.active_index == 2
    assert provider.execute(run)[0] == "t2"


def test_each_target_at_most_once_per_call_then_unavailable() -> None:
    provider, targets, events, clock = make(failover_attempts=2, failover_delay=5.0)
    for t in targets:
        t.up = False
    with pytest.raises(TargetsTemporarilyUnavailableError) as info:
        provider.execute(run)
    assert isinstance(info.value.__cause__, Down)
    assert [t.calls for t in targets] == [3, 3, 3]
    # targets 1 and 2 were left by failover (breakers open); the last one stays active and is
    # tried again, since there is nowhere to go; errors stay temporary until 2 x 5 s have passed
    assert provider.active_index == 3
    assert [provider.breaker(i).state for i in (1, 2)] == [State.OPEN, State.OPEN]
    with pytest.raises(TargetsTemporarilyUnavailableError):
        provider.execute(run)
    assert [t.calls for t in targets] == [3, 3, 6]
    clock.advance(10.0)
    with pytest.raises(NoEligibleTargetError):
        provider.execute(run)
    assert not issubclass(NoEligibleTargetError, TargetsTemporarilyUnavailableError)
    assert not issubclass(TargetsTemporarilyUnavailableError, NoEligibleTargetError)


def test_recovers_when_a_target_returns_after_all_were_down() -> None:
    provider, targets, events, clock = make(health_check=health)
    for t in targets:
        t.up = False
    with pytest.raises(TargetsTemporarilyUnavailableError):
        provider.execute(run)
    targets[2].up = True
    provider.run_health_checks()
    assert provider.execute(run)[0] == "t3"
    assert provider.active_index == 3


def test_a_target_left_by_failover_is_eligible_again_after_its_open_wait() -> None:
    provider, targets, events, clock = make(n=2)
    targets[0].up = False
    provider.execute(run)
    assert provider.active_index == 2
    assert not provider.is_eligible(1)
    targets[0].up = True
    clock.advance(30.0)
    assert provider.is_eligible(1)
    assert provider.active_index == 2  # eligible, but no failback
    targets[1].up = False
    assert provider.execute(run)[0] == "t1"
    assert events[-1] == SwitchEvent(2, 1, SwitchReason.CIRCUIT_BREAKER)


def test_health_check_failure_of_the_active_target_fails_over() -> None:
    provider, targets, events, clock = make(health_check=health)
    targets[0].up = False
    provider.run_health_checks()
    assert provider.active_index == 2
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
    assert provider.breaker(1).state is State.OPEN  # left by failover: opened
    status = provider.status()
    assert [row["healthy"] for row in status] == [False, True, True]
    assert [row["active"] for row in status] == [False, True, False]


def test_auto_failback_after_the_interval_and_grace_period() -> None:
    provider, targets, events, clock = make(
        health_check=health, auto_failback_interval=10.0, auto_failback_grace_period=5.0
    )
    targets[0].up = False
    provider.run_health_checks()
    assert provider.active_index == 2
    targets[0].up = True
    clock.advance(10.0)
    provider.run_health_checks()  # healthy again, but not for the grace period yet
    assert provider.active_index == 2
    clock.advance(10.0)
    provider.run_health_checks()
    assert provider.active_index == 1
    assert events[-1] == SwitchEvent(2, 1, SwitchReason.FAILBACK)
    assert provider.breaker(1).state is State.CLOSED


def test_listener_exceptions_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    provider, targets, events, _ = make()

    def bad(event: SwitchEvent) -> None:
        raise RuntimeError("listener bug")

    provider.add_switch_listener(bad)
    provider.set_active_index(2)
    assert provider.active_index == 2
    assert "listener bug" in caplog.text


def test_listener_sees_the_new_index() -> None:
    provider, targets, events, _ = make()
    seen: list[int] = []
    provider.add_switch_listener(lambda e: seen.append(provider.active_index))
    provider.set_active_index(3)
    assert seen == [3]


def test_weighted_strategy_picks_the_highest_weight_ties_by_index() -> None:
    provider, targets, events, _ = make(strategy="weighted", weights=[1.0, 5.0, 5.0])
    assert provider.active_index == 2
    targets[1].up = False
    assert provider.execute(run)[0] == "t3"
    provider.set_weight(1, 10.0)
    targets[2].up = False
    assert provider.execute(run)[0] == "t1"


def test_add_and_remove_targets() -> None:
    provider, targets, events, _ = make(n=2)
    extra = Target("t9")
    assert provider.add_target(extra, name="nine") == 3
    provider.set_active_index(3)
    provider.remove_target(1)
    assert provider.active_index == 2  # shifted down
    assert events[-1] == SwitchEvent(3, 2, SwitchReason.MANUAL)
    assert provider.targets == (targets[1], extra)
    provider.remove_target(2)
    assert provider.active is targets[1]
    with pytest.raises(ValueError, match="last"):
        provider.remove_target(1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"health_check_interval": 0}, "health_check_interval"),
        ({"auto_failback_interval": -1}, "auto_failback_interval"),
        ({"failover_attempts": 0}, "failover_attempts"),
        ({"failover_delay": -1}, "failover_delay"),
        ({"strategy": "random"}, "strategy"),
        ({"weights": [1.0, -1.0, 1.0]}, "weight"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make(**kwargs)


def test_empty_targets_is_an_error() -> None:
    with pytest.raises(ValueError, match="targets"):
        OrderedProvider([])


async def test_execute_async_fails_over() -> None:
    provider, targets, events, clock = make(health_check=health)
    targets[0].up = False

    async def arun(target: Target) -> Any:
        await asyncio.sleep(0)
        return target()

    assert (await provider.execute_async(arun))[0] == "t2"
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]


def test_threads_under_failover_lose_no_calls() -> None:
    provider, targets, events, _ = make(health_check=health)
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for i in range(200):
            if i == 50:
                targets[0].up = False
            name = provider.execute(run)[0]
            with lock:
                results.append(name)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 1600
    assert results.count("t2") >= 8 * 150
    assert provider.active_index == 2
    assert len(events) == 1


def test_a_target_left_by_a_health_check_is_a_destination_again_after_wait_and_health() -> None:
    provider, targets, events, clock = make(n=2, health_check=health)
    targets[0].up = False
    provider.run_health_checks()
    assert provider.active_index == 2
    targets[0].up = True
    provider.run_health_checks()
    assert not provider.is_eligible(1)  # healthy, but its open wait has not passed
    clock.advance(30.0)
    assert provider.is_eligible(1)
    assert provider.active_index == 2  # no failback by itself
    targets[1].up = False
    assert provider.execute(run)[0] == "t1"
