"""Hedging (Polly's strategy): when a call is slow, start another copy; the first success wins.

The original call is attempt 0. If it has not finished ``delay`` seconds after it started,
hedge 1 starts next to it; if neither has finished ``delay`` seconds later, hedge 2, and so
on up to ``max_hedged_attempts`` hedges. A hedge also starts at once when an attempt fails
with a handled exception (``should_handle``), so hedging also covers fast failures. The
first attempt to succeed wins: its result is returned at once and the others are cancelled
(asyncio) or their results discarded (threads cannot be cancelled). An exception that is not
handled is raised at once; when every attempt has failed, the exception of the one that
failed last is raised. ``delay=0`` starts every attempt at once (parallel mode).

``delay_generator(n)`` gives the delay before hedge n instead of ``delay`` (``math.inf``:
hedge n starts only after a failure, Polly's fallback mode); ``action_generator(n)`` gives the
callable hedge n runs instead of the original one (``None``: no more hedges). Both are asked
when they are needed, with n counting from 1.

Synchronous calls run every attempt, the original one included, on threads of a pool owned by
the hedge (started on first use; :meth:`Hedge.close` ends them), so the caller returns as soon
as one attempt succeeded, never waiting for a slow loser. ``async def`` functions run their
attempts as tasks of the caller's event loop; the losers are cancelled and awaited before the
call returns, and cancelling the caller cancels every attempt: no task outlives the call.

Waiting for ``delay`` uses the hedge's clock. With the system clock the caller sleeps until an
attempt finishes or the delay is over. With any other clock (a
:class:`~faulttol.testing.FakeClock`) it looks at the clock every few milliseconds of real
time, so a test drives the delays by advancing the clock (from the test, or from the attempts
themselves, e.g. with ``clock.sleep``): a hedge starts only once the clock says its delay is
over, whatever the real time.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any, Final, ParamSpec, TypeVar, cast

from ._clock import Clock, SystemClock
from ._component import Component, checked_setup
from ._decorating import wrap_calls
from ._hedge_pool import CachedThreadPool
from .events import HedgeEvents, HedgeOnHedgeEvent, HedgeOnSuccessEvent
from .validation import (
    check_callable,
    check_exception_types,
    check_int,
    check_non_negative,
)

__all__ = [
    "DEFAULT_DELAY",
    "DEFAULT_MAX_HEDGED_ATTEMPTS",
    "DEFAULT_SHOULD_HANDLE",
    "MAX_HEDGED_ATTEMPTS_LIMIT",
    "Hedge",
    "HedgeConfig",
    "HedgeMetrics",
]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_HEDGED_ATTEMPTS: Final = 1
"""Hedges at most, besides the original call (Polly's default)."""
MAX_HEDGED_ATTEMPTS_LIMIT: Final = 10
"""The largest allowed ``max_hedged_attempts`` (Polly's bound)."""
DEFAULT_DELAY: Final = 2.0
"""Seconds without an outcome before the next hedge starts (Polly's default)."""
DEFAULT_SHOULD_HANDLE: Final[tuple[type[BaseException], ...]] = (Exception,)
"""Exception types after which the next hedge starts at once (others are raised at once)."""

_FAKE_CLOCK_POLL: Final = 0.002
"""Real seconds between two looks at a clock other than the system clock."""


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HedgeConfig:
    """How a :class:`Hedge` decides when to start another attempt; immutable, validated at
    construction.

    A value of the wrong kind (a float or a bool for ``max_hedged_attempts``, a string for
    ``delay``, a non-callable generator, a non-exception in ``should_handle``) raises
    ``ConfigTypeError`` (a ``TypeError`` and a ``ValueError``); a value out of range
    (``max_hedged_attempts`` outside 1..10, a negative, NaN or infinite ``delay``) raises
    ``ValueError``. Both name the field and what it allows.
    """

    max_hedged_attempts: int = DEFAULT_MAX_HEDGED_ATTEMPTS
    """Hedges at most, besides the original call (1..10)."""
    delay: float = DEFAULT_DELAY
    """Seconds without an outcome before the next hedge starts (>= 0; 0: all at once)."""
    delay_generator: Callable[[int], float] | None = None
    """``delay_generator(n)``: seconds before hedge n (>= 0, or ``math.inf``: only after a
    failure), asked when the wait for hedge n begins; overrides ``delay``."""
    action_generator: Callable[[int], Callable[..., Any] | None] | None = None
    """``action_generator(n)``: the callable hedge n runs (with the call's arguments), asked
    when hedge n starts; ``None`` from it means no more hedges. Default: the original
    callable."""
    should_handle: tuple[type[BaseException], ...] = DEFAULT_SHOULD_HANDLE
    """Exception types after which the next hedge starts at once; any other is raised."""

    def __post_init__(self) -> None:
        check_int(
            "max_hedged_attempts",
            self.max_hedged_attempts,
            minimum=1,
            maximum=MAX_HEDGED_ATTEMPTS_LIMIT,
        )
        check_non_negative("delay", self.delay, allowed="finite seconds >= 0")
        check_callable("delay_generator", self.delay_generator)
        check_callable("action_generator", self.action_generator)
        object.__setattr__(
            self, "should_handle", check_exception_types("should_handle", self.should_handle)
        )


# --- metrics ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HedgeMetrics:
    """What a :class:`Hedge` has done since it was created (a consistent snapshot).

    ``number_of_hedges`` counts the hedges started (the original calls are not hedges);
    ``wins_by_attempt[n]`` counts the calls won by attempt n (``[0]``: by the original call),
    one entry per possible attempt (``max_hedged_attempts + 1`` in all).
    """

    number_of_hedges: int
    wins_by_attempt: tuple[int, ...]

    @property
    def number_of_successful_calls(self) -> int:
        """Calls that returned a result (won by some attempt)."""
        return sum(self.wins_by_attempt)


# --- the hedge ----------------------------------------------------------------------------


def _generated_delay(value: object, attempt: int) -> float | None:
    """A ``delay_generator`` answer as seconds, or ``None`` for "only after a failure"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"delay_generator({attempt}) must return seconds (a number >= 0 or math.inf), "
            f"got a {type(value).__name__}"
        )
    if value == math.inf:
        return None
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"delay_generator({attempt}) must return seconds >= 0 or math.inf, got {value!r}"
        )
    return float(value)


_Outcome = tuple[int, bool, Any]
"""What a thread reports of one attempt: (attempt, succeeded, result or exception)."""


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Hedge(Component[HedgeConfig, HedgeEvents]):
    """A named hedging policy: ``.call(fn, ...)``, ``await .call_async(fn, ...)`` or a
    decorator on plain and ``async def`` functions.

    ``.events`` publishes ``on_hedge`` (a hedge started; ``attempt`` = its number, from 1)
    and ``on_success`` (a call succeeded; ``attempt`` = the winner, 0 for the original call).
    ``.metrics`` counts hedges and wins by attempt.

    Synchronous calls run their attempts on threads owned by the hedge (started on first use,
    reused, ended after a minute idle or by :meth:`close`); ``async def`` calls run them as
    tasks and need no thread. A closed hedge refuses calls with ``RuntimeError``.
    """

    __slots__ = (
        "_clock",
        "_config",
        "_events",
        "_hedges",
        "_lock",
        "_name",
        "_pool",
        "_system_clock",
        "_wins",
    )

    def __init__(
        self, name: str, config: HedgeConfig | None = None, *, clock: Clock | None = None
    ) -> None:
        self._name, self._config, self._clock = checked_setup(name, config, HedgeConfig, clock)
        config = self._config
        self._system_clock = isinstance(self._clock, SystemClock)
        self._events = HedgeEvents()
        self._lock = threading.Lock()
        self._hedges = 0
        self._wins = [0] * (config.max_hedged_attempts + 1)
        self._pool: CachedThreadPool | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def metrics(self) -> HedgeMetrics:
        """Hedges started and wins by attempt since the hedge was created."""
        with self._lock:
            return HedgeMetrics(self._hedges, tuple(self._wins))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        pool = self._pool
        return pool is not None and pool.closed

    @property
    def threads(self) -> int:
        """Threads the hedge owns now (running an attempt or idle); 0 before a sync call."""
        pool = self._pool
        return 0 if pool is None else pool.threads

    def close(self) -> None:
        """End the hedge's idle threads and refuse later calls (``RuntimeError``).

        Attempts still running (losers of finished calls) run to their end on their threads,
        which then exit: a thread cannot be killed. Idempotent.
        """
        self._open_pool().close()

    def __enter__(self) -> Hedge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- bookkeeping -----------------------------------------------------------------------

    def _thread_name(self) -> str:
        return f"faulttol-hedge[{self._name}]"

    def _open_pool(self) -> CachedThreadPool:
        with self._lock:
            pool = self._pool
            if pool is None:
                pool = self._pool = CachedThreadPool(self._thread_name())
        return pool

    def _check_open(self) -> None:
        pool = self._pool
        if pool is not None and pool.closed:
            raise RuntimeError(f"Hedge {self._name!r} is closed")

    def _due(self, attempt: int) -> float | None:
        """Clock time at which hedge ``attempt`` starts unless an outcome comes first;
        ``None``: only after a failure."""
        generator = self._config.delay_generator
        if generator is None:
            delay: float | None = self._config.delay
        else:
            delay = _generated_delay(generator(attempt), attempt)
        return None if delay is None else self._clock.monotonic() + delay

    def _action(self, attempt: int, fn: Callable[..., Any]) -> Callable[..., Any] | None:
        """The callable hedge ``attempt`` runs (``None``: hedging stops)."""
        generator = self._config.action_generator
        if generator is None:
            return fn
        action = generator(attempt)
        if action is not None and not callable(action):
            raise TypeError(
                f"action_generator({attempt}) must return a callable or None, "
                f"got a {type(action).__name__}"
            )
        return action

    def _record_hedge(self, attempt: int) -> None:
        with self._lock:
            self._hedges += 1
        if self._events.wants(HedgeOnHedgeEvent):
            self._events.publish(
                HedgeOnHedgeEvent(self._name, created_at=self._clock.monotonic(), attempt=attempt)
            )

    def _record_win(self, attempt: int) -> None:
        with self._lock:
            self._wins[attempt] += 1
        if self._events.wants(HedgeOnSuccessEvent):
            self._events.publish(
                HedgeOnSuccessEvent(self._name, created_at=self._clock.monotonic(), attempt=attempt)
            )

    # -- calling ---------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` hedged: attempts run on the hedge's threads, the
        caller waits for the first success (or the failure that ends the call)."""
        return cast(T, self._call_sync(fn, args, kwargs))

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` hedged: attempts run as tasks; the losers are
        cancelled and awaited before this returns."""
        return cast(T, await self._call_async(fn, args, kwargs))

    def decorate(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Wrap ``fn`` (a plain or ``async def`` function) so every call is hedged."""
        if not callable(fn):
            raise TypeError(f"Hedge.decorate expects a callable, got {fn!r}")
        return wrap_calls(fn, self.call, self.call_async)

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorator form of :meth:`decorate`."""
        return self.decorate(fn)

    # -- threads -------------------------------------------------------------------------------

    def _call_sync(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        pool = self._pool or self._open_pool()
        if pool.closed:
            raise RuntimeError(f"Hedge {self._name!r} is closed")
        outcomes: SimpleQueue[_Outcome] = SimpleQueue()
        put = outcomes.put
        submit = pool.submit

        def start(attempt: int, action: Callable[..., Any]) -> None:
            context = contextvars.copy_context()  # use_clock, tracing... reach the attempt

            def job() -> None:
                try:
                    value = context.run(action, *args, **kwargs)
                except BaseException as exc:  # reported to the caller, never lost
                    put((attempt, False, exc))
                else:
                    put((attempt, True, value))

            submit(job)

        clock = self._clock
        system = self._system_clock
        handled = self._config.should_handle
        limit = self._config.max_hedged_attempts
        get = outcomes.get
        running = 1
        hedge = 1  # the next hedge to start
        due = self._due(1)  # read before the attempt runs: the delay counts from its start
        last_error: BaseException | None = None
        start(0, fn)
        while True:
            timeout: float | None = None
            if hedge <= limit and due is not None:
                remaining = due - clock.monotonic()
                if remaining <= 0:
                    action = self._action(hedge, fn)
                    if action is None:  # the generator declines: no more hedges
                        hedge = limit + 1
                        if running == 0 and last_error is not None:
                            raise last_error
                        continue
                    due = self._due(hedge + 1) if hedge < limit else None
                    self._record_hedge(hedge)
                    start(hedge, action)
                    running += 1
                    hedge += 1
                    continue
                timeout = remaining if system else _FAKE_CLOCK_POLL
            try:
                attempt, succeeded, value = get() if timeout is None else get(timeout=timeout)
            except Empty:
                continue
            running -= 1
            if succeeded:
                self._record_win(attempt)
                return value
            if not isinstance(value, handled):
                raise value
            last_error = value
            del value
            if hedge <= limit:  # a handled failure: the next hedge starts now
                due = clock.monotonic()
            elif running == 0:
                raise last_error

    # -- asyncio -------------------------------------------------------------------------------

    async def _call_async(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self._check_open()
        loop = asyncio.get_running_loop()
        attempts: dict[asyncio.Future[Any], int] = {}
        finished: deque[asyncio.Future[Any]] = deque()
        waiter: asyncio.Future[None] | None = None

        def on_done(future: asyncio.Future[Any]) -> None:
            finished.append(future)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        def start(attempt: int, action: Callable[..., Awaitable[Any]]) -> None:
            future: asyncio.Future[Any]
            try:
                future = asyncio.ensure_future(action(*args, **kwargs), loop=loop)
            except BaseException as exc:  # failed before it could start: its outcome
                future = loop.create_future()
                future.set_exception(exc)
            attempts[future] = attempt
            future.add_done_callback(on_done)

        clock = self._clock
        system = self._system_clock
        handled = self._config.should_handle
        limit = self._config.max_hedged_attempts
        hedge = 1  # the next hedge to start
        last_error: BaseException | None = None
        due = self._due(1)  # read before the attempt runs: the delay counts from its start
        start(0, fn)
        try:
            while True:
                while finished:
                    future = finished.popleft()
                    attempt = attempts.pop(future)
                    if future.cancelled():  # cancelled by someone else than this call
                        error: BaseException | None = asyncio.CancelledError(
                            f"hedge attempt {attempt} was cancelled"
                        )
                    else:
                        error = future.exception()
                    if error is None:
                        self._record_win(attempt)
                        return future.result()
                    if not isinstance(error, handled):
                        raise error
                    last_error = error
                    if hedge <= limit:  # a handled failure: the next hedge starts now
                        due = clock.monotonic()
                    elif not attempts:
                        raise last_error
                timeout: float | None = None
                if hedge <= limit and due is not None:
                    remaining = due - clock.monotonic()
                    if remaining <= 0:
                        action = self._action(hedge, fn)
                        if action is None:
                            hedge = limit + 1
                            if not attempts and last_error is not None:
                                raise last_error
                            continue
                        due = self._due(hedge + 1) if hedge < limit else None
                        self._record_hedge(hedge)
                        start(hedge, action)
                        hedge += 1
                        continue
                    timeout = remaining if system else _FAKE_CLOCK_POLL
                waiter = loop.create_future()
                timer = None if timeout is None else loop.call_later(timeout, _release, waiter)
                try:
                    await waiter
                finally:
                    waiter = None
                    if timer is not None:
                        timer.cancel()
        finally:
            if attempts:  # losers, or every attempt when the caller was cancelled
                for future in attempts:
                    future.cancel()
                await asyncio.gather(*attempts, return_exceptions=True)
