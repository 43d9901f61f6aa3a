"""Exporter-independent metric definitions: what is exported, how it is read, what it is called.

Both exporters (:mod:`faulttol.metrics.prometheus`, :mod:`faulttol.metrics.opentelemetry`) are
thin views of one :class:`MetricsCollector`:

* **counters** count from registration on. A breaker's calls by outcome and slow calls are
  read from its own cumulative ``breaker.counters`` at collection time, minus a baseline
  taken at registration: subscribing to its per-call events instead would cost every call
  an event object and turn off its lock-free success path. State transitions (rare), retries
  and switches are counted here, fed by the components' events and switch listeners;
* **gauges** (state, rates, window counts, active index, health) are read from the components
  when an exporter collects, so a scrape always shows the state of that moment.

:data:`METRICS` is the one table of exported metrics: each :class:`MetricSpec` has its stable
Prometheus name, its OpenTelemetry instrument name, its kind, unit, description and a reader
that turns one sample into labelled points. The exporters only translate that table.

Nothing here imports ``prometheus_client`` or ``opentelemetry``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from ..breaker import State
from ..provider import SwitchReason
from . import _samples
from ._counting import _REASONS, RETRY_CALL_OUTCOMES, state_label
from ._samples import *  # noqa: F403 - the samples, re-exported
from ._samples import (
    BreakerSample,
    HedgeSample,
    Labels,
    Point,
    ProviderSample,
    RetrySample,
    TimeLimiterSample,
)

__all__ = [
    "BREAKER_CALL_OUTCOMES",
    "METRICS",
    "TARGET_COUNTERS",
    "RETRY_CALL_OUTCOMES",
    "SLOW_CALL_OUTCOMES",
    "TIME_LIMITER_CALL_KINDS",
    "MetricKind",
    "MetricSpec",
    "Source",
    "state_label",
    "switch_reason_label",
]
__all__ += _samples.__all__  # the samples, re-exported


BREAKER_CALL_OUTCOMES: Final = ("successful", "failed", "ignored", "not_permitted")
"""``outcome`` values of ``faulttol_circuit_breaker_calls_total``."""
SLOW_CALL_OUTCOMES: Final = ("successful", "failed")
TIME_LIMITER_CALL_KINDS: Final = ("successful", "failed", "timeout")
"""``kind`` values of ``resilience4j_timelimiter_calls_total`` (resilience4j's)."""


def switch_reason_label(reason: SwitchReason) -> str:
    """The ``reason`` label value of a switch: ``"circuit_breaker"``, ``"manual"``..."""
    return reason.value.lower()


class Source(enum.Enum):
    """Which kind of sample a metric is read from."""

    BREAKER = "breaker"
    RETRY = "retry"
    PROVIDER = "provider"
    HEDGE = "hedge"
    BULKHEAD = "bulkhead"
    THREAD_POOL_BULKHEAD = "thread_pool_bulkhead"
    TIME_LIMITER = "time_limiter"
    RATE_LIMITER = "rate_limiter"


class MetricKind(enum.Enum):
    """Counter (cumulative, only goes up) or gauge (a value read at collection time)."""

    COUNTER = "counter"
    GAUGE = "gauge"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric: its names, kind, unit, labels, meaning and reader.

    ``prometheus_name`` is the name as scraped (counters end in ``_total``);
    ``otel_name`` the OpenTelemetry instrument name; ``labels`` lists the labels every point
    has (breaker and retry points of a provider's targets also carry ``provider``, ``index``
    and ``target``, resp. ``provider``); ``read`` turns one sample of ``source`` into points.
    """

    prometheus_name: str
    otel_name: str
    kind: MetricKind
    unit: str
    labels: tuple[str, ...]
    description: str
    source: Source
    read: Callable[[Any], Iterator[Point]]


# --- readers -------------------------------------------------------------------------------


def _with(labels: Labels, key: str, value: str) -> Labels:
    out = dict(labels)
    out[key] = value
    return out


def _read_state(s: BreakerSample) -> Iterator[Point]:
    for state in State:
        yield _with(s.labels, "state", state_label(state)), 1.0 if state is s.state else 0.0


def _read_calls(s: BreakerSample) -> Iterator[Point]:
    if s.calls is not None:
        for outcome, n in zip(BREAKER_CALL_OUTCOMES, s.calls, strict=True):
            yield _with(s.labels, "outcome", outcome), float(n)


def _read_slow_calls(s: BreakerSample) -> Iterator[Point]:
    if s.slow_calls is not None:
        for outcome, n in zip(SLOW_CALL_OUTCOMES, s.slow_calls, strict=True):
            yield _with(s.labels, "outcome", outcome), float(n)


def _read_transitions(s: BreakerSample) -> Iterator[Point]:
    for (from_state, to_state), n in sorted(s.transitions.items()):
        labels = _with(s.labels, "from_state", from_state)
        labels["to_state"] = to_state
        yield labels, float(n)


def _breaker_field(field: str) -> Callable[[BreakerSample], Iterator[Point]]:
    def read(s: BreakerSample) -> Iterator[Point]:
        value = getattr(s, field)
        if value is not None:
            yield dict(s.labels), float(value)

    return read


def _read_window_calls(s: BreakerSample) -> Iterator[Point]:
    if s.window_successful_calls is not None and s.window_failed_calls is not None:
        yield _with(s.labels, "outcome", "successful"), float(s.window_successful_calls)
        yield _with(s.labels, "outcome", "failed"), float(s.window_failed_calls)


def _read_retries(s: RetrySample) -> Iterator[Point]:
    yield dict(s.labels), float(s.retries)


def _read_retry_calls(s: RetrySample) -> Iterator[Point]:
    for outcome, n in zip(RETRY_CALL_OUTCOMES, s.calls, strict=True):
        yield _with(s.labels, "outcome", outcome), float(n)


def _read_switches(s: ProviderSample) -> Iterator[Point]:
    for reason in _REASONS:
        yield _with(s.labels, "reason", switch_reason_label(reason)), float(s.switches[reason])


def _read_failovers(s: ProviderSample) -> Iterator[Point]:
    for (fail_from, fail_to, reason), n in sorted(
        s.failovers.items(), key=lambda item: (item[0][0], item[0][1], item[0][2].value)
    ):
        labels: Labels = dict(s.labels)
        labels["fail_from"] = fail_from
        labels["fail_to"] = fail_to
        labels["reason"] = switch_reason_label(reason)
        yield labels, float(n)


def _read_active_index(s: ProviderSample) -> Iterator[Point]:
    yield dict(s.labels), float(s.active_index)


def _read_healthy(s: ProviderSample) -> Iterator[Point]:
    for t in s.targets:
        yield dict(t.labels), 1.0 if t.healthy else 0.0


def _read_active(s: ProviderSample) -> Iterator[Point]:
    for t in s.targets:
        yield dict(t.labels), 1.0 if t.active else 0.0


def _read_weight(s: ProviderSample) -> Iterator[Point]:
    for t in s.targets:
        if t.weight is not None:
            yield dict(t.labels), t.weight


TARGET_COUNTERS: Final = ("hang_detections", "hedges_sent", "hedge_wins")
"""Integer counters a provider's ``status()`` rows may carry per target (the Redis providers
do), exported as ``faulttol_provider_target_<name>_total``."""


def _target_counter(name: str) -> Callable[[ProviderSample], Iterator[Point]]:
    def read(s: ProviderSample) -> Iterator[Point]:
        for t in s.targets:
            yield dict(t.labels), float(t.counters.get(name, 0))

    return read


def _read_hedges(s: HedgeSample) -> Iterator[Point]:
    yield dict(s.labels), float(s.hedges)


def _read_hedge_wins(s: HedgeSample) -> Iterator[Point]:
    for attempt, n in enumerate(s.wins_by_attempt):
        labels: Labels = dict(s.labels)
        labels["attempt"] = attempt
        yield labels, float(n)


def _sample_field(field: str) -> Callable[[Any], Iterator[Point]]:
    def read(s: Any) -> Iterator[Point]:
        yield dict(s.labels), float(getattr(s, field))

    return read


def _read_time_limiter_calls(s: TimeLimiterSample) -> Iterator[Point]:
    for kind, n in zip(TIME_LIMITER_CALL_KINDS, s.calls, strict=True):
        yield _with(s.labels, "kind", kind), float(n)


_B: Final = ("name",)
_P: Final = ("provider",)
_T: Final = ("provider", "index", "target")

METRICS: Final[tuple[MetricSpec, ...]] = (
    MetricSpec(
        "faulttol_circuit_breaker_state",
        "faulttol.circuit_breaker.state",
        MetricKind.GAUGE,
        "",
        (*_B, "state"),
        "1 for the breaker's current state, 0 for each other state.",
        Source.BREAKER,
        _read_state,
    ),
    MetricSpec(
        "faulttol_circuit_breaker_calls_total",
        "faulttol.circuit_breaker.calls",
        MetricKind.COUNTER,
        "{call}",
        (*_B, "outcome"),
        "Calls by outcome: successful, failed, ignored (not counted by the breaker), "
        "not_permitted (rejected).",
        Source.BREAKER,
        _read_calls,
    ),
    MetricSpec(
        "faulttol_circuit_breaker_slow_calls_total",
        "faulttol.circuit_breaker.slow_calls",
        MetricKind.COUNTER,
        "{call}",
        (*_B, "outcome"),
        "Calls slower than slow_call_duration_threshold, by outcome (successful, failed).",
        Source.BREAKER,
        _read_slow_calls,
    ),
    MetricSpec(
        "faulttol_circuit_breaker_state_transitions_total",
        "faulttol.circuit_breaker.state_transitions",
        MetricKind.COUNTER,
        "{transition}",
        (*_B, "from_state", "to_state"),
        "State transitions, by the states left and entered.",
        Source.BREAKER,
        _read_transitions,
    ),
    MetricSpec(
        "faulttol_circuit_breaker_failure_rate_percent",
        "faulttol.circuit_breaker.failure_rate",
        MetricKind.GAUGE,
        "%",
        _B,
        "Failure rate of the current window in percent; -1 until the window holds the "
        "minimum number of calls.",
        Source.BREAKER,
        _breaker_field("failure_rate"),
    ),
    MetricSpec(
        "faulttol_circuit_breaker_slow_call_rate_percent",
        "faulttol.circuit_breaker.slow_call_rate",
        MetricKind.GAUGE,
        "%",
        _B,
        "Slow-call rate of the current window in percent; -1 until the window holds the "
        "minimum number of calls.",
        Source.BREAKER,
        _breaker_field("slow_call_rate"),
    ),
    MetricSpec(
        "faulttol_circuit_breaker_buffered_calls",
        "faulttol.circuit_breaker.buffered_calls",
        MetricKind.GAUGE,
        "{call}",
        _B,
        "Calls recorded in the current window.",
        Source.BREAKER,
        _breaker_field("buffered_calls"),
    ),
    MetricSpec(
        "faulttol_circuit_breaker_window_calls",
        "faulttol.circuit_breaker.window_calls",
        MetricKind.GAUGE,
        "{call}",
        (*_B, "outcome"),
        "Calls recorded in the current window, by outcome (successful, failed).",
        Source.BREAKER,
        _read_window_calls,
    ),
    MetricSpec(
        "faulttol_circuit_breaker_window_slow_calls",
        "faulttol.circuit_breaker.window_slow_calls",
        MetricKind.GAUGE,
        "{call}",
        _B,
        "Slow calls recorded in the current window.",
        Source.BREAKER,
        _breaker_field("window_slow_calls"),
    ),
    MetricSpec(
        "faulttol_retry_retries_total",
        "faulttol.retry.retries",
        MetricKind.COUNTER,
        "{retry}",
        _B,
        "Retries: attempts made after a failed attempt.",
        Source.RETRY,
        _read_retries,
    ),
    MetricSpec(
        "faulttol_retry_calls_total",
        "faulttol.retry.calls",
        MetricKind.COUNTER,
        "{call}",
        (*_B, "outcome"),
        "Calls that needed the retry, by outcome: successful_after_retry, "
        "failed_after_max_attempts, ignored (an exception that is not retried).",
        Source.RETRY,
        _read_retry_calls,
    ),
    MetricSpec(
        "faulttol_provider_switches_total",
        "faulttol.provider.switches",
        MetricKind.COUNTER,
        "{switch}",
        (*_P, "reason"),
        "Switches of the active target, by reason: circuit_breaker, health_check, "
        "failback, manual.",
        Source.PROVIDER,
        _read_switches,
    ),
    # redis-py's OpenTelemetry name for its multi-database client's switches, so a
    # dashboard built for redis-py's MultiDBClient shows faulttol's providers too.
    MetricSpec(
        "faulttol_provider_failovers_total",
        "redis.client.geofailover.failovers",
        MetricKind.COUNTER,
        "{geofailover}",
        (*_P, "fail_from", "fail_to", "reason"),
        "Switches of the active target, by the 1-based indices left (fail_from) and entered "
        "(fail_to) and the reason; a series appears with the first switch of its kind.",
        Source.PROVIDER,
        _read_failovers,
    ),
    MetricSpec(
        "faulttol_provider_active_index",
        "faulttol.provider.active_index",
        MetricKind.GAUGE,
        "",
        _P,
        "1-based index of the active target.",
        Source.PROVIDER,
        _read_active_index,
    ),
    MetricSpec(
        "faulttol_provider_target_healthy",
        "faulttol.provider.target.healthy",
        MetricKind.GAUGE,
        "",
        _T,
        "1 unless the target's last health check failed (1 before the first check).",
        Source.PROVIDER,
        _read_healthy,
    ),
    MetricSpec(
        "faulttol_provider_target_active",
        "faulttol.provider.target.active",
        MetricKind.GAUGE,
        "",
        _T,
        "1 for the active target, 0 for the others.",
        Source.PROVIDER,
        _read_active,
    ),
    MetricSpec(
        "faulttol_provider_target_weight",
        "faulttol.provider.target.weight",
        MetricKind.GAUGE,
        "",
        _T,
        "The target's weight (used by the weighted strategy).",
        Source.PROVIDER,
        _read_weight,
    ),
    MetricSpec(
        "faulttol_provider_target_hang_detections_total",
        "faulttol.provider.target.hang_detections",
        MetricKind.COUNTER,
        "{detection}",
        _T,
        "Times the target was found hung (a command waited, then a probe got no answer).",
        Source.PROVIDER,
        _target_counter("hang_detections"),
    ),
    MetricSpec(
        "faulttol_provider_target_hedges_sent_total",
        "faulttol.provider.target.hedges_sent",
        MetricKind.COUNTER,
        "{hedge}",
        _T,
        "Hedged reads sent to the target.",
        Source.PROVIDER,
        _target_counter("hedges_sent"),
    ),
    MetricSpec(
        "faulttol_provider_target_hedge_wins_total",
        "faulttol.provider.target.hedge_wins",
        MetricKind.COUNTER,
        "{hedge}",
        _T,
        "Hedged reads sent to the target that answered first.",
        Source.PROVIDER,
        _target_counter("hedge_wins"),
    ),
    MetricSpec(
        "faulttol_hedge_hedges_total",
        "faulttol.hedge.hedges",
        MetricKind.COUNTER,
        "{hedge}",
        _B,
        "Hedges started: attempts made besides the original calls.",
        Source.HEDGE,
        _read_hedges,
    ),
    MetricSpec(
        "faulttol_hedge_wins_total",
        "faulttol.hedge.wins",
        MetricKind.COUNTER,
        "{call}",
        (*_B, "attempt"),
        "Successful hedged calls, by the attempt that won: 0 for the original call, n for hedge n.",
        Source.HEDGE,
        _read_hedge_wins,
    ),
    # resilience4j's names (micrometer's, dotted, for OpenTelemetry; underscored for
    # Prometheus), so dashboards built for resilience4j work unchanged.
    MetricSpec(
        "resilience4j_bulkhead_available_concurrent_calls",
        "resilience4j.bulkhead.available.concurrent.calls",
        MetricKind.GAUGE,
        "{call}",
        _B,
        "Free slots of the bulkhead: calls it would admit now without waiting.",
        Source.BULKHEAD,
        _sample_field("available_concurrent_calls"),
    ),
    MetricSpec(
        "resilience4j_bulkhead_max_allowed_concurrent_calls",
        "resilience4j.bulkhead.max.allowed.concurrent.calls",
        MetricKind.GAUGE,
        "{call}",
        _B,
        "The bulkhead's max_concurrent_calls.",
        Source.BULKHEAD,
        _sample_field("max_allowed_concurrent_calls"),
    ),
    MetricSpec(
        "resilience4j_thread_pool_bulkhead_queue_depth",
        "resilience4j.thread_pool_bulkhead.queue.depth",
        MetricKind.GAUGE,
        "{call}",
        _B,
        "Calls waiting in the thread-pool bulkhead's queue.",
        Source.THREAD_POOL_BULKHEAD,
        _sample_field("queue_depth"),
    ),
    MetricSpec(
        "resilience4j_thread_pool_bulkhead_queue_capacity",
        "resilience4j.thread_pool_bulkhead.queue.capacity",
        MetricKind.GAUGE,
        "{call}",
        _B,
        "The thread-pool bulkhead's queue_capacity.",
        Source.THREAD_POOL_BULKHEAD,
        _sample_field("queue_capacity"),
    ),
    MetricSpec(
        "resilience4j_thread_pool_bulkhead_thread_pool_size",
        "resilience4j.thread_pool_bulkhead.thread.pool.size",
        MetricKind.GAUGE,
        "{thread}",
        _B,
        "Threads of the thread-pool bulkhead alive now (busy or idle).",
        Source.THREAD_POOL_BULKHEAD,
        _sample_field("thread_pool_size"),
    ),
    MetricSpec(
        "resilience4j_thread_pool_bulkhead_core_thread_pool_size",
        "resilience4j.thread_pool_bulkhead.core.thread.pool.size",
        MetricKind.GAUGE,
        "{thread}",
        _B,
        "The thread-pool bulkhead's core_thread_pool_size.",
        Source.THREAD_POOL_BULKHEAD,
        _sample_field("core_thread_pool_size"),
    ),
    MetricSpec(
        "resilience4j_thread_pool_bulkhead_max_thread_pool_size",
        "resilience4j.thread_pool_bulkhead.max.thread.pool.size",
        MetricKind.GAUGE,
        "{thread}",
        _B,
        "The thread-pool bulkhead's max_thread_pool_size.",
        Source.THREAD_POOL_BULKHEAD,
        _sample_field("max_thread_pool_size"),
    ),
    MetricSpec(
        "resilience4j_timelimiter_calls_total",
        "resilience4j.timelimiter.calls",
        MetricKind.COUNTER,
        "{call}",
        (*_B, "kind"),
        "Calls through the time limiter by kind: successful, failed (raised within the "
        "deadline), timeout.",
        Source.TIME_LIMITER,
        _read_time_limiter_calls,
    ),
    MetricSpec(
        "resilience4j_ratelimiter_available_permissions",
        "resilience4j.ratelimiter.available.permissions",
        MetricKind.GAUGE,
        "{permission}",
        _B,
        "Permissions left in the rate limiter's current cycle; negative while permissions of "
        "later cycles are reserved by waiting callers.",
        Source.RATE_LIMITER,
        _sample_field("available_permissions"),
    ),
    MetricSpec(
        "resilience4j_ratelimiter_waiting_threads",
        "resilience4j.ratelimiter.waiting_threads",
        MetricKind.GAUGE,
        "{thread}",
        _B,
        "Callers (threads and asyncio tasks) waiting for a reserved permission.",
        Source.RATE_LIMITER,
        _sample_field("number_of_waiting_threads"),
    ),
)
