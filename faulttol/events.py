"""Events published by circuit breakers and retries, and the publisher that delivers them.

Every component has an ``.events`` publisher. Register a consumer for one kind of event
(``breaker.events.on_state_transition(fn)``) or for all of them (``on_event(fn)``). Each
``on_*`` method returns the consumer, so it also works as a decorator.

Consumers run synchronously on the thread that caused the event, never while a component's
lock is held (a consumer may call back into the component). An exception raised by a
consumer is logged on the ``faulttol.events`` logger and never reaches the caller.
Components build an event only when somebody listens for it, so an unobserved component
pays nothing for events on its hot path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ._state import State

__all__ = [
    "CircuitBreakerEvent",
    "CircuitBreakerEvents",
    "CircuitBreakerOnCallNotPermittedEvent",
    "CircuitBreakerOnErrorEvent",
    "CircuitBreakerOnFailureRateExceededEvent",
    "CircuitBreakerOnIgnoredErrorEvent",
    "CircuitBreakerOnResetEvent",
    "CircuitBreakerOnSlowCallRateExceededEvent",
    "CircuitBreakerOnStateTransitionEvent",
    "CircuitBreakerOnSuccessEvent",
    "Event",
    "EventPublisher",
    "HedgeEvent",
    "HedgeEvents",
    "HedgeOnHedgeEvent",
    "HedgeOnSuccessEvent",
    "RetryEvent",
    "RetryEvents",
    "RetryOnErrorEvent",
    "RetryOnIgnoredErrorEvent",
    "RetryOnRetryEvent",
    "RetryOnSuccessEvent",
]

_log = logging.getLogger("faulttol.events")


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: the publishing component's name and the clock time it happened."""

    name: str
    created_at: float = field(default=0.0, kw_only=True)


# --- circuit breaker events -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CircuitBreakerEvent(Event):
    """Base of circuit breaker events; ``name`` is the breaker's name."""


@dataclass(frozen=True, slots=True)
class CircuitBreakerOnSuccessEvent(CircuitBreakerEvent):
    """A permitted call was recorded as a success; ``elapsed`` in seconds."""

    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class CircuitBreakerOnErrorEvent(CircuitBreakerEvent):
    """A permitted call was recorded as a failure (a recorded exception or result)."""

    elapsed: float = 0.0
    exception: BaseException | None = None
    result: Any = None


@dataclass(frozen=True, slots=True)
class CircuitBreakerOnIgnoredErrorEvent(CircuitBreakerEvent):
    """A call raised an ignored exception: it was not counted at all."""

    elapsed: float = 0.0
    exception: BaseException | None = None


@dataclass(frozen=True, slots=True)
class CircuitBreakerOnCallNotPermittedEvent(CircuitBreakerEvent):
    """A call was rejected because the breaker does not admit calls."""


@dataclass(frozen=True, slots=True)
class CircuitBreakerOnStateTransitionEvent(CircuitBreakerEvent):
    """The breaker moved from ``from_state`` to ``to_state``."""

    from_state: State | None = None
    to_state: State | None = None


@dataclass(frozen=True, slots=True)
class CircuitBreakerOnFailureRateExceededEvent(CircuitBreakerEvent):
    """The failure rate (percent) reached the threshold."""

    failure_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class CircuitBreakerOnSlowCallRateExceededEvent(CircuitBreakerEvent):
    """The slow-call rate (percent) reached the threshold."""

    slow_call_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class CircuitBreakerOnResetEvent(CircuitBreakerEvent):
    """The breaker was reset to CLOSED with fresh metrics."""


# --- retry events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryEvent(Event):
    """Base of retry events; ``name`` is the retry's name."""


@dataclass(frozen=True, slots=True)
class RetryOnRetryEvent(RetryEvent):
    """An attempt failed and another follows after ``wait`` seconds.

    ``attempt`` is the number of failed attempts so far; ``exception`` is what the attempt
    raised, or ``None`` when its ``result`` asked for the retry.
    """

    attempt: int = 0
    wait: float = 0.0
    exception: BaseException | None = None
    result: Any = None


@dataclass(frozen=True, slots=True)
class RetryOnSuccessEvent(RetryEvent):
    """A call succeeded after at least one retry; ``attempts`` counts every attempt made."""

    attempts: int = 0


@dataclass(frozen=True, slots=True)
class RetryOnErrorEvent(RetryEvent):
    """Attempts ran out; ``exception`` is the last one (``None`` for a result-based retry)."""

    attempts: int = 0
    exception: BaseException | None = None
    result: Any = None


@dataclass(frozen=True, slots=True)
class RetryOnIgnoredErrorEvent(RetryEvent):
    """A call raised an exception that is not retried at all."""

    exception: BaseException | None = None


# --- hedge events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HedgeEvent(Event):
    """Base of hedge events; ``name`` is the hedge's name."""


@dataclass(frozen=True, slots=True)
class HedgeOnHedgeEvent(HedgeEvent):
    """Hedge ``attempt`` (1 for the first hedge; the original call is attempt 0) started."""

    attempt: int = 0


@dataclass(frozen=True, slots=True)
class HedgeOnSuccessEvent(HedgeEvent):
    """A hedged call succeeded; ``attempt`` is the winner (0 for the original call)."""

    attempt: int = 0


# --- publisher ---------------------------------------------------------------------------

E = TypeVar("E", bound=Event)
C = TypeVar("C", bound=Callable[..., Any])


class EventPublisher(Generic[E]):
    """Delivers events to registered consumers, by exact event type and to catch-all ones.

    Registration is thread-safe (copy-on-write lists), and delivery reads an immutable
    snapshot, so a consumer may register further consumers while an event is delivered.
    ``changed`` (when given) is called after every registration: a component nobody listens
    to skips building events on its hot path, and learns here that it must start.
    """

    __slots__ = ("_all", "_by_type", "_changed", "_lock")

    def __init__(self, changed: Callable[[], None] | None = None) -> None:
        self._by_type: dict[type[Event], tuple[Callable[[Any], object], ...]] = {}
        self._all: tuple[Callable[[Any], object], ...] = ()
        self._lock = threading.Lock()
        self._changed = changed

    def on_event(self, consumer: C) -> C:
        """Receive every event this publisher emits."""
        with self._lock:
            self._all = (*self._all, consumer)
        if self._changed is not None:
            self._changed()
        return consumer

    def _on(self, kind: type[Event], consumer: C) -> C:
        with self._lock:
            self._by_type = {**self._by_type, kind: (*self._by_type.get(kind, ()), consumer)}
        if self._changed is not None:
            self._changed()
        return consumer

    def wants(self, kind: type[Event]) -> bool:
        """Whether anybody would receive an event of ``kind`` (build it only if so)."""
        return bool(self._all) or kind in self._by_type

    @property
    def has_consumers(self) -> bool:
        """Whether any consumer is registered at all."""
        return bool(self._all) or bool(self._by_type)

    def publish(self, event: E) -> None:
        """Deliver ``event``; consumer exceptions are logged, never raised."""
        for consumer in (*self._by_type.get(type(event), ()), *self._all):
            try:
                consumer(event)
            except Exception:
                _log.exception("event consumer %r failed on %s", consumer, type(event).__name__)


class CircuitBreakerEvents(EventPublisher[CircuitBreakerEvent]):
    """The ``.events`` of a :class:`~faulttol.CircuitBreaker`."""

    __slots__ = ()

    def on_success(self, consumer: C) -> C:
        return self._on(CircuitBreakerOnSuccessEvent, consumer)

    def on_error(self, consumer: C) -> C:
        return self._on(CircuitBreakerOnErrorEvent, consumer)

    def on_ignored_error(self, consumer: C) -> C:
        return self._on(CircuitBreakerOnIgnoredErrorEvent, consumer)

    def on_call_not_permitted(self, consumer: C) -> C:
        return self._on(CircuitBreakerOnCallNotPermittedEvent, consumer)

    def on_state_transition(self, consumer: C) -> C:
        return self._on(CircuitBreakerOnStateTransitionEvent, consumer)

    def on_failure_rate_exceeded(self, consumer: C) -> C:
        return self._on(CircuitBreakerOnFailureRateExceededEvent, consumer)

    def on_slow_call_rate_exceeded(self, consumer: C) -> C:
        return self._on(CircuitBreakerOnSlowCallRateExceededEvent, consumer)

    def on_reset(self, consumer: C) -> C:
        return self._on(CircuitBreakerOnResetEvent, consumer)


class RetryEvents(EventPublisher[RetryEvent]):
    """The ``.events`` of a :class:`~faulttol.Retry`."""

    __slots__ = ()

    def on_retry(self, consumer: C) -> C:
        return self._on(RetryOnRetryEvent, consumer)

    def on_success(self, consumer: C) -> C:
        return self._on(RetryOnSuccessEvent, consumer)

    def on_error(self, consumer: C) -> C:
        return self._on(RetryOnErrorEvent, consumer)

    def on_ignored_error(self, consumer: C) -> C:
        return self._on(RetryOnIgnoredErrorEvent, consumer)


class HedgeEvents(EventPublisher[HedgeEvent]):
    """The ``.events`` of a :class:`~faulttol.Hedge`."""

    __slots__ = ()

    def on_hedge(self, consumer: C) -> C:
        return self._on(HedgeOnHedgeEvent, consumer)

    def on_success(self, consumer: C) -> C:
        return self._on(HedgeOnSuccessEvent, consumer)
