"""Configuration of the failover client: one :class:`DatabaseConfig` per database, in priority
order, gathered in a :class:`MultiDbConfig` with the breaker, retry, health-check and failover
settings. Both are plain records: they build no clients (:func:`faulttol_redis.create_client`
does). ``DatabaseConfig`` is defined in ``faulttol_redis._database`` and re-exported here.

Both are immutable and validate at construction: a value out of range (negative, zero
where not allowed, NaN, infinite) raises ``ValueError`` naming the field and its allowed
range; a value of the wrong kind raises ``ConfigTypeError`` (both a ``TypeError`` and a
``ValueError``) naming the field (the checks are :mod:`faulttol.validation`'s). Defaults
are those of Jedis's failover guide (breaker and retry) and redis-py's multi-database client
(health checks, failover timing); each is a named constant, defined once (the failover
timing's in :mod:`faulttol.provider`, the health checks' in :mod:`faulttol.health`) and
re-exported here.

Secrets (passwords in URLs, any ``client_kwargs`` key that looks like a password, token,
secret, key or credential) never appear in a ``repr``, a ``str`` or an error message, whatever
the input: a URL is shown with its password masked (also when an unencoded ``#``, ``?`` or
``/`` in the password breaks its syntax), and a value of the wrong kind is shown by its type
only (a dict given where a :class:`DatabaseConfig` goes may hold a password).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from faulttol import (
    CallNotPermittedError,
    CircuitBreakerConfig,
    ConfigTypeError,
    FailoverStrategy,
    ProviderConfig,
    RetryConfig,
)
from faulttol.health import (
    DEFAULT_HEALTH_CHECK_INTERVAL,
    DEFAULT_HEALTH_CHECK_POLICY,
    DEFAULT_HEALTH_CHECK_PROBE_DELAY,
    DEFAULT_HEALTH_CHECK_PROBES,
    HealthCheckPolicy,
)
from faulttol.provider import DEFAULT_FAILOVER_ATTEMPTS, DEFAULT_FAILOVER_DELAY
from faulttol.validation import (
    check_bool,
    check_choice,
    check_exception_types,
    check_instance,
    check_int,
    check_non_negative,
    check_path,
    check_positive,
    describe,
)

from ._config_files import load_multidb, load_multidb_toml
from ._database import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_WEIGHT, DatabaseConfig
from ._database import _rebuild_database as _rebuild_database  # pickles made before the split
from ._migration import from_redis_py
from ._secrets import masked_url
from .healthcheck import HealthCheck, LagAwareHealthCheck, PingHealthCheck

__all__ = [
    "DEFAULT_AUTO_FAILBACK_GRACE_PERIOD",
    "DEFAULT_AUTO_FAILBACK_INTERVAL",
    "DEFAULT_FAILOVER_ATTEMPTS",
    "DEFAULT_FAILOVER_DELAY",
    "DEFAULT_FAILOVER_STRATEGY",
    "DEFAULT_HEALTH_CHECK_INTERVAL",
    "DEFAULT_HEALTH_CHECK_POLICY",
    "DEFAULT_HEALTH_CHECK_PROBES",
    "DEFAULT_HEALTH_CHECK_PROBE_DELAY",
    "DEFAULT_HEALTH_CHECK_TIMEOUT",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_HANG_DETECTION_AFTER",
    "DEFAULT_HANG_PROBE_TIMEOUT",
    "DEFAULT_RETRY_AMBIGUOUS_WRITES",
    "DEFAULT_WEIGHT",
    "FAILOVER_STRATEGIES",
    "REDIS_CONNECTION_EXCEPTIONS",
    "DatabaseConfig",
    "MultiDbConfig",
    "default_circuit_breaker_config",
    "default_fallback_exceptions",
    "default_retry_config",
]

DEFAULT_HEALTH_CHECK_TIMEOUT = 1.0
"""Seconds one health probe may take."""

DEFAULT_AUTO_FAILBACK_INTERVAL: float | None = None
"""Failback is manual unless an interval (seconds between failback attempts) is set."""

DEFAULT_AUTO_FAILBACK_GRACE_PERIOD = 60.0
"""Seconds after failing over from a database before automatic failback may return to it
(redis-py's and Jedis's grace period)."""

FAILOVER_STRATEGIES = ("ordered", "weighted")
"""``ordered``: lowest eligible index (Jedis); ``weighted``: highest weight, ties by index."""

DEFAULT_FAILOVER_STRATEGY = "ordered"

DEFAULT_RETRY_AMBIGUOUS_WRITES = False

DEFAULT_HANG_DETECTION_AFTER = 0.5
"""Seconds a command may wait for its reply before its database is probed for a hang."""

DEFAULT_HANG_PROBE_TIMEOUT = 0.5
"""Seconds the hang probe (one PING on a connection of its own) waits for its answer."""
"""Commands whose outcome is ambiguous (timeout after sending) are not replayed by default."""

REDIS_CONNECTION_EXCEPTIONS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
"""What counts against a database: connection errors and timeouts, never server errors."""


def default_circuit_breaker_config() -> CircuitBreakerConfig:
    """Jedis's failover breaker: resilience4j defaults, recording only connection errors."""
    return CircuitBreakerConfig(record_exceptions=REDIS_CONNECTION_EXCEPTIONS)


def default_retry_config() -> RetryConfig:
    """Jedis's failover retry: 3 attempts, 500 ms x2 backoff, only connection errors."""
    return RetryConfig(retry_exceptions=REDIS_CONNECTION_EXCEPTIONS)


def default_fallback_exceptions() -> tuple[type[BaseException], ...]:
    """Jedis's fallback list: a rejected call or a connection error triggers failover."""
    return (CallNotPermittedError, redis.exceptions.ConnectionError)


# --- the whole client ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class MultiDbConfig:
    """Everything the failover provider needs: databases in priority order plus policies.

    ``databases`` may be any iterable of :class:`DatabaseConfig`; it is kept as a tuple.
    ``health_checks`` run every ``health_check_interval`` seconds on every database, each
    as a round of ``health_check_probes`` probes ``health_check_probe_delay`` seconds apart,
    decided by ``health_check_policy``; a probe has ``health_check_timeout`` seconds. An
    empty ``health_checks`` turns proactive checks off. When no database is eligible,
    ``TemporaryUnavailableError`` is raised for ``failover_attempts`` x ``failover_delay``
    seconds, then ``NoValidDatabaseError``. ``active_index_store`` is a file where the
    active index is persisted across restarts (avoiding an unwanted failback on restart).
    ``retry_ambiguous_writes=True`` allows replaying commands whose outcome is ambiguous.
    A command still waiting for its reply ``hang_detection_after`` seconds after it was sent
    makes the client PING that database on a connection of its own (``hang_probe_timeout``
    seconds); if the PING does not answer, the database is hung: it is failed over and the
    commands waiting on it are released (None turns this off; see docs/hung-databases.md).
    ``hedge_reads_after`` (None: off) sends a read-only command with no reply that long to
    the next eligible database too (Active-Active deployments).
    A database whose ``health_check_url`` is plain ``http://`` is refused when a
    :class:`~faulttol_redis.LagAwareHealthCheck` would send it credentials, unless that
    check was made with ``allow_insecure_http=True``.
    """

    databases: tuple[DatabaseConfig, ...]
    circuit_breaker: CircuitBreakerConfig
    retry: RetryConfig
    fallback_exceptions: tuple[type[BaseException], ...]
    health_checks: tuple[HealthCheck, ...]
    health_check_interval: float
    health_check_probes: int
    health_check_probe_delay: float
    health_check_policy: HealthCheckPolicy
    health_check_timeout: float
    auto_failback_interval: float | None
    auto_failback_grace_period: float
    failover_attempts: int
    failover_delay: float
    failover_strategy: str
    active_index_store: str | None
    retry_ambiguous_writes: bool
    hang_detection_after: float | None
    hang_probe_timeout: float
    hedge_reads_after: float | None

    def __init__(
        self,
        databases: Iterable[DatabaseConfig],
        *,
        circuit_breaker: CircuitBreakerConfig | None = None,
        retry: RetryConfig | None = None,
        fallback_exceptions: type[BaseException] | Iterable[type[BaseException]] | None = None,
        health_checks: Iterable[HealthCheck] | None = None,
        health_check_interval: float = DEFAULT_HEALTH_CHECK_INTERVAL,
        health_check_probes: int = DEFAULT_HEALTH_CHECK_PROBES,
        health_check_probe_delay: float = DEFAULT_HEALTH_CHECK_PROBE_DELAY,
        health_check_policy: HealthCheckPolicy = DEFAULT_HEALTH_CHECK_POLICY,
        health_check_timeout: float = DEFAULT_HEALTH_CHECK_TIMEOUT,
        auto_failback_interval: float | None = DEFAULT_AUTO_FAILBACK_INTERVAL,
        auto_failback_grace_period: float = DEFAULT_AUTO_FAILBACK_GRACE_PERIOD,
        failover_attempts: int = DEFAULT_FAILOVER_ATTEMPTS,
        failover_delay: float = DEFAULT_FAILOVER_DELAY,
        failover_strategy: str = DEFAULT_FAILOVER_STRATEGY,
        active_index_store: str | os.PathLike[str] | None = None,
        retry_ambiguous_writes: bool = DEFAULT_RETRY_AMBIGUOUS_WRITES,
        hang_detection_after: float | None = DEFAULT_HANG_DETECTION_AFTER,
        hang_probe_timeout: float = DEFAULT_HANG_PROBE_TIMEOUT,
        hedge_reads_after: float | None = None,
    ) -> None:
        """Validate and freeze; ``None`` for a policy object means its default."""
        dbs = _validate_databases(databases)
        if circuit_breaker is None:
            circuit_breaker = default_circuit_breaker_config()
        else:
            check_instance(
                "circuit_breaker",
                circuit_breaker,
                CircuitBreakerConfig,
                "a CircuitBreakerConfig or None",
            )
        if retry is None:
            retry = default_retry_config()
        else:
            check_instance("retry", retry, RetryConfig, "a RetryConfig or None")
        fallback = (
            default_fallback_exceptions()
            if fallback_exceptions is None
            else check_exception_types("fallback_exceptions", fallback_exceptions)
        )
        checks = _validate_health_checks(health_checks)
        _refuse_insecure_health_check_urls(dbs, checks)
        check_instance(
            "health_check_policy",
            health_check_policy,
            HealthCheckPolicy,
            "a HealthCheckPolicy (HEALTHY_ALL, HEALTHY_MAJORITY or HEALTHY_ANY)",
        )
        if auto_failback_interval is not None:
            auto_failback_interval = check_positive(
                "auto_failback_interval", auto_failback_interval
            )
        check_choice("failover_strategy", failover_strategy, FAILOVER_STRATEGIES)
        store = check_path("active_index_store", active_index_store)
        check_bool("retry_ambiguous_writes", retry_ambiguous_writes)
        values: dict[str, object] = {
            "databases": dbs,
            "circuit_breaker": circuit_breaker,
            "retry": retry,
            "fallback_exceptions": fallback,
            "health_checks": checks,
            "health_check_interval": check_positive(
                "health_check_interval", health_check_interval
            ),
            "health_check_probes": check_int(
                "health_check_probes", health_check_probes, minimum=1
            ),
            "health_check_probe_delay": check_non_negative(
                "health_check_probe_delay", health_check_probe_delay
            ),
            "health_check_policy": health_check_policy,
            "health_check_timeout": check_positive("health_check_timeout", health_check_timeout),
            "auto_failback_interval": auto_failback_interval,
            "auto_failback_grace_period": check_non_negative(
                "auto_failback_grace_period", auto_failback_grace_period
            ),
            "failover_attempts": check_int("failover_attempts", failover_attempts, minimum=1),
            "failover_delay": check_non_negative("failover_delay", failover_delay),
            "failover_strategy": failover_strategy,
            "active_index_store": store,
            "retry_ambiguous_writes": retry_ambiguous_writes,
            "hang_detection_after": (
                None if hang_detection_after is None
                else check_positive("hang_detection_after", hang_detection_after)
            ),
            "hang_probe_timeout": check_positive("hang_probe_timeout", hang_probe_timeout),
            "hedge_reads_after": (
                None if hedge_reads_after is None
                else check_positive("hedge_reads_after", hedge_reads_after)
            ),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def failover_timeout(self) -> float:
        """``failover_attempts`` x ``failover_delay``: how long ``TemporaryUnavailableError``
        lasts before ``NoValidDatabaseError``."""
        return self.failover_attempts * self.failover_delay

    @property
    def provider_config(self) -> ProviderConfig:
        """The failover policies (breaker, retry, fallback, health-check interval, failback,
        strategy, timing) as the generic provider takes them: one object for both Redis
        providers."""
        return ProviderConfig(
            circuit_breaker=self.circuit_breaker,
            retry=self.retry,
            fallback_exceptions=self.fallback_exceptions,
            health_check_interval=self.health_check_interval,
            auto_failback_interval=self.auto_failback_interval,
            auto_failback_grace_period=self.auto_failback_grace_period,
            failover_strategy=FailoverStrategy(self.failover_strategy),
            failover_attempts=self.failover_attempts,
            failover_delay=self.failover_delay,
        )

    # --- other sources -----------------------------------------------------------------

    @classmethod
    def from_dict(
        cls, mapping: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
    ) -> MultiDbConfig:
        """A config from plain data, as read from a file: the keys are this constructor's
        parameter names, ``databases`` a list of mappings of :class:`DatabaseConfig`'s,
        ``circuit_breaker`` / ``retry`` mappings of their config's fields applied over the
        defaults (exception lists as dotted names), enums by name; ``"${NAME}"`` in a string
        is read from the environment (``environ``, default ``os.environ``). An unknown key
        or a missing variable is a ``ValueError`` naming it by its path
        (``databases[1].pasword``). See docs/config-files.md."""
        return load_multidb(cls, mapping, base_circuit_breaker=default_circuit_breaker_config(),
                            base_retry=default_retry_config(), environ=environ)

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
    ) -> MultiDbConfig:
        """:meth:`from_dict` of the TOML file at ``path`` (``ValueError`` naming the file
        when it is not valid TOML; ``OSError`` when it cannot be read)."""
        return load_multidb_toml(cls, path, base_circuit_breaker=default_circuit_breaker_config(),
                                 base_retry=default_retry_config(), environ=environ)

    @classmethod
    def from_redis_py(cls, config: Any) -> MultiDbConfig:
        """The equivalent of a redis-py ``redis.multidb.config.MultiDbConfig``: its
        databases (client options or URL, weights, grace period, ``RedisCluster`` client
        class), command retry, failure detector, health checks and policy, failover
        strategy, attempts and delay, and automatic failback interval. What has no
        equivalent (a connection pool, a custom circuit, failure detector or failover
        strategy, event listeners...) is a ``ValueError`` listing each such setting. See
        docs/migrating-redis-py.md."""
        return from_redis_py(cls, config, base_circuit_breaker=default_circuit_breaker_config(),
                             base_retry=default_retry_config())

    def replace(self, **changes: Any) -> MultiDbConfig:
        """A copy with ``changes`` applied (validated like a fresh config)."""
        values: dict[str, Any] = {name: getattr(self, name) for name in _MULTIDB_FIELDS}
        values.update(changes)
        return type(self)(**values)

    def __repr__(self) -> str:
        return (
            f"MultiDbConfig(databases={list(self.databases)!r}, "
            f"failover_strategy={self.failover_strategy!r}, "
            f"health_checks={list(self.health_checks)!r}, "
            f"health_check_interval={self.health_check_interval!r}, "
            f"health_check_probes={self.health_check_probes!r}, "
            f"health_check_policy={self.health_check_policy.name}, "
            f"auto_failback_interval={self.auto_failback_interval!r}, "
            f"failover_attempts={self.failover_attempts!r}, "
            f"failover_delay={self.failover_delay!r})"
        )


_MULTIDB_FIELDS = (
    "databases", "circuit_breaker", "retry", "fallback_exceptions", "health_checks",
    "health_check_interval", "health_check_probes", "health_check_probe_delay",
    "health_check_policy", "health_check_timeout", "auto_failback_interval",
    "auto_failback_grace_period", "failover_attempts", "failover_delay", "failover_strategy",
    "active_index_store", "retry_ambiguous_writes", "hang_detection_after",
    "hang_probe_timeout", "hedge_reads_after",
)


def _validate_databases(databases: Iterable[DatabaseConfig]) -> tuple[DatabaseConfig, ...]:
    if isinstance(databases, (DatabaseConfig, str, bytes)) or not isinstance(
        databases, Iterable
    ):
        raise ConfigTypeError(
            f"databases must be an iterable of DatabaseConfig, got {describe(databases)}"
        )
    dbs = tuple(databases)
    if not dbs:
        raise ValueError("databases must contain at least 1 DatabaseConfig, got none")
    seen: dict[tuple[str, int, int], int] = {}
    for position, db in enumerate(dbs):
        if not isinstance(db, DatabaseConfig):
            raise ConfigTypeError(
                f"databases[{position}] must be a DatabaseConfig, got {describe(db)}"
            )
        first = seen.setdefault(db.endpoint_key, position)
        if first != position:
            raise ValueError(
                f"databases must have distinct endpoints: databases[{position}] "
                f"({db.endpoint}) duplicates databases[{first}]"
            )
    return dbs


def _validate_health_checks(health_checks: object) -> tuple[HealthCheck, ...]:
    if health_checks is None:
        return (PingHealthCheck(),)
    if isinstance(health_checks, (str, bytes, Mapping)) or not isinstance(
        health_checks, Iterable
    ):
        raise ConfigTypeError(
            "health_checks must be an iterable of health checks (objects with check() and "
            f"check_async()) or None, got {describe(health_checks)}"
        )
    checks = tuple(health_checks)
    for position, check in enumerate(checks):
        if not isinstance(check, HealthCheck):
            raise ConfigTypeError(
                "health_checks must contain objects with check() and check_async(), "
                f"got {describe(check)} at health_checks[{position}]"
            )
    return checks


def _refuse_insecure_health_check_urls(
    databases: tuple[DatabaseConfig, ...], checks: tuple[HealthCheck, ...]
) -> None:
    """A lag-aware check sends credentials to ``health_check_url``: plain http only when
    that check was told ``allow_insecure_http=True``."""
    for check in checks:
        if not isinstance(check, LagAwareHealthCheck) or check.allow_insecure_http:
            continue
        for position, db in enumerate(databases):
            url = db.health_check_url
            if url is not None and urllib.parse.urlsplit(url).scheme.lower() != "https":
                raise ValueError(
                    f"databases[{position}].health_check_url must be https:// for "
                    f"LagAwareHealthCheck, got {masked_url(url)!r}; pass "
                    "LagAwareHealthCheck(allow_insecure_http=True) to allow plain http "
                    "(credentials and answers then travel unencrypted)"
                )
