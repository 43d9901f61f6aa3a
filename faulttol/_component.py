"""What every named resilience component exposes: its name, clock, events and configuration.

The bulkheads, the rate limiter, the retry, the time limiter, the hedge, the chaos strategies
and the pybreaker adapter each have a name (in their events, errors and metrics) and a clock
(for waits and event timestamps); all but the last two also an event publisher and an
immutable configuration, and several a live ``metrics`` view. The read-only properties, the
``repr`` and the checks made on construction are written here once; each component keeps its
own data in its own slots.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, ParamSpec, TypeVar, cast

from ._clock import Clock, resolve_clock
from .validation import check_config, check_str

__all__ = [
    "Component",
    "Decorating",
    "LiveView",
    "Named",
    "checked_name_and_clock",
    "checked_setup",
]

ConfigT = TypeVar("ConfigT")
EventsT = TypeVar("EventsT")
OwnerT = TypeVar("OwnerT")
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def checked_name_and_clock(name: str, clock: Clock | None) -> tuple[str, Clock]:
    """The name, checked, and the clock, resolved (``None``: the default clock)."""
    check_str("name", name)
    return name, resolve_clock(clock)


def checked_setup(
    name: str, config: ConfigT | None, config_type: type[ConfigT], clock: Clock | None
) -> tuple[str, ConfigT, Clock]:
    """The name and the configuration (``None``: ``config_type()``), checked, and the clock,
    resolved: what every :class:`Component` keeps first."""
    name, resolved = checked_name_and_clock(name, clock)
    return name, check_config("config", config, config_type), resolved


class Named:
    """A component with a name and a clock (``_name`` and ``_clock``, slots of the subclass,
    set with :func:`checked_name_and_clock`)."""

    __slots__ = ()

    _name: str
    _clock: Clock

    @property
    def name(self) -> str:
        """The component's name (used in its events, errors and metrics)."""
        return self._name

    @property
    def clock(self) -> Clock:
        """The clock used for waits and event timestamps."""
        return self._clock


class Component(Named, Generic[ConfigT, EventsT]):
    """A :class:`Named` component with an event publisher (``_events``) and an immutable
    configuration (``_config``)."""

    __slots__ = ()

    _events: EventsT
    _config: ConfigT

    @property
    def events(self) -> EventsT:
        """The event publisher: subscribe to the component's events here."""
        return self._events

    @property
    def config(self) -> ConfigT:
        """The configuration (an immutable record)."""
        return self._config

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, config={self._config!r})"


class LiveView(Generic[OwnerT]):
    """A read-only view of a component's state (its ``metrics``), read at access so that it
    is never stale; the subclass's properties read ``_owner``."""

    __slots__ = ("_owner",)

    _shown: ClassVar[tuple[str, ...]] = ()
    """The properties the ``repr`` shows, in order."""

    def __init__(self, owner: OwnerT) -> None:
        self._owner = owner

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._shown)
        return f"{type(self).__name__}({shown})"


class Decorating:
    """A component that decorates plain and ``async def`` functions with wrappers of its own,
    written out for each (the breaker, the bulkhead, the rate limiter: their hot paths), so
    that a call pays no extra frame. This picks the wrapper; the component builds it."""

    __slots__ = ()

    def decorate(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``fn`` (a plain or ``async def`` function): every call goes through this
        component. Also the decorator form (``@component``)."""
        if not callable(fn):
            raise TypeError(f"{type(self).__name__} can only decorate a callable, got {fn!r}")
        if inspect.iscoroutinefunction(fn):
            return cast("Callable[P, R]", self._decorate_async(fn))
        return self._decorate_sync(fn)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorator form of :meth:`decorate`."""
        return self.decorate(fn)

    def _decorate_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        raise NotImplementedError

    def _decorate_async(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        raise NotImplementedError
