"""TimeLimiter: give a call a deadline, and stop waiting for it when the deadline passes.

An ``async def`` call runs as a task of the caller's loop; when it runs longer than
``timeout_duration`` it is cancelled (with ``cancel_running_future``, the default: the caller
then waits for it to unwind, as with ``asyncio.wait_for``) or left running in the background
(without), and the caller gets :class:`TimeLimitExceededError` (a :class:`TimeoutError`).

A plain (sync) function runs on an executor — the ``executor=`` given (a
:class:`~faulttol.ThreadPoolBulkhead` or any :class:`concurrent.futures.Executor`), else a
shared default pool — and the caller gets :class:`TimeLimitExceededError` at the deadline.
**A thread cannot be killed**: the call itself runs on to its end in its pool thread;
``cancel_running_future`` only removes a call that is still queued. Give the protected code
its own timeouts (socket timeouts...) so that abandoned threads end too.

Time is read on the limiter's clock. With the system clock the caller waits in real time;
with another clock (``FakeClock`` in tests) it looks at the clock every few milliseconds of
real time, so a test moves a call past its deadline by advancing the clock (from the test,
or from the call itself: a call that ``clock.sleep(2)``\\ s under a 1 s limit times out). With
any clock, a call that ends after its deadline counts as timed out.

Events: ``on_success``, ``on_error`` (the call raised; also when the executor refused it) and
``on_timeout`` — a timeout publishes only ``on_timeout``. ``metrics`` counts the three
outcomes since creation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar, cast

from ._clock import Clock, SystemClock
from ._component import Component, LiveView, checked_setup
from ._decorating import wrap_calls
from ._thread_pool_bulkhead import ThreadPoolBulkhead, ThreadPoolBulkheadConfig
from .events import Event, EventPublisher
from .validation import check_bool, check_instance, check_non_negative

__all__ = [
    "DEFAULT_CANCEL_RUNNING_FUTURE",
    "DEFAULT_TIMEOUT_DURATION",
    "TimeLimitExceededError",
    "TimeLimiter",
    "TimeLimiterConfig",
    "TimeLimiterEvent",
    "TimeLimiterEvents",
    "TimeLimiterMetrics",
    "TimeLimiterOnErrorEvent",
    "TimeLimiterOnSuccessEvent",
    "TimeLimiterOnTimeoutEvent",
    "default_executor",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
C = TypeVar("C", bound=Callable[..., Any])

_log = logging.getLogger("faulttol.timelimiter")

DEFAULT_TIMEOUT_DURATION: Final = 1.0
"""Seconds a call may take (resilience4j's default)."""
DEFAULT_CANCEL_RUNNING_FUTURE: Final = True
"""Whether a call that timed out is cancelled (an ``async def`` call; a queued sync call)."""

_POLL: Final = 0.005
"""Real seconds between looks at a clock other than the system clock."""


class TimeLimitExceededError(TimeoutError):
    """A call took longer than its :class:`TimeLimiter` allows.

    A :class:`TimeoutError`, so ``except TimeoutError`` handlers catch it.
    ``time_limiter_name`` names the limiter and ``timeout_duration`` is the limit in seconds.
    """

    def __init__(self, time_limiter_name: str, timeout_duration: float) -> None:
        self.time_limiter_name = time_limiter_name
        self.timeout_duration = timeout_duration
        super().__init__(
            f"TimeLimiter {time_limiter_name!r} recorded a timeout: the call took longer than "
            f"{timeout_duration:g} s"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.time_limiter_name, self.timeout_duration))


@dataclass(frozen=True, slots=True)
class TimeLimiterConfig:
    """How long a call may take, and whether it is cancelled after that; immutable.

    A value of the wrong kind raises ``ConfigTypeError`` (a ``TypeError`` and a
    ``ValueError``), a value out of range ``ValueError``; both name the field.
    """

    timeout_duration: float = DEFAULT_TIMEOUT_DURATION
    """Seconds a call may take (>= 0 and finite; 0 times every call out)."""
    cancel_running_future: bool = DEFAULT_CANCEL_RUNNING_FUTURE
    """Cancel a call that timed out: an ``async def`` call is cancelled; a sync call still
    queued on its executor is removed (a running thread cannot be stopped)."""

    def __post_init__(self) -> None:
        check_non_negative("timeout_duration", self.timeout_duration, allowed="finite seconds >= 0")
        check_bool("cancel_running_future", self.cancel_running_future)


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeLimiterEvent(Event):
    """Base of time limiter events; ``name`` is the limiter's name."""


@dataclass(frozen=True, slots=True)
class TimeLimiterOnSuccessEvent(TimeLimiterEvent):
    """A call returned within its deadline."""


@dataclass(frozen=True, slots=True)
class TimeLimiterOnErrorEvent(TimeLimiterEvent):
    """A call raised ``exception`` within its deadline (or its executor refused it)."""

    exception: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TimeLimiterOnTimeoutEvent(TimeLimiterEvent):
    """A call did not end within its deadline."""


class TimeLimiterEvents(EventPublisher[TimeLimiterEvent]):
    """The ``.events`` of a :class:`TimeLimiter`."""

    __slots__ = ()

    def on_success(self, consumer: C) -> C:
        """Receive :class:`TimeLimiterOnSuccessEvent`."""
        return self._on(TimeLimiterOnSuccessEvent, consumer)

    def on_error(self, consumer: C) -> C:
        """Receive :class:`TimeLimiterOnErrorEvent`."""
        return self._on(TimeLimiterOnErrorEvent, consumer)

    def on_timeout(self, consumer: C) -> C:
        """Receive :class:`TimeLimiterOnTimeoutEvent`."""
        return self._on(TimeLimiterOnTimeoutEvent, consumer)


class TimeLimiterMetrics(LiveView["TimeLimiter"]):
    """Calls of a :class:`TimeLimiter` by outcome, since its creation (cumulative)."""

    _shown = ("number_of_successful_calls", "number_of_failed_calls", "number_of_timed_out_calls")

    @property
    def number_of_successful_calls(self) -> int:
        """Calls that returned within their deadline."""
        return self._owner._counts[0]

    @property
    def number_of_failed_calls(self) -> int:
        """Calls that raised within their deadline (or that the executor refused)."""
        return self._owner._counts[1]

    @property
    def number_of_timed_out_calls(self) -> int:
        """Calls that did not end within their deadline."""
        return self._owner._counts[2]



# --- the shared default executor -------------------------------------------------------------

_DEFAULT_EXECUTOR_LOCK = threading.Lock()
_default_executor: ThreadPoolBulkhead | None = None


def default_executor() -> ThreadPoolBulkhead:
    """The pool on which time limiters created without ``executor=`` run sync calls.

    One :class:`~faulttol.ThreadPoolBulkhead` named ``"faulttol-time-limiter"``, created on
    first use and shared: ``min(32, cpu_count + 4)`` threads (``ThreadPoolExecutor``'s
    default; created as needed, all kept once created), a queue of 100 calls. Its threads are
    daemon threads, so a call that never returns does not keep the interpreter alive at exit.
    When calls hang, they keep their threads: once every thread is taken, new calls wait in
    the queue (and time out there), then are refused with ``BulkheadFullError`` — pass an
    ``executor=`` of your own to isolate one dependency from the others.
    """
    global _default_executor
    with _DEFAULT_EXECUTOR_LOCK:
        if _default_executor is None or _default_executor.closed:
            threads = min(32, (os.cpu_count() or 1) + 4)
            _default_executor = ThreadPoolBulkhead(
                "faulttol-time-limiter",
                ThreadPoolBulkheadConfig(
                    max_thread_pool_size=threads, core_thread_pool_size=threads
                ),
            )
        return _default_executor


# --- the limiter ------------------------------------------------------------------------------

_SUCCESS, _FAILURE, _TIMEOUT = range(3)


class TimeLimiter(Component[TimeLimiterConfig, TimeLimiterEvents]):
    """Bounds how long a call may take: a decorator for sync and ``async def`` functions,
    ``.call(fn, ...)`` (sync functions, run on the executor) and ``await .call_async(fn, ...)``
    (``async def`` functions as tasks of the caller's loop; sync functions on the executor,
    awaited).

    >>> limiter = TimeLimiter("search", TimeLimiterConfig(timeout_duration=0.5))
    >>> @limiter
    ... async def search(query: str) -> list[str]: ...
    """

    __slots__ = (
        "_background",
        "_cancel",
        "_clock",
        "_config",
        "_counts",
        "_counts_lock",
        "_events",
        "_executor",
        "_metrics",
        "_name",
        "_real_waits",
        "_timeout",
    )

    def __init__(
        self,
        name: str,
        config: TimeLimiterConfig | None = None,
        *,
        clock: Clock | None = None,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self._name, self._config, self._clock = checked_setup(
            name, config, TimeLimiterConfig, clock
        )
        config = self._config
        if executor is not None:
            check_instance(
                "executor",
                executor,
                concurrent.futures.Executor,
                "a concurrent.futures.Executor (e.g. a ThreadPoolBulkhead) or None",
            )
        self._timeout = float(config.timeout_duration)
        self._cancel = config.cancel_running_future
        self._real_waits = isinstance(self._clock, SystemClock)
        self._executor = executor
        self._events = TimeLimiterEvents()
        self._counts = [0, 0, 0]  # successful, failed, timed out; guarded by _counts_lock
        self._counts_lock = threading.Lock()
        self._metrics = TimeLimiterMetrics(self)
        # Timed-out tasks left running (cancel_running_future=False): kept referenced until
        # they end, so that they are not garbage-collected half-way.
        self._background: set[asyncio.Future[Any]] = set()

    # -- properties ------------------------------------------------------------------------

    @property
    def executor(self) -> concurrent.futures.Executor:
        """Where sync calls run: the ``executor=`` given, else :func:`default_executor`."""
        return self._executor if self._executor is not None else default_executor()

    @property
    def metrics(self) -> TimeLimiterMetrics:
        """Calls by outcome since creation."""
        return self._metrics

    # -- calling ---------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the sync ``fn(*args, **kwargs)`` on the executor; return its result, or raise
        :class:`TimeLimitExceededError` at the deadline (the call itself runs on)."""
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                "TimeLimiter.call runs sync functions; await call_async(fn, ...) for an "
                "async def function"
            )
        clock = self._clock
        ends: list[float] = []

        def timed() -> R:
            try:
                return fn(*args, **kwargs)
            finally:
                ends.append(clock.monotonic())

        deadline = clock.monotonic() + self._timeout
        try:
            future = self.executor.submit(contextvars.copy_context().run, timed)
        except Exception as exc:  # refused: a full ThreadPoolBulkhead, a closed executor
            self._record(_FAILURE, exc)
            raise
        try:
            if self._real_waits:
                _wait(future, self._timeout)
            else:
                while not future.done() and clock.monotonic() < deadline:
                    _wait(future, _POLL)
        except BaseException:  # the caller was interrupted
            if self._cancel:
                future.cancel()
            raise
        if not future.done() or (ends and ends[0] > deadline):
            if self._cancel:
                future.cancel()
            self._record(_TIMEOUT)
            raise TimeLimitExceededError(self._name, self._timeout)
        try:
            result = future.result()
        except Exception as exc:
            self._record(_FAILURE, exc)
            raise
        self._record(_SUCCESS)
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[T]] | Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` with a deadline.

        An ``async def`` function runs as a task of this loop (cancelled at the deadline when
        ``cancel_running_future``); a sync function runs on the executor and is awaited. The
        event loop is never blocked.
        """
        clock = self._clock
        ends: list[float] = []
        deadline = clock.monotonic() + self._timeout
        inner: asyncio.Future[T]
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[T]], fn)

            async def timed_async() -> T:
                try:
                    return await afn(*args, **kwargs)
                finally:
                    ends.append(clock.monotonic())

            inner = asyncio.ensure_future(timed_async())
        else:
            sfn = cast(Callable[P, T], fn)

            def timed() -> T:
                try:
                    return sfn(*args, **kwargs)
                finally:
                    ends.append(clock.monotonic())

            try:
                submitted = self.executor.submit(contextvars.copy_context().run, timed)
            except Exception as exc:
                self._record(_FAILURE, exc)
                raise
            inner = asyncio.wrap_future(submitted)
        return await self._await_limited(inner, ends, deadline)

    def decorate(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``fn``: a sync function runs on the executor (see :meth:`call`), an ``async
        def`` function is awaited with a deadline (see :meth:`call_async`)."""
        if not callable(fn):
            raise TypeError(f"TimeLimiter can only decorate a callable, got {fn!r}")
        return wrap_calls(fn, self.call, self.call_async)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorator form of :meth:`decorate`."""
        return self.decorate(fn)

    # -- internals -------------------------------------------------------------------------

    async def _await_limited(
        self, inner: asyncio.Future[T], ends: list[float], deadline: float
    ) -> T:
        clock = self._clock
        try:
            if self._real_waits:
                await asyncio.wait((inner,), timeout=self._timeout)
            else:
                while not inner.done() and clock.monotonic() < deadline:
                    await asyncio.wait((inner,), timeout=_POLL)
        except BaseException:  # the caller was cancelled
            if self._cancel:
                inner.cancel()
            else:
                self._keep(inner)
            raise
        if not inner.done() or (ends and ends[0] > deadline):
            if inner.done():
                _retrieve(inner)  # finished late: its outcome is dropped
            elif self._cancel:
                inner.cancel()
                # Let it unwind (its finally blocks run) before the caller goes on, as
                # asyncio.wait_for does.
                await asyncio.wait((inner,))
                _retrieve(inner)
            else:
                self._keep(inner)
            self._record(_TIMEOUT)
            raise TimeLimitExceededError(self._name, self._timeout)
        try:
            result = inner.result()
        except Exception as exc:
            self._record(_FAILURE, exc)
            raise
        self._record(_SUCCESS)
        return result

    def _keep(self, inner: asyncio.Future[Any]) -> None:
        """Keep a timed-out call running in the background until it ends."""
        self._background.add(inner)
        inner.add_done_callback(self._forget)

    def _forget(self, inner: asyncio.Future[Any]) -> None:
        self._background.discard(inner)
        _retrieve(inner)

    def _record(self, outcome: int, exception: BaseException | None = None) -> None:
        with self._counts_lock:
            self._counts[outcome] += 1
        events = self._events
        if not events.has_consumers:
            return
        kind: type[TimeLimiterEvent]
        if outcome == _SUCCESS:
            kind = TimeLimiterOnSuccessEvent
        elif outcome == _FAILURE:
            kind = TimeLimiterOnErrorEvent
        else:
            kind = TimeLimiterOnTimeoutEvent
        if not events.wants(kind):
            return
        now = self._clock.monotonic()
        if kind is TimeLimiterOnErrorEvent:
            events.publish(TimeLimiterOnErrorEvent(self._name, created_at=now, exception=exception))
        else:
            events.publish(kind(self._name, created_at=now))


def _wait(future: concurrent.futures.Future[Any], timeout: float) -> None:
    """Wait until ``future`` is done or ``timeout`` seconds have passed, whatever its outcome.

    ``future.result(timeout)`` waits on the future's own condition (cheaper than
    ``concurrent.futures.wait``, which installs a waiter); what it raises is told apart
    afterwards: the call's own outcome (even a ``TimeoutError`` of its own) or our timeout
    are left to the caller, anything else (``KeyboardInterrupt`` in this thread) propagates.
    """
    try:
        future.result(timeout)
    except BaseException as exc:
        if future.done():
            if future.cancelled() or future.exception() is exc:
                return
        elif isinstance(exc, concurrent.futures.TimeoutError):
            return
        raise


def _retrieve(inner: asyncio.Future[Any]) -> None:
    """Mark the outcome of an abandoned call as seen (no "exception never retrieved" log);
    its exception, if any, is logged at debug level."""
    if inner.cancelled():
        return
    exc = inner.exception()
    if exc is not None:
        _log.debug("a call abandoned after its deadline raised %r", exc)
