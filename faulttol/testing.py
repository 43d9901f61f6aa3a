"""Helpers for testing code that uses faulttol: a controllable clock.

``FakeClock`` lets tests drive every timed behaviour (open-state waits, time-based windows,
retry backoff, health-check intervals) without real sleeps::

    clock = FakeClock()
    breaker = CircuitBreaker("db", config, clock=clock)
    ...
    clock.advance(60)          # the open wait has passed
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A manual monotonic clock; ``sleep``/``sleep_async`` advance it instead of blocking.

    Thread-safe: several threads may advance or read it. ``sleeps`` records every requested
    sleep, so tests can assert on backoff schedules.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """The current fake time in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (``ValueError`` if negative)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance the clock by ``seconds`` at once."""
        with self._lock:
            self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    async def sleep_async(self, seconds: float) -> None:
        """Like :meth:`sleep`, then yield once to the event loop."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
