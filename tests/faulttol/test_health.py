"""Tests for faulttol.health: probe policies and the background HealthMonitor."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faulttol.health import (
    DEFAULT_HEALTH_CHECK_POLICY,
    DEFAULT_HEALTH_CHECK_PROBE_DELAY,
    DEFAULT_HEALTH_CHECK_PROBES,
    HealthCheckPolicy,
    HealthMonitor,
    run_probes,
    run_probes_async,
)
from faulttol.testing import FakeClock

ALL = HealthCheckPolicy.HEALTHY_ALL
MAJORITY = HealthCheckPolicy.HEALTHY_MAJORITY
ANY = HealthCheckPolicy.HEALTHY_ANY


def _scripted(outcomes: list[bool | Exception]) -> tuple[Callable[[], bool], list[int]]:
    """A probe that answers the scripted outcomes in turn; also returns a call counter."""
    calls = [0]

    def probe() -> bool:
        outcome = outcomes[calls[0]]
        calls[0] += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return probe, calls


def _expected(policy: HealthCheckPolicy, outcomes: list[bool]) -> bool:
    passes = sum(outcomes)
    if policy is ALL:
        return passes == len(outcomes)
    if policy is MAJORITY:
        return passes * 2 > len(outcomes)
    return passes >= 1


# --- policies --------------------------------------------------------------------------


def test_defaults_match_redis_py() -> None:
    assert DEFAULT_HEALTH_CHECK_PROBES == 3
    assert DEFAULT_HEALTH_CHECK_PROBE_DELAY == 0.5
    assert DEFAULT_HEALTH_CHECK_POLICY is ALL


@pytest.mark.parametrize(
    ("policy", "probes", "required"),
    [(ALL, 3, 3), (MAJORITY, 3, 2), (MAJORITY, 4, 3), (MAJORITY, 5, 3), (ANY, 3, 1),
     (MAJORITY, 1, 1), (ALL, 1, 1)],
)
def test_required_passes(policy: HealthCheckPolicy, probes: int, required: int) -> None:
    assert policy.required_passes(probes) == required


def test_all_stops_at_first_failure() -> None:
    clock = FakeClock()
    probe, calls = _scripted([True, False, True])
    assert run_probes(probe, probes=3, policy=ALL, delay=0.5, clock=clock) is False
    assert calls[0] == 2
    assert clock.sleeps == [0.5]


def test_any_stops_at_first_success() -> None:
    clock = FakeClock()
    probe, calls = _scripted([False, True, False])
    assert run_probes(probe, probes=3, policy=ANY, delay=0.25, clock=clock) is True
    assert calls[0] == 2
    assert clock.sleeps == [0.25]


def test_all_passing_sleeps_between_probes_only() -> None:
    clock = FakeClock()
    probe, calls = _scripted([True, True, True])
    assert run_probes(probe, probes=3, policy=ALL, delay=0.5, clock=clock) is True
    assert calls[0] == 3
    assert clock.sleeps == [0.5, 0.5]
    assert clock.monotonic() == 1.0


def test_majority_tie_is_unhealthy() -> None:
    probe, calls = _scripted([True, False, True, False])
    assert run_probes(probe, probes=4, policy=MAJORITY, delay=0, clock=FakeClock()) is False
    assert calls[0] == 4


def test_majority_decides_early() -> None:
    probe, calls = _scripted([False, False, True])
    assert run_probes(probe, probes=3, policy=MAJORITY, delay=0, clock=FakeClock()) is False
    assert calls[0] == 2
    probe, calls = _scripted([True, True, False])
    assert run_probes(probe, probes=3, policy=MAJORITY, delay=0, clock=FakeClock()) is True
    assert calls[0] == 2


def test_raising_probe_counts_as_failed() -> None:
    probe, calls = _scripted([ConnectionError("down"), True, True])
    assert run_probes(probe, probes=3, policy=ALL, delay=0, clock=FakeClock()) is False
    probe, calls = _scripted([ConnectionError("down"), True, True])
    assert run_probes(probe, probes=3, policy=MAJORITY, delay=0, clock=FakeClock()) is True
    probe, calls = _scripted([ConnectionError("down"), ValueError("x"), True])
    assert run_probes(probe, probes=3, policy=ANY, delay=0, clock=FakeClock()) is True
    assert calls[0] == 3


def test_zero_delay_never_sleeps() -> None:
    clock = FakeClock()
    probe, _ = _scripted([True, True, True])
    assert run_probes(probe, probes=3, policy=ALL, delay=0, clock=clock)
    assert clock.sleeps == []


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="probes must be >= 1, got 0"):
        run_probes(lambda: True, probes=0, policy=ALL, delay=0)
    with pytest.raises(ValueError, match="delay must be >= 0"):
        run_probes(lambda: True, probes=1, policy=ALL, delay=-1)
    with pytest.raises(ValueError, match="probes must be >= 1"):
        ALL.required_passes(0)


@given(
    policy=st.sampled_from(list(HealthCheckPolicy)),
    outcomes=st.lists(st.booleans(), min_size=1, max_size=9),
)
def test_decision_matches_definition(policy: HealthCheckPolicy, outcomes: list[bool]) -> None:
    probe, calls = _scripted(list(outcomes))
    result = run_probes(probe, probes=len(outcomes), policy=policy, delay=0.1, clock=FakeClock())
    assert result is _expected(policy, outcomes)
    # it stops at the first probe after which the outcome is decided, and not before
    required = policy.required_passes(len(outcomes))
    decided_at = next(
        k
        for k in range(1, len(outcomes) + 1)
        if sum(outcomes[:k]) >= required or k - sum(outcomes[:k]) > len(outcomes) - required
    )
    assert calls[0] == decided_at


@given(
    policy=st.sampled_from(list(HealthCheckPolicy)),
    outcomes=st.lists(st.booleans(), min_size=1, max_size=7),
)
async def test_async_twin_agrees(policy: HealthCheckPolicy, outcomes: list[bool]) -> None:
    sync_probe, sync_calls = _scripted(list(outcomes))
    sync_clock = FakeClock()
    expected = run_probes(
        sync_probe, probes=len(outcomes), policy=policy, delay=0.2, clock=sync_clock
    )

    calls = [0]

    async def probe() -> bool:
        calls[0] += 1
        return outcomes[calls[0] - 1]

    async_clock = FakeClock()
    result = await run_probes_async(
        probe, probes=len(outcomes), policy=policy, delay=0.2, clock=async_clock
    )
    assert result is expected
    assert calls[0] == sync_calls[0]
    assert async_clock.sleeps == sync_clock.sleeps


async def test_async_raising_probe_fails_and_cancellation_propagates() -> None:
    async def boom() -> bool:
        raise OSError("refused")

    assert await run_probes_async(boom, probes=2, policy=ANY, delay=0, clock=FakeClock()) is False

    import asyncio

    async def cancelled() -> bool:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_probes_async(cancelled, probes=2, policy=ANY, delay=0, clock=FakeClock())


# --- monitor -----------------------------------------------------------------------------


class Targets:
    """A mutable set of targets whose health the test controls."""

    def __init__(self, *healthy: bool) -> None:
        self.healthy = list(healthy)
        self.checked: list[int] = []
        self.changes: list[tuple[int, bool]] = []

    def count(self) -> int:
        return len(self.healthy)

    def check(self, index: int) -> bool:
        self.checked.append(index)
        return self.healthy[index - 1]

    def on_change(self, index: int, healthy: bool) -> None:
        self.changes.append((index, healthy))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_monitor(clock: FakeClock) -> Iterator[Callable[..., HealthMonitor]]:
    monitors: list[HealthMonitor] = []

    def make(targets: Targets, **kw: object) -> HealthMonitor:
        kw.setdefault("interval", 5.0)
        kw.setdefault("clock", clock)
        monitor = HealthMonitor(
            targets.count, targets.check, on_change=targets.on_change, **kw  # type: ignore[arg-type]
        )
        monitors.append(monitor)
        return monitor

    yield make
    for monitor in monitors:
        monitor.close(timeout=5)


def test_unknown_counts_as_healthy(make_monitor: Callable[..., HealthMonitor]) -> None:
    targets = Targets(True, False)
    monitor = make_monitor(targets)
    assert monitor.last_result(1) is None
    assert monitor.is_healthy(1) and monitor.is_healthy(2)
    assert monitor.snapshot() == {1: None, 2: None}
    assert targets.checked == []


def test_run_once_checks_every_target_and_reports_flips(
    make_monitor: Callable[..., HealthMonitor],
) -> None:
    targets = Targets(True, False, True)
    monitor = make_monitor(targets)
    assert monitor.run_once() == {1: True, 2: False, 3: True}
    assert targets.checked == [1, 2, 3]
    # unknown -> healthy is no flip; unknown -> unhealthy is
    assert targets.changes == [(2, False)]
    assert monitor.is_healthy(1) and not monitor.is_healthy(2)
    assert monitor.last_result(2) is False

    monitor.run_once()
    assert targets.changes == [(2, False)]  # nothing flipped

    targets.healthy[1] = True
    targets.healthy[0] = False
    monitor.run_once()
    assert targets.changes == [(2, False), (1, False), (2, True)]
    assert monitor.rounds == 3


def test_raising_check_is_unhealthy(make_monitor: Callable[..., HealthMonitor]) -> None:
    targets = Targets(True)

    def check(index: int) -> bool:
        raise ConnectionError("refused")

    changes: list[tuple[int, bool]] = []
    monitor = HealthMonitor(
        targets.count, check, interval=1, clock=FakeClock(),
        on_change=lambda i, h: changes.append((i, h)),
    )
    assert monitor.run_once() == {1: False}
    assert changes == [(1, False)]


def test_on_change_exceptions_are_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def on_change(index: int, healthy: bool) -> None:
        raise RuntimeError("listener bug")

    monitor = HealthMonitor(lambda: 2, lambda i: i == 1, on_change=on_change, clock=FakeClock())
    assert monitor.run_once() == {1: True, 2: False}
    assert "listener bug" in caplog.text
    assert monitor.is_healthy(1) and not monitor.is_healthy(2)


def test_targets_added_and_removed(make_monitor: Callable[..., HealthMonitor]) -> None:
    targets = Targets(True, False, False)
    monitor = make_monitor(targets)
    monitor.run_once()
    targets.healthy.append(True)
    assert monitor.snapshot() == {1: True, 2: False, 3: False, 4: None}
    monitor.run_once()
    assert monitor.snapshot() == {1: True, 2: False, 3: False, 4: True}

    # remove target 2: later results shift down with their indices
    del targets.healthy[1]
    monitor.remove(2)
    assert monitor.snapshot() == {1: True, 2: False, 3: True}
    targets.changes.clear()
    monitor.run_once()
    assert targets.changes == []  # shifted results still match their targets


def test_result_computed_before_a_removal_is_dropped() -> None:
    removed = threading.Event()
    monitor: HealthMonitor

    def check(index: int) -> bool:
        if index == 2 and not removed.is_set():
            removed.set()
            monitor.remove(1)  # the owner removes target 1 while target 2 is being checked
        return False

    monitor = HealthMonitor(lambda: 2, check, clock=FakeClock())
    recorded = monitor.run_once()
    assert recorded == {1: False}
    assert monitor.last_result(1) is None  # index 1 is now the old target 2: unknown
    assert monitor.last_result(2) is None


def test_mark_and_forget(make_monitor: Callable[..., HealthMonitor]) -> None:
    targets = Targets(True, True)
    monitor = make_monitor(targets)
    assert monitor.mark(2, False) is True
    assert targets.changes == [(2, False)]
    assert monitor.mark(2, False) is False
    assert monitor.mark(2, True, notify=False) is True
    assert targets.changes == [(2, False)]
    assert monitor.is_healthy(2)
    monitor.forget(2)
    assert monitor.last_result(2) is None
    with pytest.raises(ValueError, match="index must be >= 1"):
        monitor.mark(0, True)


def test_check_target_runs_on_the_spot(make_monitor: Callable[..., HealthMonitor]) -> None:
    targets = Targets(True, False)
    monitor = make_monitor(targets)
    assert monitor.check_target(2) is False
    assert targets.checked == [2]
    assert targets.changes == [(2, False)]
    targets.healthy[1] = True
    assert monitor.check_target(2, notify=False) is True
    assert targets.changes == [(2, False)]
    assert monitor.is_healthy(2)


def test_invalid_interval() -> None:
    with pytest.raises(ValueError, match="interval must be > 0, got 0"):
        HealthMonitor(lambda: 1, lambda i: True, interval=0)


def _running(monitor: HealthMonitor) -> bool:
    return monitor.running  # a call, so that mypy does not narrow the property


def _wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


def test_background_thread_follows_fake_clock(
    make_monitor: Callable[..., HealthMonitor], clock: FakeClock
) -> None:
    targets = Targets(True, True)
    monitor = make_monitor(targets, interval=5.0)
    monitor.start()
    monitor.start()  # idempotent
    assert _running(monitor)
    assert _wait_until(lambda: monitor.rounds == 1)  # first round at once
    time.sleep(0.05)
    assert monitor.rounds == 1  # nothing more until the interval passes on the fake clock
    targets.healthy[0] = False
    clock.advance(5.0)
    assert _wait_until(lambda: monitor.rounds == 2)
    assert _wait_until(lambda: targets.changes == [(1, False)])
    monitor.close(timeout=5)
    assert not monitor.running
    assert monitor.closed


def test_close_stops_system_clock_thread_promptly() -> None:
    checked = threading.Event()

    def check(index: int) -> bool:
        checked.set()
        return True

    monitor = HealthMonitor(lambda: 1, check, interval=3600.0)
    monitor.start()
    assert checked.wait(5)
    started = time.monotonic()
    monitor.close()
    assert time.monotonic() - started < 1.0
    assert not monitor.running
    monitor.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        monitor.start()


def test_close_from_on_change_does_not_deadlock() -> None:
    monitor: HealthMonitor

    def on_change(index: int, healthy: bool) -> None:
        monitor.close()

    monitor = HealthMonitor(lambda: 3, lambda i: False, interval=60.0, on_change=on_change)
    monitor.start()
    assert _wait_until(lambda: not monitor.running)
    assert monitor.closed
    assert monitor.last_result(1) is False
    assert monitor.last_result(2) is None  # the round stopped after close()


def test_context_manager_closes() -> None:
    with HealthMonitor(lambda: 1, lambda i: True, interval=60.0) as monitor:
        monitor.start()
        assert _running(monitor)
    assert not monitor.running
    assert "interval=60.0" in repr(monitor)
