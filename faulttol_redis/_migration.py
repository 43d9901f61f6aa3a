"""Converting redis-py's multi-database configuration into ours.

Why: a redis-py ``MultiDBClient`` user should switch with a one-line change,
``MultiDbConfig.from_redis_py(their_config)``, and be told plainly about anything that does not
carry over, rather than get a client that quietly behaves differently. Every setting of
``redis.multidb.config.MultiDbConfig`` (redis-py 7 and 8) is either converted or reported:

* databases: ``client_kwargs`` (``host``/``port`` become the database's endpoint, the rest goes
  to redis-py as before), ``from_url``, ``weight``, ``health_check_url``; ``client_class =
  RedisCluster`` makes every database a cluster; the failover strategy becomes ``"weighted"``
  (redis-py's only built-in one);
* ``grace_period`` (one value for all databases) is the breaker's open time and the failback
  grace period; the default command failure detector becomes a time-based breaker window with
  the same minimum failures and failure rate (a percentage here, a fraction there);
* ``command_retry`` becomes a :class:`~faulttol.RetryConfig` with the same number of attempts,
  retried exceptions and backoff (same waits for constant and exponential backoff; the same
  range and mean for the jittered ones);
* health checks (PING and lag-aware), their probes, delay and timeout, the policy, the failover
  attempts and delay, and ``auto_fallback_interval`` (automatic failback; 0 or less: off).

The module never imports redis-py's multidb package until a conversion is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from faulttol import CircuitBreakerConfig, ConfigTypeError, RetryConfig, SlidingWindowType
from faulttol.health import HealthCheckPolicy
from faulttol.validation import describe

from ._database import DatabaseConfig
from .healthcheck import HealthCheck, LagAwareHealthCheck, PingHealthCheck

__all__ = ["from_redis_py"]

T = TypeVar("T")

EQUAL_JITTER_MEAN = 0.75
"""EqualJitterBackoff waits between half and all of the exponential wait: 3/4 on average."""

EQUAL_JITTER_SPREAD = 1.0 / 3.0
"""... which is 3/4 of it, scaled by a factor in [1 - 1/3, 1 + 1/3]."""


class _Problems:
    """What cannot be carried over, gathered so that one error lists all of it."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ValueError(
                "cannot carry this redis-py MultiDbConfig over to faulttol_redis: "
                + "; ".join(self.items)
            )


# --- databases ------------------------------------------------------------------------------


def _database(position: int, db: Any, cluster: bool, problems: _Problems) -> DatabaseConfig | None:
    where = f"databases_config[{position}]"
    if db.from_pool is not None:
        problems.add(f"{where}.from_pool", "a ConnectionPool cannot be carried over; give "
                     "from_url, or host and port in client_kwargs")
        return None
    if db.circuit is not None:
        problems.add(f"{where}.circuit", "a custom circuit breaker cannot be carried over; "
                     "faulttol_redis gives every database a breaker built from one "
                     "CircuitBreakerConfig (MultiDbConfig(circuit_breaker=...))")
    kwargs = dict(db.client_kwargs or {})
    # redis-py's MultiDbConfig.databases() replaces the client's retry with none (the command
    # retry is the only one): faulttol_redis does the same, so the key is dropped.
    kwargs.pop("retry", None)
    host = kwargs.pop("host", None)
    port = kwargs.pop("port", None)
    socket_path = kwargs.pop("unix_socket_path", None)
    url = db.from_url
    if url is None and socket_path is not None:
        url = f"unix://{socket_path}"
    endpoint: dict[str, Any] = {}
    if url is None:
        endpoint = {"host": "localhost" if host is None else host,
                    "port": 6379 if port is None else port}
    try:
        return DatabaseConfig(**endpoint, url=url, weight=db.weight, client_kwargs=kwargs,
                              cluster=cluster, health_check_url=db.health_check_url)
    except ValueError as exc:
        problems.add(where, str(exc))
        return None


def _grace_period(databases: list[Any], problems: _Problems) -> float | None:
    periods = sorted({float(db.grace_period) for db in databases})
    if len(periods) > 1:
        problems.add("databases_config[*].grace_period", f"the databases differ ({periods}); "
                     "faulttol_redis has one grace period for all of them")
        return None
    return periods[0] if periods else None


# --- breaker and retry ----------------------------------------------------------------------

P = TypeVar("P", CircuitBreakerConfig, RetryConfig)


def _replace(base: P, changes: dict[str, Any], where: str, problems: _Problems) -> P:
    """``base`` with ``changes``, or ``base`` and a problem when they are out of range."""
    try:
        return replace(base, **changes)
    except ValueError as exc:
        problems.add(where, str(exc))
        return base



def _breaker(config: Any, base: CircuitBreakerConfig, grace: float | None,
             problems: _Problems) -> CircuitBreakerConfig:
    if config.failure_detectors:
        problems.add("failure_detectors", "custom failure detectors cannot be carried over; "
                     "configure MultiDbConfig(circuit_breaker=CircuitBreakerConfig(...)) (the "
                     "default detector's min_num_failures, failure_rate_threshold and "
                     "failures_detection_window are converted)")
        return base
    window = float(config.failures_detection_window)
    if window < 1 or not window.is_integer():
        problems.add("failures_detection_window", f"{window!r} s: faulttol's time-based "
                     "window counts whole seconds (1 or more)")
        return base
    changes: dict[str, Any] = {
        "sliding_window_type": SlidingWindowType.TIME_BASED,
        "sliding_window_size": int(window),
        "minimum_number_of_calls": 1,
        "minimum_number_of_failures": int(config.min_num_failures),
        "failure_rate_threshold": float(config.failure_rate_threshold) * 100.0,
    }
    if grace is not None:
        changes["wait_duration_in_open_state"] = grace
    return _replace(base, changes, "failure detector settings", problems)


def _backoff(backoff: Any, problems: _Problems) -> dict[str, Any]:
    """RetryConfig fields giving the waits of a redis-py backoff (redis-py's first retry
    computes with ``failures=1``: ``base * 2``)."""
    from redis import backoff as rb

    kind = type(backoff)
    if kind in (rb.NoBackoff, rb.ConstantBackoff):
        return {"wait_duration": float(backoff._backoff), "backoff_multiplier": 1.0}
    base, cap = float(getattr(backoff, "_base", 0.0)), float(getattr(backoff, "_cap", 0.0))
    if kind is rb.ExponentialBackoff:
        return {"wait_duration": 2.0 * base, "backoff_multiplier": 2.0,
                "max_wait_duration": cap}
    if kind in (rb.ExponentialWithJitterBackoff, rb.FullJitterBackoff):
        # uniform in [0, base * 2**n]: mean base * 2**(n-1), spread +-100 %
        return {"wait_duration": base, "backoff_multiplier": 2.0, "max_wait_duration": cap,
                "jitter": 1.0}
    if kind is rb.EqualJitterBackoff:
        # uniform in [x/2, x] with x = base * 2**n: mean 3x/4, spread +-1/3
        return {"wait_duration": 2.0 * base * EQUAL_JITTER_MEAN, "backoff_multiplier": 2.0,
                "max_wait_duration": cap, "jitter": EQUAL_JITTER_SPREAD}
    problems.add("command_retry", f"a {kind.__name__} cannot be carried over (stateful or "
                 "unknown); use a constant, exponential or jittered exponential backoff")
    return {}


def _retry(command_retry: Any, base: RetryConfig, problems: _Problems) -> RetryConfig:
    retries = command_retry.get_retries()
    if retries < 0:
        problems.add("command_retry", f"retries={retries} (forever) cannot be carried over; "
                     "give a number of retries")
        return base
    changes = _backoff(command_retry._backoff, problems)
    changes["max_attempts"] = retries + 1
    errors = tuple(command_retry._supported_errors)
    if errors:
        changes["retry_exceptions"] = errors
    return _replace(base, changes, "command_retry", problems)


# --- health checks and the rest -------------------------------------------------------------


def _lag_aware(check: Any, where: str, problems: _Problems) -> HealthCheck | None:
    http = check._http_client.client
    for name in ("ca_path", "ca_data", "client_key_password"):
        if getattr(http, name, None) is not None:
            problems.add(f"{where}.{name}", "not supported by faulttol_redis's "
                         "LagAwareHealthCheck (give ca_file, client_cert_file, "
                         "client_key_file)")
    username, password = (None, None) if http.auth_basic is None else http.auth_basic
    try:
        return LagAwareHealthCheck(
            check._rest_api_port, username=username, password=password,
            lag_tolerance_ms=check._lag_aware_tolerance, verify_tls=http.verify_tls,
            ca_file=http.ca_file, client_cert_file=http.client_cert_file,
            client_key_file=http.client_key_file, timeout=float(http.timeout),
        )
    except ValueError as exc:
        problems.add(where, str(exc))
        return None


def _health_checks(config: Any, problems: _Problems) -> dict[str, Any]:
    from redis.asyncio.multidb import healthcheck as rh

    settings: dict[str, Any] = {
        "health_check_interval": float(config.health_check_interval),
        "health_check_probes": int(config.health_check_probes),
        "health_check_probe_delay": float(config.health_check_delay),
        "health_check_timeout": float(config.health_check_timeout),
    }
    if not config.health_checks:  # redis-py's default: one PING check with these settings
        settings["health_checks"] = (PingHealthCheck(),)
        return settings
    checks: list[HealthCheck] = []
    timings = set()
    for position, check in enumerate(config.health_checks):
        where = f"health_checks[{position}]"
        if type(check) is rh.PingHealthCheck:
            checks.append(PingHealthCheck())
        elif type(check) is rh.LagAwareHealthCheck:
            converted = _lag_aware(check, where, problems)
            if converted is not None:
                checks.append(converted)
        else:
            problems.add(where, f"a {type(check).__name__} cannot be carried over; write a "
                         "faulttol_redis.HealthCheck (check() and check_async())")
            continue
        timings.add((check.health_check_probes, check.health_check_delay,
                     check.health_check_timeout))
    if len(timings) > 1:
        problems.add("health_checks", "their probes, delay or timeout differ; faulttol_redis "
                     "runs every check with the same health_check_probes, "
                     "health_check_probe_delay and health_check_timeout")
    elif timings:
        probes, delay, timeout = timings.pop()
        settings.update(health_check_probes=int(probes), health_check_probe_delay=float(delay),
                        health_check_timeout=float(timeout))
    settings["health_checks"] = tuple(checks)
    return settings


def _event_dispatcher(dispatcher: Any, problems: _Problems) -> None:
    """Listeners of the user's own cannot follow; redis-py's (re-authentication, the ones a
    ``MultiDBClient`` registers for itself) have no part to play here."""
    from redis.event import EventDispatcher

    own = type(dispatcher) is not EventDispatcher or any(
        not type(listener).__module__.startswith("redis.")
        for listeners in dispatcher._event_listeners_mapping.values()
        for listener in listeners
    )
    if own:
        problems.add("event_dispatcher", "event listeners cannot be carried over; register "
                     "a switch listener with provider.add_switch_listener(fn) instead")


def from_redis_py(
    build: Callable[..., T], config: Any, *,
    base_circuit_breaker: CircuitBreakerConfig, base_retry: RetryConfig,
) -> T:
    """``build(...)`` (``MultiDbConfig``) equivalent to redis-py's ``config``; ``ValueError``
    listing every setting that cannot be carried over."""
    try:
        from redis.multidb import config as rc
        from redis.multidb.failover import WeightBasedFailoverStrategy
    except ImportError:
        raise ConfigTypeError(
            "config must be a redis.multidb.config.MultiDbConfig, and the installed redis-py "
            "has no redis.multidb (it needs redis-py 7 or later)"
        ) from None
    if not isinstance(config, rc.MultiDbConfig):
        raise ConfigTypeError(
            f"config must be a redis.multidb.config.MultiDbConfig, got {describe(config)}"
        )
    import redis

    problems = _Problems()
    cluster = isinstance(config.client_class, type) and issubclass(
        config.client_class, redis.RedisCluster)
    if not cluster and config.client_class is not redis.Redis:
        problems.add("client_class", f"{describe(config.client_class)}: only redis.Redis and "
                     "redis.RedisCluster can be carried over")
    sources = list(config.databases_config or [])
    databases = [_database(i, db, cluster, problems) for i, db in enumerate(sources)]
    grace = _grace_period(sources, problems)
    breaker = _breaker(config, base_circuit_breaker, grace, problems)
    retry = _retry(config.command_retry, base_retry, problems)
    checks = _health_checks(config, problems)
    if config.failover_strategy is not None and type(
        config.failover_strategy
    ) is not WeightBasedFailoverStrategy:
        problems.add("failover_strategy", f"a {type(config.failover_strategy).__name__} "
                     "cannot be carried over; faulttol_redis has \"weighted\" (redis-py's "
                     "WeightBasedFailoverStrategy) and \"ordered\"")
    policy = HealthCheckPolicy.__members__.get(config.health_check_policy.name)
    if policy is None:
        problems.add("health_check_policy", f"{config.health_check_policy.name} has no "
                     "equivalent (HEALTHY_ALL, HEALTHY_MAJORITY, HEALTHY_ANY)")
    _event_dispatcher(config.event_dispatcher, problems)
    interval = float(config.auto_fallback_interval)
    problems.raise_if_any()
    settings: dict[str, Any] = {
        "circuit_breaker": breaker,
        "retry": retry,
        **checks,
        "health_check_policy": policy,
        "failover_strategy": "weighted",
        "failover_attempts": int(config.failover_attempts),
        "failover_delay": float(config.failover_delay),
        "auto_failback_interval": interval if interval > 0 and math.isfinite(interval)
        else None,
    }
    if grace is not None:
        settings["auto_failback_grace_period"] = grace
    return build(databases, **settings)
