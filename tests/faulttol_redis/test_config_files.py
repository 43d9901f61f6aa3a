"""MultiDbConfig.from_dict / from_toml: the file format, ${ENV} secrets, and errors that name
the offending key (no Redis server needed except for the example file's round trip)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from faulttol import CallNotPermittedError, ConfigTypeError, SlidingWindowType
from faulttol.health import HealthCheckPolicy
from faulttol_redis import FailoverRedis, LagAwareHealthCheck, MultiDbConfig, PingHealthCheck
from faulttol_redis.config import default_circuit_breaker_config, default_retry_config
from faulttol_redis.testing import RedisServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multidb.toml"
SECRET = "pa55-from-env"


def _load(data: dict[str, Any], **environ: str) -> MultiDbConfig:
    return MultiDbConfig.from_dict(data, environ=environ)


def _error(data: dict[str, Any], kind: type[Exception] = ValueError, **environ: str) -> str:
    with pytest.raises(kind) as raised:
        _load(data, **environ)
    return str(raised.value)


def test_minimal_mapping_gives_the_constructor_defaults() -> None:
    loaded = _load({"databases": [{"host": "127.0.0.1", "port": 6390}]})
    built = MultiDbConfig([loaded.databases[0]])
    for name in ("circuit_breaker", "retry", "fallback_exceptions", "health_check_interval",
                 "health_check_policy", "failover_attempts", "hang_detection_after"):
        assert getattr(loaded, name) == getattr(built, name), name


def test_every_section_is_converted() -> None:
    config = _load({
        "databases": [
            {"name": "east", "host": "127.0.0.1", "port": 6390, "weight": 2.0,
             "client_kwargs": {"socket_timeout": 0.5, "password": "${REDIS_PASSWORD}"}},
            {"name": "west", "url": "redis://127.0.0.1:6391/2"},
        ],
        "circuit_breaker": {"sliding_window_type": "time_based", "sliding_window_size": 10,
                            "failure_rate_threshold": 25.0,
                            "ignore_exceptions": ["redis.exceptions.ResponseError"],
                            "record_exception": "builtins:callable"},
        "retry": {"max_attempts": 5, "wait_duration": 0.1, "max_wait_duration": False,
                  "retry_exceptions": ["redis.exceptions.ConnectionError", "TimeoutError"]},
        "fallback_exceptions": ["faulttol.CallNotPermittedError"],
        "health_checks": [{"type": "ping", "cluster_policy": "healthy_majority"},
                          {"type": "lag_aware", "rest_api_port": 9444,
                           "username": "ops", "password": "${REDIS_PASSWORD}"}],
        "health_check_policy": "HEALTHY_ANY",
        "health_check_interval": 2.5,
        "failover_strategy": "weighted",
        "hang_detection_after": False,
        "auto_failback_interval": 30.0,
    }, REDIS_PASSWORD=SECRET)
    east, west = config.databases
    assert (east.name, east.host, east.port, east.weight) == ("east", "127.0.0.1", 6390, 2.0)
    assert east.client_kwargs == {"socket_timeout": 0.5, "password": SECRET}
    assert (west.host, west.port, west.db) == ("127.0.0.1", 6391, 2)
    breaker = config.circuit_breaker
    assert breaker.sliding_window_type is SlidingWindowType.TIME_BASED
    assert (breaker.sliding_window_size, breaker.failure_rate_threshold) == (10, 25.0)
    assert breaker.ignore_exceptions == (redis.exceptions.ResponseError,)
    assert breaker.record_exception is callable
    # fields the table does not set keep the client's defaults, not CircuitBreakerConfig's
    assert breaker.record_exceptions == default_circuit_breaker_config().record_exceptions
    assert config.retry.max_attempts == 5 and config.retry.max_wait_duration is None
    assert config.retry.retry_exceptions == (redis.exceptions.ConnectionError, TimeoutError)
    assert config.retry.backoff_multiplier == default_retry_config().backoff_multiplier
    assert config.fallback_exceptions == (CallNotPermittedError,)
    ping, lag = config.health_checks
    assert isinstance(ping, PingHealthCheck) and isinstance(lag, LagAwareHealthCheck)
    assert ping.cluster_policy is HealthCheckPolicy.HEALTHY_MAJORITY
    assert config.health_check_policy is HealthCheckPolicy.HEALTHY_ANY
    assert (config.health_check_interval, config.failover_strategy) == (2.5, "weighted")
    assert config.hang_detection_after is None and config.auto_failback_interval == 30.0
    assert SECRET not in repr(config) and SECRET not in repr(lag)


def test_health_checks_by_type_name_or_dotted_class() -> None:
    config = _load({"databases": [{}], "health_checks": [
        "ping", {"type": "faulttol_redis.healthcheck:PingHealthCheck",
                 "cluster_policy": "healthy_any"}]})
    first, second = config.health_checks
    assert isinstance(first, PingHealthCheck) and isinstance(second, PingHealthCheck)
    assert second.cluster_policy is HealthCheckPolicy.HEALTHY_ANY
    assert "health_checks[0].type: missing" in _error({"databases": [{}],
                                                       "health_checks": [{}]})
    assert "is not a class" in _error({"databases": [{}],
                                       "health_checks": [{"type": "os.path.join"}]})


def test_environment_references_inside_strings_and_escapes() -> None:
    config = _load({"databases": [{
        "url": "redis://ops:${PW}@127.0.0.1:${PORT}/0", "name": "$${literal}",
    }]}, PW=SECRET, PORT="6392")
    (db,) = config.databases
    assert (db.port, db.name) == (6392, "${literal}")
    assert SECRET not in repr(config)


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULTTOL_TEST_PORT", "6393")
    config = MultiDbConfig.from_dict({"databases": [{"url": "redis://h:${FAULTTOL_TEST_PORT}"}]})
    assert config.databases[0].port == 6393


def test_missing_variable_names_key_and_variable_never_a_value() -> None:
    message = _error({"databases": [{"client_kwargs": {"password": "${NOT_SET_ANYWHERE}"}}]},
                     OTHER=SECRET)
    assert message == ("databases[0].client_kwargs.password: environment variable "
                       "NOT_SET_ANYWHERE is not set")
    assert "valid environment variable" in _error({"databases": [{"name": "${1x}"}]})


@pytest.mark.parametrize(("data", "expected"), [
    ({"databases": [{"host": "a"}, {"pasword": "x"}]}, "databases[1].pasword: unknown key"),
    ({"databases": [{}], "helth_check_interval": 1},
     "helth_check_interval: unknown key; did you mean 'health_check_interval'?"),
    ({"databases": [{}], "retry": {"max_atempts": 2}}, "retry.max_atempts: unknown key"),
    ({"databases": [{}], "circuit_breaker": {"window": 2}}, "circuit_breaker.window: unknown"),
    ({"databases": [{}], "health_checks": [{"type": "ping", "probes": 2}]},
     "health_checks[0].probes: unknown key"),
])
def test_unknown_keys_are_named_by_their_path(data: dict[str, Any], expected: str) -> None:
    assert _error(data).startswith(expected)


def test_a_secret_misplaced_as_a_key_points_to_client_kwargs() -> None:
    message = _error({"databases": [{"password": SECRET}]})
    assert "client_kwargs" in message and SECRET not in message


@pytest.mark.parametrize(("name", "expected"), [
    ("no_such_module.Error", "'no_such_module.Error' is not importable"),
    ("redis.exceptions.NoSuchError", "is not importable"),
    ("NoSuchBuiltin", "is not importable"),
    ("os.path", "'os.path' is not an exception class"),
    ("faulttol.RetryConfig", "is not an exception class"),
])
def test_exception_names_must_import_to_exception_classes(name: str, expected: str) -> None:
    message = _error({"databases": [{}], "circuit_breaker": {"record_exceptions": [name]}})
    assert message.startswith("circuit_breaker.record_exceptions[0]: ")
    assert expected in message


def test_values_out_of_range_are_reported_with_their_table() -> None:
    assert _error({"databases": [{}, {"port": 0}]}).startswith("databases[1]: port must be")
    assert _error({"databases": [{}], "retry": {"max_attempts": 0}}).startswith(
        "retry: max_attempts")
    assert _error({"databases": [{}], "health_check_interval": -1}).startswith(
        "health_check_interval must be")
    assert "must be one of HEALTHY_ALL" in _error(
        {"databases": [{}], "health_check_policy": "most"})


def test_wrong_kinds_are_config_type_errors() -> None:
    for data in ({"databases": {"host": "a"}}, {"databases": [{}], "retry": [1]},
                 {"databases": ["redis://a"]}, {"databases": [{"port": "${P}"}]}):
        message = _error(data, ConfigTypeError, P=SECRET)
        assert SECRET not in message
    assert "databases: missing" in _error({"health_check_interval": 1.0})


def test_from_toml_reads_the_example_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    config = MultiDbConfig.from_toml(EXAMPLE)
    assert [db.name for db in config.databases] == ["primary", "secondary"]
    assert all(db.host == "127.0.0.1" for db in config.databases)
    assert config.databases[0].client_kwargs["password"] == SECRET
    assert config.circuit_breaker.minimum_number_of_calls == 20
    assert config.retry.wait_duration == 0.2
    monkeypatch.delenv("REDIS_PASSWORD")
    with pytest.raises(ValueError, match=r"databases\[0\]\.client_kwargs\.password: "
                                         "environment variable REDIS_PASSWORD is not set"):
        MultiDbConfig.from_toml(EXAMPLE)


def test_from_toml_bad_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("databases = [ { host = 'a' \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.toml: not valid TOML"):
        MultiDbConfig.from_toml(broken)
    with pytest.raises(FileNotFoundError):
        MultiDbConfig.from_toml(tmp_path / "missing.toml")


def test_a_toml_config_drives_a_real_client(tmp_path: Path, redis_servers: Any) -> None:
    first, second = redis_servers(2)
    assert isinstance(first, RedisServer)
    path = tmp_path / "two.toml"
    path.write_text(
        "health_checks = []\n"
        f'[[databases]]\nname = "a"\nhost = "127.0.0.1"\nport = {first.port}\n'
        f'[[databases]]\nname = "b"\nurl = "{second.url}"\n',
        encoding="utf-8",
    )
    with FailoverRedis.from_config(MultiDbConfig.from_toml(path)) as client:
        client.set("k", "v")
        assert first.client().get("k") == b"v"
        first.kill()
        assert client.get("k") is None          # failed over to b, which has no "k"
        assert client.provider.active_index == 2
