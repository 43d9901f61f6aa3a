"""OpenTelemetry export: real breakers, retries and providers driven by a FakeClock, then
collected with the SDK's InMemoryMetricReader."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    InMemoryMetricReader,
    Metric,
    Sum,
)

from faulttol import (
    Bulkhead,
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    Hedge,
    OrderedProvider,
    RateLimiter,
    Retry,
    RetryConfig,
    State,
    ThreadPoolBulkhead,
    TimeLimiter,
)
from faulttol.events import CircuitBreakerOnSuccessEvent
from faulttol.metrics import METRICS, MetricKind
from faulttol.metrics.opentelemetry import METER_NAME, OpenTelemetryExporter
from faulttol.testing import FakeClock

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

AttrKey = tuple[tuple[str, Any], ...]


class Collected:
    """One collection: ``value(name, **attributes)``, ``points(name)``, ``metric(name)``."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        data = reader.get_metrics_data()
        assert data is not None
        self.metrics: dict[str, Metric] = {}
        self.scopes: set[str] = set()
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                self.scopes.add(sm.scope.name)
                for m in sm.metrics:
                    assert m.name not in self.metrics, f"duplicate metric {m.name}"
                    self.metrics[m.name] = m

    def points(self, name: str, /) -> dict[AttrKey, float]:
        metric = self.metrics.get(name)
        if metric is None:
            return {}
        out: dict[AttrKey, float] = {}
        for p in metric.data.data_points:
            key = tuple(sorted(dict(p.attributes or {}).items()))
            assert key not in out, f"duplicate point {name} {key}"
            out[key] = p.value  # type: ignore[union-attr]
        return out

    def value(self, name: str, /, **attributes: Any) -> float:
        return self.points(name)[tuple(sorted(attributes.items()))]

    def by(self, name: str, key: str, /, **attributes: Any) -> dict[Any, float]:
        """Values of ``name`` for points matching ``attributes``, keyed by attribute ``key``."""
        return {
            dict(k)[key]: v
            for k, v in self.points(name).items()
            if all(dict(k).get(a) == b for a, b in attributes.items())
        }


def fresh() -> tuple[InMemoryMetricReader, OpenTelemetryExporter]:
    reader = InMemoryMetricReader()
    return reader, OpenTelemetryExporter(MeterProvider(metric_readers=[reader]))


def only(state: str) -> dict[str, float]:
    return {s.value.lower(): 1.0 if s.value.lower() == state else 0.0 for s in State}


class Transient(Exception):
    pass


class Down(ConnectionError):
    pass


# --- import isolation ------------------------------------------------------------------------


def test_importing_the_opentelemetry_exporter_does_not_import_prometheus_client() -> None:
    probe = (
        "import sys, faulttol.metrics.opentelemetry\n"
        "print('prometheus_client' in sys.modules, 'opentelemetry.metrics' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["False", "True"]


def test_importing_faulttol_imports_no_opentelemetry() -> None:
    probe = (
        "import sys, faulttol, faulttol.metrics, faulttol.testing\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# --- instruments -----------------------------------------------------------------------------


def test_instruments_have_the_documented_names_kinds_and_units() -> None:
    reader, exporter = fresh()
    breaker = CircuitBreaker("b", clock=FakeClock())
    exporter.register_circuit_breaker(breaker)
    breaker.transition_to_open_state()  # transitions report from their first occurrence
    exporter.register_retry(Retry("r", clock=FakeClock()))
    provider = OrderedProvider(["x", "y"], clock=FakeClock(), name="p")
    exporter.register_provider(provider)
    provider.set_active_index(2)  # failovers by (from, to, reason) report from the first one
    exporter.register_rate_limiter(RateLimiter("rl", clock=FakeClock()))
    exporter.register_hedge(Hedge("h", clock=FakeClock()))
    exporter.register_bulkhead(Bulkhead("bh", clock=FakeClock()))
    exporter.register_bulkhead(ThreadPoolBulkhead("pool", clock=FakeClock()))  # no threads yet
    exporter.register_time_limiter(TimeLimiter("tl", clock=FakeClock()))
    c = Collected(reader)
    assert c.scopes == {METER_NAME}
    for spec in METRICS:
        # redis.client.geofailover.failovers: redis-py's name for its multi-database switches
        assert re.fullmatch(r"(faulttol|resilience4j|redis\.client)\.[a-z_.]+", spec.otel_name)
        metric = c.metrics[spec.otel_name]
        assert metric.unit == spec.unit
        assert metric.description == spec.description
        if spec.kind is MetricKind.COUNTER:
            assert isinstance(metric.data, Sum)
            assert metric.data.is_monotonic
            assert metric.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
            assert all(isinstance(p.value, int) for p in metric.data.data_points)
        else:
            assert isinstance(metric.data, Gauge)
    assert c.metrics["faulttol.circuit_breaker.failure_rate"].unit == "%"


# --- circuit breakers ------------------------------------------------------------------------


def test_breaker_lifecycle_is_collected_exactly() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "db",
        CircuitBreakerConfig(sliding_window_size=4, minimum_number_of_calls=4,
                             slow_call_duration_threshold=1.0, wait_duration_in_open_state=10.0,
                             permitted_number_of_calls_in_half_open_state=1,
                             record_exceptions=(ZeroDivisionError,),
                             ignore_exceptions=(KeyError,)),
        clock=clock,
    )
    reader, exporter = fresh()
    exporter.register_circuit_breaker(breaker)

    def slow() -> None:
        clock.advance(1.5)

    def fail() -> None:
        raise ZeroDivisionError

    def ignored() -> None:
        raise KeyError("k")

    c = Collected(reader)
    assert c.by("faulttol.circuit_breaker.state", "state", name="db") == only("closed")
    assert c.value("faulttol.circuit_breaker.failure_rate", name="db") == -1.0

    breaker.call(slow)
    breaker.call(lambda: None)
    with pytest.raises(KeyError):
        breaker.call(ignored)
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            breaker.call(fail)  # the second makes 4 calls, 2 failed: 50% -> OPEN
    with pytest.raises(CallNotPermittedError):
        breaker.call(lambda: None)

    c = Collected(reader)
    assert c.by("faulttol.circuit_breaker.state", "state", name="db") == only("open")
    assert c.by("faulttol.circuit_breaker.calls", "outcome", name="db") == {
        "successful": 2, "failed": 2, "ignored": 1, "not_permitted": 1}
    assert c.by("faulttol.circuit_breaker.slow_calls", "outcome", name="db") == {
        "successful": 1, "failed": 0}
    assert c.value("faulttol.circuit_breaker.failure_rate", name="db") == 50.0
    assert c.value("faulttol.circuit_breaker.slow_call_rate", name="db") == 25.0
    assert c.value("faulttol.circuit_breaker.buffered_calls", name="db") == 4.0
    assert c.by("faulttol.circuit_breaker.window_calls", "outcome", name="db") == {
        "successful": 2.0, "failed": 2.0}
    assert c.value("faulttol.circuit_breaker.window_slow_calls", name="db") == 1.0
    assert c.points("faulttol.circuit_breaker.state_transitions") == {
        (("from_state", "closed"), ("name", "db"), ("to_state", "open")): 1}

    clock.advance(10.0)
    with pytest.raises(ZeroDivisionError):
        breaker.call(fail)  # the one trial call fails: back to OPEN

    c = Collected(reader)
    assert c.by("faulttol.circuit_breaker.state", "state", name="db") == only("open")
    assert c.value("faulttol.circuit_breaker.calls", name="db", outcome="failed") == 3
    assert c.value("faulttol.circuit_breaker.failure_rate", name="db") == 100.0
    assert c.value("faulttol.circuit_breaker.buffered_calls", name="db") == 1.0
    assert c.points("faulttol.circuit_breaker.state_transitions") == {
        (("from_state", "closed"), ("name", "db"), ("to_state", "open")): 1,
        (("from_state", "half_open"), ("name", "db"), ("to_state", "open")): 1,
        (("from_state", "open"), ("name", "db"), ("to_state", "half_open")): 1,
    }


# --- retries ---------------------------------------------------------------------------------


def test_retry_outcomes_are_collected_exactly() -> None:
    clock = FakeClock()
    retry = Retry("fetch", RetryConfig(max_attempts=2, wait_duration=0.5,
                                       retry_exceptions=(Transient,)), clock=clock)
    reader, exporter = fresh()
    exporter.register_retry(retry)
    attempts = iter([Transient(), "ok"])

    def flaky() -> Any:
        item = next(attempts)
        if isinstance(item, BaseException):
            raise item
        return item

    def always(exc: BaseException) -> Callable[[], None]:
        def fn() -> None:
            raise exc

        return fn

    assert retry.call(flaky) == "ok"
    with pytest.raises(Transient):
        retry.call(always(Transient()))
    with pytest.raises(ValueError):
        retry.call(always(ValueError()))
    c = Collected(reader)
    assert c.value("faulttol.retry.retries", name="fetch") == 2
    assert c.by("faulttol.retry.calls", "outcome", name="fetch") == {
        "successful_after_retry": 1, "failed_after_max_attempts": 1, "ignored": 1}


# --- providers -------------------------------------------------------------------------------


class Target:
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True

    def __call__(self) -> str:
        if not self.up:
            raise Down(self.name)
        return self.name


def test_provider_switches_health_and_target_breakers_are_collected_exactly() -> None:
    clock = FakeClock()
    targets = [Target("t1"), Target("t2")]
    provider = OrderedProvider(
        targets,
        circuit_breaker=CircuitBreakerConfig(record_exceptions=(Down,)),
        retry=RetryConfig(max_attempts=2, retry_exceptions=(Down,)),
        fallback_exceptions=(CallNotPermittedError, Down),
        health_check=lambda t: t.up,
        clock=clock,
        name="shop",
        names=["main", "backup"],
        weights=[2.0, 1.0],
        start_health_checks=False,
    )
    reader, exporter = fresh()
    exporter.register_provider(provider)

    assert provider.execute(lambda t: t()) == "t1"
    targets[0].up = False
    provider.run_health_checks()  # t1 fails its check: HEALTH_CHECK failover to t2
    assert provider.execute(lambda t: t()) == "t2"

    c = Collected(reader)
    assert c.value("faulttol.provider.active_index", provider="shop") == 2.0
    assert c.by("faulttol.provider.switches", "reason", provider="shop") == {
        "circuit_breaker": 0, "health_check": 1, "failback": 0, "manual": 0}
    assert c.by("faulttol.provider.target.healthy", "index", provider="shop") == {1: 0.0, 2: 1.0}
    assert c.by("faulttol.provider.target.active", "target", provider="shop") == {
        "main": 0.0, "backup": 1.0}
    assert c.by("faulttol.provider.target.weight", "index", provider="shop") == {1: 2.0, 2: 1.0}
    # the target left by failover has its breaker opened; the active one is closed
    for index, target, successes, state in ((1, "main", 1, "open"), (2, "backup", 1, "closed")):
        attrs = {"name": f"shop:{target}", "provider": "shop", "index": index, "target": target}
        assert c.value("faulttol.circuit_breaker.calls", outcome="successful",
                       **attrs) == successes
        assert c.value("faulttol.circuit_breaker.state", state=state, **attrs) == 1.0
    assert c.value("faulttol.retry.retries", name="shop-retry", provider="shop") == 0

    provider.set_active_index(1, force=True)
    c = Collected(reader)
    assert c.value("faulttol.provider.switches", provider="shop", reason="manual") == 1
    assert c.value("faulttol.provider.active_index", provider="shop") == 1.0


def test_observable_counters_stay_cumulative_across_collections() -> None:
    breaker = CircuitBreaker("b", clock=FakeClock())
    reader, exporter = fresh()
    exporter.register_circuit_breaker(breaker)
    seen = []
    for _ in range(3):
        breaker.call(lambda: None)
        seen.append(Collected(reader).value("faulttol.circuit_breaker.calls", name="b",
                                            outcome="successful"))
    assert seen == [1, 2, 3]


def test_counters_of_a_breaker_with_queued_successes_start_at_registration() -> None:
    breaker = CircuitBreaker(
        "fast", CircuitBreakerConfig(sliding_window_size=5, minimum_number_of_calls=5),
        clock=FakeClock(),
    )
    guarded = breaker.decorate(lambda: None)
    for _ in range(8):  # the last 3 are queued lock-free, not yet folded, at registration
        guarded()
    reader, exporter = fresh()
    exporter.register_circuit_breaker(breaker)
    assert not breaker.events.wants(CircuitBreakerOnSuccessEvent)
    for _ in range(4):
        guarded()
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    c = Collected(reader)
    assert c.by("faulttol.circuit_breaker.calls", "outcome", name="fast") == {
        "successful": 4, "failed": 1, "ignored": 0, "not_permitted": 0}


def test_register_methods_chain() -> None:
    reader, exporter = fresh()
    breaker = CircuitBreaker("b", clock=FakeClock())
    assert exporter.register_circuit_breaker(breaker).register_retry(Retry("r")) is exporter
    with pytest.raises(ValueError, match="'b'"):
        exporter.register_circuit_breaker(CircuitBreaker("b"))


# --- provider failovers and rate limiters -----------------------------------------------------


def test_provider_switches_are_counted_as_redis_py_geofailover_failovers() -> None:
    clock = FakeClock()
    targets = [Target("t1"), Target("t2"), Target("t3")]
    provider = OrderedProvider(targets, health_check=lambda t: t.up, clock=clock, name="geo",
                               start_health_checks=False)
    reader, exporter = fresh()
    exporter.register_provider(provider)
    assert Collected(reader).points("redis.client.geofailover.failovers") == {}
    targets[0].up = False
    provider.run_health_checks()  # 1 -> 2, HEALTH_CHECK
    provider.set_active_index(3)  # 2 -> 3, MANUAL
    provider.set_active_index(2)  # 3 -> 2, MANUAL
    provider.set_active_index(3)  # 2 -> 3, MANUAL again
    c = Collected(reader)
    metric = c.metrics["redis.client.geofailover.failovers"]
    assert isinstance(metric.data, Sum) and metric.data.is_monotonic
    assert metric.unit == "{geofailover}"
    assert c.points("redis.client.geofailover.failovers") == {
        (("fail_from", 1), ("fail_to", 2), ("provider", "geo"), ("reason", "health_check")): 1,
        (("fail_from", 2), ("fail_to", 3), ("provider", "geo"), ("reason", "manual")): 2,
        (("fail_from", 3), ("fail_to", 2), ("provider", "geo"), ("reason", "manual")): 1,
    }
    # the same switches as the switch counter by reason
    assert c.by("faulttol.provider.switches", "reason", provider="geo") == {
        "circuit_breaker": 0, "health_check": 1, "failback": 0, "manual": 3}


def test_rate_limiters_are_exported_with_resilience4j_names() -> None:
    from faulttol import RateLimiterConfig

    clock = FakeClock()
    limiter = RateLimiter("api", RateLimiterConfig(limit_for_period=5, limit_refresh_period=1.0,
                                                   timeout_duration=10.0), clock=clock)
    reader, exporter = fresh()
    assert exporter.register_rate_limiter(limiter) is exporter
    c = Collected(reader)
    assert c.value("resilience4j.ratelimiter.available.permissions", name="api") == 5
    assert c.value("resilience4j.ratelimiter.waiting_threads", name="api") == 0
    for _ in range(7):
        limiter.reserve_permission()
    c = Collected(reader)
    assert c.value("resilience4j.ratelimiter.available.permissions", name="api") == -2
    assert isinstance(c.metrics["resilience4j.ratelimiter.waiting_threads"].data, Gauge)
    with pytest.raises(ValueError, match="'api'"):
        exporter.register_rate_limiter(RateLimiter("api"))


# --- docs ------------------------------------------------------------------------------------


def test_docs_example_runs(tmp_path: Path) -> None:
    doc = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    example = next(b for b in blocks if "OpenTelemetryExporter" in b)
    script = tmp_path / "example.py"
    script.write_text(example)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=True)
    assert "faulttol.circuit_breaker.calls {'name': 'inventory', 'outcome': 'successful'} 1" in (
        out.stdout
    )
