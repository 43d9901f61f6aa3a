"""What faulttol needs of a circuit breaker, and how other breakers are adapted to it.

:class:`Breaker` is the protocol: faulttol's :class:`~faulttol.CircuitBreaker` implements it,
and so does any adapter (``faulttol.interop.pybreaker.PyBreakerAdapter``). ``Decorators`` and
the providers accept any object that satisfies it (:func:`as_breaker`). Adapting a breaker of
another library is the adapter's job: an interop module registers a converter with
:func:`register_breaker_adapter` when it is imported (``faulttol.interop.pybreaker`` does), so
the core never imports the interop modules — importing the adapter is what makes, e.g., a
``pybreaker.CircuitBreaker`` acceptable where a breaker goes.

Public as ``faulttol.Breaker``; :func:`register_breaker_adapter` from
:mod:`faulttol.breaker`'s neighbours is for interop modules.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, cast

from ._state import State

__all__ = ["Breaker", "as_breaker", "register_breaker_adapter"]


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


_ADAPTERS: list[Callable[[object], Breaker | None]] = []
_ADAPTERS_LOCK = threading.Lock()


def register_breaker_adapter(adapter: Callable[[object], Breaker | None]) -> None:
    """Teach faulttol another kind of breaker: ``adapter(obj)`` returns a :class:`Breaker`
    for the objects it knows, ``None`` for the others. Idempotent per adapter."""
    with _ADAPTERS_LOCK:
        if adapter not in _ADAPTERS:
            _ADAPTERS.append(adapter)


def as_breaker(obj: object, what: str = "breaker") -> Breaker:
    """``obj`` if it satisfies :class:`Breaker`, else what a registered adapter makes of it;
    ``TypeError`` naming ``what`` otherwise."""
    if _satisfies(obj):
        return cast(Breaker, obj)
    for adapter in tuple(_ADAPTERS):
        adapted = adapter(obj)
        if adapted is not None:
            return adapted
    raise TypeError(
        f"{what} must be a faulttol CircuitBreaker or an object with its breaker API "
        "(faulttol.Breaker); to use a pybreaker.CircuitBreaker, import "
        "faulttol.interop.pybreaker (or wrap it: PyBreakerAdapter(breaker)); "
        f"got {type(obj).__name__}"
    )
