"""faulttol.validation: the one set of helpers every config of faulttol and faulttol_redis
checks its fields with (issue 8).

The rule (DESIGN.md, "Style"): a value of the wrong kind raises ``ConfigTypeError`` (both a
``TypeError`` and a ``ValueError``) naming the field; a value of the right kind out of range
(NaN and the infinities included) raises a plain ``ValueError`` naming the field and the
allowed range; a bool is not a number; a value of the wrong kind is never echoed unless it
is a plain scalar (it may hold a secret).
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grimp
import pytest

import faulttol
from faulttol import CircuitBreakerConfig, ConfigTypeError, RetryConfig
from faulttol.health import HealthCheckPolicy
from faulttol.validation import (
    check_bool,
    check_callable,
    check_choice,
    check_exception_types,
    check_host,
    check_instance,
    check_int,
    check_non_negative,
    check_number,
    check_path,
    check_port,
    check_positive,
    check_str,
    describe,
)
from faulttol_redis import DatabaseConfig, LagAwareHealthCheck, MultiDbConfig, PingHealthCheck

SECRET = "redis://admin:hunter2@db:6379"


def _type_error(fn: Callable[[], object], field: str) -> ConfigTypeError:
    with pytest.raises(ConfigTypeError) as info:
        fn()
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert field in str(info.value)
    return info.value


def _range_error(fn: Callable[[], object], field: str, allowed: str) -> ValueError:
    with pytest.raises(ValueError) as info:
        fn()
    assert not isinstance(info.value, ConfigTypeError), repr(info.value)
    message = str(info.value)
    assert field in message and allowed in message, message
    return info.value


# --- describe ---------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = 1


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "None"), (True, "True"), (5, "5"), (2.5, "2.5"), (math.nan, "nan"),
     (Color.RED, "<Color.RED: 1>"), (SECRET, "a str"), ({"password": "hunter2"}, "a dict"),
     (b"hunter2", "a bytes"), ([1], "a list")],
)
def test_describe_shows_scalars_and_only_the_type_of_anything_else(
    value: object, shown: str
) -> None:
    assert describe(value) == shown


# --- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False, "1", None, [1.0], b"1"])
def test_check_number_refuses_what_is_not_a_number_bools_included(value: object) -> None:
    _type_error(lambda: check_number("size", value, minimum=0), "size")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_check_number_refuses_nan_infinities_and_ints_too_large_for_a_float(value: object) -> None:
    _range_error(lambda: check_number("size", value), "size", "finite")


def test_check_number_names_nan() -> None:
    error = _range_error(lambda: check_non_negative("weight", math.nan), "weight", ">= 0")
    assert "NaN" in str(error)


def test_check_number_bounds_and_generated_ranges() -> None:
    assert check_number("x", 0, minimum=0) == 0.0
    assert isinstance(check_number("x", 3, minimum=0), float)
    _range_error(lambda: check_number("x", -0.1, minimum=0), "x", ">= 0 and finite")
    _range_error(
        lambda: check_number("x", 0, minimum=0, exclusive_minimum=True), "x", "> 0 and finite"
    )
    _range_error(
        lambda: check_number("x", 100.5, minimum=0, maximum=100, exclusive_minimum=True),
        "x",
        "in (0, 100]",
    )
    _range_error(lambda: check_number("x", 1.5, minimum=0, maximum=1), "x", "in [0, 1]")
    assert check_number("x", 1, minimum=0, maximum=1) == 1.0
    _range_error(lambda: check_number("x", 1, maximum=1, exclusive_maximum=True), "x", "< 1")
    _range_error(lambda: check_number("x", 7, minimum=8, allowed="at least 8"), "x", "at least 8")


def test_check_positive_and_non_negative() -> None:
    assert check_non_negative("d", 0) == 0.0
    assert check_positive("d", 0.5) == 0.5
    _range_error(lambda: check_positive("interval", 0), "interval", "> 0")
    _range_error(lambda: check_non_negative("delay", -1), "delay", ">= 0")


# --- ints and ports ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, 5.0, 2.5, "5", None, math.nan])
def test_check_int_refuses_bools_floats_and_strings(value: object) -> None:
    error = _type_error(lambda: check_int("size", value, minimum=1), "size")
    assert "an int >= 1" in str(error)


def test_check_int_range_and_unit() -> None:
    assert check_int("size", 1, minimum=1) == 1
    _range_error(lambda: check_int("size", 0, minimum=1), "size", ">= 1")
    _range_error(
        lambda: check_int("lag", -1, minimum=0, unit="milliseconds"), "lag", ">= 0 (milliseconds)"
    )
    _range_error(lambda: check_int("n", 11, minimum=1, maximum=10), "n", "in 1..10")


@pytest.mark.parametrize("value", [0, -1, 65536])
def test_check_port_range(value: int) -> None:
    _range_error(lambda: check_port("port", value), "port", "1..65535")
    assert check_port("port", 65535) == 65535


# --- other kinds ------------------------------------------------------------------------------


def test_check_bool_refuses_truthy_values() -> None:
    assert check_bool("flag", False) is False
    for value in (1, "yes", None):
        _type_error(lambda value=value: check_bool("flag", value), "flag")


def test_check_str() -> None:
    assert check_str("name", "n") == "n"
    assert check_str("name", None, optional=True) is None
    assert "or None" in str(_type_error(lambda: check_str("name", 5, optional=True), "name"))
    _type_error(lambda: check_str("name", None), "name")
    _range_error(lambda: check_str("user", "", non_empty=True), "user", "non-empty")


def test_check_choice() -> None:
    assert check_choice("strategy", "weighted", ("ordered", "weighted")) == "weighted"
    _type_error(lambda: check_choice("strategy", 5, ("ordered",)), "strategy")
    _range_error(
        lambda: check_choice("strategy", "random", ("ordered", "weighted")),
        "strategy",
        "ordered, weighted",
    )


def test_check_instance_does_not_echo_the_value() -> None:
    assert check_instance("policy", HealthCheckPolicy.HEALTHY_ANY, HealthCheckPolicy) is (
        HealthCheckPolicy.HEALTHY_ANY
    )
    error = _type_error(lambda: check_instance("policy", SECRET, HealthCheckPolicy), "policy")
    assert "a HealthCheckPolicy" in str(error) and "hunter2" not in str(error)


def test_check_callable() -> None:
    assert check_callable("fn", None) is None
    assert check_callable("fn", len) is len
    _type_error(lambda: check_callable("fn", None, optional=False), "fn")
    _type_error(lambda: check_callable("fn", "len"), "fn")


def test_check_exception_types_takes_one_type_or_any_iterable_of_them() -> None:
    assert check_exception_types("errors", OSError) == (OSError,)
    assert check_exception_types("errors", [OSError, KeyError]) == (OSError, KeyError)
    assert check_exception_types("errors", (e for e in (OSError,))) == (OSError,)
    assert check_exception_types("errors", ()) == ()
    for bad in ("ValueError", b"x", 5, None, [int], [OSError, "KeyError"]):
        error = _type_error(lambda bad=bad: check_exception_types("errors", bad), "errors")
        assert "exception type" in str(error)


def test_check_path(tmp_path: Path) -> None:
    assert check_path("store", None) is None
    assert check_path("store", tmp_path / "a") == os.fspath(tmp_path / "a")
    _type_error(lambda: check_path("store", b"/tmp/x"), "store")
    _type_error(lambda: check_path("store", None, optional=False), "store")
    _range_error(lambda: check_path("store", ""), "store", "non-empty")


@pytest.mark.parametrize("value", [SECRET, "admin:hunter2@db", "db/0", "db?x=1", "a b"])
def test_check_host_refuses_urls_without_showing_them(value: str) -> None:
    error = _range_error(lambda: check_host("host", value, hint="use url="), "host", "host name")
    assert "hunter2" not in str(error) and "use url=" in str(error)


def test_check_host() -> None:
    assert check_host("host", "db.example") == "db.example"
    assert check_host("host", "::1") == "::1"
    _type_error(lambda: check_host("host", 5), "host")
    _range_error(lambda: check_host("host", ""), "host", "non-empty")


# --- every config follows the same rule -------------------------------------------------------

BUILDERS: dict[str, Callable[..., object]] = {
    "CircuitBreakerConfig": CircuitBreakerConfig,
    "RetryConfig": RetryConfig,
    "DatabaseConfig": DatabaseConfig,
    "MultiDbConfig": lambda **kw: MultiDbConfig([DatabaseConfig()], **kw),
    "LagAwareHealthCheck": LagAwareHealthCheck,
}

HUGE_INT_FIELDS = [
    ("CircuitBreakerConfig", "wait_duration_in_open_state"),
    ("CircuitBreakerConfig", "failure_rate_threshold"),
    ("RetryConfig", "wait_duration"),
    ("RetryConfig", "backoff_multiplier"),
    ("DatabaseConfig", "weight"),
    ("MultiDbConfig", "health_check_interval"),
    ("MultiDbConfig", "failover_delay"),
    ("LagAwareHealthCheck", "timeout"),
]


@pytest.mark.parametrize(("config", "field"), HUGE_INT_FIELDS)
def test_an_int_too_large_for_a_float_is_a_value_error_naming_the_field(
    config: str, field: str
) -> None:
    # It used to escape as an OverflowError (float() of the value), naming nothing.
    _range_error(lambda: BUILDERS[config](**{field: 10**400}), field, field)


def test_a_wrong_kind_health_check_policy_is_not_echoed() -> None:
    # PingHealthCheck used to show the value's repr: a string given by mistake was printed.
    error = _type_error(lambda: PingHealthCheck(cluster_policy=SECRET), "cluster_policy")  # type: ignore[arg-type]
    assert "hunter2" not in str(error)


@pytest.mark.parametrize(
    ("config", "field"),
    [("CircuitBreakerConfig", "record_exceptions"), ("RetryConfig", "retry_exceptions"),
     ("MultiDbConfig", "fallback_exceptions")],
)
def test_every_config_takes_the_same_exception_lists(config: str, field: str) -> None:
    # RetryConfig used to refuse a generator (or any iterable but a tuple, list or set) that
    # CircuitBreakerConfig and MultiDbConfig took.
    built: Any = BUILDERS[config](**{field: (e for e in (OSError, KeyError))})
    assert getattr(built, field) == (OSError, KeyError)


# --- faulttol_redis uses only public faulttol names --------------------------------------------

CONFIG_MODULES = (
    "faulttol_redis.config",
    "faulttol_redis._database",
    "faulttol_redis._clients",
    "faulttol_redis._secrets",
    "faulttol_redis.healthcheck",
    "faulttol_redis._cluster",
    "faulttol_redis._connection",
)


def test_faulttol_redis_config_modules_import_no_private_faulttol_module() -> None:
    # config and healthcheck imported ConfigTypeError from faulttol._errors.
    graph = grimp.build_graph("faulttol_redis", "faulttol", cache_dir=None)
    assert {"faulttol_redis.config", "faulttol_redis.healthcheck"} <= graph.modules
    private = {
        (module, imported)
        for module in CONFIG_MODULES
        if module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("faulttol.") and imported.rpartition(".")[2].startswith("_")
    }
    assert private == set()


def test_validation_is_public() -> None:
    import faulttol.validation as validation

    assert validation.ConfigTypeError is faulttol.ConfigTypeError
    for name in validation.__all__:
        assert not name.startswith("_") and getattr(validation, name).__doc__, name


# --- OrderedProvider's own arguments ----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [("health_check_interval", math.nan, "> 0"), ("health_check_interval", math.inf, "> 0"),
     ("failover_delay", math.nan, ">= 0"), ("auto_failback_interval", math.nan, "> 0"),
     ("auto_failback_grace_period", math.nan, ">= 0"), ("failover_attempts", 0, ">= 1")],
)
def test_ordered_provider_refuses_out_of_range_arguments(
    field: str, value: object, allowed: str
) -> None:
    # NaN (and an infinite interval) used to be accepted: every comparison with NaN is false.
    _range_error(
        lambda: faulttol.OrderedProvider(["a"], start_health_checks=False, **{field: value}),
        field,
        allowed,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("health_check_interval", "5"), ("failover_attempts", 2.0), ("failover_delay", True),
     ("strategy", None), ("fallback_exceptions", ["x"])],
)
def test_ordered_provider_refuses_wrong_kinds_naming_the_argument(
    field: str, value: object
) -> None:
    # A string interval used to fail with "'<=' not supported between 'str' and 'int'".
    _type_error(
        lambda: faulttol.OrderedProvider(["a"], start_health_checks=False, **{field: value}),
        field,
    )


def test_ordered_provider_weights_follow_the_rule() -> None:
    _range_error(
        lambda: faulttol.OrderedProvider(["a"], weights=[math.inf], start_health_checks=False),
        "weight",
        ">= 0",
    )
    _type_error(
        lambda: faulttol.OrderedProvider(["a"], weights=["1"], start_health_checks=False),
        "weight",
    )
