"""How a :class:`~faulttol.CircuitBreaker` records one outcome: classifying an exception
(recorded, ignored, a success, not counted), counting it, putting it in the window under the
lock, and the rate checks and exceeded-rate events its states act on.

A base class of the breaker, private: the data is the breaker's (declared below for the
type checker); the state classes (``faulttol._breaker_states``) call back into
:meth:`OutcomeRecording._exceeded`, :meth:`~OutcomeRecording._emit_exceeded` and
:meth:`~OutcomeRecording._report_once`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import cast

from ._breaker_config import CircuitBreakerConfig
from ._breaker_states import BreakerState as _BreakerState
from ._breaker_states import Events as _Events
from ._breaker_states import StateHost
from ._breaker_states import Window as _Window
from .events import (
    CircuitBreakerEvents,
    CircuitBreakerOnErrorEvent,
    CircuitBreakerOnFailureRateExceededEvent,
    CircuitBreakerOnIgnoredErrorEvent,
    CircuitBreakerOnSlowCallRateExceededEvent,
    CircuitBreakerOnSuccessEvent,
)
from .window import rate

__all__ = ["OutcomeRecording"]

_SUCCESS, _FAILURE, _IGNORED, _NOT_COUNTED = range(4)
"""What an exception counts as (see :meth:`OutcomeRecording._classify`)."""


class OutcomeRecording:
    """Recording outcomes in the breaker's window and counters (see the module docstring)."""

    name: str
    config: CircuitBreakerConfig
    events: CircuitBreakerEvents
    _lock: threading.Lock
    _behavior: _BreakerState
    _window: _Window
    _minimum_calls: int
    _record_types: tuple[type[BaseException], ...]
    _ignore_types: tuple[type[BaseException], ...]
    _record_predicate: Callable[[BaseException], bool] | None
    _ignore_predicate: Callable[[BaseException], bool] | None
    _record_result: Callable[[object], bool] | None
    _failure_threshold: float
    _slow_threshold: float
    _slow_duration: float
    _reported_failure_rate: bool
    _reported_slow_rate: bool
    _count_successful: int
    _count_failed: int
    _count_ignored: int
    _count_slow_successful: int
    _count_slow_failed: int

    release_permission: Callable[[], None]
    _release: Callable[[], None]
    _apply_time: Callable[[float, _Events], None]
    _publish: Callable[[_Events], None]

    def _classify(self, exc: BaseException) -> int:
        if isinstance(exc, self._ignore_types) or (
            self._ignore_predicate is not None and self._ignore_predicate(exc)
        ):
            return _IGNORED
        if isinstance(exc, self._record_types) or (
            self._record_predicate is not None and self._record_predicate(exc)
        ):
            return _FAILURE
        return _SUCCESS if isinstance(exc, Exception) else _NOT_COUNTED

    def _on_error_at(self, duration: float, exc: BaseException, now: float) -> None:
        kind = self._classify(exc)
        if kind == _FAILURE:
            self._record(duration, now, True, exc, None)
        elif kind == _SUCCESS:
            self._record(duration, now, False, None, None)
        elif kind == _IGNORED:
            out: _Events = []
            with self._lock:
                self._release()
                self._count_ignored += 1
                if self._behavior.records and self.events.wants(CircuitBreakerOnIgnoredErrorEvent):
                    out.append(
                        CircuitBreakerOnIgnoredErrorEvent(
                            self.name, created_at=now, elapsed=duration, exception=exc
                        )
                    )
            self._publish(out)
        else:
            self.release_permission()

    def _on_result_at(self, duration: float, result: object, now: float) -> None:
        if self._record_result is not None and self._record_result(result):
            self._record(duration, now, True, None, result)
        else:
            self._record(duration, now, False, None, None)

    def _record(
        self,
        duration: float,
        now: float,
        failed: bool,
        exc: BaseException | None,
        result: object,
    ) -> None:
        """Record one outcome under the lock and act on it; publish afterwards.

        DISABLED and FORCED_OPEN (a call admitted before the breaker was forced open) count
        the outcome in the cumulative counters only: no window, no success/error event.
        """
        out: _Events = []
        with self._lock:
            self._apply_time(now, out)
            behavior = self._behavior
            publishing = behavior.records
            slow_call = duration > self._slow_duration
            if failed:
                self._count_failed += 1
                if slow_call:
                    self._count_slow_failed += 1
                if publishing and self.events.wants(CircuitBreakerOnErrorEvent):
                    out.append(
                        CircuitBreakerOnErrorEvent(
                            self.name,
                            created_at=now,
                            elapsed=duration,
                            exception=exc,
                            result=result,
                        )
                    )
            else:
                self._count_successful += 1
                if slow_call:
                    self._count_slow_successful += 1
                if publishing and self.events.wants(CircuitBreakerOnSuccessEvent):
                    out.append(
                        CircuitBreakerOnSuccessEvent(self.name, created_at=now, elapsed=duration)
                    )
            if publishing:
                window = self._window
                window.record(duration, failed, now)
                behavior.on_recorded(cast(StateHost, self), window, now, out)  # self: the breaker
        if out:
            self._publish(out)

    def _exceeded(self, window: _Window, min_failures: int) -> tuple[bool, bool]:
        """Whether the failure rate and the slow-call rate reach their thresholds."""
        total = window.total_calls
        if total < self._minimum_calls or total == 0:
            return False, False
        failed = window.failed_calls
        failure = failed >= min_failures and rate(failed, total) >= self._failure_threshold
        slow = rate(window.slow_calls, total) >= self._slow_threshold
        return failure, slow

    def _emit_exceeded(
        self, out: _Events, window: _Window, failure: bool, slow: bool, now: float
    ) -> None:
        """Publish the rates that reached their thresholds (``failure``, ``slow``)."""
        total = window.total_calls
        if failure and self.events.wants(CircuitBreakerOnFailureRateExceededEvent):
            out.append(
                CircuitBreakerOnFailureRateExceededEvent(
                    self.name, created_at=now, failure_rate=rate(window.failed_calls, total)
                )
            )
        if slow and self.events.wants(CircuitBreakerOnSlowCallRateExceededEvent):
            out.append(
                CircuitBreakerOnSlowCallRateExceededEvent(
                    self.name, created_at=now, slow_call_rate=rate(window.slow_calls, total)
                )
            )

    def _report_once(self, window: _Window, now: float, out: _Events) -> None:
        """METRICS_ONLY: publish each exceeded rate once, again only after it dropped below."""
        failure, slow = self._exceeded(window, self.config.minimum_number_of_failures)
        self._emit_exceeded(
            out,
            window,
            failure and not self._reported_failure_rate,
            slow and not self._reported_slow_rate,
            now,
        )
        self._reported_failure_rate = failure
        self._reported_slow_rate = slow
