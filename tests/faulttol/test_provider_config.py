"""ProviderConfig (validation table, defaults, merging with the providers' keywords),
FailoverStrategy, the error pair and the deprecated 0.1.0 names, the breaker protocol and the
breaker registry of a provider (no I/O: FakeClock)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import redis

import faulttol
import faulttol.provider
import faulttol_redis
from faulttol import (
    AsyncOrderedProvider,
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerRegistry,
    ConfigTypeError,
    FailoverStrategy,
    NoValidTargetError,
    OrderedProvider,
    ProviderConfig,
    RetryConfig,
    TemporaryUnavailableError,
)
from faulttol.testing import FakeClock

# --- ProviderConfig: validation table ----------------------------------------------------------

OUT_OF_RANGE = [
    ("health_check_interval", 0, "> 0"),
    ("health_check_interval", -1.0, "> 0"),
    ("health_check_interval", math.nan, "> 0"),
    ("health_check_interval", math.inf, "> 0"),
    ("auto_failback_interval", 0, "> 0"),
    ("auto_failback_interval", math.nan, "> 0"),
    ("auto_failback_grace_period", -0.5, ">= 0"),
    ("auto_failback_grace_period", math.inf, ">= 0"),
    ("failover_attempts", 0, ">= 1"),
    ("failover_delay", -1, ">= 0"),
    ("failover_delay", math.nan, ">= 0"),
    ("failover_strategy", "random", "ordered, weighted"),
]

WRONG_KIND = [
    ("circuit_breaker", RetryConfig()),
    ("retry", CircuitBreakerConfig()),
    ("fallback_exceptions", ["x"]),
    ("fallback_exceptions", "ConnectionError"),
    ("health_check_interval", "5"),
    ("health_check_interval", True),
    ("auto_failback_interval", "10"),
    ("auto_failback_grace_period", [1]),
    ("failover_strategy", None),
    ("failover_strategy", 1),
    ("failover_attempts", 2.0),
    ("failover_attempts", True),
    ("failover_delay", "12"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), OUT_OF_RANGE)
def test_an_out_of_range_value_is_a_value_error_naming_the_field_and_range(
    field: str, value: object, allowed: str
) -> None:
    with pytest.raises(ValueError) as info:
        ProviderConfig(**{field: value})
    assert not isinstance(info.value, ConfigTypeError)
    assert field in str(info.value) and allowed in str(info.value)


@pytest.mark.parametrize(("field", "value"), WRONG_KIND)
def test_a_wrong_kind_is_a_config_type_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigTypeError) as info:
        ProviderConfig(**{field: value})
    assert field in str(info.value)


def test_defaults_are_the_named_constants() -> None:
    config = ProviderConfig()
    assert config.fallback_exceptions == faulttol.provider.DEFAULT_FALLBACK_EXCEPTIONS
    assert config.fallback_exceptions == (CallNotPermittedError,)
    assert config.health_check_interval == faulttol.provider.DEFAULT_HEALTH_CHECK_INTERVAL == 5.0
    assert config.failover_attempts == faulttol.provider.DEFAULT_FAILOVER_ATTEMPTS == 10
    assert config.failover_delay == faulttol.provider.DEFAULT_FAILOVER_DELAY == 12.0
    assert config.failover_strategy is faulttol.provider.DEFAULT_FAILOVER_STRATEGY
    assert config.failover_strategy is FailoverStrategy.ORDERED
    assert config.auto_failback_interval is None and config.auto_failback_grace_period is None
    assert config.failover_timeout == 120.0
    assert config.effective_grace_period == 5.0


def test_the_config_is_frozen_keyword_only_and_normalized() -> None:
    config = ProviderConfig(failover_strategy="weighted", fallback_exceptions=KeyError,
                            health_check_interval=2)
    assert config.failover_strategy is FailoverStrategy.WEIGHTED
    assert config.failover_strategy == "weighted"  # a str enum: the strings still compare
    assert config.fallback_exceptions == (KeyError,)
    assert config.health_check_interval == 2.0
    with pytest.raises(AttributeError):
        config.failover_delay = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        ProviderConfig(None)  # type: ignore[misc]
    assert config.replace(failover_delay=1.0).failover_delay == 1.0
    with pytest.raises(ValueError, match="failover_delay"):
        config.replace(failover_delay=-1.0)


# --- the providers take it ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", [OrderedProvider, AsyncOrderedProvider])
def test_providers_take_one_config_and_the_contract_keywords_override_it(cls: Any) -> None:
    config = ProviderConfig(failover_strategy=FailoverStrategy.WEIGHTED, failover_delay=1.0,
                            health_check_interval=9.0)
    provider = cls(["light", "heavy"], config, weights=[1.0, 3.0], start_health_checks=False)
    assert provider.config is config
    assert provider.active_index == 2  # weighted: the heaviest first
    overridden = cls(["a"], config, health_check_interval=2.0, start_health_checks=False)
    assert overridden.config.health_check_interval == 2.0
    assert overridden.config.failover_delay == 1.0
    with pytest.raises(ConfigTypeError, match="config"):
        cls(["a"], {"failover_delay": 1.0}, start_health_checks=False)


@pytest.mark.parametrize(
    ("old", "value", "field"),
    [("strategy", "weighted", "failover_strategy"),
     ("auto_failback_grace_period", 3.0, "auto_failback_grace_period"),
     ("failover_attempts", 2, "failover_attempts"),
     ("failover_delay", 1.5, "failover_delay")],
)
def test_the_0_1_0_loose_keywords_warn_naming_the_config_field(
    old: str, value: object, field: str
) -> None:
    with pytest.warns(DeprecationWarning, match=rf"{old}=.*ProviderConfig\({field}=") as record:
        provider = OrderedProvider(["a", "b"], start_health_checks=False, **{old: value})
    assert record[0].filename == __file__  # the warning points at the caller
    assert getattr(provider.config, field) == value


def test_an_unknown_keyword_is_still_a_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'stratgy'"):
        OrderedProvider(["a"], stratgy="weighted")


# --- errors ------------------------------------------------------------------------------------


def test_the_error_pair_are_siblings_and_the_redis_errors_subclass_them() -> None:
    assert not issubclass(NoValidTargetError, TemporaryUnavailableError)
    assert not issubclass(TemporaryUnavailableError, NoValidTargetError)
    temporary = faulttol_redis.TemporaryUnavailableError
    permanent = faulttol_redis.NoValidDatabaseError
    assert issubclass(temporary, TemporaryUnavailableError)
    assert issubclass(permanent, NoValidTargetError)
    for cls in (temporary, permanent):
        assert issubclass(cls, redis.exceptions.ConnectionError)
    assert not issubclass(temporary, permanent) and not issubclass(permanent, temporary)
    with pytest.raises(TemporaryUnavailableError):
        raise temporary("no database is eligible")


@pytest.mark.parametrize(
    ("old", "new"),
    [("TargetsTemporarilyUnavailableError", TemporaryUnavailableError),
     ("NoEligibleTargetError", NoValidTargetError)],
)
def test_the_old_error_names_are_deprecated_aliases(old: str, new: type) -> None:
    with pytest.warns(DeprecationWarning, match=new.__name__):
        assert getattr(faulttol.provider, old) is new
    with pytest.raises(AttributeError):
        faulttol.provider.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


def test_the_default_unavailable_errors_are_the_new_pair() -> None:
    clock = FakeClock()

    def down(target: str) -> str:
        raise ConnectionError(target)

    provider = OrderedProvider(
        ["a", "b"],
        ProviderConfig(fallback_exceptions=(CallNotPermittedError, ConnectionError),
                       failover_attempts=1, failover_delay=1.0),
        retry=RetryConfig(max_attempts=1, retry_exceptions=(ConnectionError,)),
        health_check=lambda t: False, clock=clock, start_health_checks=False,
    )
    with pytest.raises(TemporaryUnavailableError, match="no target is eligible"):
        provider.execute(down)
    clock.advance(1.0)
    with pytest.raises(NoValidTargetError):
        provider.execute(down)


# --- breakers: the protocol and the registry ---------------------------------------------------


class MinimalBreaker:
    """Any object with the breaker API is accepted (no faulttol class involved)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = faulttol.State.CLOSED
        self.results: list[object] = []

    def try_acquire_permission(self) -> bool:
        return self.state is not faulttol.State.OPEN

    def on_result(self, duration: float, result: object) -> None:
        self.results.append(result)

    def on_error(self, duration: float, exc: BaseException) -> None:
        self.results.append(exc)

    def decorate(self, fn: Any) -> Any:
        return fn

    def transition_to_open_state(self) -> None:
        self.state = faulttol.State.OPEN

    def transition_to_closed_state(self) -> None:
        self.state = faulttol.State.CLOSED

    def transition_to_half_open_state(self) -> None:
        self.state = faulttol.State.HALF_OPEN


def test_any_object_with_the_breaker_api_is_accepted_and_others_are_refused() -> None:
    breakers = [MinimalBreaker("x"), MinimalBreaker("y")]
    provider = OrderedProvider(["a", "b"], circuit_breaker=breakers, start_health_checks=False)
    assert provider.execute(lambda t: t.upper()) == "A"
    assert breakers[0].results == ["A"]
    with pytest.raises(TypeError, match="pybreaker"):
        OrderedProvider(["a"], circuit_breaker=[object()])
    with pytest.raises(TypeError, match="breaker API"):
        faulttol.Decorators.of(lambda: 1).with_circuit_breaker(object())


def test_core_modules_do_not_import_the_interop_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys, faulttol, faulttol.provider, faulttol.decorators, faulttol.health\n"
        "assert not [m for m in sys.modules if m.startswith('faulttol.interop')], 'interop'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_a_bare_pybreaker_breaker_is_adapted_through_the_entry_point_in_a_fresh_process() -> None:
    """Deterministic: no import of faulttol.interop by the caller (or by another test) needed;
    the adapter is loaded only when a non-faulttol breaker is given."""
    import subprocess
    import sys

    code = (
        "import sys, pybreaker\n"
        "from faulttol import Decorators, OrderedProvider\n"
        "assert 'faulttol.interop.pybreaker' not in sys.modules\n"
        "p = OrderedProvider(['a'], circuit_breaker=[pybreaker.CircuitBreaker(name='pb')],\n"
        "                    start_health_checks=False)\n"
        "assert type(p.breaker(1)).__name__ == 'PyBreakerAdapter', p.breaker(1)\n"
        "f = Decorators.of(lambda: 2).with_circuit_breaker(pybreaker.CircuitBreaker())\n"
        "assert f.decorate()() == 2\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_breakers_are_made_in_the_registry_and_a_removed_target_leaves_it() -> None:
    registry = CircuitBreakerRegistry(clock=FakeClock())
    provider = OrderedProvider(["a", "b"], names=["east", "west"], breaker_registry=registry,
                               name="api", start_health_checks=False)
    assert registry.find("api:east") is provider.breaker(1)
    assert isinstance(registry.find("api:west"), CircuitBreaker)
    provider.add_target("c", name="north")
    assert registry.find("api:north") is provider.breaker(3)
    provider.remove_target(1)
    assert registry.find("api:east") is None
    assert sorted(registry.names()) == ["api:north", "api:west"]


def test_the_0_1_0_names_warn_nothing_when_unused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        provider = OrderedProvider(["a"], ProviderConfig(), start_health_checks=False)
        provider.execute(lambda t: t)
        provider.close()
