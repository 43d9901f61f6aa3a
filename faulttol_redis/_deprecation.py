"""The 0.1.0 provider API kept working with a ``DeprecationWarning`` (see the CHANGELOG):
the warning, and what the deprecated ``execute_with`` methods pass on to the generic
provider. Both Redis providers use it; nothing else in the library does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["MayReplayOrNone", "call_args", "deprecated"]


def deprecated(old: str, new: str) -> None:
    """Warn that ``FailoverProvider.<old>`` is deprecated, saying what to use (``new``), at
    the line that called the deprecated member."""
    warnings.warn(f"FailoverProvider.{old} is deprecated: {new}", DeprecationWarning,
                  stacklevel=3)


MayReplayOrNone = Callable[[BaseException, tuple[Any, ...]], bool] | None
"""The ``may_replay`` argument of the deprecated ``execute_with`` methods (None: the
generic provider's default)."""


def call_args(args: tuple[Any, ...], kwargs: dict[str, Any] | None,
              may_replay: MayReplayOrNone) -> tuple[Any, ...]:
    """What a deprecated ``execute_with`` passes on to the generic provider's after ``fn``
    (``may_replay`` only when given, so that the generic default applies)."""
    return (args, kwargs) if may_replay is None else (args, kwargs, may_replay)
