"""What every named resilience component exposes: its name, clock, events and configuration.

The bulkheads, the rate limiter, the retry, the time limiter, the hedge and the chaos
strategies each have a name (in their events, errors and metrics), a clock (for waits and
event timestamps) and an event publisher, and all but the chaos strategies an immutable
configuration. The read-only properties, the ``repr`` and the checks made on construction are
written here once; each component keeps its own data in its own slots.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ._clock import Clock, resolve_clock
from .validation import check_config, check_str

__all__ = ["Component", "Named", "checked_name_and_clock", "checked_setup"]

ConfigT = TypeVar("ConfigT")
EventsT = TypeVar("EventsT")


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


class Named(Generic[EventsT]):
    """A component with a name, a clock and an event publisher (``_name``, ``_clock`` and
    ``_events``, slots of the subclass, set with :func:`checked_name_and_clock`)."""

    __slots__ = ()

    _name: str
    _clock: Clock
    _events: EventsT

    @property
    def name(self) -> str:
        """The component's name (used in its events, errors and metrics)."""
        return self._name

    @property
    def clock(self) -> Clock:
        """The clock used for waits and event timestamps."""
        return self._clock

    @property
    def events(self) -> EventsT:
        """The event publisher: subscribe to the component's events here."""
        return self._events


class Component(Named[EventsT], Generic[ConfigT, EventsT]):
    """A :class:`Named` component with an immutable configuration (``_config``)."""

    __slots__ = ()

    _config: ConfigT

    @property
    def config(self) -> ConfigT:
        """The configuration (an immutable record)."""
        return self._config

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, config={self._config!r})"
