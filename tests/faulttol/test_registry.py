"""Tests for faulttol.registry: get-or-create by name, shared configs, thread safety."""

from __future__ import annotations

import threading

import pytest

from faulttol.breaker import CircuitBreaker, CircuitBreakerConfig
from faulttol.registry import (
    DEFAULT_CONFIG_NAME,
    CircuitBreakerRegistry,
    ConfigurationNotFoundError,
    RetryRegistry,
)
from faulttol.retry import Retry, RetryConfig
from faulttol.testing import FakeClock

SMALL = CircuitBreakerConfig(sliding_window_size=10, minimum_number_of_calls=5)
SLOW = CircuitBreakerConfig(wait_duration_in_open_state=5.0)


def test_get_or_create_returns_same_breaker() -> None:
    clock = FakeClock()
    registry = CircuitBreakerRegistry(SMALL, clock=clock)
    first = registry.circuit_breaker("db")
    assert isinstance(first, CircuitBreaker)
    assert first.name == "db"
    assert first.config is SMALL
    assert first.clock is clock
    assert registry.circuit_breaker("db") is first
    assert registry.circuit_breaker("db", SMALL) is first
    assert registry.circuit_breaker("cache") is not first
    assert registry.default_config is SMALL
    assert registry.clock is clock


def test_default_config_when_none_given() -> None:
    registry = CircuitBreakerRegistry()
    assert registry.default_config == CircuitBreakerConfig()
    assert registry.circuit_breaker("x").config == CircuitBreakerConfig()
    assert registry.get_configuration(DEFAULT_CONFIG_NAME) is registry.default_config


def test_explicit_config_object() -> None:
    registry = CircuitBreakerRegistry()
    breaker = registry.circuit_breaker("slow", SLOW)
    assert breaker.config is SLOW


def test_existing_name_with_different_config_raises() -> None:
    registry = CircuitBreakerRegistry()
    registry.circuit_breaker("db", SMALL)
    with pytest.raises(ValueError, match=r"'db'.*different configuration"):
        registry.circuit_breaker("db", SLOW)
    # an equal (not identical) config is fine
    same = CircuitBreakerConfig(sliding_window_size=10, minimum_number_of_calls=5)
    assert registry.circuit_breaker("db", same).config is SMALL


def test_shared_configuration_by_name() -> None:
    registry = CircuitBreakerRegistry(configs={"slow": SLOW})
    registry.add_configuration("small", SMALL)
    assert registry.get_configuration("slow") is SLOW
    assert registry.get_configuration("small") is SMALL
    assert registry.configurations == {"slow": SLOW, "small": SMALL}
    breaker = registry.circuit_breaker("reports", "slow")
    assert breaker.config is SLOW
    assert registry.circuit_breaker("reports", "slow") is breaker
    with pytest.raises(ValueError, match="different configuration"):
        registry.circuit_breaker("reports", "small")
    assert registry.circuit_breaker("other", "default").config == CircuitBreakerConfig()


def test_unknown_configuration_name() -> None:
    registry = CircuitBreakerRegistry(configs={"slow": SLOW})
    assert issubclass(ConfigurationNotFoundError, KeyError)
    assert issubclass(ConfigurationNotFoundError, ValueError)
    with pytest.raises(ConfigurationNotFoundError) as info:
        registry.circuit_breaker("x", "nope")
    assert str(info.value) == "no circuit breaker configuration named 'nope' (registered: slow)"
    assert "x" not in registry
    with pytest.raises(ValueError, match="'missing'"):
        registry.get_configuration("missing")


def test_add_configuration_rules() -> None:
    registry = CircuitBreakerRegistry()
    registry.add_configuration("a", SMALL)
    registry.add_configuration(
        "a", CircuitBreakerConfig(sliding_window_size=10, minimum_number_of_calls=5)
    )
    with pytest.raises(ValueError, match="'a'"):
        registry.add_configuration("a", SLOW)
    with pytest.raises(ValueError, match="reserved"):
        registry.add_configuration(DEFAULT_CONFIG_NAME, SLOW)
    with pytest.raises(ValueError, match="non-empty"):
        registry.add_configuration("", SLOW)
    with pytest.raises(TypeError, match="CircuitBreakerConfig"):
        registry.add_configuration("r", RetryConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="CircuitBreakerConfig"):
        CircuitBreakerRegistry(RetryConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="CircuitBreakerConfig"):
        registry.circuit_breaker("b", RetryConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        registry.circuit_breaker(1)  # type: ignore[arg-type]


def test_find_remove_all_contains_len() -> None:
    registry = CircuitBreakerRegistry()
    assert registry.find("a") is None
    assert len(registry) == 0 and registry.all() == ()
    a = registry.circuit_breaker("a")
    b = registry.circuit_breaker("b")
    assert registry.find("a") is a
    assert "a" in registry and "c" not in registry
    assert len(registry) == 2
    assert registry.all() == (a, b)
    assert registry.names() == ("a", "b")
    assert list(registry) == [a, b]
    assert "a" in repr(registry)
    assert registry.remove("a") is a
    assert registry.remove("a") is None
    assert "a" not in registry and len(registry) == 1
    # after removal the name is free again, with any config
    fresh = registry.circuit_breaker("a", SLOW)
    assert fresh is not a and fresh.config is SLOW


def test_concurrent_get_or_create_yields_one_instance() -> None:
    registry = CircuitBreakerRegistry()
    barrier = threading.Barrier(16)
    got: list[CircuitBreaker] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        for i in range(50):
            breaker = registry.circuit_breaker(f"b{i % 5}")
            with lock:
                got.append(breaker)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(registry) == 5
    assert len({id(b) for b in got}) == 5
    for breaker in got:
        assert registry.find(breaker.name) is breaker


# --- retry registry ---------------------------------------------------------------------------


def test_retry_registry_get_or_create() -> None:
    clock = FakeClock()
    fast = RetryConfig(max_attempts=5, wait_duration=0.1)
    registry = RetryRegistry(RetryConfig(max_attempts=2), configs={"fast": fast}, clock=clock)
    default = registry.retry("a")
    assert isinstance(default, Retry)
    assert default.config.max_attempts == 2
    assert default.clock is clock
    assert registry.retry("a") is default
    quick = registry.retry("b", "fast")
    assert quick.config is fast
    assert registry.retry("b", fast) is quick
    with pytest.raises(ValueError, match="'b'"):
        registry.retry("b", RetryConfig())
    with pytest.raises(KeyError, match="retry configuration named 'slow'"):
        registry.retry("c", "slow")
    assert registry.all() == (default, quick)
    assert registry.remove("a") is default
    assert len(registry) == 1 and "b" in registry
    assert registry.find("a") is None


def test_retry_registry_defaults_and_types() -> None:
    registry = RetryRegistry()
    assert registry.default_config == RetryConfig()
    with pytest.raises(TypeError, match="RetryConfig"):
        registry.add_configuration("x", CircuitBreakerConfig())  # type: ignore[arg-type]


def test_registry_retry_uses_its_clock_for_backoff() -> None:
    clock = FakeClock()
    registry = RetryRegistry(clock=clock)
    retry = registry.retry("r")
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError
        return "ok"

    assert retry.call(flaky) == "ok"
    assert clock.sleeps == [0.5, 1.0]
