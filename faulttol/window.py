"""Sliding windows that aggregate call outcomes for a circuit breaker.

A window answers "of the recent calls, how many failed, how many were slow?" in O(1) per
recorded call: it keeps running totals and only adjusts them for the outcomes that enter or
leave it. Two kinds:

* :class:`CountWindow` — the last ``size`` calls, a ring buffer of outcomes.
* :class:`TimeWindow` — the calls of the last ``size`` seconds, a ring of one-second buckets
  that each aggregate their calls (memory does not grow with the call rate); buckets are
  rolled forward lazily by the clock time given to the window.

A call is *slow* when its duration is greater than ``slow_call_duration_threshold``.

Thread-safety: :meth:`record`, :meth:`refresh`, :meth:`snapshot` and :meth:`reset` must be
serialised by the caller (the breaker's lock). :meth:`try_queue_success` is the exception: it
may run concurrently with anything, without a lock. It queues a fast (not slow) success in a
thread-safe list when that cannot make any rate rise before the next locked operation, which
folds the queue into the totals first. This keeps the breaker's success path lock-free; a
``False`` answer means "record it the ordinary way". Queueing is off until the owner turns it
on with :meth:`allow_queue` (the breaker does once a success can no longer trip it) and after
every :meth:`reset`. At most :data:`MAX_QUEUED_SUCCESSES` wait between two locked operations
(constant memory); the next success then takes the locked path, which folds them.

Every window also counts, in ``folded_successes``, the queued successes it has taken in since
it was created (also those a :meth:`reset` discarded), so that the owner can count every
success it ever saw without touching the lock-free path: successes recorded with
:meth:`record` are counted by the owner itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice, repeat

__all__ = ["CountWindow", "Snapshot", "TimeWindow"]

# An outcome is coded as an int: bit 0 = failed, bit 1 = slow.
_FAILED = 1
_SLOW = 2
_SLOW_FAILED = _FAILED | _SLOW

_NEVER = -math.inf

MAX_QUEUED_SUCCESSES = 1024
"""A window queues at most this many successes between two locked operations."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The aggregated outcomes of the calls in a window at one moment.

    Rates are percentages of ``total_calls`` (0.0 for an empty window); whether there are
    enough calls for a rate to mean anything is the breaker's decision, not the window's.
    """

    total_calls: int = 0
    failed_calls: int = 0
    slow_calls: int = 0
    slow_failed_calls: int = 0
    total_duration: float = 0.0

    @property
    def successful_calls(self) -> int:
        """Calls that did not fail (slow or not)."""
        return self.total_calls - self.failed_calls

    @property
    def slow_successful_calls(self) -> int:
        """Slow calls that did not fail."""
        return self.slow_calls - self.slow_failed_calls

    @property
    def failure_rate(self) -> float:
        """Failed calls in percent of all calls."""
        return rate(self.failed_calls, self.total_calls)

    @property
    def slow_call_rate(self) -> float:
        """Slow calls (failed or not) in percent of all calls."""
        return rate(self.slow_calls, self.total_calls)

    @property
    def average_duration(self) -> float:
        """Mean call duration in seconds (0.0 for an empty window)."""
        return self.total_duration / self.total_calls if self.total_calls else 0.0


def rate(part: int, total: int) -> float:
    """``part`` in percent of ``total`` (0.0 when ``total`` is 0): the one formula used for
    every rate, so that metrics and trip decisions always agree."""
    return part * 100.0 / total if total else 0.0


def _check_window_args(size: int, slow_call_duration_threshold: float) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    if not slow_call_duration_threshold >= 0:  # also rejects NaN
        raise ValueError(
            f"slow_call_duration_threshold must be >= 0, got {slow_call_duration_threshold!r}"
        )


class _Window:
    """What both windows keep: the running totals, the successes queued without the lock,
    the size and the slow threshold."""

    __slots__ = (
        "_queued",
        "_size",
        "_slow_threshold",
        "failed_calls",
        "folded_successes",
        "slow_calls",
        "slow_failed_calls",
        "total_calls",
    )

    def __init__(self, size: int, slow_call_duration_threshold: float) -> None:
        _check_window_args(size, slow_call_duration_threshold)
        self._size = size
        self._slow_threshold = float(slow_call_duration_threshold)
        # A list: appends are atomic, and only the lock holder removes (a prefix), so
        # folding is C-level slice operations, no per-item pops. try_queue_success stops at
        # MAX_QUEUED_SUCCESSES (every queued success is counted: none may be dropped, as a
        # deque's maxlen would).
        self._queued: list[float] = []
        self.folded_successes = 0
        self._zero_totals()

    def _zero_totals(self) -> None:
        self.total_calls = self.failed_calls = self.slow_calls = self.slow_failed_calls = 0

    def _snapshot(self, total_duration: float) -> Snapshot:
        return Snapshot(
            self.total_calls,
            self.failed_calls,
            self.slow_calls,
            self.slow_failed_calls,
            total_duration,
        )


class CountWindow(_Window):
    """The outcomes of the last ``size`` recorded calls.

    ``total_calls``, ``failed_calls``, ``slow_calls`` and ``slow_failed_calls`` are running
    totals (read them under the breaker's lock, after :meth:`record` or :meth:`refresh`);
    ``folded_successes`` counts the queued successes taken in since creation (never reset).
    """

    __slots__ = ("_codes", "_durations", "_next", "_queue_max_duration")

    def __init__(self, size: int, slow_call_duration_threshold: float) -> None:
        super().__init__(size, slow_call_duration_threshold)
        # The longest success that may be queued: the slow threshold, or -inf (queueing off),
        # so that one comparison decides on the hot path.
        self._queue_max_duration = _NEVER
        # Empty slots hold code 0 and duration 0.0, so they never need special-casing.
        self._codes = [0] * size
        self._durations = [0.0] * size
        self._next = 0

    @property
    def size(self) -> int:
        """Capacity in calls."""
        return self._size

    def record(self, duration: float, failed: bool, now: float = 0.0) -> None:
        """Add one outcome, evicting the oldest once the window is full (``now`` unused)."""
        if self._queued:
            self._absorb_queued()
        code = _FAILED if failed else 0
        if duration > self._slow_threshold:
            code |= _SLOW
        i = self._next
        if self.total_calls == self._size:
            old = self._codes[i]
            if old:
                self._count(old, -1)
        else:
            self.total_calls += 1
        self._codes[i] = code
        self._durations[i] = duration
        if code:
            self._count(code, 1)
        i += 1
        self._next = 0 if i == self._size else i

    def try_queue_success(self, duration: float, now: float = 0.0) -> bool:
        """Queue a success without the lock; ``False`` (record it instead) when it is slow,
        when :data:`MAX_QUEUED_SUCCESSES` are queued already, or when queueing is off.

        A success can only lower the rates of a count window, so a queued one is folded in
        at the next locked operation without changing any decision.
        """
        # Written for speed (this is the breaker's success path): positive tests first,
        # plain attribute method call, no bound-method attribute.
        if duration <= self._queue_max_duration:
            queued = self._queued
            if len(queued) < MAX_QUEUED_SUCCESSES:
                queued.append(duration)
                return True
        return False

    def allow_queue(self, allowed: bool) -> None:
        """Turn :meth:`try_queue_success` on or off."""
        self._queue_max_duration = self._slow_threshold if allowed else _NEVER

    def refresh(self, now: float = 0.0) -> None:
        """Fold queued successes into the totals."""
        if self._queued:
            self._absorb_queued()

    def fold_queued(self) -> None:
        """Fold queued successes into the totals (the same as :meth:`refresh`)."""
        if self._queued:
            self._absorb_queued()

    def snapshot(self, now: float = 0.0) -> Snapshot:
        """The current aggregate (folds queued successes in first)."""
        self.refresh(now)
        return self._snapshot(math.fsum(self._durations))

    def reset(self) -> None:
        """Forget every outcome (and turn queueing off); queued successes are counted in
        ``folded_successes``, then discarded."""
        self._queue_max_duration = _NEVER
        self.folded_successes += self._take_queued(0)[0]
        self._codes = [0] * self._size
        self._durations = [0.0] * self._size
        self._next = 0
        self._zero_totals()

    def _count(self, code: int, delta: int) -> None:
        if code & _FAILED:
            self.failed_calls += delta
        if code & _SLOW:
            self.slow_calls += delta
            if code & _FAILED:
                self.slow_failed_calls += delta

    def _take_queued(self, keep: int) -> tuple[int, list[float]]:
        """Remove the n successes queued now; return n and the last ``keep`` durations.

        Appends may continue meanwhile: they land after the n taken, kept for the next fold.
        """
        queued = self._queued
        n = len(queued)
        durations = queued[max(n - keep, 0) : n]
        del queued[:n]
        return n, durations

    def _absorb_queued(self) -> None:
        # Folding n successes costs far less than n record()s. Of more than `size`, the older
        # ones would be evicted by the newer ones at once: only the last `size` are written.
        size = self._size
        n, durations = self._take_queued(size)
        self.folded_successes += n
        m = len(durations)
        start = (self._next + n - m) % size
        head = min(m, size - start)
        self._overwrite_with_successes(start, durations[:head])
        if m > head:
            self._overwrite_with_successes(0, durations[head:])
        self._next = (start + m) % size
        self.total_calls = min(self.total_calls + n, size)

    def _overwrite_with_successes(self, start: int, durations: list[float]) -> None:
        end = start + len(durations)
        if self.failed_calls or self.slow_calls:
            evicted = self._codes[start:end]
            slow_failed = evicted.count(_SLOW_FAILED)
            self.failed_calls -= evicted.count(_FAILED) + slow_failed
            self.slow_calls -= evicted.count(_SLOW) + slow_failed
            self.slow_failed_calls -= slow_failed
        self._codes[start:end] = repeat(0, end - start)
        self._durations[start:end] = durations

    def __repr__(self) -> str:
        return f"CountWindow(size={self._size}, {self.snapshot()})"


class _Bucket:
    """The aggregated outcomes of the calls that ended in one second."""

    __slots__ = ("calls", "duration", "failed", "slow", "slow_failed")

    def __init__(self) -> None:
        self.calls = self.failed = self.slow = self.slow_failed = 0
        self.duration = 0.0

    def clear(self) -> None:
        self.calls = self.failed = self.slow = self.slow_failed = 0
        self.duration = 0.0


class TimeWindow(_Window):
    """The outcomes of the calls recorded in the last ``size`` seconds.

    A ring of ``size`` one-second buckets; the newest bucket is the second of the latest
    ``now`` seen, and the window covers it and the ``size - 1`` seconds before it. Memory is
    constant whatever the call rate. Every method takes ``now`` (seconds on the breaker's
    clock) and first rolls the ring forward to it; time never moves the window backwards.
    ``folded_successes`` counts the queued successes taken in since creation (never reset).
    """

    __slots__ = ("_buckets", "_head", "_head_second", "_queue_allowed", "_queue_until")

    def __init__(self, size: int, slow_call_duration_threshold: float) -> None:
        super().__init__(size, slow_call_duration_threshold)
        self._buckets = [_Bucket() for _ in range(size)]
        self._head = 0
        self._head_second: int | None = None
        # Successes ending before this time belong to the head bucket and may be queued
        # (-inf while queueing is off).
        self._queue_allowed = False
        self._queue_until = _NEVER

    @property
    def size(self) -> int:
        """Span in seconds."""
        return self._size

    def record(self, duration: float, failed: bool, now: float = 0.0) -> None:
        """Add one outcome that ended at ``now``."""
        self.refresh(now)
        bucket = self._buckets[self._head]
        bucket.calls += 1
        bucket.duration += duration
        self.total_calls += 1
        if failed:
            bucket.failed += 1
            self.failed_calls += 1
        if duration > self._slow_threshold:
            bucket.slow += 1
            self.slow_calls += 1
            if failed:
                bucket.slow_failed += 1
                self.slow_failed_calls += 1

    def try_queue_success(self, duration: float, now: float) -> bool:
        """Queue a success that ended at ``now`` without the lock.

        Refused (``False``: record it instead) when it is slow, when ``now`` is past the
        newest bucket (rolling the ring may expire calls and so raise a rate: that needs the
        lock), when too many successes are queued already (constant memory), or when
        queueing is off.
        """
        if now < self._queue_until and duration <= self._slow_threshold:
            queued = self._queued
            if len(queued) < MAX_QUEUED_SUCCESSES:
                queued.append(duration)
                return True
        return False

    def refresh(self, now: float) -> None:
        """Fold queued successes into the newest bucket, then roll the ring to ``now``."""
        if self._queued:
            self._fold()
        second = math.floor(now)
        if second != self._head_second:
            self._roll(second)

    def snapshot(self, now: float) -> Snapshot:
        """The aggregate of the last ``size`` seconds as of ``now``."""
        self.refresh(now)
        return self._snapshot(math.fsum(b.duration for b in self._buckets))

    def fold_queued(self) -> None:
        """Fold queued successes into the newest bucket, without rolling the ring.

        They belong there: a success is queued only before the newest bucket's second ends.
        """
        if self._queued:
            self._fold()

    def allow_queue(self, allowed: bool) -> None:
        """Turn :meth:`try_queue_success` on or off."""
        self._queue_allowed = allowed
        head = self._head_second
        self._queue_until = float(head + 1) if allowed and head is not None else _NEVER

    def reset(self) -> None:
        """Forget every outcome (and turn queueing off); queued successes are counted in
        ``folded_successes``, then discarded."""
        self._queue_allowed = False
        queued = self._queued
        n = len(queued)
        del queued[:n]  # later appends (racing callers) stay for the next fold
        self.folded_successes += n
        for bucket in self._buckets:
            bucket.clear()
        self._head = 0
        self._head_second = None
        self._queue_until = _NEVER
        self._zero_totals()

    def _fold(self) -> None:
        queued = self._queued
        n = len(queued)
        total = sum(islice(queued, n))  # later appends land after index n: kept
        del queued[:n]
        bucket = self._buckets[self._head]
        bucket.calls += n
        bucket.duration += total
        self.total_calls += n
        self.folded_successes += n

    def _roll(self, second: int) -> None:
        if self._head_second is None:
            self._head_second = second
        elif second > self._head_second:
            steps = second - self._head_second
            if steps >= self._size:
                for bucket in self._buckets:
                    bucket.clear()
                self.total_calls = self.failed_calls = self.slow_calls = 0
                self.slow_failed_calls = 0
                self._head = (self._head + steps) % self._size
            else:
                for _ in range(steps):
                    self._head = (self._head + 1) % self._size
                    self._expire(self._buckets[self._head])
            self._head_second = second
        else:  # an older `now` (a racing caller): count it in the newest bucket
            return
        if self._queue_allowed:
            self._queue_until = float(second + 1)

    def _expire(self, bucket: _Bucket) -> None:
        if bucket.calls:
            self.total_calls -= bucket.calls
            self.failed_calls -= bucket.failed
            self.slow_calls -= bucket.slow
            self.slow_failed_calls -= bucket.slow_failed
            bucket.clear()

    def __repr__(self) -> str:
        second = self._head_second if self._head_second is not None else 0
        return f"TimeWindow(size={self._size}, {self.snapshot(second)})"
