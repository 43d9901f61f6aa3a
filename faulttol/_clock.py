"""The clock abstraction every timed component takes as ``clock=``.

Injecting time keeps the library testable without sleeping: production code uses
:data:`SYSTEM_CLOCK`, tests use :class:`faulttol.testing.FakeClock`.

A component created with ``clock=None`` asks :func:`resolve_clock` once, at construction: the
context's default clock when :func:`faulttol.testing.use_clock` set one, else
:data:`SYSTEM_CLOCK`. The default lives in a :class:`contextvars.ContextVar` so that a test's
FakeClock reaches the components created in its block (and in the asyncio tasks started there)
without leaking into other tasks or threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "resolve_clock"]


@runtime_checkable
class Clock(Protocol):
    """Anything that tells monotonic time and can wait, synchronously and in asyncio."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (only differences are meaningful)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def sleep_async(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.sleep` and :func:`asyncio.sleep`."""

    __slots__ = ()

    # Bound straight to the C functions: no Python frame on the hot path.
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    async def sleep_async(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()
"""The shared default clock."""


_DEFAULT_CLOCK: contextvars.ContextVar[Clock | None] = contextvars.ContextVar(
    "faulttol_default_clock", default=None
)
"""The clock a component created with ``clock=None`` gets in this context; ``None`` means
:data:`SYSTEM_CLOCK`. Set only through :func:`faulttol.testing.use_clock`."""


def resolve_clock(clock: Clock | None) -> Clock:
    """The clock a component uses: ``clock`` when given, else the context's default clock
    (see :func:`faulttol.testing.use_clock`), else :data:`SYSTEM_CLOCK`.

    Components call it once, when they are created, never per call: the hot path reads no
    context variable, and a component keeps its clock for its whole life.
    """
    if clock is not None:
        return clock
    default = _DEFAULT_CLOCK.get()
    return SYSTEM_CLOCK if default is None else default
