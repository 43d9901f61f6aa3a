"""What a circuit breaker reports: the live metrics of its current window and its
cumulative call counters.

:class:`CircuitBreakerMetrics` is a view: it reads the breaker on every access, through the
one method the breaker offers for that (:class:`_MetricsSource`), so this module does not
depend on the breaker. :class:`CircuitBreakerCounters` is a plain immutable record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .window import Snapshot

__all__ = ["CircuitBreakerCounters", "CircuitBreakerMetrics"]


class _MetricsSource(Protocol):
    """What the metrics view needs from a breaker: its window's aggregate, the minimum
    number of calls for rates to count, and the not-permitted calls, read consistently."""

    def _read_metrics(self) -> tuple[Snapshot, int, int]: ...


class CircuitBreakerMetrics:
    """A live, read-only view of a breaker's current window (``breaker.metrics``).

    Rates are percentages and read ``-1.0`` until the window holds the minimum number of
    calls (``minimum_number_of_calls``, or the permitted calls in HALF_OPEN). Each property
    reads the breaker at that moment; :meth:`snapshot` gives a consistent set.
    """

    __slots__ = ("_breaker",)

    def __init__(self, breaker: _MetricsSource) -> None:
        self._breaker = breaker

    def snapshot(self) -> Snapshot:
        """The window's aggregate right now (without the not-permitted count)."""
        return self._breaker._read_metrics()[0]

    @property
    def failure_rate(self) -> float:
        snap, minimum, _ = self._breaker._read_metrics()
        return snap.failure_rate if snap.total_calls >= minimum else -1.0

    @property
    def slow_call_rate(self) -> float:
        snap, minimum, _ = self._breaker._read_metrics()
        return snap.slow_call_rate if snap.total_calls >= minimum else -1.0

    @property
    def number_of_buffered_calls(self) -> int:
        return self.snapshot().total_calls

    @property
    def number_of_failed_calls(self) -> int:
        return self.snapshot().failed_calls

    @property
    def number_of_successful_calls(self) -> int:
        return self.snapshot().successful_calls

    @property
    def number_of_slow_calls(self) -> int:
        return self.snapshot().slow_calls

    @property
    def number_of_slow_successful_calls(self) -> int:
        return self.snapshot().slow_successful_calls

    @property
    def number_of_slow_failed_calls(self) -> int:
        return self.snapshot().slow_failed_calls

    @property
    def number_of_not_permitted_calls(self) -> int:
        return self._breaker._read_metrics()[2]

    def __repr__(self) -> str:
        snap, minimum, not_permitted = self._breaker._read_metrics()
        enough = snap.total_calls >= minimum
        return (
            f"CircuitBreakerMetrics(failure_rate={snap.failure_rate if enough else -1.0}, "
            f"slow_call_rate={snap.slow_call_rate if enough else -1.0}, "
            f"buffered={snap.total_calls}, failed={snap.failed_calls}, "
            f"slow={snap.slow_calls}, not_permitted={not_permitted})"
        )


@dataclass(frozen=True, slots=True)
class CircuitBreakerCounters:
    """Cumulative call counts of a breaker since its creation (``breaker.counters``).

    Unlike :class:`CircuitBreakerMetrics`, which describe the current window, these only ever
    grow: neither state transitions nor :meth:`~faulttol.CircuitBreaker.reset` touch them, so
    they suit monotonic counters (Prometheus, OpenTelemetry). They count every call's outcome
    in every state, without anybody having to listen; that includes DISABLED and FORCED_OPEN
    (a call admitted before the breaker was forced open), where no success/error event is
    published:

    * ``successful_calls``: calls recorded as a success (returned, or raised an exception
      that is neither recorded nor ignored);
    * ``failed_calls``: calls recorded as a failure (a recorded exception or result);
    * ``ignored_calls``: calls that raised an ignored exception;
    * ``not_permitted_calls``: calls rejected with :class:`~faulttol.CallNotPermittedError`;
    * ``slow_successful_calls`` / ``slow_failed_calls``: of the successful / failed calls,
      those slower than ``slow_call_duration_threshold``.

    A call interrupted by a ``BaseException`` that is not an ``Exception`` (a cancellation,
    ``KeyboardInterrupt``) is not counted, as it is not recorded. ``a - b`` gives the counts
    between two readings.
    """

    successful_calls: int = 0
    failed_calls: int = 0
    ignored_calls: int = 0
    not_permitted_calls: int = 0
    slow_successful_calls: int = 0
    slow_failed_calls: int = 0

    def __sub__(self, other: CircuitBreakerCounters) -> CircuitBreakerCounters:
        """The counts since reading ``other`` (an earlier reading of the same breaker)."""
        if not isinstance(other, CircuitBreakerCounters):
            return NotImplemented
        return CircuitBreakerCounters(
            self.successful_calls - other.successful_calls,
            self.failed_calls - other.failed_calls,
            self.ignored_calls - other.ignored_calls,
            self.not_permitted_calls - other.not_permitted_calls,
            self.slow_successful_calls - other.slow_successful_calls,
            self.slow_failed_calls - other.slow_failed_calls,
        )
