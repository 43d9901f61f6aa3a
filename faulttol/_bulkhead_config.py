"""BulkheadConfig: how many calls a :class:`~faulttol.Bulkhead` admits at once, and how long
a caller waits for a slot.

The defaults are named constants (resilience4j's); public as ``faulttol.BulkheadConfig`` and
re-exported, with the constants, by :mod:`faulttol.bulkhead`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .validation import check_int, check_non_negative

__all__ = ["DEFAULT_MAX_CONCURRENT_CALLS", "DEFAULT_MAX_WAIT_DURATION", "BulkheadConfig"]

DEFAULT_MAX_CONCURRENT_CALLS: Final = 25
"""Calls admitted at once (resilience4j's default)."""
DEFAULT_MAX_WAIT_DURATION: Final = 0.0
"""Seconds a caller waits for a slot of a full bulkhead: 0 means reject at once."""


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
