"""Validation helpers for configuration objects: faulttol's own and its extensions'.

Every configuration class of faulttol (``CircuitBreakerConfig``, ``RetryConfig``...) and of
packages built on it (``faulttol_redis``'s ``DatabaseConfig``, ``MultiDbConfig`` and health
checks) checks its fields with these functions, so that a bad value is refused the same way
everywhere, at construction:

* a value of the wrong kind (a string where a number goes, a float where an int goes, a
  ``bool`` where a number goes: ``True`` is not a number here) raises
  :class:`ConfigTypeError`, which is both a ``TypeError`` and a ``ValueError``, naming the
  field and what it allows;
* a value of the right kind but out of range (negative, zero where not allowed, NaN,
  infinite, outside the allowed interval) raises ``ValueError`` naming the field and the
  allowed range.

A value of the wrong kind is shown in the message by its type only, unless it is a plain
scalar (``None``, a bool, a number, an enum member): a string, a mapping or a client given
by mistake may hold a password (:func:`describe`).

Each ``check_*`` function returns the value it accepted, normalized where that helps
(numbers as ``float``, exception lists as a tuple), so a config can validate and store in
one step::

    from faulttol.validation import check_int, check_positive

    @dataclass(frozen=True)
    class PoolConfig:
        size: int = 10
        idle_timeout: float = 30.0

        def __post_init__(self) -> None:
            check_int("size", self.size, minimum=1)
            object.__setattr__(
                self, "idle_timeout", check_positive("idle_timeout", self.idle_timeout)
            )
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any, TypeVar

from ._errors import ConfigTypeError

__all__ = [
    "ConfigTypeError",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_config",
    "check_exception_types",
    "check_host",
    "check_instance",
    "check_int",
    "check_non_negative",
    "check_number",
    "check_path",
    "check_port",
    "check_positive",
    "check_str",
    "describe",
]

T = TypeVar("T")

_NOT_IN_HOST = frozenset("/@?#") | frozenset(" \t\r\n")


def describe(value: object) -> str:
    """How a value of the wrong kind is shown in an error message.

    Plain scalars (``None``, bools, numbers, enum members) as their ``repr``; anything else by
    its type only (``"a str"``, ``"a dict"``), because it might hold a secret (a URL with a
    password, a mapping of client options...).
    """
    if value is None or isinstance(value, (bool, int, float, Enum)):
        return repr(value)
    return f"a {type(value).__name__}"


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool (not merely truthy: ``1`` and ``"yes"`` are refused)."""
    if not isinstance(value, bool):
        raise ConfigTypeError(f"{name} must be a bool, got {describe(value)}")
    return value


def check_int(
    name: str, value: object, *, minimum: int, maximum: int | None = None, unit: str = ""
) -> int:
    """``value`` if it is an int (not a bool, not a float such as ``5.0``) in range.

    The range is ``>= minimum``, or ``minimum..maximum`` (both included) when ``maximum`` is
    given; ``unit`` (e.g. ``"milliseconds"``) is added to the messages.
    """
    allowed = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
    if unit:
        allowed += f" ({unit})"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{name} must be an int {allowed}, got {describe(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_port(name: str, value: object) -> int:
    """``value`` if it is a TCP port number: an int in 1..65535."""
    return check_int(name, value, minimum=1, maximum=65535)


def _bound(value: float) -> str:
    return f"{value:g}"


def _allowed_range(
    minimum: float | None,
    maximum: float | None,
    exclusive_minimum: bool,
    exclusive_maximum: bool,
) -> str:
    if minimum is not None and maximum is not None:
        left = "(" if exclusive_minimum else "["
        right = ")" if exclusive_maximum else "]"
        return f"in {left}{_bound(minimum)}, {_bound(maximum)}{right}"
    if minimum is not None:
        return f"{'>' if exclusive_minimum else '>='} {_bound(minimum)} and finite"
    if maximum is not None:
        return f"{'<' if exclusive_maximum else '<='} {_bound(maximum)} and finite"
    return "finite"


def check_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    allowed: str | None = None,
) -> float:
    """``value`` as a float if it is a finite int or float within the bounds.

    A bool is not a number here. NaN and the infinities are always refused (a config value
    is a finite number). ``allowed`` overrides the generated description of the range
    (``">= 0 and finite"``, ``"in (0, 100]"``...) in the messages; it should say the same.
    """
    if allowed is None:
        allowed = _allowed_range(minimum, maximum, exclusive_minimum, exclusive_maximum)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigTypeError(f"{name} must be a number ({allowed}), got {describe(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float: out of any finite range
        raise ValueError(f"{name} must be {allowed}, got {value!r}") from None
    if math.isnan(number):
        raise ValueError(f"{name} must not be NaN: it must be {allowed}")
    if (
        math.isinf(number)
        or (minimum is not None and (number <= minimum if exclusive_minimum else number < minimum))
        or (maximum is not None and (number >= maximum if exclusive_maximum else number > maximum))
    ):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def check_non_negative(name: str, value: object, *, allowed: str | None = None) -> float:
    """``value`` as a float if it is a finite number >= 0 (a duration, a weight...)."""
    return check_number(name, value, minimum=0, allowed=allowed)


def check_positive(name: str, value: object, *, allowed: str | None = None) -> float:
    """``value`` as a float if it is a finite number > 0 (an interval, a timeout...)."""
    return check_number(name, value, minimum=0, exclusive_minimum=True, allowed=allowed)


def check_str(
    name: str, value: object, *, optional: bool = False, non_empty: bool = False
) -> str | None:
    """``value`` if it is a str (or ``None`` when ``optional``), non-empty if asked."""
    or_none = " or None" if optional else ""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name} must be a str{or_none}, got {describe(value)}")
    if non_empty and not value:
        raise ValueError(f"{name} must be a non-empty str{or_none}, got ''")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``choices``."""
    shown = ", ".join(choices)
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name} must be a str, one of {shown}; got {describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {shown}, got {value!r}")
    return value


def check_instance(name: str, value: object, cls: type[T], allowed: str | None = None) -> T:
    """``value`` if it is an instance of ``cls``; ``allowed`` describes it in the message
    (default ``"a <cls name>"``)."""
    if not isinstance(value, cls):
        shown = allowed if allowed is not None else f"a {cls.__name__}"
        raise ConfigTypeError(f"{name} must be {shown}, got {describe(value)}")
    return value


def check_config(name: str, value: object, cls: type[T]) -> T:
    """``value`` if it is a ``cls``, a default ``cls()`` if it is ``None`` (a component's
    ``config`` argument: every component takes an optional config object)."""
    if value is None:
        return cls()
    return check_instance(name, value, cls, f"a {cls.__name__} or None")


def check_callable(name: str, value: object, *, optional: bool = True) -> Any:
    """``value`` if it is callable (or ``None`` when ``optional``, the default)."""
    if (value is None and optional) or callable(value):
        return value
    or_none = " or None" if optional else ""
    raise ConfigTypeError(f"{name} must be a callable{or_none}, got {describe(value)}")


def check_exception_types(name: str, value: object) -> tuple[type[BaseException], ...]:
    """One exception type or an iterable of them (a tuple, a list...), as a tuple.

    A string is not taken for an iterable of anything; every item must be a subclass of
    ``BaseException``.
    """
    if isinstance(value, type):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigTypeError(
            f"{name} must be an exception type or a tuple of exception types, got {describe(value)}"
        )
    types = tuple(value)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            shown = repr(item) if isinstance(item, type) else describe(item)
            raise ConfigTypeError(f"{name} must contain only exception types, got {shown}")
    return types


def check_path(name: str, value: object, *, optional: bool = True) -> str | None:
    """``value`` as a str path if it is a non-empty str or ``os.PathLike`` (or ``None``
    when ``optional``, the default). The path need not exist."""
    or_none = " or None" if optional else ""
    if value is None and optional:
        return None
    wrong = f"{name} must be a path (a str or os.PathLike){or_none}"
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigTypeError(f"{wrong}, got {describe(value)}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise ConfigTypeError(f"{wrong}, got {describe(path)}")
    if not path:
        raise ValueError(f"{name} must be a non-empty path{or_none}, got ''")
    return path


def check_host(name: str, value: object, *, hint: str = "") -> str:
    """``value`` if it is a host name or address, never a URL.

    A URL in a host field would carry its password into every ``repr`` and log line, so
    ``://``, ``/``, ``@``, ``?``, ``#`` and white space are refused (and the value is not
    shown). ``hint`` (e.g. ``"give a redis:// URL as url=..."``) ends that message.
    """
    allowed = "a non-empty string (a host name or address)"
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name} must be {allowed}, got {describe(value)}")
    if not value:
        raise ValueError(f"{name} must be {allowed}, got ''")
    if "://" in value or _NOT_IN_HOST.intersection(value):
        raise ValueError(
            f"{name} must be a host name or address, without '://', '/', '@', '?', '#' or "
            "spaces (the value is not shown: it may hold a password)"
            + (f"; {hint}" if hint else "")
        )
    return value
