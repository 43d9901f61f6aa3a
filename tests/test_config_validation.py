"""Bad configuration values, one table per config class (issue 7, item 11).

The rule, the same for every config: a value of the wrong kind raises ``ConfigTypeError``
(both a ``TypeError`` and a ``ValueError``) naming the field; a value of the right kind out
of range (negative, zero where not allowed, NaN, infinity) raises ``ValueError`` naming the
field and the allowed range. Every error is raised at construction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faulttol import CircuitBreakerConfig, RetryConfig, SlidingWindowType
from faulttol._errors import ConfigTypeError
from faulttol.health import HealthCheckPolicy
from faulttol_redis.config import DatabaseConfig, MultiDbConfig
from faulttol_redis.healthcheck import LagAwareHealthCheck, PingHealthCheck

NAN = math.nan
INF = math.inf

TYPE = "type"  # ConfigTypeError naming the field
RANGE = "range"  # ValueError (not a ConfigTypeError) naming the field and the range

Row = tuple[str, object, str, str]
"""(field, bad value, TYPE or RANGE, a regex the message must also match: the range)."""


def _rows_for_count(field: str, minimum: int) -> list[Row]:
    at_least = rf">= {minimum}"
    return [
        (field, "5", TYPE, "int"),
        (field, None, TYPE, "int"),
        (field, True, TYPE, "int"),
        (field, 5.0, TYPE, "int"),
        (field, 2.5, TYPE, "int"),
        (field, NAN, TYPE, "int"),
        (field, INF, TYPE, "int"),
        (field, minimum - 1, RANGE, at_least),
        (field, -7, RANGE, at_least),
    ]


def _rows_for_number(field: str, range_text: str, *bad_numbers: float) -> list[Row]:
    rows: list[Row] = [
        (field, "1", TYPE, "number"),
        (field, True, TYPE, "number"),
        (field, [1.0], TYPE, "number"),
    ]
    rows += [(field, value, RANGE, range_text) for value in bad_numbers]
    return rows


def _rows_for_bool(field: str) -> list[Row]:
    return [(field, "yes", TYPE, "bool"), (field, 1, TYPE, "bool"), (field, None, TYPE, "bool")]


def _rows_for_exceptions(field: str) -> list[Row]:
    return [
        (field, "ValueError", TYPE, "exception type"),
        (field, 5, TYPE, "exception type"),
        (field, [int], TYPE, "exception type"),
        (field, None, TYPE, "exception type"),
    ]


def _rows_for_callable(field: str) -> list[Row]:
    return [(field, 5, TYPE, "callable"), (field, "len", TYPE, "callable")]


def check_row(
    build: Callable[..., object], field: str, value: object, kind: str, text: str
) -> None:
    with pytest.raises(ValueError) as info:
        build(**{field: value})
    error = info.value
    message = str(error)
    assert field in message, message
    assert re.search(text, message), message
    if kind == TYPE:
        assert isinstance(error, ConfigTypeError), repr(error)
        assert isinstance(error, TypeError)
    else:
        assert not isinstance(error, ConfigTypeError), repr(error)


def ids(rows: list[Row]) -> list[str]:
    return [f"{field}={value!r}" for field, value, _, _ in rows]


# --- CircuitBreakerConfig ----------------------------------------------------------------

RATE = r"\(0, 100\]"
SECONDS = r">= 0"
BREAKER_ROWS: list[Row] = [
    ("sliding_window_type", "COUNT_BASED", TYPE, "SlidingWindowType"),
    ("sliding_window_type", None, TYPE, "SlidingWindowType"),
    ("sliding_window_type", 1, TYPE, "SlidingWindowType"),
    *_rows_for_count("sliding_window_size", 1),
    *_rows_for_count("minimum_number_of_calls", 1),
    *_rows_for_count("minimum_number_of_failures", 0),
    *_rows_for_count("permitted_number_of_calls_in_half_open_state", 1),
    *_rows_for_number("failure_rate_threshold", RATE, NAN, INF, -INF, 0, -1, 100.5),
    ("failure_rate_threshold", None, TYPE, "number"),
    *_rows_for_number("slow_call_rate_threshold", RATE, NAN, INF, 0, 101),
    *_rows_for_number("slow_call_duration_threshold", SECONDS, NAN, INF, -1),
    *_rows_for_number("wait_duration_in_open_state", SECONDS, NAN, INF, -0.5),
    ("wait_duration_in_open_state", None, TYPE, "number"),
    *_rows_for_number("max_wait_duration_in_half_open_state", SECONDS, NAN, INF, -1),
    *_rows_for_bool("automatic_transition_from_open_to_half_open_enabled"),
    *_rows_for_exceptions("record_exceptions"),
    *_rows_for_exceptions("ignore_exceptions"),
    *_rows_for_callable("wait_interval_function_in_open_state"),
    *_rows_for_callable("record_exception"),
    *_rows_for_callable("ignore_exception"),
    *_rows_for_callable("record_result"),
]


@pytest.mark.parametrize(("field", "value", "kind", "text"), BREAKER_ROWS, ids=ids(BREAKER_ROWS))
def test_circuit_breaker_config_rejects(field: str, value: object, kind: str, text: str) -> None:
    check_row(CircuitBreakerConfig, field, value, kind, text)


def test_circuit_breaker_config_string_window_size_is_a_config_type_error() -> None:
    # the CHANGELOG's promise: wrong-kind values raise ConfigTypeError
    with pytest.raises(ConfigTypeError, match="sliding_window_size"):
        CircuitBreakerConfig(sliding_window_size="x")  # type: ignore[arg-type]


def test_circuit_breaker_config_still_accepts_good_values() -> None:
    config = CircuitBreakerConfig(
        sliding_window_type=SlidingWindowType.TIME_BASED,
        sliding_window_size=1,
        minimum_number_of_calls=1,
        minimum_number_of_failures=0,
        failure_rate_threshold=100,
        slow_call_rate_threshold=0.5,
        slow_call_duration_threshold=0,
        wait_duration_in_open_state=0,
        max_wait_duration_in_half_open_state=2.5,
        record_exceptions=[OSError],  # type: ignore[arg-type]
        ignore_exceptions=KeyError,  # type: ignore[arg-type]
        record_result=bool,
    )
    assert config.record_exceptions == (OSError,)
    assert config.ignore_exceptions == (KeyError,)


# --- RetryConfig -------------------------------------------------------------------------

RETRY_ROWS: list[Row] = [
    *_rows_for_count("max_attempts", 1),
    *_rows_for_number("wait_duration", SECONDS, NAN, INF, -1),
    ("wait_duration", None, TYPE, "number"),
    *_rows_for_number("backoff_multiplier", r">= 1", NAN, INF, 0.5, 0),
    *_rows_for_number("max_wait_duration", SECONDS, NAN, INF, -1),
    *_rows_for_number("jitter", r"\[0, 1\]", NAN, INF, -0.1, 1.5),
    ("jitter", None, TYPE, "number"),
    *_rows_for_exceptions("retry_exceptions"),
    *_rows_for_exceptions("ignore_exceptions"),
    *_rows_for_callable("retry_on_exception"),
    *_rows_for_callable("retry_on_result"),
    *_rows_for_bool("fail_after_max_attempts"),
]


@pytest.mark.parametrize(("field", "value", "kind", "text"), RETRY_ROWS, ids=ids(RETRY_ROWS))
def test_retry_config_rejects(field: str, value: object, kind: str, text: str) -> None:
    check_row(RetryConfig, field, value, kind, text)


def test_retry_config_still_accepts_good_values() -> None:
    config = RetryConfig(max_attempts=1, wait_duration=0, backoff_multiplier=1,
                         max_wait_duration=None, jitter=1)
    assert config.max_wait_duration is None
    assert RetryConfig(max_wait_duration=0).max_wait_duration == 0


# --- DatabaseConfig ----------------------------------------------------------------------

PORT = r"1\.\.65535"
DATABASE_ROWS: list[Row] = [
    ("host", 5, TYPE, "str"),
    ("host", None, TYPE, "str"),
    ("host", b"h", TYPE, "str"),
    ("host", "", RANGE, "non-empty"),
    ("host", "redis://h:6379", RANGE, "url="),
    ("host", "h/0", RANGE, "host name"),
    ("port", "6379", TYPE, "int"),
    ("port", None, TYPE, "int"),
    ("port", True, TYPE, "int"),
    ("port", 6379.0, TYPE, "int"),
    ("port", NAN, TYPE, "int"),
    ("port", 0, RANGE, PORT),
    ("port", -1, RANGE, PORT),
    ("port", 65536, RANGE, PORT),
    ("url", 5, TYPE, "str"),
    ("url", b"redis://h", TYPE, "str"),
    ("url", "http://h", RANGE, "redis://"),
    ("url", "redis://h:notaport", RANGE, "redis://"),
    *_rows_for_number("weight", SECONDS, NAN, INF, -1),
    ("weight", None, TYPE, "number"),
    ("name", 5, TYPE, "str"),
    ("name", b"n", TYPE, "str"),
    ("client_kwargs", ["socket_timeout"], TYPE, "mapping"),
    ("client_kwargs", 5, TYPE, "mapping"),
    ("cluster", "yes", TYPE, "bool"),
    ("cluster", 1, TYPE, "bool"),
    ("cluster", None, TYPE, "bool"),
    ("health_check_url", 5, TYPE, "str"),
    ("health_check_url", b"https://h", TYPE, "str"),
    ("health_check_url", "cluster.example.com:9443", RANGE, "https://"),
    ("health_check_url", "cluster.example.com", RANGE, "https://"),
    ("health_check_url", "ftp://cluster.example.com", RANGE, "https://"),
    ("health_check_url", "https://", RANGE, "host"),
    ("health_check_url", "https:///v1", RANGE, "host"),
    ("health_check_url", "https://h:99999", RANGE, PORT),
    ("health_check_url", "https://h:0", RANGE, PORT),
    ("health_check_url", "https://h:abc", RANGE, PORT),
    ("health_check_url", "https://h/v1/bdbs", RANGE, "path"),
    ("health_check_url", "https://h?x=1", RANGE, "query"),
]


@pytest.mark.parametrize(("field", "value", "kind", "text"), DATABASE_ROWS, ids=ids(DATABASE_ROWS))
def test_database_config_rejects(field: str, value: object, kind: str, text: str) -> None:
    check_row(DatabaseConfig, field, value, kind, text)


@pytest.mark.parametrize(
    ("db", "kind"), [("1", TYPE), (1.0, TYPE), (True, TYPE), (None, TYPE), (-1, RANGE)]
)
def test_database_config_rejects_bad_db(db: object, kind: str) -> None:
    check_row(lambda **kw: DatabaseConfig(client_kwargs=kw), "db", db, kind, r"int >= 0")


def test_database_config_with_a_bad_health_check_url_has_no_broken_repr() -> None:
    # It used to be accepted, and repr() then crashed.
    with pytest.raises(ConfigTypeError, match="health_check_url"):
        DatabaseConfig(health_check_url=5)  # type: ignore[arg-type]


def test_database_config_accepts_good_health_check_urls() -> None:
    for url in ("https://cluster.example.com", "https://cluster.example.com:9443/",
                "http://127.0.0.1:8080", "https://[::1]:9443", "HTTPS://Cluster.Example.com"):
        assert DatabaseConfig(health_check_url=url).health_check_url == url


# --- MultiDbConfig -----------------------------------------------------------------------

MULTIDB_ROWS: list[Row] = [
    ("databases", 5, TYPE, "iterable of DatabaseConfig"),
    ("databases", None, TYPE, "iterable of DatabaseConfig"),
    ("databases", "redis://h", TYPE, "iterable of DatabaseConfig"),
    ("databases", [5], TYPE, "DatabaseConfig"),
    ("databases", [], RANGE, "at least 1"),
    ("circuit_breaker", {"sliding_window_size": 1}, TYPE, "CircuitBreakerConfig"),
    ("circuit_breaker", 5, TYPE, "CircuitBreakerConfig"),
    ("retry", 5, TYPE, "RetryConfig"),
    ("retry", "fast", TYPE, "RetryConfig"),
    *_rows_for_exceptions("fallback_exceptions")[:3],
    ("health_checks", 5, TYPE, "iterable"),
    ("health_checks", "ping", TYPE, "iterable"),
    ("health_checks", PingHealthCheck(), TYPE, "iterable"),
    ("health_checks", [object()], TYPE, "check"),
    *_rows_for_number("health_check_interval", r"> 0", NAN, INF, 0, -1),
    ("health_check_interval", None, TYPE, "number"),
    *_rows_for_count("health_check_probes", 1),
    *_rows_for_number("health_check_probe_delay", SECONDS, NAN, INF, -1),
    ("health_check_policy", "healthy_all", TYPE, "HealthCheckPolicy"),
    ("health_check_policy", None, TYPE, "HealthCheckPolicy"),
    *_rows_for_number("health_check_timeout", r"> 0", NAN, INF, 0, -1),
    *_rows_for_number("auto_failback_interval", r"> 0", NAN, INF, 0, -1),
    *_rows_for_number("auto_failback_grace_period", SECONDS, NAN, INF, -1),
    *_rows_for_count("failover_attempts", 1),
    *_rows_for_number("failover_delay", SECONDS, NAN, INF, -1),
    ("failover_strategy", 5, TYPE, "str"),
    ("failover_strategy", None, TYPE, "str"),
    ("failover_strategy", "random", RANGE, "ordered, weighted"),
    ("active_index_store", 5, TYPE, "path"),
    ("active_index_store", b"/tmp/active", TYPE, "path"),
    ("active_index_store", "", RANGE, "non-empty"),
    *_rows_for_bool("retry_ambiguous_writes"),
]


def _multidb(**kwargs: Any) -> MultiDbConfig:
    kwargs.setdefault("databases", [DatabaseConfig()])
    return MultiDbConfig(**kwargs)


@pytest.mark.parametrize(("field", "value", "kind", "text"), MULTIDB_ROWS, ids=ids(MULTIDB_ROWS))
def test_multidb_config_rejects(field: str, value: object, kind: str, text: str) -> None:
    check_row(_multidb, field, value, kind, text)


# --- health checks -----------------------------------------------------------------------

PING_ROWS: list[Row] = [
    ("cluster_policy", "HEALTHY_ALL", TYPE, "HealthCheckPolicy"),
    ("cluster_policy", None, TYPE, "HealthCheckPolicy"),
    ("cluster_policy", 1, TYPE, "HealthCheckPolicy"),
]


@pytest.mark.parametrize(("field", "value", "kind", "text"), PING_ROWS, ids=ids(PING_ROWS))
def test_ping_health_check_rejects(field: str, value: object, kind: str, text: str) -> None:
    check_row(PingHealthCheck, field, value, kind, text)


def test_ping_health_check_accepts_every_policy() -> None:
    for policy in HealthCheckPolicy:
        assert PingHealthCheck(cluster_policy=policy).cluster_policy is policy


LAG_AWARE_ROWS: list[Row] = [
    ("rest_api_port", "9443", TYPE, "int"),
    ("rest_api_port", 9443.5, TYPE, "int"),
    ("rest_api_port", 9443.0, TYPE, "int"),
    ("rest_api_port", True, TYPE, "int"),
    ("rest_api_port", None, TYPE, "int"),
    ("rest_api_port", NAN, TYPE, "int"),
    ("rest_api_port", 0, RANGE, PORT),
    ("rest_api_port", -1, RANGE, PORT),
    ("rest_api_port", 65536, RANGE, PORT),
    ("username", 5, TYPE, "str"),
    ("username", b"admin", TYPE, "str"),
    ("username", "", RANGE, "non-empty"),
    ("lag_tolerance_ms", "100", TYPE, "int"),
    ("lag_tolerance_ms", True, TYPE, "int"),
    ("lag_tolerance_ms", None, TYPE, "int"),
    ("lag_tolerance_ms", NAN, TYPE, "int"),
    ("lag_tolerance_ms", INF, TYPE, "int"),
    ("lag_tolerance_ms", 1.5, TYPE, "int"),
    ("lag_tolerance_ms", -1, RANGE, ">= 0"),
    *_rows_for_bool("verify_tls"),
    ("ca_file", 5, TYPE, "path"),
    ("ca_file", "", RANGE, "non-empty"),
    ("client_cert_file", 5, TYPE, "path"),
    *_rows_for_number("timeout", r"> 0", NAN, INF, 0, -1),
    ("timeout", None, TYPE, "number"),
    ("rest_api_host", 5, TYPE, "str"),
    ("rest_api_host", "", RANGE, "non-empty"),
    ("rest_api_host", "https://cluster.example.com", RANGE, "host name"),
    *_rows_for_bool("allow_insecure_http"),
]


@pytest.mark.parametrize(
    ("field", "value", "kind", "text"), LAG_AWARE_ROWS, ids=ids(LAG_AWARE_ROWS)
)
def test_lag_aware_health_check_rejects(field: str, value: object, kind: str, text: str) -> None:
    check_row(LagAwareHealthCheck, field, value, kind, text)


def test_lag_aware_string_port_names_the_field() -> None:
    # It used to fail with an unrelated comparison error ("'<' not supported ...").
    with pytest.raises(ConfigTypeError, match="rest_api_port must be an int"):
        LagAwareHealthCheck(rest_api_port="9443")  # type: ignore[arg-type]


def test_lag_aware_password_of_the_wrong_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigTypeError, match="password must be a str") as info:
        LagAwareHealthCheck(username="admin", password=b"hunter2")  # type: ignore[arg-type]
    assert "hunter2" not in str(info.value)
