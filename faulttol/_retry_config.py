"""RetryConfig: how a :class:`~faulttol.Retry` decides whether, how often and how long to wait.

The defaults are named constants (resilience4j's where it has them). Public as
``faulttol.RetryConfig`` and re-exported by :mod:`faulttol.retry`, together with the constants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .validation import (
    check_bool,
    check_callable,
    check_exception_types,
    check_int,
    check_non_negative,
    check_number,
)

__all__ = [
    "DEFAULT_BACKOFF_MULTIPLIER",
    "DEFAULT_FAIL_AFTER_MAX_ATTEMPTS",
    "DEFAULT_IGNORE_EXCEPTIONS",
    "DEFAULT_JITTER",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_WAIT_DURATION",
    "DEFAULT_RETRY_EXCEPTIONS",
    "DEFAULT_WAIT_DURATION",
    "RetryConfig",
]

DEFAULT_MAX_ATTEMPTS: Final = 3
"""Attempts in all, the first call included."""
DEFAULT_WAIT_DURATION: Final = 0.5
"""Seconds to wait after the first failed attempt."""
DEFAULT_BACKOFF_MULTIPLIER: Final = 2.0
"""Each further wait is this many times the previous one."""
DEFAULT_MAX_WAIT_DURATION: Final[float | None] = None
"""Upper bound of one wait in seconds; ``None`` means no bound."""
DEFAULT_JITTER: Final = 0.0
"""Randomization factor: 0 means fixed waits."""
DEFAULT_RETRY_EXCEPTIONS: Final[tuple[type[BaseException], ...]] = (Exception,)
"""Exception types that are retried (unless ignored)."""
DEFAULT_IGNORE_EXCEPTIONS: Final[tuple[type[BaseException], ...]] = ()
"""Exception types that are never retried."""
DEFAULT_FAIL_AFTER_MAX_ATTEMPTS: Final = False
"""Whether a result-based retry raises when attempts run out (instead of returning)."""


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How a :class:`Retry` decides whether, how often and how long to wait before retrying.

    Immutable. A value of the wrong kind (a string or a bool for a number, a non-exception
    in an exception list...) raises ``ConfigTypeError`` (a ``TypeError`` and a
    ``ValueError``); a value out of range (negative, NaN, infinite, a multiplier below 1, a
    jitter outside [0, 1]) raises ``ValueError``. Both name the field and what it allows.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Attempts in all, counting the first call (>= 1)."""
    wait_duration: float = DEFAULT_WAIT_DURATION
    """Seconds after the first failed attempt (>= 0)."""
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    """Wait n is ``wait_duration * backoff_multiplier ** (n - 1)`` (>= 1)."""
    max_wait_duration: float | None = DEFAULT_MAX_WAIT_DURATION
    """Cap of one wait in seconds (>= 0 and finite), or ``None`` for no cap."""
    jitter: float = DEFAULT_JITTER
    """Randomization factor in [0, 1]: the wait is scaled by U(1 - jitter, 1 + jitter)."""
    retry_exceptions: tuple[type[BaseException], ...] = DEFAULT_RETRY_EXCEPTIONS
    """Exception types that are retried."""
    ignore_exceptions: tuple[type[BaseException], ...] = DEFAULT_IGNORE_EXCEPTIONS
    """Exception types never retried; wins over everything else."""
    retry_on_exception: Callable[[BaseException], bool] | None = None
    """When given, decides instead of ``retry_exceptions`` (ignore still wins)."""
    retry_on_result: Callable[[Any], bool] | None = None
    """A result for which this returns true is retried."""
    fail_after_max_attempts: bool = DEFAULT_FAIL_AFTER_MAX_ATTEMPTS
    """Raise :class:`MaxRetriesExceededError` when a result-based retry runs out."""

    def __post_init__(self) -> None:
        check_int("max_attempts", self.max_attempts, minimum=1)
        check_non_negative("wait_duration", self.wait_duration, allowed="finite seconds >= 0")
        check_number(
            "backoff_multiplier",
            self.backoff_multiplier,
            minimum=1,
            allowed="a finite number >= 1",
        )
        if self.max_wait_duration is not None:
            check_non_negative(
                "max_wait_duration",
                self.max_wait_duration,
                allowed="finite seconds >= 0, or None for no cap",
            )
        check_number(
            "jitter", self.jitter, minimum=0, maximum=1, allowed="a randomization factor in [0, 1]"
        )
        for name in ("retry_exceptions", "ignore_exceptions"):
            object.__setattr__(self, name, check_exception_types(name, getattr(self, name)))
        for name in ("retry_on_exception", "retry_on_result"):
            check_callable(name, getattr(self, name))
        check_bool("fail_after_max_attempts", self.fail_after_max_attempts)
