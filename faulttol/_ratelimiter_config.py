"""RateLimiterConfig: how many calls a :class:`~faulttol.RateLimiter` admits per cycle, and
how long a caller waits for a permission.

The defaults are named constants (resilience4j's); public as ``faulttol.RateLimiterConfig``
and re-exported, with the constants, by :mod:`faulttol.ratelimiter`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .validation import check_int, check_non_negative, check_positive

__all__ = [
    "DEFAULT_LIMIT_FOR_PERIOD",
    "DEFAULT_LIMIT_REFRESH_PERIOD",
    "DEFAULT_TIMEOUT_DURATION",
    "RateLimiterConfig",
]

DEFAULT_LIMIT_FOR_PERIOD: Final = 50
"""Permissions granted per cycle."""
DEFAULT_LIMIT_REFRESH_PERIOD: Final = 500e-9
"""Length of a cycle in seconds (resilience4j's 500 ns)."""
DEFAULT_TIMEOUT_DURATION: Final = 5.0
"""Longest wait for a permission, in seconds."""


@dataclass(frozen=True, slots=True)
class RateLimiterConfig:
    """How many calls a :class:`RateLimiter` admits per cycle and how long a caller waits.

    Immutable, validated at construction: a value of the wrong kind raises
    ``ConfigTypeError`` (a ``TypeError`` and a ``ValueError``), a value out of range (NaN,
    infinite, ``limit_for_period`` below 1, a period that is not positive, a negative timeout)
    raises ``ValueError``; both name the field and what it allows. Durations are kept to the
    nanosecond: a period shorter than 1 ns counts as 1 ns.
    """

    limit_for_period: int = DEFAULT_LIMIT_FOR_PERIOD
    """Permissions each cycle grants (>= 1)."""
    limit_refresh_period: float = DEFAULT_LIMIT_REFRESH_PERIOD
    """Length of a cycle in seconds (> 0)."""
    timeout_duration: float = DEFAULT_TIMEOUT_DURATION
    """Longest a caller waits for a permission, in seconds (>= 0; 0 never waits)."""

    def __post_init__(self) -> None:
        check_int("limit_for_period", self.limit_for_period, minimum=1)
        object.__setattr__(
            self,
            "limit_refresh_period",
            check_positive(
                "limit_refresh_period", self.limit_refresh_period, allowed="finite seconds > 0"
            ),
        )
        object.__setattr__(
            self,
            "timeout_duration",
            check_non_negative(
                "timeout_duration", self.timeout_duration, allowed="finite seconds >= 0"
            ),
        )
