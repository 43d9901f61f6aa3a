"""Prometheus export: real breakers, retries and providers driven by a FakeClock, then scraped.

Every test scrapes a fresh ``CollectorRegistry`` with ``generate_latest`` and parses the text
exposition back, so what is asserted is exactly what a Prometheus server would read.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from faulttol import (
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    OrderedProvider,
    Retry,
    RetryConfig,
    State,
)
from faulttol.events import (
    CircuitBreakerOnCallNotPermittedEvent,
    CircuitBreakerOnErrorEvent,
    CircuitBreakerOnIgnoredErrorEvent,
    CircuitBreakerOnSuccessEvent,
)
from faulttol.metrics import METRICS, MetricKind
from faulttol.metrics.prometheus import PrometheusExporter
from faulttol.testing import FakeClock

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

LabelKey = tuple[tuple[str, str], ...]


class Scrape:
    """A parsed scrape: ``value(name, **labels)`` and ``series(name)``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.text = generate_latest(registry).decode()
        self.samples: dict[tuple[str, LabelKey], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(self.text):
            for s in family.samples:
                self.types[s.name] = family.type
                key = (s.name, tuple(sorted(s.labels.items())))
                assert key not in self.samples, f"duplicate series {key}"
                self.samples[key] = s.value

    def value(self, metric: str, /, **labels: str) -> float:
        return self.samples[(metric, tuple(sorted(labels.items())))]

    def series(self, metric: str, /) -> dict[LabelKey, float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == metric}


def fresh() -> tuple[CollectorRegistry, PrometheusExporter]:
    registry = CollectorRegistry()
    return registry, PrometheusExporter(registry)


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


class Down(ConnectionError):
    pass


def states(scrape: Scrape, **labels: str) -> dict[str, float]:
    """The ``state`` gauge of one breaker as {state label: value}."""
    out = {}
    for state in State:
        label = state.value.lower()
        out[label] = scrape.value("faulttol_circuit_breaker_state", state=label, **labels)
    return out


def only(state: str) -> dict[str, float]:
    return {s.value.lower(): 1.0 if s.value.lower() == state else 0.0 for s in State}


def outcomes(scrape: Scrape, metric: str, /, **labels: str) -> dict[str, float]:
    return {
        dict(k)["outcome"]: v
        for k, v in scrape.series(metric).items()
        if all(dict(k).get(a) == b for a, b in labels.items())
    }


# --- import isolation ------------------------------------------------------------------------


def _modules_after(code: str) -> list[str]:
    probe = (
        f"{code}\nimport sys\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'prometheus_client', 'opentelemetry'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(eval(out.stdout.strip().splitlines()[-1]))


def test_importing_faulttol_imports_no_exporter_library() -> None:
    assert _modules_after("import faulttol, faulttol.metrics, faulttol.testing") == []


def test_importing_faulttol_redis_does_not_import_prometheus_client() -> None:
    # (redis-py >= 7 itself imports opentelemetry-api when it is installed.)
    assert "prometheus_client" not in _modules_after("import faulttol_redis")


def test_importing_the_prometheus_exporter_imports_only_prometheus_client() -> None:
    assert _modules_after("import faulttol.metrics.prometheus") == ["prometheus_client"]


# --- circuit breakers ------------------------------------------------------------------------


def lifecycle_breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(
        "db",
        CircuitBreakerConfig(
            sliding_window_size=4,
            minimum_number_of_calls=4,
            failure_rate_threshold=50.0,
            slow_call_duration_threshold=1.0,
            wait_duration_in_open_state=10.0,
            permitted_number_of_calls_in_half_open_state=2,
            record_exceptions=(ZeroDivisionError,),
            ignore_exceptions=(KeyError,),
        ),
        clock=clock,
    )


def test_breaker_lifecycle_is_scraped_exactly() -> None:
    clock = FakeClock()
    breaker = lifecycle_breaker(clock)
    registry, exporter = fresh()
    exporter.register_circuit_breaker(breaker)

    def ok() -> str:
        return "ok"

    def slow_ok() -> str:
        clock.advance(2.0)
        return "slow"

    def raise_(exc: BaseException, delay: float = 0.0) -> Callable[[], None]:
        def fn() -> None:
            clock.advance(delay)
            raise exc

        return fn

    s = Scrape(registry)
    assert states(s, name="db") == only("closed")
    assert outcomes(s, "faulttol_circuit_breaker_calls_total", name="db") == {
        "successful": 0, "failed": 0, "ignored": 0, "not_permitted": 0}
    assert s.value("faulttol_circuit_breaker_failure_rate_percent", name="db") == -1.0
    assert s.value("faulttol_circuit_breaker_buffered_calls", name="db") == 0.0
    assert s.series("faulttol_circuit_breaker_state_transitions_total") == {}

    breaker.call(ok)
    breaker.call(slow_ok)
    with pytest.raises(ValueError):  # neither recorded nor ignored: a success
        breaker.call(raise_(ValueError("v")))
    with pytest.raises(KeyError):  # ignored: not counted by the breaker
        breaker.call(raise_(KeyError("k")))

    s = Scrape(registry)
    assert outcomes(s, "faulttol_circuit_breaker_calls_total", name="db") == {
        "successful": 3, "failed": 0, "ignored": 1, "not_permitted": 0}
    assert outcomes(s, "faulttol_circuit_breaker_slow_calls_total", name="db") == {
        "successful": 1, "failed": 0}
    assert s.value("faulttol_circuit_breaker_buffered_calls", name="db") == 3.0
    assert outcomes(s, "faulttol_circuit_breaker_window_calls", name="db") == {
        "successful": 3, "failed": 0}
    assert s.value("faulttol_circuit_breaker_window_slow_calls", name="db") == 1.0
    # Below minimum_number_of_calls the rates are -1, as in breaker.metrics.
    assert s.value("faulttol_circuit_breaker_failure_rate_percent", name="db") == -1.0
    assert s.value("faulttol_circuit_breaker_slow_call_rate_percent", name="db") == -1.0

    with pytest.raises(ZeroDivisionError):  # a slow failure: window [ok, slow, v, slowfail]
        breaker.call(raise_(ZeroDivisionError(), delay=1.5))
    s = Scrape(registry)
    assert states(s, name="db") == only("closed")
    assert s.value("faulttol_circuit_breaker_failure_rate_percent", name="db") == 25.0
    assert s.value("faulttol_circuit_breaker_slow_call_rate_percent", name="db") == 50.0

    with pytest.raises(ZeroDivisionError):  # window [slow, v, slowfail, fail]: 50% -> OPEN
        breaker.call(raise_(ZeroDivisionError()))
    with pytest.raises(CallNotPermittedError):
        breaker.call(ok)

    s = Scrape(registry)
    assert states(s, name="db") == only("open")
    assert outcomes(s, "faulttol_circuit_breaker_calls_total", name="db") == {
        "successful": 3, "failed": 2, "ignored": 1, "not_permitted": 1}
    assert outcomes(s, "faulttol_circuit_breaker_slow_calls_total", name="db") == {
        "successful": 1, "failed": 1}
    assert s.value("faulttol_circuit_breaker_failure_rate_percent", name="db") == 50.0
    assert s.value("faulttol_circuit_breaker_slow_call_rate_percent", name="db") == 50.0
    assert s.value("faulttol_circuit_breaker_buffered_calls", name="db") == 4.0
    assert outcomes(s, "faulttol_circuit_breaker_window_calls", name="db") == {
        "successful": 2, "failed": 2}
    assert s.value("faulttol_circuit_breaker_window_slow_calls", name="db") == 2.0
    assert s.series("faulttol_circuit_breaker_state_transitions_total") == {
        (("from_state", "closed"), ("name", "db"), ("to_state", "open")): 1.0}

    clock.advance(10.0)  # the open wait has passed: two trial calls close it
    breaker.call(ok)
    breaker.call(ok)

    s = Scrape(registry)
    assert states(s, name="db") == only("closed")
    assert outcomes(s, "faulttol_circuit_breaker_calls_total", name="db") == {
        "successful": 5, "failed": 2, "ignored": 1, "not_permitted": 1}
    assert s.value("faulttol_circuit_breaker_buffered_calls", name="db") == 0.0  # fresh
    assert s.value("faulttol_circuit_breaker_failure_rate_percent", name="db") == -1.0
    assert s.series("faulttol_circuit_breaker_state_transitions_total") == {
        (("from_state", "closed"), ("name", "db"), ("to_state", "open")): 1.0,
        (("from_state", "half_open"), ("name", "db"), ("to_state", "closed")): 1.0,
        (("from_state", "open"), ("name", "db"), ("to_state", "half_open")): 1.0,
    }
    assert s.types["faulttol_circuit_breaker_calls_total"] == "counter"
    assert s.types["faulttol_circuit_breaker_state"] == "gauge"


def test_a_time_driven_transition_shows_at_scrape_time() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "auto",
        CircuitBreakerConfig(wait_duration_in_open_state=5.0,
                             automatic_transition_from_open_to_half_open_enabled=True),
        clock=clock,
    )
    registry, exporter = fresh()
    exporter.register_circuit_breaker(breaker)
    breaker.transition_to_open_state()
    assert states(Scrape(registry), name="auto") == only("open")
    clock.advance(5.0)  # no call in between: the scrape itself sees HALF_OPEN
    s = Scrape(registry)
    assert states(s, name="auto") == only("half_open")
    assert s.value("faulttol_circuit_breaker_state_transitions_total", name="auto",
                   from_state="open", to_state="half_open") == 1.0


@pytest.mark.parametrize(
    ("transition", "state"),
    [
        ("transition_to_forced_open_state", "forced_open"),
        ("transition_to_disabled_state", "disabled"),
        ("transition_to_metrics_only_state", "metrics_only"),
        ("transition_to_half_open_state", "half_open"),
    ],
)
def test_every_state_has_its_own_series(transition: str, state: str) -> None:
    breaker = CircuitBreaker("b", clock=FakeClock())
    registry, exporter = fresh()
    exporter.register_circuit_breaker(breaker)
    getattr(breaker, transition)()
    s = Scrape(registry)
    assert states(s, name="b") == only(state)
    assert s.value("faulttol_circuit_breaker_state_transitions_total", name="b",
                   from_state="closed", to_state=state) == 1.0


def test_forced_open_rejections_are_counted_as_not_permitted() -> None:
    breaker = CircuitBreaker("b", clock=FakeClock())
    registry, exporter = fresh()
    exporter.register_circuit_breaker(breaker)
    breaker.transition_to_forced_open_state()
    for _ in range(3):
        with pytest.raises(CallNotPermittedError):
            breaker.call(lambda: None)
    s = Scrape(registry)
    assert s.value("faulttol_circuit_breaker_calls_total", name="b",
                   outcome="not_permitted") == 3.0


def test_counts_are_exact_under_threads() -> None:
    breaker = CircuitBreaker(
        "busy", CircuitBreakerConfig(ignore_exceptions=(KeyError,)), clock=FakeClock()
    )
    registry, exporter = fresh()
    exporter.register_circuit_breaker(breaker)
    n_threads, n_calls = 8, 1000

    def boom() -> None:
        raise KeyError("x")

    def work() -> None:
        for i in range(n_calls):
            if i % 4 == 0:
                with pytest.raises(KeyError):
                    breaker.call(boom)
            else:
                breaker.call(lambda: None)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = Scrape(registry)
    assert outcomes(s, "faulttol_circuit_breaker_calls_total", name="busy") == {
        "successful": n_threads * n_calls * 3 / 4,
        "failed": 0,
        "ignored": n_threads * n_calls / 4,
        "not_permitted": 0,
    }


# --- retries ---------------------------------------------------------------------------------


def test_retry_outcomes_are_scraped_exactly() -> None:
    clock = FakeClock()
    retry = Retry(
        "fetch",
        RetryConfig(max_attempts=3, wait_duration=1.0, retry_exceptions=(Transient,),
                    retry_on_result=lambda r: r is None),
        clock=clock,
    )
    registry, exporter = fresh()
    exporter.register_retry(retry)

    assert retry.call(lambda: "first time") == "first time"  # no retry: nothing counted
    flaky = iter([Transient(), "second time"])

    def once_flaky() -> Any:
        item = next(flaky)
        if isinstance(item, BaseException):
            raise item
        return item

    assert retry.call(once_flaky) == "second time"  # 1 retry, successful

    def always(exc: BaseException) -> Callable[[], None]:
        def fn() -> None:
            raise exc

        return fn

    with pytest.raises(Transient):  # 2 retries, then attempts run out
        retry.call(always(Transient()))
    with pytest.raises(Fatal):  # not retried at all
        retry.call(always(Fatal()))
    assert retry.call(lambda: None) is None  # result-based: 2 retries, last result returned

    s = Scrape(registry)
    assert s.value("faulttol_retry_retries_total", name="fetch") == 5.0
    assert outcomes(s, "faulttol_retry_calls_total", name="fetch") == {
        "successful_after_retry": 1, "failed_after_max_attempts": 2, "ignored": 1}
    assert clock.sleeps == [1.0, 1.0, 2.0, 1.0, 2.0]
    assert s.types["faulttol_retry_retries_total"] == "counter"


# --- providers -------------------------------------------------------------------------------


class Target:
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True

    def __call__(self) -> str:
        if not self.up:
            raise Down(self.name)
        return self.name


def run(target: Target) -> str:
    return target()


def make_provider(
    n: int = 3, **kwargs: Any
) -> tuple[OrderedProvider[Target], list[Target], FakeClock]:
    clock = FakeClock()
    targets = [Target(f"t{i}") for i in range(1, n + 1)]
    kwargs.setdefault("retry", RetryConfig(retry_exceptions=(Down,)))
    provider = OrderedProvider(
        targets,
        circuit_breaker=CircuitBreakerConfig(sliding_window_size=10, minimum_number_of_calls=10,
                                             record_exceptions=(Down,),
                                             wait_duration_in_open_state=30.0),
        fallback_exceptions=(CallNotPermittedError, Down),
        clock=clock,
        name="shop",
        names=[f"n{i}" for i in range(1, n + 1)],
        start_health_checks=False,
        **kwargs,
    )
    return provider, targets, clock


def target_labels(index: int) -> dict[str, str]:
    return {"name": f"shop:n{index}", "provider": "shop", "index": str(index),
            "target": f"n{index}"}


def test_provider_failover_and_manual_failback_are_scraped_exactly() -> None:
    provider, targets, clock = make_provider()
    retry_events: list[str] = []
    provider.retry.events.on_success(lambda e: retry_events.append("successful_after_retry"))
    provider.retry.events.on_error(lambda e: retry_events.append("failed_after_max_attempts"))
    registry, exporter = fresh()
    exporter.register_provider(provider)

    s = Scrape(registry)
    assert s.value("faulttol_provider_active_index", provider="shop") == 1.0
    assert s.series("faulttol_provider_switches_total") == {
        (("provider", "shop"), ("reason", r)): 0.0
        for r in ("circuit_breaker", "health_check", "failback", "manual")
    }
    for i in (1, 2, 3):
        assert states(s, **target_labels(i)) == only("closed")

    assert provider.execute(run) == "t1"
    targets[0].up = False
    assert provider.execute(run) == "t2"  # 3 attempts on t1, then failover

    s = Scrape(registry)
    assert s.value("faulttol_provider_active_index", provider="shop") == 2.0
    assert s.value("faulttol_provider_switches_total", provider="shop",
                   reason="circuit_breaker") == 1.0
    assert states(s, **target_labels(1)) == only("open")
    assert states(s, **target_labels(2)) == only("closed")
    assert outcomes(s, "faulttol_circuit_breaker_calls_total", **target_labels(1)) == {
        "successful": 1, "failed": 3, "ignored": 0, "not_permitted": 0}
    assert outcomes(s, "faulttol_circuit_breaker_calls_total", **target_labels(2)) == {
        "successful": 1, "failed": 0, "ignored": 0, "not_permitted": 0}
    assert s.value("faulttol_circuit_breaker_buffered_calls", **target_labels(1)) == 4.0
    assert s.value("faulttol_circuit_breaker_state_transitions_total", **target_labels(1),
                   from_state="closed", to_state="open") == 1.0
    assert [s.value("faulttol_provider_target_active", provider="shop", index=str(i),
                    target=f"n{i}") for i in (1, 2, 3)] == [0.0, 1.0, 0.0]
    assert [s.value("faulttol_provider_target_healthy", provider="shop", index=str(i),
                    target=f"n{i}") for i in (1, 2, 3)] == [1.0, 1.0, 1.0]
    # The provider's retry is exported with the provider label, and matches its events.
    assert s.value("faulttol_retry_retries_total", name="shop-retry", provider="shop") == 2.0
    assert outcomes(s, "faulttol_retry_calls_total", name="shop-retry", provider="shop") == {
        "successful_after_retry": retry_events.count("successful_after_retry"),
        "failed_after_max_attempts": retry_events.count("failed_after_max_attempts"),
        "ignored": 0,
    }
    assert retry_events.count("failed_after_max_attempts") == 1

    targets[0].up = True
    provider.set_active_index(1)
    s = Scrape(registry)
    assert s.value("faulttol_provider_active_index", provider="shop") == 1.0
    assert s.value("faulttol_provider_switches_total", provider="shop", reason="manual") == 1.0
    assert states(s, **target_labels(1)) == only("closed")
    assert s.value("faulttol_circuit_breaker_state_transitions_total", **target_labels(1),
                   from_state="open", to_state="closed") == 1.0


def test_provider_health_and_failback_are_scraped_exactly() -> None:
    def health(target: Target) -> bool:
        return target.up

    provider, targets, clock = make_provider(
        health_check=health, auto_failback_interval=10.0, auto_failback_grace_period=5.0
    )
    registry, exporter = fresh()
    exporter.register_provider(provider)

    targets[0].up = False
    provider.run_health_checks()
    s = Scrape(registry)
    assert s.value("faulttol_provider_switches_total", provider="shop",
                   reason="health_check") == 1.0
    assert s.value("faulttol_provider_active_index", provider="shop") == 2.0
    assert [s.value("faulttol_provider_target_healthy", provider="shop", index=str(i),
                    target=f"n{i}") for i in (1, 2, 3)] == [0.0, 1.0, 1.0]

    targets[0].up = True
    clock.advance(10.0)
    provider.run_health_checks()
    clock.advance(10.0)
    provider.run_health_checks()
    s = Scrape(registry)
    assert s.value("faulttol_provider_switches_total", provider="shop", reason="failback") == 1.0
    assert s.value("faulttol_provider_active_index", provider="shop") == 1.0
    assert [s.value("faulttol_provider_target_healthy", provider="shop", index=str(i),
                    target=f"n{i}") for i in (1, 2, 3)] == [1.0, 1.0, 1.0]


def test_provider_targets_added_and_removed_at_runtime() -> None:
    provider, targets, clock = make_provider(n=2)
    registry, exporter = fresh()
    exporter.register_provider(provider)
    provider.execute(run)  # one success on n1

    extra = Target("t9")
    assert provider.add_target(extra, name="nine", weight=3.0) == 3
    s = Scrape(registry)  # the new target appears (its counters start now)
    labels3 = {"name": "shop:nine", "provider": "shop", "index": "3", "target": "nine"}
    assert states(s, **labels3) == only("closed")
    assert s.value("faulttol_provider_target_weight", provider="shop", index="3",
                   target="nine") == 3.0
    provider.set_active_index(3)
    assert provider.execute(run) == "t9"

    provider.remove_target(1)  # indices shift down: nine is now index 2 (a MANUAL switch 3 -> 2)
    s = Scrape(registry)
    labels2 = {"name": "shop:nine", "provider": "shop", "index": "2", "target": "nine"}
    assert s.value("faulttol_circuit_breaker_calls_total", **labels2, outcome="successful") == 1.0
    assert s.value("faulttol_provider_active_index", provider="shop") == 2.0
    assert not any(dict(k).get("target") == "n1"
                   for k in s.series("faulttol_circuit_breaker_state"))
    assert sorted(dict(k)["target"] for k in s.series("faulttol_provider_target_healthy")) == [
        "n2", "nine"]
    assert s.value("faulttol_provider_switches_total", provider="shop", reason="manual") == 2.0


def test_failover_provider_against_real_redis_servers(
    redis_servers: Callable[[int], list[Any]],
) -> None:
    from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig

    servers = redis_servers(2)
    timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    config = MultiDbConfig(
        [DatabaseConfig("127.0.0.1", s.port, name=f"db{i}", client_kwargs=dict(timeouts))
         for i, s in enumerate(servers, start=1)],
        health_check_interval=60.0,  # no background round during the test
        health_check_timeout=0.3,
    )
    client = FailoverRedis.from_config(config)
    try:
        registry, exporter = fresh()
        exporter.register_provider(client.provider, name="cache")
        assert client.set("a", 1) is True
        servers[0].kill()
        assert client.set("b", 2) is True  # fails on db1, probe fails, runs on db2

        s = Scrape(registry)
        assert s.value("faulttol_provider_active_index", provider="cache") == 2.0
        assert s.value("faulttol_provider_switches_total", provider="cache",
                       reason="health_check") == 1.0
        assert [s.value("faulttol_provider_target_healthy", provider="cache", index=str(i),
                        target=f"db{i}") for i in (1, 2)] == [0.0, 1.0]
        db = {i: {"name": client.provider.breaker(i).name, "provider": "cache",
                  "index": str(i), "target": f"db{i}"} for i in (1, 2)}
        assert outcomes(s, "faulttol_circuit_breaker_calls_total", **db[1]) == {
            "successful": 1, "failed": 1, "ignored": 0, "not_permitted": 0}
        assert outcomes(s, "faulttol_circuit_breaker_calls_total", **db[2]) == {
            "successful": 1, "failed": 0, "ignored": 0, "not_permitted": 0}
    finally:
        client.close()


# --- registration ----------------------------------------------------------------------------


def test_register_methods_chain_and_are_idempotent() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("b", clock=clock)
    retry = Retry("r", clock=clock)
    provider, _, _ = make_provider()
    registry, exporter = fresh()
    assert (
        exporter.register_circuit_breaker(breaker)
        .register_retry(retry)
        .register_provider(provider)
        .register_circuit_breaker(breaker)  # again: no-op, no second subscription
    ) is exporter
    breaker.call(lambda: None)
    s = Scrape(registry)  # the Scrape helper also asserts there is no duplicate series
    assert s.value("faulttol_circuit_breaker_calls_total", name="b", outcome="successful") == 1.0


def test_a_different_component_under_a_taken_name_is_refused() -> None:
    registry, exporter = fresh()
    exporter.register_circuit_breaker(CircuitBreaker("same"))
    with pytest.raises(ValueError, match="'same'"):
        exporter.register_circuit_breaker(CircuitBreaker("same"))
    exporter.register_circuit_breaker(CircuitBreaker("same"), name="same-2")
    exporter.register_retry(Retry("r"))
    with pytest.raises(ValueError, match="'r'"):
        exporter.register_retry(Retry("r"))
    p1, _, _ = make_provider()
    p2, _, _ = make_provider()
    exporter.register_provider(p1)
    with pytest.raises(ValueError, match="'shop'"):
        exporter.register_provider(p2)
    exporter.register_provider(p2, name="shop-2")
    s = Scrape(registry)
    assert {dict(k)["name"] for k in s.series("faulttol_circuit_breaker_state")
            if "provider" not in dict(k)} == {"same", "same-2"}
    assert s.value("faulttol_provider_active_index", provider="shop-2") == 1.0


def test_counters_start_at_registration() -> None:
    breaker = CircuitBreaker("late", clock=FakeClock())
    breaker.call(lambda: None)  # before registration: not counted
    registry, exporter = fresh()
    exporter.register_circuit_breaker(breaker)
    breaker.call(lambda: None)
    s = Scrape(registry)
    assert s.value("faulttol_circuit_breaker_calls_total", name="late",
                   outcome="successful") == 1.0
    assert s.value("faulttol_circuit_breaker_buffered_calls", name="late") == 2.0  # the window


def test_exporting_keeps_the_lock_free_success_path_and_counts_queued_successes() -> None:
    breaker = CircuitBreaker(
        "fast", CircuitBreakerConfig(sliding_window_size=5, minimum_number_of_calls=5),
        clock=FakeClock(),
    )
    guarded = breaker.decorate(lambda: None)
    for _ in range(8):  # 5 recorded, then 3 queued lock-free: all before registration
        guarded()
    registry, exporter = fresh()
    exporter.register_circuit_breaker(breaker)
    # The exporter reads breaker.counters: it listens to no per-call event...
    for kind in (CircuitBreakerOnSuccessEvent, CircuitBreakerOnErrorEvent,
                 CircuitBreakerOnIgnoredErrorEvent, CircuitBreakerOnCallNotPermittedEvent):
        assert not breaker.events.wants(kind), kind.__name__
    # ...so successes keep taking the lock-free path (queued, white-box check).
    for _ in range(20):
        guarded()
    assert len(breaker._main_window._queued) == 20
    s = Scrape(registry)
    assert outcomes(s, "faulttol_circuit_breaker_calls_total", name="fast") == {
        "successful": 20, "failed": 0, "ignored": 0, "not_permitted": 0}
    assert s.value("faulttol_circuit_breaker_buffered_calls", name="fast") == 5.0
    breaker.reset()  # the window starts afresh; the exported counter does not go down
    guarded()
    s = Scrape(registry)
    assert s.value("faulttol_circuit_breaker_calls_total", name="fast",
                   outcome="successful") == 21.0


def test_default_registry_and_unregister() -> None:
    exporter = PrometheusExporter()
    try:
        assert exporter.registry is REGISTRY
        exporter.register_circuit_breaker(CircuitBreaker("global-b"))
        assert REGISTRY.get_sample_value(
            "faulttol_circuit_breaker_state", {"name": "global-b", "state": "closed"}) == 1.0
    finally:
        exporter.unregister()
    assert REGISTRY.get_sample_value(
        "faulttol_circuit_breaker_state", {"name": "global-b", "state": "closed"}) is None


def test_two_exporters_on_one_registry_are_refused_by_the_registry() -> None:
    registry, _ = fresh()
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusExporter(registry)


# --- names and docs --------------------------------------------------------------------------


def test_metric_names_follow_prometheus_conventions() -> None:
    names = [spec.prometheus_name for spec in METRICS]
    assert len(set(names)) == len(names)
    for spec in METRICS:
        # faulttol's own metrics, and resilience4j's names for the components it has too
        assert re.fullmatch(r"(faulttol|resilience4j)_[a-z_]+", spec.prometheus_name), (
            spec.prometheus_name
        )
        assert spec.prometheus_name.endswith("_total") == (spec.kind is MetricKind.COUNTER)
    # Every family is present in a scrape, even before anything happened.
    registry, exporter = fresh()
    exporter.register_circuit_breaker(CircuitBreaker("b"))
    text = Scrape(registry).text
    for spec in METRICS:
        assert f"# TYPE {spec.prometheus_name} {spec.kind.value}\n" in text


def test_docs_list_every_metric_and_label() -> None:
    doc = DOCS.read_text()
    for spec in METRICS:
        row = next((line for line in doc.splitlines()
                    if line.startswith(f"| `{spec.prometheus_name}`")), None)
        assert row is not None, spec.prometheus_name
        assert f"`{spec.otel_name}`" in row, spec.otel_name
        for label in spec.labels:
            assert f"`{label}`" in row, (spec.prometheus_name, label)


def test_docs_example_runs(tmp_path: Path) -> None:
    doc = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    example = next(b for b in blocks if "PrometheusExporter" in b)
    script = tmp_path / "example.py"
    script.write_text(example)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=True)
    assert 'faulttol_circuit_breaker_state{name="inventory",state="open"} 1.0' in out.stdout
    assert 'faulttol_provider_switches_total{provider="shop",reason="circuit_breaker"} 1.0' in (
        out.stdout
    )


def test_pybreaker_targets_export_their_state_only() -> None:
    import pybreaker

    breakers = [pybreaker.CircuitBreaker(fail_max=1, name=f"pb{i}") for i in (1, 2)]
    provider = OrderedProvider(["a", "b"], circuit_breaker=breakers, name="legacy",
                               clock=FakeClock())
    registry, exporter = fresh()
    exporter.register_provider(provider)
    breakers[0].open()
    s = Scrape(registry)
    labels = {"name": "pb1", "provider": "legacy", "index": "1", "target": "target-1"}
    assert states(s, **labels) == only("open")
    assert states(s, **{**labels, "name": "pb2", "index": "2", "target": "target-2"}) == only(
        "closed")
    assert not any(dict(k).get("provider") == "legacy"
                   for k in s.series("faulttol_circuit_breaker_calls_total"))
    assert not any(dict(k).get("provider") == "legacy"
                   for k in s.series("faulttol_circuit_breaker_failure_rate_percent"))


def test_provider_failovers_and_rate_limiters_in_a_scrape() -> None:
    from faulttol import RateLimiter, RateLimiterConfig

    clock = FakeClock()
    provider = OrderedProvider(["a", "b"], clock=clock, name="geo", start_health_checks=False)
    limiter = RateLimiter("api", RateLimiterConfig(limit_for_period=3, limit_refresh_period=1.0),
                          clock=clock)
    registry, exporter = fresh()
    exporter.register_provider(provider).register_rate_limiter(limiter)
    provider.set_active_index(2)
    limiter.acquire_permission()
    scrape = Scrape(registry)
    assert scrape.types["faulttol_provider_failovers_total"] == "counter"
    assert scrape.series("faulttol_provider_failovers_total") == {
        (("fail_from", "1"), ("fail_to", "2"), ("provider", "geo"), ("reason", "manual")): 1.0}
    assert scrape.value("resilience4j_ratelimiter_available_permissions", name="api") == 2.0
    assert scrape.value("resilience4j_ratelimiter_waiting_threads", name="api") == 0.0
