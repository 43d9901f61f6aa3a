"""Exporter-independent metric collection: what is counted, how it is read, what it is called.

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
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from ..breaker import CircuitBreaker, CircuitBreakerCounters, State
from ..events import (
    CircuitBreakerOnStateTransitionEvent,
    RetryOnErrorEvent,
    RetryOnIgnoredErrorEvent,
    RetryOnRetryEvent,
    RetryOnSuccessEvent,
)
from ..provider import SwitchEvent, SwitchReason
from ..retry import Retry

__all__ = [
    "BREAKER_CALL_OUTCOMES",
    "METRICS",
    "RETRY_CALL_OUTCOMES",
    "SLOW_CALL_OUTCOMES",
    "BreakerSample",
    "Labels",
    "MetricKind",
    "MetricSpec",
    "MetricsCollector",
    "MetricsExporter",
    "Point",
    "ProviderLike",
    "ProviderSample",
    "RetrySample",
    "Source",
    "TargetSample",
    "state_label",
    "switch_reason_label",
]

Labels = dict[str, str | int]
"""Label names to values; ``index`` is an int (a string in Prometheus)."""
Point = tuple[Labels, float]
"""One labelled value of a metric."""

BREAKER_CALL_OUTCOMES: Final = ("successful", "failed", "ignored", "not_permitted")
"""``outcome`` values of ``faulttol_circuit_breaker_calls_total``."""
SLOW_CALL_OUTCOMES: Final = ("successful", "failed")
"""``outcome`` values of ``faulttol_circuit_breaker_slow_calls_total``."""
RETRY_CALL_OUTCOMES: Final = ("successful_after_retry", "failed_after_max_attempts", "ignored")
"""``outcome`` values of ``faulttol_retry_calls_total``."""

_AFTER_RETRY, _AFTER_MAX_ATTEMPTS, _RETRY_IGNORED = range(3)
_REASONS: Final = tuple(SwitchReason)


def state_label(state: State) -> str:
    """The ``state`` label value of a breaker state: ``"closed"``, ``"half_open"``..."""
    return state.value.lower()


def switch_reason_label(reason: SwitchReason) -> str:
    """The ``reason`` label value of a switch: ``"circuit_breaker"``, ``"manual"``..."""
    return reason.value.lower()


class ProviderLike(Protocol):
    """What :meth:`MetricsCollector.register_provider` needs of a provider.

    :class:`faulttol.OrderedProvider` and ``faulttol_redis.FailoverProvider`` qualify. The
    provider's ``name`` attribute (if any) is the default ``provider`` label, and its
    ``retry`` attribute (if any) is exported too.
    """

    @property
    def active_index(self) -> int: ...

    def add_switch_listener(self, listener: Callable[[SwitchEvent], object]) -> None: ...

    def status(self) -> list[dict[str, Any]]: ...

    def breaker(self, index: int) -> Any: ...

    def __len__(self) -> int: ...


# --- counting ------------------------------------------------------------------------------


class _BreakerCounts:
    """Cumulative counts of one breaker since registration (thread-safe).

    Calls by outcome come from ``breaker.counters`` (when the breaker has them: a pybreaker
    adapter has not) minus their value at registration; they are read, never fed, so the
    breaker's success path stays as fast as an unobserved breaker's. Only the rare state
    transitions are counted from events (when the breaker has events).
    """

    __slots__ = ("_baseline", "_breaker", "_lock", "_transitions")

    def __init__(self, breaker: Any) -> None:
        self._breaker = breaker
        self._lock = threading.Lock()
        self._transitions: dict[tuple[str, str], int] = {}
        events = getattr(breaker, "events", None)
        if events is not None:
            events.on_state_transition(self._on_transition)
        counters = getattr(breaker, "counters", None)
        self._baseline: CircuitBreakerCounters | None = (
            counters if isinstance(counters, CircuitBreakerCounters) else None
        )

    def _on_transition(self, event: CircuitBreakerOnStateTransitionEvent) -> None:
        if event.from_state is None or event.to_state is None:
            return
        key = (state_label(event.from_state), state_label(event.to_state))
        with self._lock:
            self._transitions[key] = self._transitions.get(key, 0) + 1

    def read(
        self,
    ) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None, dict[tuple[str, str], int]]:
        """Calls by outcome, slow calls by outcome (``None`` without counters), transitions."""
        with self._lock:
            transitions = dict(self._transitions)
        if self._baseline is None:
            return None, None, transitions
        c = self._breaker.counters - self._baseline
        calls = (c.successful_calls, c.failed_calls, c.ignored_calls, c.not_permitted_calls)
        return calls, (c.slow_successful_calls, c.slow_failed_calls), transitions


class _RetryCounts:
    """Cumulative counts of one retry's events since registration (thread-safe)."""

    __slots__ = ("_calls", "_lock", "_retries")

    def __init__(self, retry: Retry) -> None:
        self._lock = threading.Lock()
        self._retries = 0
        self._calls = [0, 0, 0]
        events = retry.events
        events.on_retry(self._on_retry)
        events.on_success(self._on_success)
        events.on_error(self._on_error)
        events.on_ignored_error(self._on_ignored)

    def _on_retry(self, event: RetryOnRetryEvent) -> None:
        with self._lock:
            self._retries += 1

    def _on_success(self, event: RetryOnSuccessEvent) -> None:
        with self._lock:
            self._calls[_AFTER_RETRY] += 1

    def _on_error(self, event: RetryOnErrorEvent) -> None:
        with self._lock:
            self._calls[_AFTER_MAX_ATTEMPTS] += 1

    def _on_ignored(self, event: RetryOnIgnoredErrorEvent) -> None:
        with self._lock:
            self._calls[_RETRY_IGNORED] += 1

    def read(self) -> tuple[int, tuple[int, ...]]:
        with self._lock:
            return self._retries, tuple(self._calls)


class _SwitchCounts:
    """Cumulative switches of one provider by reason, fed by a switch listener."""

    __slots__ = ("_counts", "_lock")

    def __init__(self, provider: ProviderLike) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_REASONS, 0)
        provider.add_switch_listener(self._on_switch)

    def _on_switch(self, event: SwitchEvent) -> None:
        with self._lock:
            self._counts[event.reason] = self._counts.get(event.reason, 0) + 1

    def read(self) -> dict[SwitchReason, int]:
        with self._lock:
            return dict(self._counts)


# --- samples: what one collection reads ----------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class ProviderSample:
    """One provider at collection time."""

    labels: Labels
    active_index: int
    switches: dict[SwitchReason, int]
    targets: tuple[TargetSample, ...]


class Source(enum.Enum):
    """Which kind of sample a metric is read from."""

    BREAKER = "breaker"
    RETRY = "retry"
    PROVIDER = "provider"


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
)


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

    def target_rows(self) -> list[tuple[dict[str, Any], Any]]:
        """``(status row, breaker)`` per target; a target removed meanwhile is skipped."""
        rows: list[tuple[dict[str, Any], Any]] = []
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
                )
                for row in p.provider.status()
            )
            out.append(
                ProviderSample(
                    {"provider": p.label},
                    int(p.provider.active_index),
                    p.switches.read(),
                    targets,
                )
            )
        return out

    def samples(self, source: Source) -> list[Any]:
        """The current samples of one source."""
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

    def register_provider(self: _X, provider: ProviderLike, *, name: str | None = None) -> _X:
        """Export ``provider``, its targets' breakers and its retry; returns self."""
        self._collector.register_provider(provider, name=name)
        return self
