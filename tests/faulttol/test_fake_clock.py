"""FakeClock on its own: the clock every time-dependent test of the suite relies on."""

from __future__ import annotations

import asyncio
import threading

import pytest

from faulttol import Clock
from faulttol.testing import FakeClock


def test_starts_where_told_and_only_moves_when_advanced() -> None:
    clock = FakeClock(start=10.0)
    assert clock.monotonic() == 10.0
    assert clock.monotonic() == 10.0
    clock.advance(2.5)
    assert clock.monotonic() == 12.5
    clock.advance(0)
    assert clock.monotonic() == 12.5


def test_advancing_backwards_is_refused_and_changes_nothing() -> None:
    clock = FakeClock()
    clock.advance(1.0)
    with pytest.raises(ValueError, match="seconds"):
        clock.advance(-0.5)
    assert clock.monotonic() == 1.0


def test_sleep_records_and_advances_without_blocking() -> None:
    clock = FakeClock()
    clock.sleep(0.5)
    clock.sleep(1.0)
    clock.sleep(-1.0)  # recorded as asked, but time never goes back
    assert clock.sleeps == [0.5, 1.0, -1.0]
    assert clock.monotonic() == 1.5


async def test_sleep_async_advances_and_yields_to_the_loop() -> None:
    clock = FakeClock()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())
    await clock.sleep_async(3.0)
    assert ran == ["other"]  # the sleep let the other task run
    assert clock.monotonic() == 3.0
    assert clock.sleeps == [3.0]
    await task


def test_is_a_clock_for_every_component() -> None:
    assert isinstance(FakeClock(), Clock)


def test_concurrent_advances_are_all_counted() -> None:
    clock = FakeClock()

    def advance() -> None:
        for _ in range(1000):
            clock.advance(0.001)

    threads = [threading.Thread(target=advance) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.monotonic() == pytest.approx(8.0)


def test_repr_shows_the_time() -> None:
    assert repr(FakeClock(start=2.0)) == "FakeClock(now=2.0)"
