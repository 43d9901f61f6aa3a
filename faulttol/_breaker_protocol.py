"""What faulttol needs of a circuit breaker, and how other breakers are adapted to it.

:class:`Breaker` is the protocol: faulttol's :class:`~faulttol.CircuitBreaker` implements it,
and so does any adapter (``faulttol.interop.pybreaker.PyBreakerAdapter``). ``Decorators`` and
the providers accept any object that satisfies it (:func:`as_breaker`). Adapting a breaker of
another library is the adapter's job, and the core never imports the adapters: they are found
through the ``faulttol.breaker_adapters`` entry-point group (faulttol declares
``pybreaker = "faulttol.interop.pybreaker:adapt_breaker"``; other packages may declare
theirs), loaded only when an object that is not a breaker is given, or registered at run time
with :func:`register_breaker_adapter`. An adapter takes any object and returns a
:class:`Breaker` for the ones it knows, ``None`` for the others.

Public as ``faulttol.Breaker``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, cast

from ._state import State

__all__ = ["ADAPTER_ENTRY_POINTS", "Breaker", "as_breaker", "register_breaker_adapter"]

_log = logging.getLogger("faulttol.breaker")

ADAPTER_ENTRY_POINTS = "faulttol.breaker_adapters"
"""The entry-point group of breaker adapters (``name = "module:function"``)."""


class Breaker(Protocol):
    """The low-level breaker API the decorators and providers use.

    A call takes a permit with :meth:`try_acquire_permission` (False: rejected), runs, and
    reports its outcome with :meth:`on_result` or :meth:`on_error` (durations in seconds).
    ``decorate(fn)`` wraps a function; the transitions are what a provider applies when it
    switches. Optional extras a provider uses when present: ``is_call_permitted()`` (admission
    without taking a permit), ``release_permission()`` (give a permit back uncounted),
    ``metrics``.
    """

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> State: ...

    def try_acquire_permission(self) -> bool: ...

    def on_result(self, duration: float, result: object) -> None: ...

    def on_error(self, duration: float, exc: BaseException) -> None: ...

    def decorate(self, fn: Callable[..., Any]) -> Callable[..., Any]: ...

    def transition_to_open_state(self) -> None: ...

    def transition_to_closed_state(self) -> None: ...

    def transition_to_half_open_state(self) -> None: ...


_MEMBERS = (
    "name", "state", "try_acquire_permission", "on_result", "on_error", "decorate",
    "transition_to_open_state", "transition_to_closed_state", "transition_to_half_open_state",
)


def _satisfies(obj: object) -> bool:
    """Whether ``obj`` has every member of :class:`Breaker`, looked up without reading any
    (a breaker's ``state`` applies due transitions when read: no side effect here)."""
    cls = type(obj)
    own = getattr(obj, "__dict__", {})
    return all(hasattr(cls, member) or member in own for member in _MEMBERS)


Adapter = Callable[[object], "Breaker | None"]

_ADAPTERS: list[Adapter] = []
_ADAPTERS_LOCK = threading.Lock()
_discovered: tuple[Adapter, ...] | None = None


def register_breaker_adapter(adapter: Adapter) -> None:
    """Teach faulttol another kind of breaker at run time (entry points are the declarative
    way): ``adapter(obj)`` returns a :class:`Breaker` for the objects it knows, ``None`` for
    the others. Idempotent per adapter."""
    with _ADAPTERS_LOCK:
        if adapter not in _ADAPTERS:
            _ADAPTERS.append(adapter)


def _installed_adapters() -> tuple[Adapter, ...]:
    """The adapters of the ``faulttol.breaker_adapters`` entry points, loaded once."""
    global _discovered
    with _ADAPTERS_LOCK:
        if _discovered is None:
            from importlib.metadata import entry_points

            found: list[Adapter] = []
            for point in entry_points(group=ADAPTER_ENTRY_POINTS):
                try:
                    found.append(point.load())
                except Exception:  # a broken plugin must not break the others
                    _log.warning("breaker adapter %r could not be loaded", point.value,
                                 exc_info=True)
            _discovered = tuple(found)
        return (*_ADAPTERS, *_discovered)


def as_breaker(obj: object, what: str = "breaker") -> Breaker:
    """``obj`` if it satisfies :class:`Breaker`, else what an adapter makes of it;
    ``TypeError`` naming ``what`` otherwise."""
    if _satisfies(obj):
        return cast(Breaker, obj)
    for adapter in _installed_adapters():
        adapted = adapter(obj)
        if adapted is not None:
            return adapted
    raise TypeError(
        f"{what} must be a faulttol CircuitBreaker or an object with its breaker API "
        "(faulttol.Breaker), or a breaker an installed adapter knows (a pybreaker."
        "CircuitBreaker: faulttol.interop.pybreaker); got "
        f"{type(obj).__name__}"
    )
