"""The rate limiter: at most ``limit_for_period`` calls per ``limit_refresh_period``.

Semantics are resilience4j's ``AtomicRateLimiter`` (see DESIGN.md, "Contract: the rest of
resilience4j"): time is cut into cycles of ``limit_refresh_period`` seconds starting when the
limiter is created, and each cycle grants ``limit_for_period`` permissions; permissions a cycle
did not use do not carry over. A caller takes one permission. When the current cycle has none
left, the caller *reserves* one of a later cycle and waits for that cycle to start, as long as
the wait is at most ``timeout_duration``; reservations are handed out in order, so waiters are
served first come, first served. A caller whose wait would be longer is refused at once
(:class:`RequestNotPermittedError`, or ``False`` from :meth:`RateLimiter.acquire_permission`)
and reserves nothing.

The state is three numbers (the current cycle, the permissions left in it, negative while
permissions of later cycles are reserved, and the limit of the cycles to come), kept in integer
nanoseconds so that cycle boundaries are exact whatever the clock's float arithmetic. A call
that finds a permission takes it under one short lock acquisition; waiting happens outside the
lock, on the limiter's clock (``sleep`` for threads, ``sleep_async`` for asyncio callers, so
the event loop is never blocked and :class:`faulttol.testing.FakeClock` drives every wait).

A waiter that gives up (its asyncio task is cancelled, or its thread is interrupted) returns
its reservation when it is the last one made, or once every reservation made after it was
given back too: its permission then goes to the next caller. A cancelled reservation with later
ones still waiting stays taken (returning it would let a later cycle admit more than its limit);
so cancelling every waiter leaves every permission available, and no cycle ever admits more
than its limit.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Final, ParamSpec, TypeVar

from . import _ratelimiter_config, _ratelimiter_events
from ._clock import Clock
from ._component import Component, Decorating, LiveView, checked_setup
from ._ratelimiter_config import *  # noqa: F403 - the configuration's public names, re-exported
from ._ratelimiter_config import RateLimiterConfig
from ._ratelimiter_events import *  # noqa: F403 - the error and the events, re-exported
from ._ratelimiter_events import (
    RateLimiterEvents,
    RateLimiterOnFailureEvent,
    RateLimiterOnSuccessEvent,
    RequestNotPermittedError,
)
from .validation import (
    check_int,
    check_non_negative,
)

__all__ = ["RateLimiter", "RateLimiterMetrics"]
__all__ += _ratelimiter_config.__all__  # the configuration, the error and the events,
__all__ += _ratelimiter_events.__all__  # re-exported from here

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_NS: Final = 1_000_000_000


def _to_ns(seconds: float) -> int:
    """Seconds as whole nanoseconds (rounded; a positive duration is at least 1 ns)."""
    return int(seconds * _NS + 0.5)


# --- metrics -----------------------------------------------------------------------------


class RateLimiterMetrics(LiveView["RateLimiter"]):
    """A live view of a limiter: every read reflects the moment it is made."""

    _shown = ("available_permissions", "number_of_waiting_threads")

    @property
    def available_permissions(self) -> int:
        """Permissions left in the current cycle; negative while permissions of later cycles
        are reserved (-n: n reserved ahead)."""
        return self._owner._available_now()

    @property
    def number_of_waiting_threads(self) -> int:
        """Callers waiting for a reserved permission now (threads and asyncio tasks)."""
        return self._owner._waiting



class _Ticket:
    """A waiter's reservation, kept until it waited out or gave up (see the module)."""

    __slots__ = ("cancelled", "cycle", "debt", "limit", "permits")

    def __init__(self, permits: int, cycle: int, debt: int, limit: int) -> None:
        self.permits = permits
        self.cycle = cycle  # the cycle in which it was made
        self.debt = debt  # permissions of later cycles reserved then, this one's included
        self.limit = limit  # the limit of the later cycles when it was made
        self.cancelled = False

    def returnable(self, now_cycle: int) -> int:
        """How many of its permissions lie in ``now_cycle`` or later (its earlier ones, in
        a cycle that is over, are spent)."""
        if now_cycle <= self.cycle:
            return self.permits
        later = min(self.permits, self.debt)  # those in cycles after the one it was made in
        # Position j (1-based) of the reserved-ahead sequence lies in cycle
        # self.cycle + ceil(j / limit): those past (now_cycle - cycle - 1) * limit are to come.
        passed = (now_cycle - self.cycle - 1) * self.limit
        first = self.debt - later  # this ticket's positions are first + 1 .. debt
        return max(0, self.debt - max(first, passed))


class _Cycle:
    """The permissions of one cycle, handed out without a lock.

    ``next(tokens)`` is atomic (a C call under the GIL): the caller that draws a number
    below ``granted`` has a permission. The object never changes; the limiter replaces it
    (under its lock) when a new cycle starts or the cycle's grant changes, and a caller that
    still holds the old one draws from the same ``tokens``, so no permission is given twice.
    """

    __slots__ = ("cycle", "end", "granted", "tokens")

    def __init__(self, cycle: int, end: float, granted: int, tokens: Iterator[int]) -> None:
        self.cycle = cycle
        self.end = end  # clock time at which the cycle is over
        self.granted = granted
        self.tokens = tokens

    def drawn(self) -> int:
        """How many numbers were drawn so far (granted or not)."""
        return int(repr(self.tokens)[6:-1])  # "count(N)": no public reader, no pickling

    def left(self) -> int:
        return max(0, self.granted - self.drawn())


class _Waiting:
    """Around a caller's wait for its reservation: tells the limiter when the wait ended,
    and whether the caller gave up (its thread was interrupted, its task cancelled)."""

    __slots__ = ("key", "limiter")

    def __init__(self, limiter: RateLimiter, key: int) -> None:
        self.limiter = limiter
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.limiter._end_wait(self.key, gave_up=kind is not None)


# --- the limiter -------------------------------------------------------------------------


class RateLimiter(Component[RateLimiterConfig, RateLimiterEvents], Decorating):
    """A resilience4j-style rate limiter; also a decorator for sync and async functions.

    >>> limiter = RateLimiter("api", RateLimiterConfig(limit_for_period=10,
    ...                                                limit_refresh_period=1.0))
    >>> @limiter
    ... def call_api() -> int: ...

    A call takes one permission, waiting (on the limiter's clock) up to
    ``timeout_duration`` for a reserved one; when the wait would be longer it raises
    :class:`RequestNotPermittedError` at once. ``.events`` publishes ``on_success`` and
    ``on_failure``; ``.metrics`` has ``available_permissions`` and
    ``number_of_waiting_threads``. No lock is held while the protected call runs, and a
    call that finds a permission of the current cycle takes no lock at all.
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_config",
        "_current",
        "_debt",
        "_events",
        "_limit",
        "_lock",
        "_metrics",
        "_monotonic",
        "_name",
        "_pending_timeout",
        "_period_ns",
        "_pinned",
        "_publish",
        "_start",
        "_ticket_seq",
        "_tickets",
        "_timeout_ns",
        "_waiting",
    )

    def __init__(
        self, name: str, config: RateLimiterConfig | None = None, *, clock: Clock | None = None
    ) -> None:
        self._name, self._config, self._clock = checked_setup(
            name, config, RateLimiterConfig, clock
        )
        config = self._config
        self._monotonic = self._clock.monotonic
        self._events = RateLimiterEvents(self._listeners_changed)
        self._publish = False
        self._metrics = RateLimiterMetrics(self)
        self._lock = threading.Lock()
        self._period_ns = max(1, _to_ns(config.limit_refresh_period))
        self._start = self._monotonic()
        # Guarded by _lock (and _current also read without it): the current cycle's
        # permissions, those of later cycles reserved ahead (> 0 only once the current
        # cycle's are all taken), the limit of the cycles to come, the timeout (and one that
        # takes effect at a later cycle), the waiters.
        self._current = self._new_cycle(0, config.limit_for_period)
        self._debt = 0
        self._limit = config.limit_for_period
        self._timeout_ns = _to_ns(config.timeout_duration)
        self._pending_timeout: tuple[int, int] | None = None  # (from cycle, timeout ns)
        self._tickets: dict[int, _Ticket] = {}  # waiting reservations by number, oldest first
        self._ticket_seq = 0
        # Tickets numbered up to this can no longer give back: a reservation ahead without
        # a ticket (reserve_permission) was made after them.
        self._pinned = 0
        self._waiting = 0

    # --- public state ----------------------------------------------------------------------

    @property
    def metrics(self) -> RateLimiterMetrics:
        """``available_permissions`` and ``number_of_waiting_threads``, read live."""
        return self._metrics

    # --- the cycle arithmetic (under _lock) ------------------------------------------------

    def _new_cycle(self, cycle: int, granted: int, tokens: Iterator[int] | None = None) -> _Cycle:
        end = self._start + (cycle + 1) * self._period_ns / _NS
        return _Cycle(cycle, end, granted, itertools.count() if tokens is None else tokens)

    def _now_ns(self) -> int:
        return int((self._monotonic() - self._start) * _NS + 0.5)

    def _refresh(self, cycle: int) -> _Cycle:
        """Move to ``cycle`` (if later): each cycle passed grants ``_limit`` permissions,
        paying reservations ahead first; what a cycle left over does not carry over."""
        current = self._current
        if cycle <= current.cycle:
            return current
        limit = self._limit
        permissions = limit
        if self._debt:
            permissions = min(limit, (cycle - current.cycle) * limit - self._debt)
        self._debt = -permissions if permissions < 0 else 0
        self._current = current = _Cycle(
            cycle,
            self._start + (cycle + 1) * self._period_ns / _NS,
            permissions if permissions > 0 else 0,
            itertools.count(),
        )
        pending = self._pending_timeout
        if pending is not None and cycle >= pending[0]:
            self._timeout_ns = pending[1]
            self._pending_timeout = None
        return current

    def _add_back(self, permits: int) -> None:
        """Give ``permits`` back: to the reservations ahead first, then to this cycle."""
        paid = min(permits, self._debt)
        self._debt -= paid
        permits -= paid
        if permits:
            # Numbers drawn past ``granted`` were refusals: the permits given back are the
            # next numbers after whichever is higher.
            current = self._current
            granted = max(current.drawn(), current.granted) + permits
            self._current = self._new_cycle(current.cycle, granted, current.tokens)

    def _reserve(self, permits: int, now: int, timeout_ns: int) -> int:
        """Take ``permits`` now or reserve them ahead: the wait in ns, -1 when refused."""
        current = self._refresh(now // self._period_ns)
        taken = 0
        if not self._debt:
            tokens, granted = current.tokens, current.granted
            while taken < permits and next(tokens) < granted:
                taken += 1
        missing = permits - taken
        if not missing:
            return 0
        # The current cycle has nothing left: wait for the cycle that grants the last of the
        # missing permissions, after those reserved ahead already.
        limit = self._limit
        period = self._period_ns
        after_next = missing - (limit - self._debt)
        full_cycles = -(-after_next // limit) if after_next > 0 else 0
        wait = full_cycles * period + (current.cycle + 1) * period - now
        if wait > timeout_ns:
            if taken:
                self._add_back(taken)
            return -1
        self._debt += missing
        return wait

    def _available_now(self) -> int:
        now = self._now_ns()
        with self._lock:
            current = self._refresh(now // self._period_ns)
            return -self._debt if self._debt else current.left()

    # --- waiting ------------------------------------------------------------------------

    def _reserve_waiting(self, permits: int, now: int) -> tuple[int, int]:
        """Reserve for a caller that will wait: ``(wait ns, ticket number)``; wait 0 needs
        no ticket, -1 is a refusal. Counts the caller as waiting."""
        with self._lock:
            wait = self._reserve(permits, now, self._timeout_ns)
            if wait <= 0:
                return wait, 0
            self._ticket_seq = key = self._ticket_seq + 1
            self._tickets[key] = _Ticket(permits, self._current.cycle, self._debt, self._limit)
            self._waiting += 1
            return wait, key

    def _end_wait(self, key: int, gave_up: bool) -> None:
        """The waiter of ticket ``key`` waited out (or gave up): forget the ticket, and give
        back the reservations that may be (see the module)."""
        now = self._now_ns()
        with self._lock:
            self._waiting -= 1
            tickets = self._tickets
            ticket = tickets.get(key)
            if ticket is None:  # pragma: no cover - every ticket ends once
                return
            if gave_up:
                ticket.cancelled = True
            else:
                del tickets[key]
            current = self._refresh(now // self._period_ns)
            # Give back the newest reservations while they are cancelled ones.
            while tickets:
                newest_key = next(reversed(tickets))
                newest = tickets[newest_key]
                if not newest.cancelled:
                    break
                del tickets[newest_key]
                if newest_key > self._pinned:
                    back = newest.returnable(current.cycle)
                    if back:
                        self._add_back(back)

    def _take_one(self) -> bool:
        """Take one permission of the current cycle if one is left (no waiting)."""
        current = self._current
        now = self._monotonic()
        if now < current.end:  # without the lock: one atomic draw
            return next(current.tokens) < current.granted
        ns = int((now - self._start) * _NS + 0.5)
        with self._lock:  # a new cycle starts (or the clocks' rounding disagree)
            current = self._refresh(ns // self._period_ns)
            return not self._debt and next(current.tokens) < current.granted

    def _check_permits(self, permits: object) -> int:
        return check_int("permits", permits, minimum=1)

    def _reserve_for(self, permits: int) -> tuple[int, int]:
        """A caller of :meth:`acquire_permission` found no permission at once: reserve
        ``permits`` now (see :meth:`_reserve_waiting`)."""
        if permits != 1:
            self._check_permits(permits)
        return self._reserve_waiting(permits, self._now_ns())

    def _acquired(self, wait: int, permits: int) -> bool:
        """Whether the permissions were had (``wait`` >= 0), published to any listener."""
        if self._publish:
            self._publish_outcome(wait >= 0, permits)
        return wait >= 0

    # --- raw permission operations ---------------------------------------------------------

    def acquire_permission(self, permits: int = 1) -> bool:
        """Take ``permits`` permissions, blocking (``clock.sleep``) up to the timeout for
        reserved ones; ``False`` at once, without waiting, when the wait would be longer."""
        if permits == 1 and self._take_one():
            return self._acquired(0, 1) if self._publish else True
        wait, key = self._reserve_for(permits)
        if wait > 0:
            with _Waiting(self, key):
                self._clock.sleep(wait / _NS)
        return self._acquired(wait, permits)

    async def acquire_permission_async(self, permits: int = 1) -> bool:
        """Like :meth:`acquire_permission`, waiting with ``await clock.sleep_async`` (the
        event loop is never blocked). A cancelled waiter gives its reservation back."""
        if permits == 1 and self._take_one():
            return self._acquired(0, 1) if self._publish else True
        wait, key = self._reserve_for(permits)
        if wait > 0:
            with _Waiting(self, key):
                await self._clock.sleep_async(wait / _NS)
        return self._acquired(wait, permits)

    def reserve_permission(self, permits: int = 1) -> float:
        """Take ``permits`` permissions without waiting: the seconds the caller must wait
        before using them (0.0: usable now), or -1.0 when that wait would exceed the
        timeout (nothing is reserved then). A reservation cannot be given back."""
        if permits != 1:
            self._check_permits(permits)
        now = self._now_ns()
        with self._lock:
            wait = self._reserve(permits, now, self._timeout_ns)
            if wait > 0:  # reserved ahead with no ticket: earlier tickets keep theirs
                self._pinned = self._ticket_seq
        if self._publish:
            self._publish_outcome(wait >= 0, permits)
        return -1.0 if wait < 0 else wait / _NS

    def drain_permissions(self) -> None:
        """Take every permission left in the current cycle (reservations ahead stay)."""
        now = self._now_ns()
        with self._lock:
            current = self._refresh(now // self._period_ns)
            if not self._debt:
                self._current = self._new_cycle(current.cycle, 0, current.tokens)

    def change_limit_for_period(self, limit_for_period: int) -> None:
        """Grant ``limit_for_period`` permissions per cycle from the next cycle on (the
        current cycle keeps what it has)."""
        limit = check_int("limit_for_period", limit_for_period, minimum=1)
        now = self._now_ns()
        with self._lock:
            self._refresh(now // self._period_ns)
            self._limit = limit
            self._config = dataclasses.replace(self._config, limit_for_period=limit)

    def change_timeout_duration(self, timeout_duration: float) -> None:
        """Wait at most ``timeout_duration`` seconds for a permission, from the next cycle
        on (callers already waiting keep their wait)."""
        timeout = check_non_negative(
            "timeout_duration", timeout_duration, allowed="finite seconds >= 0"
        )
        now = self._now_ns()
        with self._lock:
            current = self._refresh(now // self._period_ns)
            self._pending_timeout = (current.cycle + 1, _to_ns(timeout))
            self._config = dataclasses.replace(self._config, timeout_duration=timeout)

    # --- events ---------------------------------------------------------------------------

    def _listeners_changed(self) -> None:
        self._publish = self._events.has_consumers

    def _publish_outcome(self, acquired: bool, permits: int) -> None:
        kind = RateLimiterOnSuccessEvent if acquired else RateLimiterOnFailureEvent
        if self._events.wants(kind):
            self._events.publish(
                kind(self._name, created_at=self._monotonic(), number_of_permits=permits)
            )

    # --- decorating and calling --------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` once a permission is had; raises
        :class:`RequestNotPermittedError` (without running ``fn``) when it is not."""
        if not self.acquire_permission():
            raise RequestNotPermittedError(self._name)
        return fn(*args, **kwargs)

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` once a permission is had (awaited, never
        blocking the loop); raises :class:`RequestNotPermittedError` when it is not."""
        if not await self.acquire_permission_async():
            raise RequestNotPermittedError(self._name)
        return await fn(*args, **kwargs)

    def _decorate_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        # The hot path: a permission of the current cycle costs a clock read and one
        # atomic draw, with everything bound to locals.
        limiter = self
        monotonic = self._monotonic
        take_one = self._take_one  # also hot: at the start of each cycle

        @functools.wraps(fn)
        def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            current = limiter._current
            if (monotonic() < current.end and next(current.tokens) < current.granted) or take_one():
                if limiter._publish:
                    limiter._publish_outcome(True, 1)
            elif not limiter.acquire_permission():
                raise RequestNotPermittedError(limiter._name)
            return fn(*args, **kwargs)

        return limited

    def _decorate_async(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        limiter = self
        monotonic = self._monotonic
        take_one = self._take_one

        @functools.wraps(fn)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> T:
            current = limiter._current
            if (monotonic() < current.end and next(current.tokens) < current.granted) or take_one():
                if limiter._publish:
                    limiter._publish_outcome(True, 1)
            elif not await limiter.acquire_permission_async():
                raise RequestNotPermittedError(limiter._name)
            return await fn(*args, **kwargs)

        return limited
