"""The exporter-independent :class:`MetricsCollector` and the :class:`MetricsExporter` base.

Both exporters (:mod:`faulttol.metrics.prometheus`, :mod:`faulttol.metrics.opentelemetry`) are
thin views of one collector; the metrics themselves are defined in :mod:`._spec` (the table
:data:`METRICS`), and what is counted from events in :mod:`._counting`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..breaker import CircuitBreaker, State
from ..bulkhead import Bulkhead, ThreadPoolBulkhead
from ..hedge import Hedge
from ..ratelimiter import RateLimiter
from ..retry import Retry
from ..timelimiter import TimeLimiter
from ._counting import ProviderLike, _BreakerCounts, _HedgeCounts, _RetryCounts, _SwitchCounts
from ._spec import (
    METRICS,
    TARGET_COUNTERS,
    BreakerSample,
    BulkheadSample,
    HedgeSample,
    Labels,
    MetricKind,
    MetricSpec,
    Point,
    ProviderSample,
    RateLimiterSample,
    RetrySample,
    Source,
    TargetSample,
    ThreadPoolBulkheadSample,
    TimeLimiterSample,
)

__all__ = ["METRICS", "MetricKind", "MetricSpec", "MetricsCollector", "MetricsExporter",
           "ProviderLike", "Source"]




# --- the collector -------------------------------------------------------------------------


@dataclass(slots=True)
class _BreakerEntry:
    breaker: Any
    counts: _BreakerCounts


class _ProviderEntry:
    """A registered provider: its switch counts and its targets' breaker counts.

    Targets may be added and removed at runtime: a breaker seen for the first time is
    subscribed to (its counters start then), and a removed target's entry is dropped.
    """

    __slots__ = ("label", "lock", "provider", "retry", "switches", "targets")

    def __init__(self, provider: ProviderLike, label: str) -> None:
        self.provider = provider
        self.label = label
        self.lock = threading.Lock()
        self.targets: dict[int, _BreakerEntry] = {}
        self.switches = _SwitchCounts(provider)
        retry = getattr(provider, "retry", None)
        self.retry: tuple[Retry, _RetryCounts] | None = (
            (retry, _RetryCounts(retry)) if isinstance(retry, Retry) else None
        )
        for index in range(1, len(provider) + 1):
            self.entry_for(provider.breaker(index))

    def entry_for(self, breaker: Any) -> _BreakerEntry:
        with self.lock:
            entry = self.targets.get(id(breaker))
            if entry is None or entry.breaker is not breaker:
                entry = _BreakerEntry(breaker, _BreakerCounts(breaker))
                self.targets[id(breaker)] = entry
            return entry

    def prune(self) -> None:
        """Forget the breakers of removed targets.

        Reads the provider afresh (not the rows of this collection), so a target added by
        another thread meanwhile keeps its counts.
        """
        provider = self.provider
        try:
            alive = {id(provider.breaker(i)) for i in range(1, len(provider) + 1)}
        except ValueError:
            return  # a target was removed meanwhile: prune at the next collection
        with self.lock:
            for key in [k for k in self.targets if k not in alive]:
                del self.targets[key]

    def target_rows(self) -> list[tuple[Mapping[str, Any], Any]]:
        """``(status row, breaker)`` per target; a target removed meanwhile is skipped."""
        rows: list[tuple[Mapping[str, Any], Any]] = []
        for row in self.provider.status():
            try:
                rows.append((row, self.provider.breaker(int(row["index"]))))
            except ValueError:
                continue
        return rows


def _read_breaker(breaker: Any, counts: _BreakerCounts, labels: Labels) -> BreakerSample:
    state: State = breaker.state  # first: applies any transition that time has made due
    calls, slow, transitions = counts.read()
    m = getattr(breaker, "metrics", None)
    if m is None:
        return BreakerSample(labels, state, calls, slow, transitions, *(None,) * 6)
    return BreakerSample(
        labels,
        state,
        calls,
        slow,
        transitions,
        failure_rate=float(m.failure_rate),
        slow_call_rate=float(m.slow_call_rate),
        buffered_calls=int(m.number_of_buffered_calls),
        window_successful_calls=int(m.number_of_successful_calls),
        window_failed_calls=int(m.number_of_failed_calls),
        window_slow_calls=int(m.number_of_slow_calls),
    )


def _read_retry(counts: _RetryCounts, labels: Labels) -> RetrySample:
    retries, calls = counts.read()
    return RetrySample(labels, retries, calls)


class MetricsCollector:
    """Registered components, their counts since registration, and samples on demand.

    Thread-safe: registration and collection may run concurrently with calls and with each
    other. Registering the same object twice is a no-op; registering a different object
    under a name already taken raises :class:`ValueError` (it would export duplicate series).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, _BreakerEntry] = {}
        self._retries: dict[str, tuple[Retry, _RetryCounts]] = {}
        self._providers: dict[str, _ProviderEntry] = {}
        self._hedges: dict[str, tuple[Hedge, _HedgeCounts]] = {}
        self._bulkheads: dict[str, Bulkhead] = {}
        self._thread_pool_bulkheads: dict[str, ThreadPoolBulkhead] = {}
        # A limiter's own cumulative counts at registration: exported counts start there.
        self._time_limiters: dict[str, tuple[TimeLimiter, tuple[int, int, int]]] = {}
        self._rate_limiters: dict[str, RateLimiter] = {}

    def register_circuit_breaker(self, breaker: CircuitBreaker, *, name: str | None = None) -> None:
        """Export ``breaker`` with the label ``name`` (default: ``breaker.name``)."""
        label = breaker.name if name is None else name
        with self._lock:
            existing = self._breakers.get(label)
            if existing is not None:
                _check_same("circuit breaker", label, existing.breaker, breaker)
                return
            self._breakers[label] = _BreakerEntry(breaker, _BreakerCounts(breaker))

    def register_retry(self, retry: Retry, *, name: str | None = None) -> None:
        """Export ``retry`` with the label ``name`` (default: ``retry.name``)."""
        label = retry.name if name is None else name
        with self._lock:
            existing = self._retries.get(label)
            if existing is not None:
                _check_same("retry", label, existing[0], retry)
                return
            self._retries[label] = (retry, _RetryCounts(retry))

    def register_provider(self, provider: ProviderLike, *, name: str | None = None) -> None:
        """Export ``provider``, its targets' breakers and its retry, labelled ``provider=name``.

        ``name`` defaults to ``provider.name`` (``"provider"`` for an ``OrderedProvider``
        built without a name, ``"faulttol-redis"`` for a ``FailoverProvider``): give each of
        several providers its own.
        """
        label = str(getattr(provider, "name", "provider")) if name is None else name
        with self._lock:
            existing = self._providers.get(label)
            if existing is not None:
                _check_same("provider", label, existing.provider, provider)
                return
            self._providers[label] = _ProviderEntry(provider, label)

    def register_hedge(self, hedge: Hedge, *, name: str | None = None) -> None:
        """Export ``hedge`` with the label ``name`` (default: ``hedge.name``)."""
        label = hedge.name if name is None else name
        with self._lock:
            existing = self._hedges.get(label)
            if existing is not None:
                _check_same("hedge", label, existing[0], hedge)
                return
            self._hedges[label] = (hedge, _HedgeCounts(hedge))

    def register_bulkhead(
        self, bulkhead: Bulkhead | ThreadPoolBulkhead, *, name: str | None = None
    ) -> None:
        """Export ``bulkhead`` (a :class:`~faulttol.Bulkhead` or a
        :class:`~faulttol.ThreadPoolBulkhead`) with the label ``name`` (default: its name)."""
        label = bulkhead.name if name is None else name
        table: dict[str, Any] = (
            self._thread_pool_bulkheads
            if isinstance(bulkhead, ThreadPoolBulkhead)
            else self._bulkheads
        )
        with self._lock:
            existing = table.get(label)
            if existing is not None:
                _check_same("bulkhead", label, existing, bulkhead)
                return
            table[label] = bulkhead

    def register_time_limiter(self, time_limiter: TimeLimiter, *, name: str | None = None) -> None:
        """Export ``time_limiter`` with the label ``name`` (default: ``time_limiter.name``);
        its calls are counted from registration on."""
        label = time_limiter.name if name is None else name
        with self._lock:
            existing = self._time_limiters.get(label)
            if existing is not None:
                _check_same("time limiter", label, existing[0], time_limiter)
                return
            self._time_limiters[label] = (time_limiter, _time_limiter_counts(time_limiter))

    def register_rate_limiter(self, rate_limiter: RateLimiter, *, name: str | None = None) -> None:
        """Export ``rate_limiter`` with the label ``name`` (default: ``rate_limiter.name``)."""
        label = rate_limiter.name if name is None else name
        with self._lock:
            existing = self._rate_limiters.get(label)
            if existing is not None:
                _check_same("rate limiter", label, existing, rate_limiter)
                return
            self._rate_limiters[label] = rate_limiter

    # -- reading -----------------------------------------------------------------------------

    def breaker_samples(self) -> list[BreakerSample]:
        """Every registered breaker, then every provider target's breaker."""
        with self._lock:
            breakers = list(self._breakers.items())
            providers = list(self._providers.values())
        out = [_read_breaker(e.breaker, e.counts, {"name": n}) for n, e in breakers]
        for p in providers:
            rows = p.target_rows()
            for row, breaker in rows:
                entry = p.entry_for(breaker)
                labels: Labels = {
                    "name": str(getattr(breaker, "name", "")),
                    "provider": p.label,
                    "index": int(row["index"]),
                    "target": str(row["name"]),
                }
                out.append(_read_breaker(breaker, entry.counts, labels))
            p.prune()
        return out

    def retry_samples(self) -> list[RetrySample]:
        """Every registered retry, then every provider's retry."""
        with self._lock:
            retries = list(self._retries.items())
            providers = list(self._providers.values())
        out = [_read_retry(counts, {"name": n}) for n, (_, counts) in retries]
        for p in providers:
            if p.retry is not None:
                retry, counts = p.retry
                out.append(_read_retry(counts, {"name": retry.name, "provider": p.label}))
        return out

    def provider_samples(self) -> list[ProviderSample]:
        """Every registered provider with its targets."""
        with self._lock:
            providers = list(self._providers.values())
        out = []
        for p in providers:
            targets = tuple(
                TargetSample(
                    {"provider": p.label, "index": int(row["index"]), "target": str(row["name"])},
                    healthy=bool(row["healthy"]),
                    active=bool(row["active"]),
                    weight=None if row.get("weight") is None else float(row["weight"]),
                    counters={k: int(row[k]) for k in TARGET_COUNTERS if k in row},
                )
                for row in p.provider.status()
            )
            out.append(
                ProviderSample(
                    {"provider": p.label},
                    int(p.provider.active_index),
                    p.switches.read(),
                    targets,
                    p.switches.read_failovers(),
                )
            )
        return out

    def hedge_samples(self) -> list[HedgeSample]:
        """Every registered hedge."""
        with self._lock:
            hedges = list(self._hedges.items())
        return [HedgeSample({"name": n}, *counts.read()) for n, (_, counts) in hedges]

    def bulkhead_samples(self) -> list[BulkheadSample]:
        """Every registered :class:`~faulttol.Bulkhead`."""
        with self._lock:
            bulkheads = list(self._bulkheads.items())
        out = []
        for n, b in bulkheads:
            m = b.metrics
            out.append(
                BulkheadSample(
                    {"name": n}, m.available_concurrent_calls, m.max_allowed_concurrent_calls
                )
            )
        return out

    def thread_pool_bulkhead_samples(self) -> list[ThreadPoolBulkheadSample]:
        """Every registered :class:`~faulttol.ThreadPoolBulkhead`."""
        with self._lock:
            pools = list(self._thread_pool_bulkheads.items())
        out = []
        for n, b in pools:
            m = b.metrics
            out.append(
                ThreadPoolBulkheadSample(
                    {"name": n},
                    m.queue_depth,
                    m.queue_capacity,
                    m.thread_pool_size,
                    m.core_thread_pool_size,
                    m.max_thread_pool_size,
                )
            )
        return out

    def time_limiter_samples(self) -> list[TimeLimiterSample]:
        """Every registered :class:`~faulttol.TimeLimiter`: calls by kind since registration."""
        with self._lock:
            limiters = list(self._time_limiters.items())
        return [
            TimeLimiterSample(
                {"name": n},
                tuple(c - b for c, b in zip(_time_limiter_counts(t), base, strict=True)),
            )
            for n, (t, base) in limiters
        ]

    def rate_limiter_samples(self) -> list[RateLimiterSample]:
        """Every registered :class:`~faulttol.RateLimiter`, read now."""
        with self._lock:
            limiters = list(self._rate_limiters.items())
        return [
            RateLimiterSample(
                {"name": n},
                r.metrics.available_permissions,
                r.metrics.number_of_waiting_threads,
            )
            for n, r in limiters
        ]

    def samples(self, source: Source) -> list[Any]:
        """The current samples of one source."""
        if source is Source.RATE_LIMITER:
            return self.rate_limiter_samples()
        if source is Source.BULKHEAD:
            return self.bulkhead_samples()
        if source is Source.THREAD_POOL_BULKHEAD:
            return self.thread_pool_bulkhead_samples()
        if source is Source.TIME_LIMITER:
            return self.time_limiter_samples()
        if source is Source.HEDGE:
            return self.hedge_samples()
        if source is Source.BREAKER:
            return self.breaker_samples()
        if source is Source.RETRY:
            return self.retry_samples()
        return self.provider_samples()

    def points(self, spec: MetricSpec, samples: Sequence[Any] | None = None) -> list[Point]:
        """The labelled values of ``spec``, from ``samples`` (read now when not given)."""
        if samples is None:
            samples = self.samples(spec.source)
        return [point for sample in samples for point in spec.read(sample)]


def _time_limiter_counts(time_limiter: TimeLimiter) -> tuple[int, int, int]:
    m = time_limiter.metrics
    return (m.number_of_successful_calls, m.number_of_failed_calls, m.number_of_timed_out_calls)


def _check_same(kind: str, label: str, registered: object, new: object) -> None:
    if registered is not new:
        raise ValueError(
            f"a different {kind} is already registered as {label!r}; pass name= to tell them apart"
        )


_X = TypeVar("_X", bound="MetricsExporter")


class MetricsExporter:
    """Base of the exporters: the ``register_*`` methods, chainable, over one collector."""

    def __init__(self) -> None:
        self._collector = MetricsCollector()

    @property
    def collector(self) -> MetricsCollector:
        """The collector holding the registered components and their counts."""
        return self._collector

    def register_circuit_breaker(
        self: _X, breaker: CircuitBreaker, *, name: str | None = None
    ) -> _X:
        """Export ``breaker`` (labelled ``name``, default ``breaker.name``); returns self."""
        self._collector.register_circuit_breaker(breaker, name=name)
        return self

    def register_retry(self: _X, retry: Retry, *, name: str | None = None) -> _X:
        """Export ``retry`` (labelled ``name``, default ``retry.name``); returns self."""
        self._collector.register_retry(retry, name=name)
        return self

    def register_hedge(self: _X, hedge: Hedge, *, name: str | None = None) -> _X:
        """Export ``hedge`` (labelled ``name``, default ``hedge.name``); returns self."""
        self._collector.register_hedge(hedge, name=name)
        return self

    def register_bulkhead(
        self: _X, bulkhead: Bulkhead | ThreadPoolBulkhead, *, name: str | None = None
    ) -> _X:
        """Export ``bulkhead`` (a ``Bulkhead`` or a ``ThreadPoolBulkhead``; labelled ``name``,
        default its name); returns self."""
        self._collector.register_bulkhead(bulkhead, name=name)
        return self

    def register_time_limiter(
        self: _X, time_limiter: TimeLimiter, *, name: str | None = None
    ) -> _X:
        """Export ``time_limiter`` (labelled ``name``, default its name); returns self."""
        self._collector.register_time_limiter(time_limiter, name=name)
        return self

    def register_rate_limiter(
        self: _X, rate_limiter: RateLimiter, *, name: str | None = None
    ) -> _X:
        """Export ``rate_limiter`` (labelled ``name``, default its name); returns self."""
        self._collector.register_rate_limiter(rate_limiter, name=name)
        return self

    def register_provider(self: _X, provider: ProviderLike, *, name: str | None = None) -> _X:
        """Export ``provider``, its targets' breakers and its retry; returns self."""
        self._collector.register_provider(provider, name=name)
        return self
