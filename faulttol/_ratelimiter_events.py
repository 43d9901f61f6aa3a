"""What a :class:`~faulttol.RateLimiter` tells its callers and listeners: the error raised
instead of running a call, the events (permissions acquired or refused) and their publisher.

Re-exported by :mod:`faulttol.ratelimiter` (and the error and config by ``faulttol``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .events import Event, EventPublisher

__all__ = [
    "RateLimiterEvent",
    "RateLimiterEvents",
    "RateLimiterOnFailureEvent",
    "RateLimiterOnSuccessEvent",
    "RequestNotPermittedError",
]

C = TypeVar("C", bound=Callable[..., Any])


class RequestNotPermittedError(Exception):
    """Raised instead of running a call when no permission could be had in time.

    ``rate_limiter_name`` names the limiter.
    """

    def __init__(self, rate_limiter_name: str) -> None:
        self.rate_limiter_name = rate_limiter_name
        super().__init__(f"RateLimiter {rate_limiter_name!r} does not permit further calls")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.rate_limiter_name,))


@dataclass(frozen=True, slots=True)
class RateLimiterEvent(Event):
    """Base of rate limiter events; ``name`` is the limiter's name, ``number_of_permits``
    the permissions asked for."""

    number_of_permits: int = 1


@dataclass(frozen=True, slots=True)
class RateLimiterOnSuccessEvent(RateLimiterEvent):
    """Permissions were acquired (at once, or reserved with a wait within the timeout)."""


@dataclass(frozen=True, slots=True)
class RateLimiterOnFailureEvent(RateLimiterEvent):
    """Permissions were refused: the wait would have exceeded the timeout."""


class RateLimiterEvents(EventPublisher[RateLimiterEvent]):
    """The ``.events`` of a :class:`RateLimiter`: ``on_success``, ``on_failure``,
    ``on_event`` (all)."""

    __slots__ = ()

    def on_success(self, consumer: C) -> C:
        return self._on(RateLimiterOnSuccessEvent, consumer)

    def on_failure(self, consumer: C) -> C:
        return self._on(RateLimiterOnFailureEvent, consumer)
