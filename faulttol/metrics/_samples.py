"""What one collection reads from each kind of component: a frozen sample per component,
taken under no lock of the exporter's, that the metric readers of ``_spec`` turn into
labelled points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..breaker import State
from ..provider import SwitchReason

__all__ = [
    "Labels",
    "Point",
    "BreakerSample",
    "RetrySample",
    "TargetSample",
    "ProviderSample",
    "RateLimiterSample",
    "HedgeSample",
    "BulkheadSample",
    "ThreadPoolBulkheadSample",
    "TimeLimiterSample",
]

Labels = dict[str, str | int]
"""Label names to values; ``index`` is an int (a string in Prometheus)."""
Point = tuple[Labels, float]
"""One labelled value of a metric."""


@dataclass(frozen=True, slots=True)
class BreakerSample:
    """One breaker at collection time.

    ``calls`` / ``slow_calls`` are cumulative counts in the order of
    :data:`BREAKER_CALL_OUTCOMES` / :data:`SLOW_CALL_OUTCOMES`; they and the window fields are
    ``None`` for a breaker without counters or metrics (a pybreaker adapter in a provider).
    """

    labels: Labels
    state: State
    calls: tuple[int, ...] | None
    slow_calls: tuple[int, ...] | None
    transitions: dict[tuple[str, str], int]
    failure_rate: float | None
    slow_call_rate: float | None
    buffered_calls: int | None
    window_successful_calls: int | None
    window_failed_calls: int | None
    window_slow_calls: int | None


@dataclass(frozen=True, slots=True)
class RetrySample:
    """One retry at collection time: cumulative retries and calls by outcome."""

    labels: Labels
    retries: int
    calls: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TargetSample:
    """One target of a provider, from ``provider.status()``."""

    labels: Labels
    healthy: bool
    active: bool
    weight: float | None
    counters: Mapping[str, int] = field(default_factory=dict)
    """The target's counters among :data:`TARGET_COUNTERS` that its status row has (a
    provider without them, e.g. a plain ``OrderedProvider``, reports 0)."""


@dataclass(frozen=True, slots=True)
class ProviderSample:
    """One provider at collection time."""

    labels: Labels
    active_index: int
    switches: dict[SwitchReason, int]
    targets: tuple[TargetSample, ...]
    failovers: dict[tuple[int, int, SwitchReason], int] = field(default_factory=dict)
    """Switches by (index left, index entered, reason): the same switches as ``switches``."""


@dataclass(frozen=True, slots=True)
class RateLimiterSample:
    """One :class:`~faulttol.RateLimiter` at collection time."""

    labels: Labels
    available_permissions: int
    number_of_waiting_threads: int


@dataclass(frozen=True, slots=True)
class HedgeSample:
    """One hedge at collection time: hedges started and wins by attempt (index 0: the
    original call), counted since registration."""

    labels: Labels
    hedges: int
    wins_by_attempt: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BulkheadSample:
    """One :class:`~faulttol.Bulkhead` at collection time."""

    labels: Labels
    available_concurrent_calls: int
    max_allowed_concurrent_calls: int


@dataclass(frozen=True, slots=True)
class ThreadPoolBulkheadSample:
    """One :class:`~faulttol.ThreadPoolBulkhead` at collection time."""

    labels: Labels
    queue_depth: int
    queue_capacity: int
    thread_pool_size: int
    core_thread_pool_size: int
    max_thread_pool_size: int


@dataclass(frozen=True, slots=True)
class TimeLimiterSample:
    """One :class:`~faulttol.TimeLimiter` at collection time: calls by kind since
    registration, in the order of :data:`TIME_LIMITER_CALL_KINDS`."""

    labels: Labels
    calls: tuple[int, ...]
