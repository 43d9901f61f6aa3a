"""Helpers for testing code that uses faulttol: a controllable clock.

``FakeClock`` lets tests drive every timed behaviour (open-state waits, time-based windows,
retry backoff, health-check intervals) without real sleeps::

    clock = FakeClock()
    breaker = CircuitBreaker("db", config, clock=clock)
    ...
    clock.advance(60)          # the open wait has passed

``use_clock`` makes a clock the default of every component created inside a block, so the
code under test need not pass ``clock=`` through its own layers::

    with use_clock(FakeClock()) as clock:
        service = build_my_service()   # its breakers and retries get ``clock``
    clock.advance(60)
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Generic, TypeVar

from ._clock import _DEFAULT_CLOCK, Clock

__all__ = ["FakeClock", "use_clock"]

C = TypeVar("C", bound=Clock)


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


class use_clock(Generic[C]):  # lower-case: used like a function, ``with use_clock(clock):``
    """Make ``clock`` the default clock of the components created inside a ``with`` block.

    ``with use_clock(FakeClock()) as clock:`` — every component created in the block with no
    ``clock=`` argument (circuit breakers, retries, registries, providers, health monitors,
    the Redis failover providers, ...) uses ``clock``; an explicit ``clock=`` still wins.

    * The default is read **when a component is created**: a component created inside the
      block keeps ``clock`` after the block ends, and one created before it never sees it.
      Functions that take ``clock=`` (``run_probes``) read it when called.
    * Blocks nest: leaving the inner one restores the outer default (also on an exception).
    * It is a :class:`contextvars.ContextVar`: asyncio tasks created inside the block (and
      ``asyncio.run`` called there) inherit it; a block entered in one task does not affect
      other tasks. A thread started inside the block does **not** see it (new threads start
      with an empty context, before Python 3.14's ``thread_inherit_context``) unless it runs
      in a copy: ``threading.Thread(target=contextvars.copy_context().run, args=(fn,))``.
      ``asyncio.to_thread`` copies the context; ``loop.run_in_executor`` does not.

    Raises :class:`TypeError` when ``clock`` is not a :class:`~faulttol.Clock`. One object may
    be entered once at a time (``RuntimeError`` otherwise); create one per block.
    """

    __slots__ = ("_clock", "_token")

    def __init__(self, clock: C) -> None:
        if not isinstance(clock, Clock):
            raise TypeError(
                "clock must be a Clock (monotonic(), sleep(), async sleep_async()), "
                f"got {type(clock).__name__}"
            )
        self._clock = clock
        self._token: contextvars.Token[Clock | None] | None = None

    def __enter__(self) -> C:
        if self._token is not None:
            raise RuntimeError("this use_clock block is already entered; create another one")
        self._token = _DEFAULT_CLOCK.set(self._clock)
        return self._clock

    def __exit__(self, *exc_info: object) -> None:
        token, self._token = self._token, None
        if token is not None:
            _DEFAULT_CLOCK.reset(token)

    def __repr__(self) -> str:
        return f"use_clock({self._clock!r})"
