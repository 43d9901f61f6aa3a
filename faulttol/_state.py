"""The states of a circuit breaker.

A module of its own so that everything that names a state (the breaker, its events, the
metrics exporters, the providers) can import it without importing the breaker itself: the
events module needs :class:`State` for its state-transition event, and the breaker needs
the events, so ``State`` living in the breaker made the two modules import each other.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["State"]


class State(Enum):
    """The states of a circuit breaker."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"
    DISABLED = "DISABLED"
    FORCED_OPEN = "FORCED_OPEN"
    METRICS_ONLY = "METRICS_ONLY"
