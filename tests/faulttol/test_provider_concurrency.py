"""OrderedProvider under concurrency: switch events in order, no user callback under the
provider's lock, forced switches that stick, removal of the active target (FakeClock, fake
targets, real threads)."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from typing import Any

from faulttol import (
    CallNotPermittedError,
    CircuitBreakerConfig,
    OrderedProvider,
    RetryConfig,
    State,
    SwitchEvent,
    SwitchReason,
)
from faulttol.testing import FakeClock

JOIN_TIMEOUT = 5.0
"""Real seconds a test waits for a helper thread before calling it stuck (a deadlock)."""


class Down(ConnectionError):
    """What a dead target raises."""


class Target:
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True

    def __call__(self) -> str:
        if not self.up:
            raise Down(f"{self.name} is down")
        return self.name


def run(target: Target) -> str:
    return target()


def health(target: Target) -> bool:
    return target.up


def make(
    n: int = 3, *, health_check: Callable[[Target], bool] | None = None, **kwargs: Any
) -> tuple[OrderedProvider[Target], list[Target], list[SwitchEvent], FakeClock]:
    clock = FakeClock()
    targets = [Target(f"t{i}") for i in range(1, n + 1)]
    kwargs.setdefault("retry", RetryConfig(max_attempts=1, retry_exceptions=(Down,)))
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


def out_of_order(events: list[SwitchEvent]) -> list[tuple[SwitchEvent, SwitchEvent]]:
    """Pairs of consecutive events where the second does not start where the first ended."""
    return [(a, b) for a, b in itertools.pairwise(events) if b.previous_index != a.index]


def in_thread(fn: Callable[[], object]) -> Callable[[], bool]:
    """Start ``fn`` on a thread; the result joins it and says whether it finished in time."""
    done = threading.Event()

    def body() -> None:
        fn()
        done.set()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()

    def finished() -> bool:
        thread.join(JOIN_TIMEOUT)
        return done.is_set()

    return finished


# --- switch events in order (issue 7, item 7) ------------------------------------------------


def test_concurrent_forced_switches_reach_listeners_in_the_order_they_happened() -> None:
    provider, _, events, _ = make(n=3)
    barrier = threading.Barrier(2)

    def switcher(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(600):
            provider.set_active_index(rng.randint(1, 3), force=True)

    threads = [threading.Thread(target=switcher, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert len(events) > 100
    assert out_of_order(events) == []
    assert events[0].previous_index == 1
    assert events[-1].index == provider.active_index


def test_a_switch_made_by_a_listener_is_delivered_after_every_listener_saw_the_current_one(
) -> None:
    provider, _, events, _ = make(n=3)
    first_seen: list[SwitchEvent] = []

    def steer(event: SwitchEvent) -> None:
        first_seen.append(event)
        if event.index == 2:
            provider.set_active_index(3, force=True)  # re-entrant: must not deadlock

    late: list[SwitchEvent] = []
    provider.add_switch_listener(steer)
    provider.add_switch_listener(late.append)
    provider.set_active_index(2)
    assert provider.active_index == 3
    expected = [SwitchEvent(1, 2, SwitchReason.MANUAL), SwitchEvent(2, 3, SwitchReason.MANUAL)]
    assert events == expected
    assert first_seen == expected
    assert late == expected


def test_a_listener_waiting_on_a_thread_that_switches_does_not_deadlock() -> None:
    provider, _, events, _ = make(n=3)
    finished: list[bool] = []

    def listener(event: SwitchEvent) -> None:
        if event.index == 2:
            finished.append(in_thread(lambda: provider.set_active_index(3, force=True))())

    provider.add_switch_listener(listener)
    provider.set_active_index(2)
    assert finished == [True]
    assert provider.active_index == 3
    # the other thread's switch was delivered by the thread already delivering, in order
    assert events == [
        SwitchEvent(1, 2, SwitchReason.MANUAL),
        SwitchEvent(2, 3, SwitchReason.MANUAL),
    ]


# --- no user callback under the provider's lock (item 10) -------------------------------------


def transition_listener(
    provider: OrderedProvider[Target], index: int, to: State, action: Callable[[], object]
) -> list[bool]:
    """On breaker ``index`` entering ``to``, run ``action`` on another thread and wait for it."""
    finished: list[bool] = []

    def on_transition(event: Any) -> None:
        if event.to_state is to:
            finished.append(in_thread(action)())

    provider.breaker(index).events.on_state_transition(on_transition)
    return finished


def test_a_breaker_listener_of_a_target_left_by_failover_may_wait_on_the_provider() -> None:
    provider, targets, events, _ = make(n=3)

    seen_active: list[int] = []

    def use_provider() -> None:
        seen_active.append(provider.active_index)
        provider.set_active_index(3, force=True)

    finished = transition_listener(provider, 1, State.OPEN, use_provider)
    targets[0].up = False
    assert provider.execute(run) == "t2"
    assert finished == [True]
    assert seen_active == [2]  # the breaker opened after the switch was visible
    assert provider.active_index == 3
    assert provider.breaker(1).state is State.OPEN
    assert events == [
        SwitchEvent(1, 2, SwitchReason.CIRCUIT_BREAKER),
        SwitchEvent(2, 3, SwitchReason.MANUAL),
    ]


def test_a_breaker_listener_of_a_manual_switch_target_may_wait_on_the_provider() -> None:
    provider, targets, events, _ = make(n=3)
    targets[0].up = False
    provider.execute(run)  # 1 -> 2, breaker 1 opened
    targets[0].up = True
    finished = transition_listener(
        provider, 1, State.CLOSED, lambda: (provider.set_weight(2, 3.0), provider.status())
    )
    provider.set_active_index(1)
    assert finished == [True]
    assert provider.active_index == 1
    assert provider.status()[1]["weight"] == 3.0
    assert provider.execute(run) == "t1"


def test_a_breaker_listener_of_a_failback_target_may_wait_on_the_provider() -> None:
    provider, targets, events, clock = make(
        n=2, health_check=health, auto_failback_interval=10.0, auto_failback_grace_period=5.0
    )
    targets[0].up = False
    provider.run_health_checks()
    assert provider.active_index == 2
    targets[0].up = True
    clock.advance(10.0)
    provider.run_health_checks()
    finished = transition_listener(provider, 1, State.CLOSED, lambda: provider.set_weight(2, 2.0))
    clock.advance(10.0)
    provider.run_health_checks()
    assert finished == [True]
    assert provider.active_index == 1
    assert events[-1] == SwitchEvent(2, 1, SwitchReason.FAILBACK)


def test_a_time_driven_breaker_transition_seen_while_failing_over_runs_outside_the_lock(
) -> None:
    provider, targets, events, clock = make(
        n=2,
        circuit_breaker=CircuitBreakerConfig(
            sliding_window_size=10, minimum_number_of_calls=10, record_exceptions=(Down,),
            wait_duration_in_open_state=30.0,
            automatic_transition_from_open_to_half_open_enabled=True,
        ),
    )
    targets[0].up = False
    provider.execute(run)  # 1 -> 2, breaker 1 OPEN
    targets[0].up = True
    finished = transition_listener(
        provider, 1, State.HALF_OPEN, lambda: provider.set_weight(1, 2.0)
    )
    clock.advance(31.0)  # breaker 1's open wait is over: it turns HALF_OPEN when next read
    targets[1].up = False
    assert provider.execute(run) == "t1"
    assert finished == [True]
    assert events[-1] == SwitchEvent(2, 1, SwitchReason.CIRCUIT_BREAKER)


# --- a forced switch sticks (item 9) -----------------------------------------------------------


def test_a_forced_switch_to_an_unhealthy_target_sticks_until_a_later_check_fails() -> None:
    provider, targets, events, _ = make(n=2, health_check=health)
    targets[0].up = False
    provider.run_health_checks()
    assert provider.active_index == 2
    targets[0].up = True  # back, but no check has said so yet
    provider.set_active_index(1, force=True)
    assert provider.execute(run) == "t1"
    assert provider.active_index == 1
    assert events == [
        SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK),
        SwitchEvent(2, 1, SwitchReason.MANUAL),
    ]
    # a check run after the forced switch does count
    targets[0].up = False
    provider.run_health_checks()
    assert provider.active_index == 2
    assert events[-1] == SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)


def test_a_check_round_running_when_a_forced_switch_happens_does_not_undo_it() -> None:
    started = threading.Event()
    go = threading.Event()
    block = threading.Event()
    targets_ref: list[Target] = []

    def slow_health(target: Target) -> bool:
        up = target.up  # what the check saw when it began
        if block.is_set() and target is targets_ref[0]:
            started.set()
            go.wait(JOIN_TIMEOUT)
        return up

    provider, targets, events, _ = make(n=2, health_check=slow_health)
    targets_ref.extend(targets)
    targets[0].up = False
    provider.run_health_checks()
    assert provider.active_index == 2
    block.set()
    finished = in_thread(provider.run_health_checks)
    assert started.wait(JOIN_TIMEOUT)  # the round is checking target 1 (and sees it down)
    targets[0].up = True
    provider.set_active_index(1, force=True)
    go.set()
    assert finished()
    block.clear()
    assert provider.active_index == 1
    assert provider.is_healthy(1)
    assert provider.execute(run) == "t1"
    assert events == [
        SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK),
        SwitchEvent(2, 1, SwitchReason.MANUAL),
    ]


# --- removing the active target is a switch (item 17) -----------------------------------------


def test_removing_the_active_target_is_a_switch_even_when_the_index_stays() -> None:
    provider, targets, events, _ = make(n=3)
    provider.remove_target(1)
    assert provider.active is targets[1]
    assert provider.active_index == 1
    assert events == [SwitchEvent(1, 1, SwitchReason.MANUAL)]
    provider.remove_target(2)  # not active and after it: nothing changes for the active one
    assert events == [SwitchEvent(1, 1, SwitchReason.MANUAL)]
