"""faulttol.health.AsyncHealthMonitor (a task; coroutine checks) and ProbeTally (FakeClock)."""

from __future__ import annotations

import asyncio

import pytest

from faulttol.health import AsyncHealthMonitor, HealthCheckPolicy, HealthMonitor, ProbeTally
from faulttol.testing import FakeClock


class Targets:
    """Targets whose health the test controls, checked by coroutines."""

    def __init__(self, *healthy: bool) -> None:
        self.healthy = list(healthy)
        self.checked: list[int] = []
        self.changes: list[tuple[int, bool]] = []
        self.rounds_ended = 0

    def count(self) -> int:
        return len(self.healthy)

    async def check(self, index: int) -> bool:
        self.checked.append(index)
        await asyncio.sleep(0)
        return self.healthy[index - 1]

    async def on_change(self, index: int, healthy: bool) -> None:
        await asyncio.sleep(0)
        self.changes.append((index, healthy))

    def on_round_end(self) -> None:
        self.rounds_ended += 1


def make(targets: Targets, clock: FakeClock | None = None, **kw: object) -> AsyncHealthMonitor:
    return AsyncHealthMonitor(
        targets.count,
        targets.check,
        on_change=targets.on_change,
        on_round_end=targets.on_round_end,
        clock=clock or FakeClock(),
        **kw,  # type: ignore[arg-type]
    )


async def _until(predicate: object, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.002)
    return bool(predicate())  # type: ignore[operator]


def test_probe_tally_decides_as_early_as_the_policy_allows() -> None:
    tally = ProbeTally(HealthCheckPolicy.HEALTHY_MAJORITY, 3)
    assert tally.record(True) is None
    assert tally.record(True) is True
    tally = ProbeTally(HealthCheckPolicy.HEALTHY_ALL, 3)
    assert tally.record(True) is None
    assert tally.record(False) is False
    tally = ProbeTally(HealthCheckPolicy.HEALTHY_ANY, 2)
    assert tally.record(False) is None
    assert tally.record(False) is False


async def test_async_round_checks_every_target_then_reports_flips_in_order() -> None:
    targets = Targets(True, False, False)
    monitor = make(targets)
    assert await monitor.run_once() == {1: True, 2: False, 3: False}
    assert sorted(targets.checked) == [1, 2, 3]
    assert targets.changes == [(2, False), (3, False)]
    assert targets.rounds_ended == 1 and monitor.rounds == 1
    targets.healthy[1] = True
    await monitor.run_once()
    assert targets.changes == [(2, False), (3, False), (2, True)]
    assert monitor.snapshot() == {1: True, 2: True, 3: False}


async def test_async_flips_are_reported_after_every_result_of_the_round_is_recorded() -> None:
    targets = Targets(False, False)
    seen: list[dict[int, bool | None]] = []
    monitor: AsyncHealthMonitor

    def on_change(index: int, healthy: bool) -> None:
        seen.append(monitor.snapshot())

    monitor = AsyncHealthMonitor(targets.count, targets.check, on_change=on_change,
                                 clock=FakeClock())
    await monitor.run_once()
    assert seen == [{1: False, 2: False}, {1: False, 2: False}]


async def test_async_plain_check_functions_work_and_a_raise_is_unhealthy() -> None:
    def check(index: int) -> bool:
        if index == 2:
            raise ConnectionError("refused")
        return True

    monitor = AsyncHealthMonitor(lambda: 2, check, clock=FakeClock())
    assert await monitor.run_once() == {1: True, 2: False}


async def test_async_result_computed_across_a_forget_is_dropped() -> None:
    release = asyncio.Event()
    monitor: AsyncHealthMonitor

    async def check(index: int) -> bool:
        await release.wait()
        return False

    monitor = AsyncHealthMonitor(lambda: 1, check, clock=FakeClock())
    round_task = asyncio.create_task(monitor.run_once())
    await asyncio.sleep(0)
    monitor.forget(1)  # the owner decided target 1's health anew while it was checked
    release.set()
    assert await round_task == {}
    assert monitor.last_result(1) is None


async def test_async_task_follows_the_fake_clock_and_aclose_leaves_no_task() -> None:
    clock = FakeClock()
    targets = Targets(True)
    monitor = make(targets, clock, interval=5.0)
    monitor.start()
    monitor.start()  # idempotent
    assert monitor.running
    assert await _until(lambda: monitor.rounds == 1)  # first round at once
    await asyncio.sleep(0.05)
    assert monitor.rounds == 1  # nothing more until the interval passes on the fake clock
    targets.healthy[0] = False
    clock.advance(5.0)
    assert await _until(lambda: targets.changes == [(1, False)])
    tasks_before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert tasks_before
    await monitor.aclose()
    assert not monitor.running and monitor.closed
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()
    with pytest.raises(RuntimeError, match="closed"):
        monitor.start()


async def test_async_checks_never_block_the_loop() -> None:
    """A slow coroutine check lets other tasks run (the thread monitor's twin would block)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def slow_check(index: int) -> bool:
        await asyncio.sleep(0.05)
        return True

    monitor = AsyncHealthMonitor(lambda: 3, slow_check, clock=FakeClock())
    tick_task = asyncio.create_task(ticker())
    await monitor.run_once()
    tick_task.cancel()
    assert ticks > 10


def test_start_outside_a_loop_is_refused() -> None:
    monitor = AsyncHealthMonitor(lambda: 1, lambda i: True, clock=FakeClock())
    with pytest.raises(RuntimeError):
        monitor.start()


def test_sync_monitor_calls_on_round_end_after_each_round() -> None:
    ended: list[int] = []
    monitor = HealthMonitor(lambda: 2, lambda i: True, clock=FakeClock(),
                            on_round_end=lambda: ended.append(1))
    monitor.run_once()
    monitor.run_once()
    assert ended == [1, 1]
