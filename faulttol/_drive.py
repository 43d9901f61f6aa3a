"""Run a generator-written operation with a thin sync or asyncio driver ("sans-I/O").

Logic that must exist for threads and for asyncio alike is written once, as a generator that
*yields* a request wherever I/O is needed and receives the request's result (or has the
request's exception thrown into it); its return value is the operation's. :func:`drive`
carries out each request on the calling thread, :func:`drive_async` awaits it. The failover
operations (``faulttol._failover_ops``) and the retry loop after a first failure
(``faulttol.retry``) are written this way, so their sync and asyncio forms share every line of
logic and differ only in how one request is performed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["Op", "drive", "drive_async"]

Q = TypeVar("Q")
R = TypeVar("R")

Op = Generator[Q, Any, R]
"""An operation: yields requests of type ``Q``, receives their results, returns an ``R``."""


def _advance(op: Op[Any, R], value: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Send ``value`` (or throw ``error``) into ``op``: ``(True, next request)``, or
    ``(False, its result)`` once it has returned."""
    try:
        return True, (op.send(value) if error is None else op.throw(error))
    except StopIteration as done:
        return False, done.value


def drive(op: Op[Q, R], perform: Callable[[Q], Any]) -> R:
    """Run ``op`` to its end, carrying out each request with ``perform`` on this thread (an
    exception it raises is thrown into the operation)."""
    running, item = _advance(op, None, None)
    while running:
        try:
            value = perform(item)
        except BaseException as exc:
            running, item = _advance(op, None, exc)
        else:
            running, item = _advance(op, value, None)
    return item  # type: ignore[no-any-return]


async def drive_async(op: Op[Q, R], perform: Callable[[Q], Awaitable[Any]]) -> R:
    """:func:`drive`, awaiting ``perform``."""
    running, item = _advance(op, None, None)
    while running:
        try:
            value = await perform(item)
        except BaseException as exc:
            running, item = _advance(op, None, exc)
        else:
            running, item = _advance(op, value, None)
    return item  # type: ignore[no-any-return]
