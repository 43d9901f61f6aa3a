"""MultiDbConfig.from_redis_py: real redis-py ``redis.multidb.config.MultiDbConfig`` objects
converted setting by setting, and everything that cannot carry over reported by name."""

from __future__ import annotations

from typing import Any

import pybreaker
import pytest
import redis
from redis.backoff import (
    ConstantBackoff,
    DecorrelatedJitterBackoff,
    EqualJitterBackoff,
    ExponentialBackoff,
    ExponentialWithJitterBackoff,
    NoBackoff,
)
from redis.retry import Retry

from faulttol import ConfigTypeError, SlidingWindowType
from faulttol.health import HealthCheckPolicy
from faulttol_redis import (
    FailoverRedis,
    LagAwareHealthCheck,
    MultiDbConfig,
    PingHealthCheck,
)
from faulttol_redis.testing import RedisServer

rc = pytest.importorskip("redis.multidb.config")
rh = pytest.importorskip("redis.asyncio.multidb.healthcheck")
failover = pytest.importorskip("redis.multidb.failover")
failure_detector = pytest.importorskip("redis.multidb.failure_detector")
circuit = pytest.importorskip("redis.multidb.circuit")
event = pytest.importorskip("redis.event")


def _dbs(*ports: int, **extra: Any) -> list[Any]:
    return [rc.DatabaseConfig(client_kwargs={"host": "127.0.0.1", "port": port, **extra},
                              weight=1.0 - i / 10) for i, port in enumerate(ports)]


def test_redis_py_defaults_carry_over() -> None:
    source = rc.MultiDbConfig(databases_config=_dbs(6400, 6401, socket_timeout=0.5,
                                                    password="pw"))
    config = MultiDbConfig.from_redis_py(source)
    first, second = config.databases
    assert (first.host, first.port, second.port) == ("127.0.0.1", 6400, 6401)
    assert (first.weight, second.weight) == (1.0, 0.9)
    assert first.client_kwargs == {"socket_timeout": 0.5, "password": "pw"}
    assert config.failover_strategy == "weighted"            # WeightBasedFailoverStrategy
    assert (config.failover_attempts, config.failover_delay) == (
        failover.DEFAULT_FAILOVER_ATTEMPTS, failover.DEFAULT_FAILOVER_DELAY)
    assert config.auto_failback_interval == rc.DEFAULT_AUTO_FALLBACK_INTERVAL
    assert config.auto_failback_grace_period == circuit.DEFAULT_GRACE_PERIOD
    assert (config.health_check_interval, config.health_check_probes,
            config.health_check_probe_delay, config.health_check_timeout) == (
        rh.DEFAULT_HEALTH_CHECK_INTERVAL, rh.DEFAULT_HEALTH_CHECK_PROBES,
        rh.DEFAULT_HEALTH_CHECK_DELAY, rh.DEFAULT_HEALTH_CHECK_TIMEOUT)
    assert config.health_check_policy is HealthCheckPolicy.HEALTHY_ALL
    assert [type(c) for c in config.health_checks] == [PingHealthCheck]
    breaker = config.circuit_breaker
    assert breaker.sliding_window_type is SlidingWindowType.TIME_BASED
    assert breaker.sliding_window_size == failure_detector.DEFAULT_FAILURES_DETECTION_WINDOW
    assert breaker.minimum_number_of_failures == failure_detector.DEFAULT_MIN_NUM_FAILURES
    assert breaker.failure_rate_threshold == pytest.approx(
        failure_detector.DEFAULT_FAILURE_RATE_THRESHOLD * 100)
    assert breaker.wait_duration_in_open_state == circuit.DEFAULT_GRACE_PERIOD
    retry = source.command_retry
    assert config.retry.max_attempts == retry.get_retries() + 1
    assert config.retry.retry_exceptions == tuple(retry._supported_errors)
    assert config.retry.jitter == 1.0                         # ExponentialWithJitterBackoff
    assert config.retry.max_wait_duration == retry._backoff._cap


def test_every_setting_that_has_an_equivalent_is_converted() -> None:
    source = rc.MultiDbConfig(
        databases_config=[
            rc.DatabaseConfig(from_url="redis://127.0.0.1:6402/3", weight=0.2,
                              grace_period=15.0, health_check_url="https://re.example:9443"),
            rc.DatabaseConfig(client_kwargs={"unix_socket_path": "/tmp/faulttol-t.sock"},
                              weight=0.8, grace_period=15.0),
        ],
        command_retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=4,
                            supported_errors=(redis.exceptions.ConnectionError,)),
        min_num_failures=20, failure_rate_threshold=0.25, failures_detection_window=5,
        health_checks=[rh.PingHealthCheck(health_check_probes=2, health_check_delay=0.1,
                                          health_check_timeout=0.5)],
        health_check_interval=1.5, health_check_policy=rh.HealthCheckPolicies.HEALTHY_MAJORITY,
        failover_attempts=3, failover_delay=0.5, auto_fallback_interval=-1,
    )
    config = MultiDbConfig.from_redis_py(source)
    by_url, by_socket = config.databases
    assert (by_url.port, by_url.db, by_url.weight) == (6402, 3, 0.2)
    assert by_url.health_check_url == "https://re.example:9443"
    assert (by_socket.host, by_socket.port) == ("/tmp/faulttol-t.sock", 0)
    assert config.retry.max_attempts == 5
    assert (config.retry.wait_duration, config.retry.backoff_multiplier,
            config.retry.max_wait_duration, config.retry.jitter) == (0.2, 2.0, 2.0, 0.0)
    assert config.retry.retry_exceptions == (redis.exceptions.ConnectionError,)
    breaker = config.circuit_breaker
    assert (breaker.sliding_window_size, breaker.minimum_number_of_failures) == (5, 20)
    assert breaker.failure_rate_threshold == pytest.approx(25.0)
    assert breaker.wait_duration_in_open_state == 15.0
    assert config.auto_failback_grace_period == 15.0
    assert (config.health_check_probes, config.health_check_probe_delay,
            config.health_check_timeout, config.health_check_interval) == (2, 0.1, 0.5, 1.5)
    assert config.health_check_policy is HealthCheckPolicy.HEALTHY_MAJORITY
    assert (config.failover_attempts, config.failover_delay) == (3, 0.5)
    assert config.auto_failback_interval is None               # redis-py: negative is off


@pytest.mark.parametrize(("backoff", "expected"), [
    (NoBackoff(), (0.0, 1.0, None, 0.0)),
    (ConstantBackoff(0.3), (0.3, 1.0, None, 0.0)),
    (ExponentialBackoff(cap=1.0, base=0.05), (0.1, 2.0, 1.0, 0.0)),
    (ExponentialWithJitterBackoff(cap=1.0, base=0.05), (0.05, 2.0, 1.0, 1.0)),
    (EqualJitterBackoff(cap=1.0, base=0.05), (0.075, 2.0, 1.0, 1 / 3)),
])
def test_backoffs(backoff: Any, expected: tuple[Any, ...]) -> None:
    source = rc.MultiDbConfig(databases_config=_dbs(6403),
                              command_retry=Retry(backoff, retries=2))
    retry = MultiDbConfig.from_redis_py(source).retry
    wait, multiplier, cap, jitter = expected
    assert retry.wait_duration == pytest.approx(wait)
    assert retry.backoff_multiplier == multiplier and retry.max_wait_duration == cap
    assert retry.jitter == pytest.approx(jitter)
    assert retry.max_attempts == 3


def test_lag_aware_check_with_its_credentials() -> None:
    check = rh.LagAwareHealthCheck(rest_api_port=9444, lag_aware_tolerance=250,
                                   http_timeout=2.0, auth_basic=("ops", "pw"))
    source = rc.MultiDbConfig(databases_config=[rc.DatabaseConfig(
        client_kwargs={"host": "127.0.0.1", "port": 6404},
        health_check_url="https://re.example:9443")], health_checks=[check])
    (converted,) = MultiDbConfig.from_redis_py(source).health_checks
    assert isinstance(converted, LagAwareHealthCheck)
    assert (converted.rest_api_port, converted.lag_tolerance_ms) == (9444, 250)
    assert "pw" not in repr(converted)


def test_what_cannot_carry_over_is_listed_in_one_error() -> None:
    class Listener(event.EventListenerInterface):  # type: ignore[misc]
        def listen(self, event: object) -> None:  # pragma: no cover - never called
            raise NotImplementedError

    dispatcher = event.EventDispatcher()
    dispatcher.register_listeners({object: [Listener()]})

    source = rc.MultiDbConfig(
        databases_config=[
            rc.DatabaseConfig(from_pool=redis.ConnectionPool(host="127.0.0.1", port=6405)),
            rc.DatabaseConfig(client_kwargs={"host": "127.0.0.1", "port": 6406},
                              circuit=circuit.PBCircuitBreakerAdapter(
                                  pybreaker.CircuitBreaker()), grace_period=5.0),
        ],
        command_retry=Retry(DecorrelatedJitterBackoff(), retries=3),
        failure_detectors=[failure_detector.CommandFailureDetector()],
        failover_strategy=_CustomStrategy(),
        event_dispatcher=dispatcher,
    )
    with pytest.raises(ValueError) as raised:
        MultiDbConfig.from_redis_py(source)
    message = str(raised.value)
    for where in ("databases_config[0].from_pool", "databases_config[1].circuit",
                  "command_retry: a DecorrelatedJitterBackoff", "failure_detectors",
                  "failover_strategy", "event_dispatcher"):
        assert where in message, where


class _CustomStrategy(failover.FailoverStrategy):  # type: ignore[misc]
    """A strategy of the user's own: it has no faulttol_redis equivalent."""

    def database(self) -> Any:  # pragma: no cover - never called
        raise NotImplementedError

    def set_databases(self, databases: Any) -> None:  # pragma: no cover - never called
        raise NotImplementedError


class _MyRedis(redis.Redis):
    """A client class of the user's own."""


@pytest.mark.parametrize(("change", "expected"), [
    ({"command_retry": Retry(NoBackoff(), retries=-1)}, "retries=-1 (forever)"),
    ({"failures_detection_window": 0.5}, "failures_detection_window"),
    ({"health_checks": [rh.PingHealthCheck(health_check_probes=1),
                        rh.PingHealthCheck(health_check_probes=2)]}, "differ"),
    ({"client_class": _MyRedis}, "client_class"),
])
def test_single_settings_that_cannot_carry_over(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match="cannot carry this redis-py MultiDbConfig over") as r:
        MultiDbConfig.from_redis_py(rc.MultiDbConfig(databases_config=_dbs(6407), **change))
    assert expected in str(r.value)


def test_grace_periods_must_agree() -> None:
    dbs = _dbs(6408, 6409)
    dbs[1].grace_period = 5.0
    with pytest.raises(ValueError, match="grace_period"):
        MultiDbConfig.from_redis_py(rc.MultiDbConfig(databases_config=dbs))


def test_cluster_client_class_makes_cluster_databases() -> None:
    config = MultiDbConfig.from_redis_py(
        rc.MultiDbConfig(databases_config=_dbs(7000), client_class=redis.RedisCluster))
    assert config.databases[0].cluster is True


def test_not_a_redis_py_config() -> None:
    with pytest.raises(ConfigTypeError, match=r"redis\.multidb\.config\.MultiDbConfig"):
        MultiDbConfig.from_redis_py({"databases_config": []})


@pytest.mark.filterwarnings("ignore:MultiDBClient is an experimental:UserWarning")
def test_a_config_a_multidb_client_already_used(redis_servers: Any) -> None:
    """redis-py's MultiDBClient writes a retry into each client_kwargs: still converts."""
    first, second = redis_servers(2)
    assert isinstance(first, RedisServer)
    source = rc.MultiDbConfig(databases_config=_dbs(first.port, second.port),
                              health_check_interval=0.2)
    redis_py_client = pytest.importorskip("redis.multidb.client").MultiDBClient(source)
    try:
        redis_py_client.set("from", "redis-py")
    finally:
        redis_py_client.close()
    assert "retry" in source.databases_config[0].client_kwargs
    with FailoverRedis.from_config(MultiDbConfig.from_redis_py(source)) as client:
        assert client.get("from") == b"redis-py"         # weight 1.0: database 1
        first.kill()
        client.set("after", "kill")                      # fails over to database 2
        assert client.provider.active_index == 2
        assert second.client().get("after") == b"kill"
