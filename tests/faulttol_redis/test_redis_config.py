"""Tests for faulttol_redis.config and faulttol_redis.errors."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.cluster
from redis.backoff import NoBackoff

from faulttol import CallNotPermittedError, CircuitBreakerConfig, RetryConfig, SlidingWindowType
from faulttol.health import HealthCheckPolicy
from faulttol_redis import create_async_client, create_client
from faulttol_redis.config import (
    DEFAULT_AUTO_FAILBACK_GRACE_PERIOD,
    DEFAULT_FAILOVER_ATTEMPTS,
    DEFAULT_FAILOVER_DELAY,
    DEFAULT_HEALTH_CHECK_PROBE_DELAY,
    DEFAULT_HEALTH_CHECK_TIMEOUT,
    FAILOVER_STRATEGIES,
    DatabaseConfig,
    MultiDbConfig,
)
from faulttol_redis.errors import NoValidDatabaseError, TemporaryUnavailableError
from faulttol_redis.healthcheck import LagAwareHealthCheck, PingHealthCheck
from faulttol_redis.testing import RedisServer

SECRETS = ("hunter2", "s3cr3t-token", "topsecret", "k3y")


def _assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


# --- errors ----------------------------------------------------------------------------


def test_errors_are_sibling_connection_errors() -> None:
    for cls in (TemporaryUnavailableError, NoValidDatabaseError):
        assert issubclass(cls, redis.exceptions.ConnectionError)
        assert cls.__doc__ and "failover_attempts" in cls.__doc__
    assert not issubclass(TemporaryUnavailableError, NoValidDatabaseError)
    assert not issubclass(NoValidDatabaseError, TemporaryUnavailableError)
    with pytest.raises(redis.exceptions.ConnectionError):
        raise NoValidDatabaseError("none")


# --- DatabaseConfig --------------------------------------------------------------------


def test_database_defaults() -> None:
    db = DatabaseConfig()
    assert (db.host, db.port, db.db, db.weight, db.name, db.cluster) == (
        "localhost", 6379, 0, 1.0, None, False
    )
    assert db.url is None
    assert dict(db.client_kwargs or {}) == {}
    assert db.endpoint == "localhost:6379/0"
    assert db.display_name == "localhost:6379/0"
    assert str(db) == "localhost:6379/0"


def test_database_host_port_and_name() -> None:
    db = DatabaseConfig("redis-east", 14000, name="east", weight=2, client_kwargs={"db": 3})
    assert db.endpoint == "redis-east:14000/3"
    assert db.display_name == "east"
    assert db.weight == 2.0 and isinstance(db.weight, float)
    assert db.db == 3


def test_url_wins_and_is_parsed() -> None:
    db = DatabaseConfig("ignored", 1, url="redis://user:hunter2@Cache.example.com:7000/5")
    # a URL's host name is case-insensitive: urllib reports it lowercased
    assert (db.host, db.port, db.db) == ("cache.example.com", 7000, 5)
    assert db.endpoint == "cache.example.com:7000/5"
    assert DatabaseConfig(url="rediss://h").endpoint == "h:6379/0"
    assert DatabaseConfig(url="redis://h:1/0?db=4").db == 4
    assert DatabaseConfig(url="redis://[::1]:7000").endpoint == "[::1]:7000/0"
    unix = DatabaseConfig(url="unix:///tmp/redis.sock?db=2")
    assert unix.endpoint == "unix:/tmp/redis.sock/2"


def test_client_kwargs_are_read_only_and_copied() -> None:
    source = {"socket_timeout": 1.0}
    db = DatabaseConfig(client_kwargs=source)
    source["socket_timeout"] = 99.0
    assert db.client_kwargs == {"socket_timeout": 1.0}
    with pytest.raises(TypeError):
        db.client_kwargs["x"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        db.port = 1  # type: ignore[misc]
    assert DatabaseConfig(client_kwargs={"a": 1}) == DatabaseConfig(client_kwargs={"a": 1})
    assert hash(DatabaseConfig(client_kwargs={"a": 1})) == hash(DatabaseConfig())


def test_secrets_never_in_repr_or_str() -> None:
    db = DatabaseConfig(
        url="redis://alice:hunter2@h:1/0?password=hunter2&socket_timeout=1",
        name="main",
        client_kwargs={
            "password": "hunter2",
            "ssl_password": "topsecret",
            "auth_token": "s3cr3t-token",
            "client_secret": "topsecret",
            "api_key": "k3y",
            "socket_timeout": 1.5,
            "username": "alice",
        },
        health_check_url="https://admin:topsecret@cluster:9443",
    )
    text = repr(db)
    _assert_no_secrets(text)
    _assert_no_secrets(str(db))
    assert "alice" in text  # usernames are fine
    assert "socket_timeout" in text and "1.5" in text
    assert "***" in text
    config = MultiDbConfig([db, DatabaseConfig("other", client_kwargs={"password": "hunter2"})])
    _assert_no_secrets(repr(config))
    _assert_no_secrets(str(config))
    check = LagAwareHealthCheck(username="admin", password="hunter2")
    _assert_no_secrets(repr(check))
    assert "admin" in repr(check)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"weight": -0.5}, ValueError, "weight must be >= 0"),
        ({"weight": float("nan")}, ValueError, "weight must not be NaN"),
        ({"weight": "1"}, TypeError, "weight must be a number"),
        ({"port": 0}, ValueError, r"port must be in 1\.\.65535, got 0"),
        ({"port": 70000}, ValueError, r"port must be in 1\.\.65535"),
        ({"port": "6379"}, TypeError, "port must be an int"),
        ({"host": ""}, ValueError, "host must be a non-empty string"),
        ({"url": "http://h"}, ValueError, "url must start with redis://"),
        ({"client_kwargs": {"db": -1}}, ValueError, "db must be an int >= 0"),
        ({"client_kwargs": {"host": "x"}}, ValueError, "client_kwargs must not set 'host'"),
        ({"client_kwargs": ["password"]}, TypeError, "client_kwargs must be a mapping"),
        ({"name": 3}, TypeError, "name must be a str"),
        ({"cluster": "yes"}, TypeError, "cluster must be a bool"),
        ({"cluster": True, "client_kwargs": {"db": 1}}, ValueError, "db must be 0 for a cluster"),
    ],
)
def test_database_validation(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        DatabaseConfig(**kwargs)


def test_bad_url_message_hides_password() -> None:
    with pytest.raises(ValueError, match="url must start") as info:
        DatabaseConfig(url="http://bob:hunter2@h")
    _assert_no_secrets(str(info.value))


def test_replace_keeps_validation() -> None:
    db = DatabaseConfig(url="redis://h:7000/1", weight=1)
    heavier = dataclasses.replace(db, weight=5)
    assert heavier.endpoint == "h:7000/1" and heavier.weight == 5.0
    with pytest.raises(ValueError, match="weight"):
        dataclasses.replace(db, weight=-1)


def test_create_client_has_retries_off() -> None:
    db = DatabaseConfig("127.0.0.1", 6390, client_kwargs={"socket_timeout": 0.25, "db": 2})
    client = create_client(db)
    assert isinstance(client, redis.Redis)
    try:
        retry = client.get_retry()
        assert retry is not None
        assert retry._retries == 0
        assert isinstance(retry._backoff, NoBackoff)
        kwargs = client.get_connection_kwargs()
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 2)
        assert kwargs["socket_timeout"] == 0.25
    finally:
        client.close()


def test_create_client_overrides_and_user_retry() -> None:
    custom = redis.retry.Retry(NoBackoff(), 5)
    db = DatabaseConfig(url="redis://u:pw@127.0.0.1:6391/4", client_kwargs={"retry": custom})
    client = create_client(db, socket_timeout=0.5)
    assert isinstance(client, redis.Redis)
    try:
        assert client.get_retry() is custom
        kwargs = client.get_connection_kwargs()
        assert (kwargs["port"], kwargs["db"], kwargs["password"]) == (6391, 4, "pw")
        assert kwargs["socket_timeout"] == 0.5
    finally:
        client.close()
    with pytest.raises(ValueError, match="cannot override 'host'"):
        create_client(db, host="elsewhere")


def test_each_client_gets_its_own_retry_object() -> None:
    db = DatabaseConfig("127.0.0.1", 6392)
    first, second = create_client(db), create_client(db)
    assert isinstance(first, redis.Redis) and isinstance(second, redis.Redis)
    try:
        assert first.get_retry() is not second.get_retry()
    finally:
        first.close()
        second.close()


async def test_create_async_client_has_retries_off() -> None:
    db = DatabaseConfig("127.0.0.1", 6393, client_kwargs={"socket_timeout": 0.25})
    client = create_async_client(db)
    assert isinstance(client, redis.asyncio.Redis)
    try:
        retry = client.get_retry()
        assert retry is not None and retry._retries == 0
    finally:
        await client.aclose()


def test_created_client_talks_to_a_live_server(redis_server: RedisServer) -> None:
    db = DatabaseConfig(url=redis_server.url, client_kwargs={"decode_responses": True})
    client = create_client(db)
    try:
        client.set("k", "v")
        assert client.get("k") == "v"
    finally:
        client.close()


def test_create_client_does_not_retry_against_a_dead_server(redis_server: RedisServer) -> None:
    db = DatabaseConfig(url=redis_server.url, client_kwargs={"socket_timeout": 0.2})
    client = create_client(db)
    calls = 0
    original = redis.connection.Connection.connect

    def counting_connect(self: redis.connection.Connection) -> None:
        nonlocal calls
        calls += 1
        original(self)  # type: ignore[no-untyped-call]

    redis_server.kill()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(redis.connection.Connection, "connect", counting_connect)
            with pytest.raises(redis.ConnectionError):
                client.ping()
        assert calls == 1  # one attempt, no redis-py retries
    finally:
        client.close()


# --- MultiDbConfig ---------------------------------------------------------------------


def test_multidb_defaults() -> None:
    east, west = DatabaseConfig("east"), DatabaseConfig("west")
    config = MultiDbConfig([east, west])
    assert config.databases == (east, west)
    assert isinstance(config.databases, tuple)

    breaker = config.circuit_breaker
    assert isinstance(breaker, CircuitBreakerConfig)
    assert breaker.sliding_window_type is SlidingWindowType.COUNT_BASED
    assert breaker.sliding_window_size == 100
    assert breaker.minimum_number_of_calls == 100
    assert breaker.failure_rate_threshold == 50.0
    assert breaker.slow_call_rate_threshold == 100.0
    assert breaker.slow_call_duration_threshold == 60.0
    assert set(breaker.record_exceptions) == {
        redis.exceptions.ConnectionError, redis.exceptions.TimeoutError
    }

    retry = config.retry
    assert isinstance(retry, RetryConfig)
    assert (retry.max_attempts, retry.wait_duration, retry.backoff_multiplier) == (3, 0.5, 2.0)
    assert set(retry.retry_exceptions) == {
        redis.exceptions.ConnectionError, redis.exceptions.TimeoutError
    }

    assert config.fallback_exceptions == (CallNotPermittedError, redis.exceptions.ConnectionError)
    assert config.health_checks == (PingHealthCheck(),)
    assert config.health_check_interval == 5.0
    assert config.health_check_probes == 3
    assert config.health_check_probe_delay == DEFAULT_HEALTH_CHECK_PROBE_DELAY == 0.5
    assert config.health_check_policy is HealthCheckPolicy.HEALTHY_ALL
    assert config.health_check_timeout == DEFAULT_HEALTH_CHECK_TIMEOUT == 1.0
    assert config.auto_failback_interval is None
    assert config.auto_failback_grace_period == DEFAULT_AUTO_FAILBACK_GRACE_PERIOD == 60.0
    assert config.failover_attempts == DEFAULT_FAILOVER_ATTEMPTS == 10
    assert config.failover_delay == DEFAULT_FAILOVER_DELAY == 12.0
    assert config.failover_timeout == 120.0
    assert config.failover_strategy == "ordered"
    assert FAILOVER_STRATEGIES == ("ordered", "weighted")
    assert config.active_index_store is None
    assert config.retry_ambiguous_writes is False


def test_server_errors_never_count_against_a_database() -> None:
    config = MultiDbConfig([DatabaseConfig()])
    for error in (redis.exceptions.ResponseError("WRONGTYPE"),
                  redis.exceptions.NoScriptError("NOSCRIPT")):
        assert not isinstance(error, config.circuit_breaker.record_exceptions)
        assert not isinstance(error, config.retry.retry_exceptions)
    auth = redis.exceptions.AuthenticationError("bad password")
    assert isinstance(auth, config.circuit_breaker.record_exceptions)  # a connection error


def test_multidb_custom_values() -> None:
    breaker = CircuitBreakerConfig(sliding_window_size=10, minimum_number_of_calls=1)
    retry = RetryConfig(max_attempts=1)
    check = LagAwareHealthCheck()
    config = MultiDbConfig(
        iter([DatabaseConfig("a"), DatabaseConfig("b", weight=3)]),
        circuit_breaker=breaker,
        retry=retry,
        fallback_exceptions=redis.exceptions.ConnectionError,
        health_checks=[check],
        health_check_interval=0.5,
        health_check_probes=5,
        health_check_probe_delay=0,
        health_check_policy=HealthCheckPolicy.HEALTHY_MAJORITY,
        health_check_timeout=0.1,
        auto_failback_interval=30,
        auto_failback_grace_period=0,
        failover_attempts=1,
        failover_delay=0,
        failover_strategy="weighted",
        active_index_store=Path("/tmp/active"),
        retry_ambiguous_writes=True,
    )
    assert config.circuit_breaker is breaker and config.retry is retry
    assert config.fallback_exceptions == (redis.exceptions.ConnectionError,)
    assert config.health_checks == (check,)
    assert config.auto_failback_interval == 30.0
    assert config.failover_timeout == 0.0
    assert config.active_index_store == "/tmp/active"
    assert config.retry_ambiguous_writes is True
    assert MultiDbConfig([DatabaseConfig()], health_checks=()).health_checks == ()
    changed = config.replace(failover_delay=2.5)
    assert changed.failover_delay == 2.5 and changed.databases == config.databases
    with pytest.raises(ValueError, match="failover_delay"):
        config.replace(failover_delay=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.failover_delay = 1  # type: ignore[misc]


def test_configs_pickle_and_compare() -> None:
    db = DatabaseConfig(url="redis://u:pw@h:1/2", name="n", client_kwargs={"socket_timeout": 1})
    clone = pickle.loads(pickle.dumps(db))
    assert clone == db and clone.endpoint == "h:1/2" and clone.client_kwargs == db.client_kwargs
    config = MultiDbConfig([db, DatabaseConfig("other")])
    assert pickle.loads(pickle.dumps(config)) == config
    assert MultiDbConfig([DatabaseConfig("other")]) != config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"health_check_interval": 0}, r"health_check_interval must be > 0 and finite, got 0"),
        ({"health_check_interval": -1.0}, "health_check_interval must be > 0"),
        ({"health_check_interval": float("inf")}, "health_check_interval must be > 0"),
        ({"health_check_timeout": 0}, "health_check_timeout must be > 0"),
        ({"health_check_probes": 0}, "health_check_probes must be >= 1, got 0"),
        ({"health_check_probe_delay": -0.1}, "health_check_probe_delay must be >= 0"),
        ({"auto_failback_interval": 0}, "auto_failback_interval must be > 0"),
        ({"auto_failback_grace_period": -1}, "auto_failback_grace_period must be >= 0"),
        ({"failover_attempts": 0}, "failover_attempts must be >= 1, got 0"),
        ({"failover_delay": -1}, "failover_delay must be >= 0"),
        ({"failover_strategy": "random"}, "failover_strategy must be one of ordered, weighted"),
        ({"active_index_store": ""}, "active_index_store must be a non-empty path"),
    ],
)
def test_multidb_value_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MultiDbConfig([DatabaseConfig()], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"health_check_probes": 2.0}, "health_check_probes must be an int"),
        ({"failover_attempts": True}, "failover_attempts must be an int"),
        ({"health_check_policy": "healthy_all"}, "health_check_policy must be a HealthCheckPolicy"),
        ({"circuit_breaker": {"sliding_window_size": 1}}, "circuit_breaker must be a Circuit"),
        ({"retry": 3}, "retry must be a RetryConfig"),
        ({"fallback_exceptions": ["x"]}, "fallback_exceptions must contain only exception types"),
        ({"health_checks": [object()]}, "health_checks must contain objects with check"),
        ({"retry_ambiguous_writes": "no"}, "retry_ambiguous_writes must be a bool"),
    ],
)
def test_multidb_type_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        MultiDbConfig([DatabaseConfig()], **kwargs)


def test_empty_and_non_database_entries() -> None:
    with pytest.raises(ValueError, match="databases must contain at least 1 DatabaseConfig"):
        MultiDbConfig([])
    with pytest.raises(TypeError, match=r"databases\[1\] must be a DatabaseConfig"):
        MultiDbConfig([DatabaseConfig(), "redis://h:1"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="databases must be an iterable of DatabaseConfig"):
        MultiDbConfig(DatabaseConfig())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (DatabaseConfig("h", 7000), DatabaseConfig("h", 7000, name="other", weight=2)),
        (DatabaseConfig("h", 7000), DatabaseConfig(url="redis://h:7000")),
        (DatabaseConfig("h", 7000), DatabaseConfig(url="redis://h:7000/0")),
        (DatabaseConfig("Redis.Example.com", 1), DatabaseConfig(url="redis://redis.example.com:1")),
        (DatabaseConfig("h", 1, client_kwargs={"db": 2}), DatabaseConfig(url="redis://h:1/2")),
        (DatabaseConfig(url="rediss://u:a@h:1"), DatabaseConfig(url="redis://v:b@h:1/0")),
    ],
)
def test_duplicate_endpoints(first: DatabaseConfig, second: DatabaseConfig) -> None:
    with pytest.raises(ValueError, match=r"databases\[1\] .* duplicates databases\[0\]"):
        MultiDbConfig([first, second])
    with pytest.raises(ValueError, match=r"databases\[2\] .* duplicates databases\[0\]"):
        MultiDbConfig([first, DatabaseConfig("unrelated"), second])


@pytest.mark.parametrize(
    "other",
    [
        DatabaseConfig("h", 7001),
        DatabaseConfig("h", 7000, client_kwargs={"db": 1}),
        DatabaseConfig(url="redis://h:7000/3"),
        DatabaseConfig("127.0.0.1", 7000),  # compared as given: no DNS resolution
    ],
)
def test_distinct_endpoints_are_fine(other: DatabaseConfig) -> None:
    config = MultiDbConfig([DatabaseConfig("h", 7000), other])
    assert len(config.databases) == 2
