"""How a circuit breaker decides: :class:`CircuitBreakerConfig`, its window types and its
defaults (resilience4j's), each a named constant.

The config is an immutable record, validated at construction with the shared helpers of
:mod:`faulttol.validation`; it knows nothing of the breaker that uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .validation import (
    check_bool,
    check_callable,
    check_exception_types,
    check_instance,
    check_int,
    check_non_negative,
    check_number,
)

__all__ = [
    "DEFAULT_AUTOMATIC_TRANSITION_FROM_OPEN_TO_HALF_OPEN_ENABLED",
    "DEFAULT_FAILURE_RATE_THRESHOLD",
    "DEFAULT_IGNORE_EXCEPTIONS",
    "DEFAULT_MAX_WAIT_DURATION_IN_HALF_OPEN_STATE",
    "DEFAULT_MINIMUM_NUMBER_OF_CALLS",
    "DEFAULT_MINIMUM_NUMBER_OF_FAILURES",
    "DEFAULT_PERMITTED_NUMBER_OF_CALLS_IN_HALF_OPEN_STATE",
    "DEFAULT_RECORD_EXCEPTIONS",
    "DEFAULT_SLIDING_WINDOW_SIZE",
    "DEFAULT_SLIDING_WINDOW_TYPE",
    "DEFAULT_SLOW_CALL_DURATION_THRESHOLD",
    "DEFAULT_SLOW_CALL_RATE_THRESHOLD",
    "DEFAULT_WAIT_DURATION_IN_OPEN_STATE",
    "CircuitBreakerConfig",
    "SlidingWindowType",
]


class SlidingWindowType(Enum):
    """How the window of recent calls is bounded: by number of calls or by seconds."""

    COUNT_BASED = "COUNT_BASED"
    TIME_BASED = "TIME_BASED"


DEFAULT_SLIDING_WINDOW_TYPE = SlidingWindowType.COUNT_BASED
DEFAULT_SLIDING_WINDOW_SIZE = 100
DEFAULT_MINIMUM_NUMBER_OF_CALLS = 100
DEFAULT_FAILURE_RATE_THRESHOLD = 50.0
DEFAULT_MINIMUM_NUMBER_OF_FAILURES = 0
DEFAULT_SLOW_CALL_RATE_THRESHOLD = 100.0
DEFAULT_SLOW_CALL_DURATION_THRESHOLD = 60.0
DEFAULT_WAIT_DURATION_IN_OPEN_STATE = 60.0
DEFAULT_AUTOMATIC_TRANSITION_FROM_OPEN_TO_HALF_OPEN_ENABLED = False
DEFAULT_PERMITTED_NUMBER_OF_CALLS_IN_HALF_OPEN_STATE = 10
DEFAULT_MAX_WAIT_DURATION_IN_HALF_OPEN_STATE = 0.0
DEFAULT_RECORD_EXCEPTIONS: tuple[type[BaseException], ...] = (Exception,)
DEFAULT_IGNORE_EXCEPTIONS: tuple[type[BaseException], ...] = ()

_RATE = "a percentage in (0, 100]"
_SECONDS = "finite seconds >= 0"


def _check_rate(name: str, value: object) -> None:
    check_number(name, value, minimum=0, maximum=100, exclusive_minimum=True, allowed=_RATE)


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """How a :class:`~faulttol.CircuitBreaker` decides; immutable, validated at construction.

    A value of the wrong kind (a string for a count, a bool for a number, a non-exception in
    an exception list...) raises ``ConfigTypeError`` (a ``TypeError`` and a
    ``ValueError``); a value out of range (negative, NaN, infinite, a rate outside
    (0, 100]) raises ``ValueError``. Both name the field and what it allows.

    For a COUNT_BASED window, ``minimum_number_of_calls`` above ``sliding_window_size`` is
    capped by the breaker (the config keeps the value given). ``minimum_number_of_failures``
    applies to the CLOSED window (and METRICS_ONLY reports), not to the HALF_OPEN trial calls,
    which are judged by their rates alone.
    """

    sliding_window_type: SlidingWindowType = DEFAULT_SLIDING_WINDOW_TYPE
    sliding_window_size: int = DEFAULT_SLIDING_WINDOW_SIZE
    minimum_number_of_calls: int = DEFAULT_MINIMUM_NUMBER_OF_CALLS
    failure_rate_threshold: float = DEFAULT_FAILURE_RATE_THRESHOLD
    minimum_number_of_failures: int = DEFAULT_MINIMUM_NUMBER_OF_FAILURES
    slow_call_rate_threshold: float = DEFAULT_SLOW_CALL_RATE_THRESHOLD
    slow_call_duration_threshold: float = DEFAULT_SLOW_CALL_DURATION_THRESHOLD
    wait_duration_in_open_state: float = DEFAULT_WAIT_DURATION_IN_OPEN_STATE
    wait_interval_function_in_open_state: Callable[[int], float] | None = None
    automatic_transition_from_open_to_half_open_enabled: bool = (
        DEFAULT_AUTOMATIC_TRANSITION_FROM_OPEN_TO_HALF_OPEN_ENABLED
    )
    permitted_number_of_calls_in_half_open_state: int = (
        DEFAULT_PERMITTED_NUMBER_OF_CALLS_IN_HALF_OPEN_STATE
    )
    max_wait_duration_in_half_open_state: float = DEFAULT_MAX_WAIT_DURATION_IN_HALF_OPEN_STATE
    record_exceptions: tuple[type[BaseException], ...] = DEFAULT_RECORD_EXCEPTIONS
    ignore_exceptions: tuple[type[BaseException], ...] = DEFAULT_IGNORE_EXCEPTIONS
    record_exception: Callable[[BaseException], bool] | None = None
    ignore_exception: Callable[[BaseException], bool] | None = None
    record_result: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        check_instance(
            "sliding_window_type",
            self.sliding_window_type,
            SlidingWindowType,
            "SlidingWindowType.COUNT_BASED or TIME_BASED",
        )
        check_int("sliding_window_size", self.sliding_window_size, minimum=1)
        check_int("minimum_number_of_calls", self.minimum_number_of_calls, minimum=1)
        check_int("minimum_number_of_failures", self.minimum_number_of_failures, minimum=0)
        check_int(
            "permitted_number_of_calls_in_half_open_state",
            self.permitted_number_of_calls_in_half_open_state,
            minimum=1,
        )
        _check_rate("failure_rate_threshold", self.failure_rate_threshold)
        _check_rate("slow_call_rate_threshold", self.slow_call_rate_threshold)
        for name in (
            "slow_call_duration_threshold",
            "wait_duration_in_open_state",
            "max_wait_duration_in_half_open_state",
        ):
            check_non_negative(name, getattr(self, name), allowed=_SECONDS)
        check_bool(
            "automatic_transition_from_open_to_half_open_enabled",
            self.automatic_transition_from_open_to_half_open_enabled,
        )
        for name in ("record_exceptions", "ignore_exceptions"):
            object.__setattr__(self, name, check_exception_types(name, getattr(self, name)))
        for name in (
            "wait_interval_function_in_open_state",
            "record_exception",
            "ignore_exception",
            "record_result",
        ):
            check_callable(name, getattr(self, name))
