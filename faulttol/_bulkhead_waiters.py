"""The callers queued for a slot of a full :class:`~faulttol.Bulkhead`: a thread waits on a
lock of its own, an asyncio task on a future of its loop, and each loop keeps its waiting
tasks' deadlines in one timer (system clock only).

Private to :mod:`faulttol.bulkhead`, which hands slots to these waiters in order under its lock.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from typing import Final

__all__ = ["TIMEOUT_MAX", "LoopTimeouts", "TaskWaiter", "ThreadWaiter", "Waiter"]

TIMEOUT_MAX: Final = threading.TIMEOUT_MAX
"""The longest timeout a lock acquire takes; longer waits are capped to it (~292 years)."""


class Waiter:
    """A caller queued for a permit. ``granted`` and ``abandoned`` change under the
    bulkhead's lock only: a permit is handed to a waiter that has not abandoned, and a waiter
    abandons only while it holds no permit, so a permit is never lost between the two."""

    __slots__ = ("abandoned", "granted")

    def __init__(self) -> None:
        self.granted = False
        self.abandoned = False

    def wake(self) -> None:
        """Tell the waiter it was granted a permit (called without the bulkhead's lock)."""
        raise NotImplementedError


class ThreadWaiter(Waiter):
    """A thread blocked on a lock of its own, released by whoever grants it a permit."""

    __slots__ = ("gate",)

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Lock()
        self.gate.acquire()

    def wake(self) -> None:
        self.gate.release()


def resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class TaskWaiter(Waiter):
    """An asyncio task awaiting a future of its loop (until ``deadline``, on the loop's
    time); woken thread-safely."""

    __slots__ = ("deadline", "future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self.granted = False
        self.abandoned = False
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.deadline = deadline

    def wake(self) -> None:
        if asyncio._get_running_loop() is self.loop:
            resolve(self.future)
        else:
            # Raises RuntimeError when the loop is closed: the caller takes the permit back.
            self.loop.call_soon_threadsafe(resolve, self.future)


class LoopTimeouts:
    """The deadlines of the waiters of one bulkhead on one event loop, with one timer.

    Every waiter of a bulkhead waits the same ``max_wait_duration``, so on one loop their
    deadlines come in arrival order: they are kept in a deque, and one loop timer is armed
    for the oldest. (A timer per waiter would cost a heap push and pop of Python-compared
    timer handles each: with thousands of tasks waiting, most of the loop's time.) Touched
    only from its loop's thread.
    """

    __slots__ = ("armed", "entries", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)
        self.entries: deque[TaskWaiter] = deque()
        self.armed = False

    def add(self, waiter: TaskWaiter) -> None:
        self.entries.append(waiter)
        if not self.armed:
            self.armed = True
            waiter.loop.call_at(waiter.deadline, self.expire, waiter.loop)

    def expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the waiters whose deadline has passed; re-arm for the next one."""
        self.armed = False
        now = loop.time()
        entries = self.entries
        while entries:
            waiter = entries[0]
            if waiter.future.done():  # granted or cancelled meanwhile
                entries.popleft()
            elif waiter.deadline <= now:
                entries.popleft()
                waiter.future.set_result(None)  # it finds no slot granted: rejected
            else:
                self.armed = True
                loop.call_at(waiter.deadline, self.expire, loop)
                return

    def trim(self) -> None:
        """Drop the waiters that are done, from the oldest (slots are handed out in order)."""
        entries = self.entries
        while entries and entries[0].future.done():
            entries.popleft()
