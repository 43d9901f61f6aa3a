"""The public types of the failover providers, re-exported by :mod:`faulttol.provider` and
:mod:`faulttol`: why a switch happened and its event, the "no eligible target" errors, a
target's slot and status row, and the state the success path of a call reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar

from ._state import State

__all__ = [
    "ActiveState",
    "NoValidTargetError",
    "Slot",
    "SwitchEvent",
    "SwitchReason",
    "TargetStatus",
    "TemporaryUnavailableError",
    "default_unavailable_error",
]

T = TypeVar("T")


class SwitchReason(enum.Enum):
    """Why the active target changed."""

    CIRCUIT_BREAKER = "CIRCUIT_BREAKER"
    HEALTH_CHECK = "HEALTH_CHECK"
    FAILBACK = "FAILBACK"
    MANUAL = "MANUAL"


@dataclass(frozen=True, slots=True)
class SwitchEvent:
    """The active target moved from ``previous_index`` to ``index`` (both 1-based)."""

    previous_index: int
    index: int
    reason: SwitchReason


class TemporaryUnavailableError(Exception):
    """No target is eligible, for less than ``failover_attempts`` x ``failover_delay`` so far:
    wait and retry. A sibling of :class:`NoValidTargetError` (neither subclasses the other)."""


class NoValidTargetError(Exception):
    """No target has been eligible for ``failover_attempts`` x ``failover_delay`` or longer:
    give up (until a target is eligible again)."""


def default_unavailable_error(permanent: bool, message: str) -> Exception:
    """The provider's default "no eligible target" errors."""
    if permanent:
        return NoValidTargetError(message)
    return TemporaryUnavailableError(message)


class TargetStatus(TypedDict):
    """One row of ``provider.status()``: a target as the provider sees it now."""

    index: int
    """1-based position."""
    name: str
    weight: float
    healthy: bool
    """Whether its last health check (or probe) passed; True before the first."""
    breaker_state: State
    breaker_metrics: Any
    """The breaker's ``metrics`` (``None`` for a breaker without them)."""
    active: bool


class Slot(Generic[T]):
    """One target with its breaker, weight, name and last known health.

    Read by callers that run the success path of a call themselves (see
    :attr:`faulttol.OrderedProvider.active_state`): ``target``, ``breaker`` and ``healthy``
    (``None`` before its first check, then the last result; only ``False`` keeps calls away).
    The provider owns every field: do not assign them. ``health_epoch`` counts the manual
    switches to this target: a health-check result computed across one is stale and dropped.
    """

    __slots__ = ("breaker", "health_epoch", "healthy", "healthy_since", "name", "target",
                 "weight")

    def __init__(self, target: T, breaker: Any, weight: float, name: str) -> None:
        self.target = target
        self.breaker = breaker
        self.weight = weight
        self.name = name
        self.healthy: bool | None = None
        self.healthy_since: float | None = None
        self.health_epoch = 0

    def __repr__(self) -> str:
        return f"Slot({self.name!r}, healthy={self.healthy!r})"


class ActiveState(Generic[T]):
    """What the success path of a call reads, in one object whose attributes are current.

    ``slot`` is the active :class:`Slot`, ``closed`` whether the provider was closed. A caller
    that inlines the success path keeps this object and reads both on every call — two
    attribute reads — then takes the breaker's permit and runs the call itself; on any failure
    it hands over to the provider's ``recover()``. Read-only for everyone but the provider.
    """

    __slots__ = ("closed", "slot")

    def __init__(self, slot: Slot[T]) -> None:
        self.slot = slot
        self.closed = False
