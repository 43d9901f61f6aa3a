"""Bulkheads: limit how many calls run at once, so one slow dependency cannot take every
thread or task of the application with it.

:class:`Bulkhead` (resilience4j's ``SemaphoreBulkhead``) admits at most
``max_concurrent_calls`` calls at a time, in the caller's own thread or asyncio task; a call
that finds every slot taken waits up to ``max_wait_duration`` for one, then fails with
:class:`BulkheadFullError`. :class:`ThreadPoolBulkhead` (resilience4j's
``FixedThreadPoolBulkhead``) runs calls on a bounded pool of threads with a bounded queue; it
lives in :mod:`faulttol._thread_pool_bulkhead` and is re-exported here.

How the :class:`Bulkhead` keeps its promises:

* **No lock across the call, none on the fast path.** A free slot is a token in a list:
  taking one is a ``list.pop()``, giving it back an ``append`` (each atomic in CPython), so
  a call that finds a slot free takes no lock at all. The lock guards the queue of waiters
  only, and is never held while the protected call runs.
* **asyncio callers never block the loop.** A task that must wait awaits a future of its own
  loop; a permit freed in another thread (or on another loop) wakes it with
  ``call_soon_threadsafe``. A thread that must wait blocks on a lock of its own.
* **Waiters are served in order.** A slot given back while callers wait is handed to the
  longest waiting one (under the lock), and a woken waiter never finds its slot gone. (A
  caller arriving in the very instant a slot is given back may take it first; the waiter then
  gets the next one: no slot is lost either way.)
* **Permits never leak.** They are given back when the call returns, raises or is cancelled;
  a waiter that times out or is cancelled leaves the queue, and one cancelled at the moment a
  permit was handed to it passes that permit on to the next waiter.

Waiting and time: with the system clock a caller waits in real time (a timed lock acquire, or
a timer on the event loop). With another clock (``FakeClock`` in tests) the wait is the clock's
``sleep`` / ``sleep_async`` for ``max_wait_duration``: a ``FakeClock`` advances at once, so a
test sees a full bulkhead wait exactly ``max_wait_duration`` and reject, deterministically.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from . import _bulkhead_config, _bulkhead_events, _thread_pool_bulkhead
from ._bulkhead_config import *  # noqa: F403 - the configuration's public names, re-exported
from ._bulkhead_config import BulkheadConfig
from ._bulkhead_events import *  # noqa: F403 - the events and the error, re-exported
from ._bulkhead_events import (
    BulkheadEvents,
    BulkheadFullError,
    BulkheadOnCallPermittedEvent,
    BulkheadOnCallRejectedEvent,
    EmitsBulkheadEvents,
)
from ._bulkhead_waiters import TIMEOUT_MAX, LoopTimeouts, TaskWaiter, ThreadWaiter, Waiter
from ._clock import Clock, SystemClock
from ._component import Component, Decorating, LiveView, checked_setup
from ._thread_pool_bulkhead import *  # noqa: F403 - the thread-pool bulkhead, re-exported

__all__ = ["Bulkhead", "BulkheadMetrics"]
__all__ += _bulkhead_config.__all__  # the configuration, the events and the thread-pool
__all__ += _bulkhead_events.__all__  # bulkhead, all re-exported from here
__all__ += _thread_pool_bulkhead.__all__

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# --- the bulkhead ---------------------------------------------------------------------------


class BulkheadMetrics(LiveView["Bulkhead"]):
    """A live view of a :class:`Bulkhead`'s slots (read at access, never stale)."""

    _shown = ("available_concurrent_calls", "max_allowed_concurrent_calls")

    @property
    def available_concurrent_calls(self) -> int:
        """Slots free now: ``max_allowed_concurrent_calls`` minus the calls inside."""
        return len(self._owner._tokens)

    @property
    def max_allowed_concurrent_calls(self) -> int:
        """The configured ``max_concurrent_calls``."""
        return self._owner._config.max_concurrent_calls



class Bulkhead(Component[BulkheadConfig, BulkheadEvents], EmitsBulkheadEvents, Decorating):
    """At most ``max_concurrent_calls`` calls inside at once; a decorator for sync and async
    functions, ``.call(fn, ...)`` and ``await .call_async(fn, ...)``.

    >>> bulkhead = Bulkhead("inventory", BulkheadConfig(max_concurrent_calls=10))
    >>> @bulkhead
    ... def query() -> int: ...

    ``.events`` publishes ``on_call_permitted``, ``on_call_rejected`` and
    ``on_call_finished`` (after the call returned, raised or was cancelled); ``.metrics`` has
    ``available_concurrent_calls`` and ``max_allowed_concurrent_calls``.
    """

    __slots__ = (
        "_clock",
        "_config",
        "_events",
        "_last_timeouts",
        "_live_waiters",
        "_lock",
        "_max_wait",
        "_metrics",
        "_name",
        "_real_waits",
        "_timeouts",
        "_tokens",
        "_waiters",
    )

    def __init__(
        self, name: str, config: BulkheadConfig | None = None, *, clock: Clock | None = None
    ) -> None:
        self._name, self._config, self._clock = checked_setup(name, config, BulkheadConfig, clock)
        config = self._config
        self._real_waits = isinstance(self._clock, SystemClock)
        self._max_wait = float(config.max_wait_duration)
        # One token per free slot: taken with pop(), given back with append(), both atomic.
        self._tokens: list[None] = [None] * config.max_concurrent_calls
        self._lock = threading.Lock()  # guards the waiters
        self._waiters: deque[Waiter] = deque()
        # Queued waiters that have not abandoned. Written under _lock; read without it by a
        # call giving its token back, *after* the append: a waiter counts itself in *before*
        # its last try to pop, so one of the two always sees the other (no lost wake-up).
        self._live_waiters = 0
        # Per event loop, the deadlines of its waiting tasks (system clock only); the last
        # one used is cached (most applications run one loop).
        self._timeouts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopTimeouts] = (
            weakref.WeakKeyDictionary()
        )
        self._last_timeouts: LoopTimeouts | None = None
        self._observed = False  # somebody listens: build and publish events
        self._events = BulkheadEvents(self._listeners_changed)
        self._metrics = BulkheadMetrics(self)

    # -- properties ------------------------------------------------------------------------

    @property
    def metrics(self) -> BulkheadMetrics:
        """``available_concurrent_calls`` and ``max_allowed_concurrent_calls``, read live."""
        return self._metrics

    # -- raw permit operations ---------------------------------------------------------------

    def try_acquire_permission(self) -> bool:
        """Take a slot, waiting up to ``max_wait_duration`` (blocking this thread) for one.

        Publishes ``on_call_permitted`` or ``on_call_rejected``. A slot taken here must be
        given back with :meth:`on_complete` (the call ran) or :meth:`release_permission`.
        From asyncio code use :meth:`try_acquire_permission_async`.
        """
        return self._admitted(self._take_now() or self._wait_sync())

    async def try_acquire_permission_async(self) -> bool:
        """Like :meth:`try_acquire_permission`, but the wait is awaited (never blocks the loop).

        A task cancelled while it waits takes no slot (and a slot handed to it at that very
        moment goes to the next waiter).
        """
        return self._admitted(self._take_now() or await self._wait_async())

    def acquire_permission(self) -> None:
        """Like :meth:`try_acquire_permission`, but raise :class:`BulkheadFullError`."""
        if not self.try_acquire_permission():
            raise BulkheadFullError(self._name)

    async def acquire_permission_async(self) -> None:
        """Like :meth:`try_acquire_permission_async`, but raise :class:`BulkheadFullError`."""
        if not await self.try_acquire_permission_async():
            raise BulkheadFullError(self._name)

    def release_permission(self) -> None:
        """Give back a slot without publishing anything (the call did not run).

        Releasing more slots than were taken is a ``RuntimeError`` (it would let more calls
        in than configured).
        """
        self._release()

    def on_complete(self) -> None:
        """Give back a slot after the call ran, and publish ``on_call_finished``."""
        self._release()
        self._finished()

    # -- calling ---------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` in a slot (waiting up to ``max_wait_duration``)."""
        self.acquire_permission()
        try:
            return fn(*args, **kwargs)
        finally:
            self.on_complete()

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` in a slot; the wait for a slot is awaited."""
        await self.acquire_permission_async()
        try:
            return await fn(*args, **kwargs)
        finally:
            self.on_complete()

    def _decorate_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        # The hot path: with a slot free, a pop on entry and an append on exit (no lock),
        # everything bound to locals.
        bulkhead = self
        take = self._tokens.pop
        give_back = self._tokens.append
        after_call = self._after_call

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                take()
            except IndexError:
                bulkhead._acquire_or_reject()
            if bulkhead._observed:
                bulkhead._emit(BulkheadOnCallPermittedEvent)
            try:
                return fn(*args, **kwargs)
            finally:
                give_back(None)
                if bulkhead._live_waiters or bulkhead._observed:
                    after_call()

        return guarded

    def _decorate_async(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        bulkhead = self
        tokens = self._tokens
        take = tokens.pop
        give_back = tokens.append
        wait_async = self._wait_async  # hot too, while tasks queue up

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            if tokens:
                try:
                    take()
                except IndexError:  # taken by another thread in between
                    await wait_async(True)
            else:  # (no exception raised on this path: it is hot while tasks queue up)
                await wait_async(True)
            if bulkhead._observed:
                bulkhead._emit(BulkheadOnCallPermittedEvent)
            try:
                return await fn(*args, **kwargs)
            finally:
                give_back(None)
                if bulkhead._live_waiters or bulkhead._observed:
                    bulkhead._after_call()

        return guarded

    # -- internals -------------------------------------------------------------------------

    def _after_call(self) -> None:
        """A decorated call gave its slot back while somebody waits or listens: hand free
        slots over, publish ``on_call_finished``."""
        if self._live_waiters:
            self._hand_over()
        self._finished()

    def _acquire_or_reject(self) -> None:
        """No slot was free: wait for one, or publish the rejection and raise."""
        if not self._wait_sync():
            if self._observed:
                self._emit(BulkheadOnCallRejectedEvent)
            raise BulkheadFullError(self._name) from None

    def _take_now(self) -> bool:
        """Take a free slot without waiting."""
        try:
            self._tokens.pop()
        except IndexError:
            return False
        return True

    def _release(self) -> None:
        """Give a slot back (to the longest waiting caller, if any)."""
        tokens = self._tokens
        if len(tokens) >= self._config.max_concurrent_calls:
            raise RuntimeError(f"Bulkhead {self._name!r}: a slot given back that was not taken")
        tokens.append(None)
        if self._live_waiters:
            self._hand_over()

    def _hand_over(self) -> None:
        """Hand free slots to queued waiters, oldest first (tokens were given back while
        somebody waits)."""
        tokens = self._tokens
        while True:  # usually once: one slot given back, one waiter woken
            with self._lock:
                if not self._live_waiters:
                    return
                try:
                    tokens.pop()
                except IndexError:
                    return  # a newcomer took it: its own release hands over the next one
                waiters = self._waiters
                while True:
                    waiter = waiters.popleft()
                    if not waiter.abandoned:
                        break
                waiter.granted = True
                self._live_waiters -= 1
            try:
                waiter.wake()
            except RuntimeError:  # its event loop is closed: nobody will take the slot
                tokens.append(None)

    def _enqueue(self, waiter: Waiter) -> bool:
        """Queue ``waiter`` unless a slot is free now (then take it: ``True``)."""
        with self._lock:
            self._live_waiters += 1  # first: a token given back from now on is handed over
            if self._tokens:
                try:
                    self._tokens.pop()
                except IndexError:  # taken by another thread in between
                    pass
                else:
                    self._live_waiters -= 1
                    return True
            self._waiters.append(waiter)
            return False

    def _leave(self, waiter: Waiter) -> bool:
        """After waiting: ``True`` if ``waiter`` was granted a slot, else it leaves the queue."""
        granted_before = waiter.granted  # set once, under the lock, before the wake-up
        if granted_before:
            return True
        with self._lock:
            if waiter.granted:
                return True
            waiter.abandoned = True
            self._live_waiters -= 1
            waiters = self._waiters
            # Abandoned entries are skipped when slots are handed out; compact the queue when
            # they pile up (waiters timing out while nobody releases), so it stays bounded.
            if len(waiters) > 64 and len(waiters) > 2 * self._live_waiters:
                self._waiters = deque(w for w in waiters if not w.abandoned)
            return False

    def _wait_sync(self) -> bool:
        """Wait up to ``max_wait_duration`` for a slot, blocking this thread."""
        if self._max_wait <= 0.0:
            return False
        waiter = ThreadWaiter()
        if self._enqueue(waiter):
            return True
        try:
            if self._real_waits:
                waiter.gate.acquire(timeout=min(self._max_wait, TIMEOUT_MAX))
            else:
                self._clock.sleep(self._max_wait)
        except BaseException:
            if self._leave(waiter):  # interrupted right after a slot was handed over
                self._release()
            raise
        return self._leave(waiter)

    def _loop_timeouts(self, loop: asyncio.AbstractEventLoop) -> LoopTimeouts:
        """The deadlines of ``loop``'s waiters (called from that loop's thread)."""
        timeouts = self._last_timeouts
        if timeouts is not None and timeouts.loop() is loop:
            return timeouts
        with self._lock:
            timeouts = self._timeouts.get(loop)
            if timeouts is None:
                timeouts = self._timeouts[loop] = LoopTimeouts(loop)
        self._last_timeouts = timeouts
        return timeouts

    async def _wait_async(self, reject: bool = False) -> bool:
        """Wait up to ``max_wait_duration`` for a slot, awaiting (never blocking the loop).

        Without a slot: ``False``; or, with ``reject``, the rejection is published and
        :class:`BulkheadFullError` raised. (The decorators' slow path is this one coroutine:
        with thousands of tasks queued, fewer objects for the garbage collector.)
        """
        granted = False
        if self._max_wait > 0.0:
            loop = asyncio.get_running_loop()
            waiter = TaskWaiter(loop, loop.time() + self._max_wait)
            if self._enqueue(waiter):
                return True
            try:
                if self._real_waits:
                    timeouts = self._loop_timeouts(loop)
                    timeouts.add(waiter)
                    try:
                        await waiter.future
                    finally:
                        timeouts.trim()
                else:
                    await self._clock.sleep_async(self._max_wait)
            except BaseException:  # cancelled: take no slot, pass on one handed over
                if self._leave(waiter):
                    self._release()
                raise
            granted = self._leave(waiter)
        if not granted and reject:
            if self._observed:
                self._emit(BulkheadOnCallRejectedEvent)
            raise BulkheadFullError(self._name)
        return granted
