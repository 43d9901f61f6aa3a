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
import inspect
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, ParamSpec, TypeVar, cast

from ._bulkhead_events import (
    BulkheadEvent,
    BulkheadEvents,
    BulkheadFullError,
    BulkheadOnCallFinishedEvent,
    BulkheadOnCallPermittedEvent,
    BulkheadOnCallRejectedEvent,
)
from ._clock import Clock, SystemClock
from ._component import Component, checked_setup
from ._thread_pool_bulkhead import (
    DEFAULT_CORE_THREAD_POOL_SIZE,
    DEFAULT_KEEP_ALIVE_DURATION,
    DEFAULT_MAX_THREAD_POOL_SIZE,
    DEFAULT_QUEUE_CAPACITY,
    ThreadPoolBulkhead,
    ThreadPoolBulkheadConfig,
    ThreadPoolBulkheadMetrics,
)
from .validation import check_int, check_non_negative

__all__ = [
    "DEFAULT_CORE_THREAD_POOL_SIZE",
    "DEFAULT_KEEP_ALIVE_DURATION",
    "DEFAULT_MAX_CONCURRENT_CALLS",
    "DEFAULT_MAX_THREAD_POOL_SIZE",
    "DEFAULT_MAX_WAIT_DURATION",
    "DEFAULT_QUEUE_CAPACITY",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadEvent",
    "BulkheadEvents",
    "BulkheadFullError",
    "BulkheadMetrics",
    "BulkheadOnCallFinishedEvent",
    "BulkheadOnCallPermittedEvent",
    "BulkheadOnCallRejectedEvent",
    "ThreadPoolBulkhead",
    "ThreadPoolBulkheadConfig",
    "ThreadPoolBulkheadMetrics",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

DEFAULT_MAX_CONCURRENT_CALLS: Final = 25
"""Calls admitted at once (resilience4j's default)."""
DEFAULT_MAX_WAIT_DURATION: Final = 0.0
"""Seconds a caller waits for a slot of a full bulkhead: 0 means reject at once."""

_TIMEOUT_MAX: Final = threading.TIMEOUT_MAX
"""The longest timeout a lock acquire takes; longer waits are capped to it (~292 years)."""


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkheadConfig:
    """How many calls a :class:`Bulkhead` admits at once, and how long a caller waits.

    Immutable. A value of the wrong kind (a float or a bool for the count, a string for the
    duration) raises ``ConfigTypeError`` (a ``TypeError`` and a ``ValueError``); a value out
    of range (negative, NaN, infinite) raises ``ValueError``. Both name the field and what
    it allows.
    """

    max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS
    """Calls admitted at once (>= 0; 0 admits nothing, as in resilience4j)."""
    max_wait_duration: float = DEFAULT_MAX_WAIT_DURATION
    """Seconds a caller waits for a slot before :class:`BulkheadFullError` (>= 0 and finite)."""

    def __post_init__(self) -> None:
        check_int("max_concurrent_calls", self.max_concurrent_calls, minimum=0)
        check_non_negative(
            "max_wait_duration", self.max_wait_duration, allowed="finite seconds >= 0"
        )


# --- waiters --------------------------------------------------------------------------------


class _Waiter:
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


class _ThreadWaiter(_Waiter):
    """A thread blocked on a lock of its own, released by whoever grants it a permit."""

    __slots__ = ("gate",)

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Lock()
        self.gate.acquire()

    def wake(self) -> None:
        self.gate.release()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _TaskWaiter(_Waiter):
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
            _resolve(self.future)
        else:
            # Raises RuntimeError when the loop is closed: the caller takes the permit back.
            self.loop.call_soon_threadsafe(_resolve, self.future)


class _LoopTimeouts:
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
        self.entries: deque[_TaskWaiter] = deque()
        self.armed = False

    def add(self, waiter: _TaskWaiter) -> None:
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


# --- the bulkhead ---------------------------------------------------------------------------


class BulkheadMetrics:
    """A live view of a :class:`Bulkhead`'s slots (read at access, never stale)."""

    __slots__ = ("_bulkhead",)

    def __init__(self, bulkhead: Bulkhead) -> None:
        self._bulkhead = bulkhead

    @property
    def available_concurrent_calls(self) -> int:
        """Slots free now: ``max_allowed_concurrent_calls`` minus the calls inside."""
        return len(self._bulkhead._tokens)

    @property
    def max_allowed_concurrent_calls(self) -> int:
        """The configured ``max_concurrent_calls``."""
        return self._bulkhead._config.max_concurrent_calls

    def __repr__(self) -> str:
        return (
            f"BulkheadMetrics(available_concurrent_calls={self.available_concurrent_calls}, "
            f"max_allowed_concurrent_calls={self.max_allowed_concurrent_calls})"
        )


class Bulkhead(Component[BulkheadConfig, BulkheadEvents]):
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
        "_observed",
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
        self._waiters: deque[_Waiter] = deque()
        # Queued waiters that have not abandoned. Written under _lock; read without it by a
        # call giving its token back, *after* the append: a waiter counts itself in *before*
        # its last try to pop, so one of the two always sees the other (no lost wake-up).
        self._live_waiters = 0
        # Per event loop, the deadlines of its waiting tasks (system clock only); the last
        # one used is cached (most applications run one loop).
        self._timeouts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopTimeouts] = (
            weakref.WeakKeyDictionary()
        )
        self._last_timeouts: _LoopTimeouts | None = None
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
        if self._take_now() or self._wait_sync():
            if self._observed:
                self._emit(BulkheadOnCallPermittedEvent)
            return True
        if self._observed:
            self._emit(BulkheadOnCallRejectedEvent)
        return False

    async def try_acquire_permission_async(self) -> bool:
        """Like :meth:`try_acquire_permission`, but the wait is awaited (never blocks the loop).

        A task cancelled while it waits takes no slot (and a slot handed to it at that very
        moment goes to the next waiter).
        """
        if self._take_now() or await self._wait_async():
            if self._observed:
                self._emit(BulkheadOnCallPermittedEvent)
            return True
        if self._observed:
            self._emit(BulkheadOnCallRejectedEvent)
        return False

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
        if self._observed:
            self._emit(BulkheadOnCallFinishedEvent)

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

    def decorate(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``fn`` (a plain or ``async def`` function) so every call takes a slot."""
        if not callable(fn):
            raise TypeError(f"Bulkhead can only decorate a callable, got {fn!r}")
        if inspect.iscoroutinefunction(fn):
            return cast("Callable[P, R]", self._decorate_async(fn))
        return self._decorate_sync(fn)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorator form of :meth:`decorate`."""
        return self.decorate(fn)

    def _decorate_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        # The hot path: with a slot free, a pop on entry and an append on exit (no lock),
        # everything bound to locals.
        bulkhead = self
        take = self._tokens.pop
        give_back = self._tokens.append
        acquire_or_reject = self._acquire_or_reject
        hand_over = self._hand_over
        emit = self._emit

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                take()
            except IndexError:
                acquire_or_reject()
            if bulkhead._observed:
                emit(BulkheadOnCallPermittedEvent)
            try:
                return fn(*args, **kwargs)
            finally:
                give_back(None)
                if bulkhead._live_waiters:
                    hand_over()
                if bulkhead._observed:
                    emit(BulkheadOnCallFinishedEvent)

        return guarded

    def _decorate_async(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        bulkhead = self
        tokens = self._tokens
        take = tokens.pop
        give_back = tokens.append
        wait_async = self._wait_async
        hand_over = self._hand_over
        emit = self._emit

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
                emit(BulkheadOnCallPermittedEvent)
            try:
                return await fn(*args, **kwargs)
            finally:
                give_back(None)
                if bulkhead._live_waiters:
                    hand_over()
                if bulkhead._observed:
                    emit(BulkheadOnCallFinishedEvent)

        return guarded

    # -- internals -------------------------------------------------------------------------

    def _listeners_changed(self) -> None:
        self._observed = self._events.has_consumers

    def _emit(self, kind: type[BulkheadEvent]) -> None:
        events = self._events
        if events.wants(kind):
            events.publish(kind(self._name, created_at=self._clock.monotonic()))

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

    def _enqueue(self, waiter: _Waiter) -> bool:
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

    def _leave(self, waiter: _Waiter) -> bool:
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
        waiter = _ThreadWaiter()
        if self._enqueue(waiter):
            return True
        try:
            if self._real_waits:
                waiter.gate.acquire(timeout=min(self._max_wait, _TIMEOUT_MAX))
            else:
                self._clock.sleep(self._max_wait)
        except BaseException:
            if self._leave(waiter):  # interrupted right after a slot was handed over
                self._release()
            raise
        return self._leave(waiter)

    def _loop_timeouts(self, loop: asyncio.AbstractEventLoop) -> _LoopTimeouts:
        """The deadlines of ``loop``'s waiters (called from that loop's thread)."""
        timeouts = self._last_timeouts
        if timeouts is not None and timeouts.loop() is loop:
            return timeouts
        with self._lock:
            timeouts = self._timeouts.get(loop)
            if timeouts is None:
                timeouts = self._timeouts[loop] = _LoopTimeouts(loop)
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
            waiter = _TaskWaiter(loop, loop.time() + self._max_wait)
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
