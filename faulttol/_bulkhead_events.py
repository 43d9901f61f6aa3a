"""What both bulkheads (:class:`~faulttol.Bulkhead`, :class:`~faulttol.ThreadPoolBulkhead`)
share: the error raised when they are full, their events and their event publisher.

As in resilience4j, both kinds publish the same three events: a call was permitted, a call
was rejected (the bulkhead was full), a permitted call finished (returned or raised).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ._clock import Clock
from .events import Event, EventPublisher

__all__ = [
    "BulkheadEvent",
    "BulkheadEvents",
    "BulkheadFullError",
    "BulkheadOnCallFinishedEvent",
    "BulkheadOnCallPermittedEvent",
    "BulkheadOnCallRejectedEvent",
]

C = TypeVar("C", bound=Callable[..., Any])


class BulkheadFullError(Exception):
    """Raised instead of running a call that a full bulkhead does not admit.

    ``bulkhead_name`` names the bulkhead. For a :class:`~faulttol.Bulkhead`, every slot
    stayed taken for ``max_wait_duration``; for a :class:`~faulttol.ThreadPoolBulkhead`,
    every thread was busy and the queue was full.
    """

    def __init__(self, bulkhead_name: str) -> None:
        self.bulkhead_name = bulkhead_name
        super().__init__(f"Bulkhead {bulkhead_name!r} is full and does not permit further calls")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.bulkhead_name,))


@dataclass(frozen=True, slots=True)
class BulkheadEvent(Event):
    """Base of bulkhead events; ``name`` is the bulkhead's name."""


@dataclass(frozen=True, slots=True)
class BulkheadOnCallPermittedEvent(BulkheadEvent):
    """A call got a slot (a :class:`~faulttol.ThreadPoolBulkhead`: a thread or a queue place)."""


@dataclass(frozen=True, slots=True)
class BulkheadOnCallRejectedEvent(BulkheadEvent):
    """A call was refused with :class:`BulkheadFullError`."""


@dataclass(frozen=True, slots=True)
class BulkheadOnCallFinishedEvent(BulkheadEvent):
    """A permitted call finished (it returned, raised or was cancelled) and gave back its slot."""


class BulkheadEvents(EventPublisher[BulkheadEvent]):
    """The ``.events`` of a :class:`~faulttol.Bulkhead` or a :class:`~faulttol.ThreadPoolBulkhead`.

    ``changed`` (when given) is called after every registration: a bulkhead nobody listens to
    skips building events on its hot path, and learns here that it must start.
    """

    __slots__ = ()

    def on_call_permitted(self, consumer: C) -> C:
        """Receive :class:`BulkheadOnCallPermittedEvent`."""
        return self._on(BulkheadOnCallPermittedEvent, consumer)

    def on_call_rejected(self, consumer: C) -> C:
        """Receive :class:`BulkheadOnCallRejectedEvent`."""
        return self._on(BulkheadOnCallRejectedEvent, consumer)

    def on_call_finished(self, consumer: C) -> C:
        """Receive :class:`BulkheadOnCallFinishedEvent` (also after an exception)."""
        return self._on(BulkheadOnCallFinishedEvent, consumer)


class EmitsBulkheadEvents:
    """The event side that both bulkheads share (not re-exported: a base of theirs): whether
    anybody listens (``_observed``, kept up to date by the publisher's ``changed`` hook) and
    building and publishing one event when somebody does."""

    __slots__ = ("_observed",)

    _name: str
    _clock: Clock
    _events: BulkheadEvents

    def _listeners_changed(self) -> None:
        self._observed = self._events.has_consumers

    def _emit(self, kind: type[BulkheadEvent]) -> None:
        events = self._events
        if events.wants(kind):
            events.publish(kind(self._name, created_at=self._clock.monotonic()))

    def _admitted(self, taken: bool) -> bool:
        """Publish whether a call was admitted (``taken``: permitted, else rejected) to
        whoever listens; return ``taken``."""
        if self._observed:
            self._emit(BulkheadOnCallPermittedEvent if taken else BulkheadOnCallRejectedEvent)
        return taken

    def _finished(self) -> None:
        """Publish that a permitted call finished, to whoever listens."""
        if self._observed:
            self._emit(BulkheadOnCallFinishedEvent)
