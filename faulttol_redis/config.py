"""Configuration of the failover client: one :class:`DatabaseConfig` per database, in priority
order, gathered in a :class:`MultiDbConfig` with the breaker, retry, health-check and failover
settings.

Both are immutable and validate at construction (``ValueError`` naming the field and its
allowed range, ``TypeError`` for a value of the wrong kind). Defaults are those of Jedis's
failover guide (breaker and retry) and redis-py's multi-database client (health checks,
failover timing). Secrets (passwords in URLs, any ``client_kwargs`` key that looks like a
password, token, secret, key or credential) never appear in a ``repr`` or ``str``.
"""

from __future__ import annotations

import math
import os
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.retry
from redis.backoff import NoBackoff
from redis.connection import parse_url

from faulttol.breaker import CallNotPermittedError, CircuitBreakerConfig
from faulttol.health import (
    DEFAULT_HEALTH_CHECK_INTERVAL,
    DEFAULT_HEALTH_CHECK_POLICY,
    DEFAULT_HEALTH_CHECK_PROBE_DELAY,
    DEFAULT_HEALTH_CHECK_PROBES,
    HealthCheckPolicy,
)
from faulttol.retry import RetryConfig

from ._replay import never_sent as _never_sent
from .healthcheck import HealthCheck, PingHealthCheck

__all__ = [
    "ClusterConnectionError",
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

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6379
DEFAULT_WEIGHT = 1.0

DEFAULT_HEALTH_CHECK_TIMEOUT = 1.0
"""Seconds one health probe may take."""

DEFAULT_AUTO_FAILBACK_INTERVAL: float | None = None
"""Failback is manual unless an interval (seconds between failback attempts) is set."""

DEFAULT_AUTO_FAILBACK_GRACE_PERIOD = 60.0
"""Seconds after failing over from a database before automatic failback may return to it
(redis-py's and Jedis's grace period)."""

DEFAULT_FAILOVER_ATTEMPTS = 10
DEFAULT_FAILOVER_DELAY = 12.0
"""With :data:`DEFAULT_FAILOVER_ATTEMPTS`: 120 s of TemporaryUnavailableError before
NoValidDatabaseError (redis-py's defaults)."""

FAILOVER_STRATEGIES = ("ordered", "weighted")
"""``ordered``: lowest eligible index (Jedis); ``weighted``: highest weight, ties by index."""

DEFAULT_FAILOVER_STRATEGY = "ordered"

DEFAULT_RETRY_AMBIGUOUS_WRITES = False
"""Commands whose outcome is ambiguous (timeout after sending) are not replayed by default."""

REDIS_CONNECTION_EXCEPTIONS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
"""What counts against a database: connection errors and timeouts, never server errors."""

_SECRET_MARKERS = ("password", "passwd", "token", "secret", "key", "credential", "auth")
_MASK = "***"
_RESERVED_CLIENT_KWARGS = frozenset({"host", "port", "url", "startup_nodes"})


def default_circuit_breaker_config() -> CircuitBreakerConfig:
    """Jedis's failover breaker: resilience4j defaults, recording only connection errors."""
    return CircuitBreakerConfig(record_exceptions=REDIS_CONNECTION_EXCEPTIONS)


def default_retry_config() -> RetryConfig:
    """Jedis's failover retry: 3 attempts, 500 ms x2 backoff, only connection errors."""
    return RetryConfig(retry_exceptions=REDIS_CONNECTION_EXCEPTIONS)


def default_fallback_exceptions() -> tuple[type[BaseException], ...]:
    """Jedis's fallback list: a rejected call or a connection error triggers failover."""
    return (CallNotPermittedError, redis.exceptions.ConnectionError)


# --- secrets ---------------------------------------------------------------------------


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return "username" not in lowered and any(marker in lowered for marker in _SECRET_MARKERS)


def _masked_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_MASK if _is_secret(k) and v is not None else v) for k, v in kwargs.items()}


def _masked_url(url: str) -> str:
    """``url`` with the password of its userinfo and secret query values replaced."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}{':' + _MASK if sep else ''}@{hostport}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{k}={_MASK if _is_secret(k) else urllib.parse.quote(v, safe='')}" for k, v in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# --- validation helpers --------------------------------------------------------------------


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return float(value)


def _positive(name: str, value: object) -> float:
    number = _number(name, value)
    if not 0 < number < math.inf:
        raise ValueError(f"{name} must be > 0 and finite, got {value!r}")
    return number


def _non_negative(name: str, value: object) -> float:
    number = _number(name, value)
    if not 0 <= number < math.inf:
        raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")
    return number


def _int_at_least(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def _exception_types(name: str, value: object) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be an exception type or a tuple of them, got {value!r}")
    types = tuple(value)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"{name} must contain only exception types, got {item!r}")
    return types


# --- one database --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class DatabaseConfig:
    """One Redis database (standalone, or a cluster when ``cluster=True``).

    Give ``host``/``port`` or a ``url`` (``redis://``, ``rediss://`` or ``unix://``); when
    ``url`` is given it wins, and ``host``, ``port`` and ``db`` are read from it. ``db``
    otherwise comes from ``client_kwargs`` (default 0). ``client_kwargs`` go to the client
    (password, ssl, socket timeouts...; not host/port). ``weight`` orders databases under
    the ``"weighted"`` failover strategy. ``health_check_url`` is the base URL of the Redis
    Enterprise REST API for :class:`~faulttol_redis.LagAwareHealthCheck`.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    _: KW_ONLY
    url: str | None = None
    weight: float = DEFAULT_WEIGHT
    name: str | None = None
    client_kwargs: Mapping[str, Any] | None = field(default=None, hash=False)
    """Always a read-only mapping after construction (``None`` becomes empty)."""
    cluster: bool = False
    health_check_url: str | None = None
    db: int = field(init=False, default=0)
    """The logical database number (from ``url`` or ``client_kwargs``)."""

    def __post_init__(self) -> None:
        kwargs = {} if self.client_kwargs is None else self.client_kwargs
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"client_kwargs must be a mapping or None, got {type(kwargs)!r}")
        for key in kwargs:
            if not isinstance(key, str):
                raise TypeError(f"client_kwargs keys must be str, got {key!r}")
            if key in _RESERVED_CLIENT_KWARGS:
                raise ValueError(
                    f"client_kwargs must not set {key!r}: use DatabaseConfig's host/port/url"
                )
        object.__setattr__(self, "client_kwargs", MappingProxyType(dict(kwargs)))
        db: object = kwargs.get("db", 0)
        if self.url is not None:
            if not isinstance(self.url, str):
                raise TypeError(f"url must be a str or None, got {type(self.url)!r}")
            try:
                parsed = parse_url(self.url)  # type: ignore[no-untyped-call]
            except ValueError:
                raise ValueError(
                    "url must start with redis://, rediss:// or unix:// and be well formed, "
                    f"got {_masked_url(self.url)!r}"
                ) from None
            if "path" in parsed:
                object.__setattr__(self, "host", str(parsed["path"]))
                object.__setattr__(self, "port", 0)
            else:
                object.__setattr__(self, "host", str(parsed.get("host", DEFAULT_HOST)))
                object.__setattr__(self, "port", int(parsed.get("port", DEFAULT_PORT)))
            db = parsed.get("db", db)
        else:
            if not isinstance(self.host, str) or not self.host:
                raise ValueError(f"host must be a non-empty string, got {self.host!r}")
            if isinstance(self.port, bool) or not isinstance(self.port, int):
                raise TypeError(f"port must be an int, got {self.port!r}")
            if not 1 <= self.port <= 65535:
                raise ValueError(f"port must be in 1..65535, got {self.port}")
        if isinstance(db, bool) or not isinstance(db, int) or db < 0:
            raise ValueError(f"db must be an int >= 0, got {db!r}")
        object.__setattr__(self, "db", db)
        object.__setattr__(self, "weight", _non_negative("weight", self.weight))
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a str or None, got {self.name!r}")
        if not isinstance(self.cluster, bool):
            raise TypeError(f"cluster must be a bool, got {self.cluster!r}")
        if self.cluster and self.db != 0:
            raise ValueError(f"db must be 0 for a cluster database, got {self.db}")

    # --- identity ------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``host:port/db`` (``unix:path/db`` for a socket), without any secret."""
        if self.port == 0:
            return f"unix:{self.host}/{self.db}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.db}"

    @property
    def endpoint_key(self) -> tuple[str, int, int]:
        """What makes two configs the same database: host (case-insensitive), port, db."""
        return (self.host.lower(), self.port, self.db)

    @property
    def display_name(self) -> str:
        """``name`` if given, else :attr:`endpoint`: what logs and events show."""
        return self.name if self.name is not None else self.endpoint

    # --- clients -------------------------------------------------------------------------

    def _client_kwargs(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = dict(self.client_kwargs or {})
        kwargs.update(overrides)
        for key in _RESERVED_CLIENT_KWARGS & kwargs.keys():
            raise ValueError(f"cannot override {key!r}: use DatabaseConfig's host/port/url")
        return kwargs

    def create_client(self, **overrides: Any) -> redis.Redis | redis.cluster.RedisCluster:
        """A new sync client for this database: ``client_kwargs`` updated by ``overrides``.

        redis-py's own retries are off (``Retry(NoBackoff(), 0)``) unless a ``retry`` is
        given, so that the failover client's retry is the only one. With ``cluster=True``
        this is a ``RedisCluster`` that loads the cluster's topology on first use (once,
        under a lock: concurrent first commands are safe, and a cluster that is down when
        the client is made does not prevent making it) and reports the cluster being
        unavailable as a :class:`ClusterConnectionError`.
        """
        kwargs = self._client_kwargs(overrides)
        if "retry" not in kwargs:
            kwargs["retry"] = redis.retry.Retry(NoBackoff(), 0)
        if self.cluster:
            if self.url is not None:
                return _FailoverRedisCluster(url=self.url, **kwargs)
            return _FailoverRedisCluster(host=self.host, port=self.port, **kwargs)
        if self.url is not None:
            return redis.Redis.from_url(self.url, **kwargs)
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def create_async_client(
        self, **overrides: Any
    ) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
        """The asyncio twin of :meth:`create_client` (a cluster client connects lazily, as
        redis-py's does, and reports the cluster being unavailable as a
        :class:`ClusterConnectionError`)."""
        kwargs = self._client_kwargs(overrides)
        if "retry" not in kwargs:
            kwargs["retry"] = redis.asyncio.retry.Retry(NoBackoff(), 0)
        if self.cluster:
            if self.url is not None:
                return _FailoverAsyncRedisCluster.from_url(self.url, **kwargs)
            return _FailoverAsyncRedisCluster(host=self.host, port=self.port, **kwargs)
        if self.url is not None:
            return redis.asyncio.Redis.from_url(self.url, **kwargs)
        return redis.asyncio.Redis(host=self.host, port=self.port, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only client_kwargs mapping cannot be pickled as is: rebuild from fields.
        return (
            _rebuild_database,
            (
                self.host, self.port, self.url, self.weight, self.name,
                dict(self.client_kwargs or {}), self.cluster, self.health_check_url,
            ),
        )

    # --- display -------------------------------------------------------------------------

    def __repr__(self) -> str:
        parts = [f"host={self.host!r}", f"port={self.port!r}", f"db={self.db!r}"]
        if self.url is not None:
            parts.append(f"url={_masked_url(self.url)!r}")
        parts.append(f"weight={self.weight!r}")
        if self.name is not None:
            parts.append(f"name={self.name!r}")
        if self.client_kwargs:
            parts.append(f"client_kwargs={_masked_kwargs(self.client_kwargs)!r}")
        if self.cluster:
            parts.append("cluster=True")
        if self.health_check_url is not None:
            parts.append(f"health_check_url={_masked_url(self.health_check_url)!r}")
        return f"DatabaseConfig({', '.join(parts)})"

    def __str__(self) -> str:
        return self.display_name


def _rebuild_database(
    host: str,
    port: int,
    url: str | None,
    weight: float,
    name: str | None,
    client_kwargs: dict[str, Any],
    cluster: bool,
    health_check_url: str | None,
) -> DatabaseConfig:
    return DatabaseConfig(
        host, port, url=url, weight=weight, name=name, client_kwargs=client_kwargs,
        cluster=cluster, health_check_url=health_check_url,
    )


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
    ) -> None:
        """Validate and freeze; ``None`` for a policy object means its default."""
        dbs = _validate_databases(databases)
        if circuit_breaker is None:
            circuit_breaker = default_circuit_breaker_config()
        elif not isinstance(circuit_breaker, CircuitBreakerConfig):
            raise TypeError(
                f"circuit_breaker must be a CircuitBreakerConfig, got {circuit_breaker!r}"
            )
        if retry is None:
            retry = default_retry_config()
        elif not isinstance(retry, RetryConfig):
            raise TypeError(f"retry must be a RetryConfig, got {retry!r}")
        fallback = (
            default_fallback_exceptions()
            if fallback_exceptions is None
            else _exception_types("fallback_exceptions", fallback_exceptions)
        )
        checks: tuple[HealthCheck, ...] = (
            (PingHealthCheck(),) if health_checks is None else tuple(health_checks)
        )
        for check in checks:
            if not isinstance(check, HealthCheck):
                raise TypeError(
                    "health_checks must contain objects with check() and check_async(), "
                    f"got {check!r}"
                )
        if not isinstance(health_check_policy, HealthCheckPolicy):
            raise TypeError(
                f"health_check_policy must be a HealthCheckPolicy, got {health_check_policy!r}"
            )
        if auto_failback_interval is not None:
            auto_failback_interval = _positive("auto_failback_interval", auto_failback_interval)
        if failover_strategy not in FAILOVER_STRATEGIES:
            raise ValueError(
                f"failover_strategy must be one of {', '.join(FAILOVER_STRATEGIES)}, "
                f"got {failover_strategy!r}"
            )
        store = None if active_index_store is None else os.fspath(active_index_store)
        if store == "":
            raise ValueError("active_index_store must be a non-empty path or None")
        if not isinstance(retry_ambiguous_writes, bool):
            raise TypeError(
                f"retry_ambiguous_writes must be a bool, got {retry_ambiguous_writes!r}"
            )
        values: dict[str, object] = {
            "databases": dbs,
            "circuit_breaker": circuit_breaker,
            "retry": retry,
            "fallback_exceptions": fallback,
            "health_checks": checks,
            "health_check_interval": _positive("health_check_interval", health_check_interval),
            "health_check_probes": _int_at_least("health_check_probes", health_check_probes, 1),
            "health_check_probe_delay": _non_negative(
                "health_check_probe_delay", health_check_probe_delay
            ),
            "health_check_policy": health_check_policy,
            "health_check_timeout": _positive("health_check_timeout", health_check_timeout),
            "auto_failback_interval": auto_failback_interval,
            "auto_failback_grace_period": _non_negative(
                "auto_failback_grace_period", auto_failback_grace_period
            ),
            "failover_attempts": _int_at_least("failover_attempts", failover_attempts, 1),
            "failover_delay": _non_negative("failover_delay", failover_delay),
            "failover_strategy": failover_strategy,
            "active_index_store": store,
            "retry_ambiguous_writes": retry_ambiguous_writes,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def failover_timeout(self) -> float:
        """``failover_attempts`` x ``failover_delay``: how long ``TemporaryUnavailableError``
        lasts before ``NoValidDatabaseError``."""
        return self.failover_attempts * self.failover_delay

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
    "active_index_store", "retry_ambiguous_writes",
)


def _validate_databases(databases: Iterable[DatabaseConfig]) -> tuple[DatabaseConfig, ...]:
    if isinstance(databases, (DatabaseConfig, str, bytes)) or not isinstance(
        databases, Iterable
    ):
        raise TypeError(f"databases must be an iterable of DatabaseConfig, got {databases!r}")
    dbs = tuple(databases)
    if not dbs:
        raise ValueError("databases must contain at least 1 DatabaseConfig, got none")
    seen: dict[tuple[str, int, int], int] = {}
    for position, db in enumerate(dbs):
        if not isinstance(db, DatabaseConfig):
            raise TypeError(f"databases[{position}] must be a DatabaseConfig, got {db!r}")
        first = seen.setdefault(db.endpoint_key, position)
        if first != position:
            raise ValueError(
                f"databases must have distinct endpoints: databases[{position}] "
                f"({db.endpoint}) duplicates databases[{first}]"
            )
    return dbs


# --- cluster clients -----------------------------------------------------------------------
#
# A cluster database's client is a RedisCluster with two differences that failover needs:
# it loads the topology on first use (so a cluster that is down when the provider starts does
# not stop the provider from starting, and concurrent first commands wait for one loading),
# and it reports the cluster being unavailable as a connection error. redis-py reports a
# cluster with no reachable node as RedisClusterException and a cluster in cluster_state:fail
# as ClusterDownError (a ResponseError): neither would count against the database or trigger
# failover, so an application would see them instead of being moved to another database.

_TOPOLOGY_FAILURES = (
    "Redis Cluster cannot be connected",  # no startup node answered CLUSTER SLOTS
    "All slots are not covered",  # a node answered, but the slot map has holes
)


class ClusterConnectionError(redis.exceptions.ConnectionError):
    """A cluster database cannot serve a command: no node answered a topology refresh, the
    cluster answered CLUSTERDOWN/MASTERDOWN, a slot has no node, or a node failed in the
    middle of a pipeline that spans several nodes.

    A connection error, so that it counts against the database and makes the failover
    client move on. The redis-py error is the ``__cause__``. ``never_sent`` is True when the
    command surely did not run (it may then be replayed on another database); it is False
    when commands may have run (e.g. on the other nodes of a multi-node pipeline).
    """

    def __init__(self, message: str, *, never_sent: bool) -> None:
        super().__init__(message)
        self.never_sent = never_sent


def _cluster_failure(exc: BaseException, *, pipeline: bool) -> ClusterConnectionError | None:
    """The connection error that ``exc`` (raised by a cluster client) stands for, if any."""
    if isinstance(exc, ClusterConnectionError):
        return None
    if isinstance(exc, (redis.exceptions.ClusterDownError, redis.exceptions.SlotNotCoveredError)):
        # Refused before running; in a multi-node pipeline other commands may have run.
        return ClusterConnectionError(f"the cluster cannot serve: {exc}", never_sent=not pipeline)
    if isinstance(exc, redis.exceptions.RedisClusterException):
        if not str(exc).startswith(_TOPOLOGY_FAILURES):
            return None  # e.g. keys in different slots: the application's error
        # Raised while refreshing the topology after the command itself failed (then that
        # failure is the context and says whether the command was sent), or before sending.
        failed = exc.__context__
        if isinstance(failed, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            sent = pipeline or not _never_sent(failed)
            return ClusterConnectionError(
                f"{failed}; then no node of the cluster answered: {exc}", never_sent=not sent
            )
        if isinstance(failed, redis.exceptions.ClusterDownError):
            return ClusterConnectionError(
                f"the cluster is down ({failed}) and no node answered: {exc}",
                never_sent=not pipeline,
            )
        return ClusterConnectionError(f"no node of the cluster answered: {exc}", never_sent=True)
    if pipeline and isinstance(
        exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    ):
        # A node failed while the pipeline ran on several nodes: say that it is ambiguous,
        # whatever the node's error message says about that node alone.
        return ClusterConnectionError(
            f"a cluster node failed during a pipeline ({exc!r}); commands routed to other "
            "nodes may have run",
            never_sent=False,
        )
    return None


class _FailoverRedisCluster(redis.cluster.RedisCluster):
    """A ``RedisCluster`` that loads the topology on first use and reports cluster-level
    unavailability as :class:`ClusterConnectionError` (see the section comment above).

    Construction does no I/O. The first use (a command, a pipeline, a topology query)
    runs redis-py's own initialization once, under a lock; other threads wait for it. If it
    fails, the next use tries again. Until then, attributes that only an initialized
    ``RedisCluster`` has are missing (``getattr(client, name, default)`` stays cheap and
    safe).
    """

    def __init__(self, **kwargs: Any) -> None:  # no super().__init__(): see _ensure_ready
        self._ft_kwargs = kwargs
        self._ft_lock = threading.RLock()
        self._ft_ready = False
        self._ft_initializing = False

    def _ensure_ready(self) -> None:
        """Initialize once; raise :class:`ClusterConnectionError` if no node answers."""
        if self._ft_ready:
            return
        with self._ft_lock:
            if self._ft_ready or self._ft_initializing:
                return  # done meanwhile, or re-entered by redis-py's own initialization
            self._ft_initializing = True
            try:
                super().__init__(**self._ft_kwargs)
            except Exception as exc:
                failure = _cluster_failure(exc, pipeline=False)
                if failure is None and isinstance(
                    exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
                ):
                    failure = ClusterConnectionError(
                        f"initializing the cluster client failed: {exc}", never_sent=True
                    )
                if failure is None:
                    raise  # a configuration error: let it show as it is
                failure.never_sent = True  # nothing of the caller's ran yet
                raise failure from exc
            finally:
                self._ft_initializing = False
            self._ft_ready = True

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes that do not exist (yet): initialize, then look again.
        state = self.__dict__
        if name.startswith(("__", "_ft_")) or state.get("_ft_ready", True):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        try:
            self._ensure_ready()
        except Exception as exc:
            raise AttributeError(
                f"{name!r}: the cluster client is not initialized ({exc})"
            ) from exc
        return object.__getattribute__(self, name)

    # Entry points: initialize first, so that no caller sees a half-initialized client.

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if not self._ft_ready:
            self._ensure_ready()
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except (redis.exceptions.RedisClusterException, redis.exceptions.ClusterDownError) as exc:
            failure = _cluster_failure(exc, pipeline=False)
            if failure is None:
                raise
            raise failure from exc

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        self._ensure_ready()
        pipe = super().pipeline(transaction, shard_hint)  # type: ignore[no-untyped-call]
        pipe.__class__ = _FailoverClusterPipeline  # adds behaviour, and one attribute:
        pipe.scripts = set()
        return pipe

    def get_primaries(self) -> Any:
        self._ensure_ready()
        return super().get_primaries()  # type: ignore[no-untyped-call]

    def get_nodes(self) -> Any:
        self._ensure_ready()
        return super().get_nodes()  # type: ignore[no-untyped-call]

    def get_redis_connection(self, node: Any) -> redis.Redis:
        self._ensure_ready()
        return super().get_redis_connection(node)

    def get_default_node(self) -> Any:
        self._ensure_ready()
        return super().get_default_node()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Close every node's connections (nothing to do before the first use)."""
        state = self.__dict__
        if state.get("_ft_ready"):
            super().close()
        elif "nodes_manager" in state:  # an initialization that failed half-way
            state["nodes_manager"].close()

    def __repr__(self) -> str:
        kwargs = self.__dict__.get("_ft_kwargs", {})
        where = (
            _masked_url(kwargs["url"]) if "url" in kwargs
            else f"{kwargs.get('host')}:{kwargs.get('port')}"
        )
        state = "initialized" if self.__dict__.get("_ft_ready") else "not initialized"
        return f"<{type(self).__name__}({where}, {state})>"


class _FailoverClusterPipeline(redis.cluster.ClusterPipeline):
    """redis-py's sync cluster pipeline, reporting failures as :func:`_cluster_failure`.

    Like a standalone ``Pipeline`` it has ``scripts``: the :class:`redis.commands.core.Script`
    objects whose EVALSHA it carries are loaded on every primary that lacks them before the
    commands are sent (redis-py's cluster pipeline would fail them with NOSCRIPT).
    """

    scripts: set[Any]

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            if self.scripts:
                self._load_scripts()
            return super().execute(raise_on_error)
        except (
            redis.exceptions.RedisClusterException,
            redis.exceptions.ClusterDownError,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        ) as exc:
            failure = _cluster_failure(exc, pipeline=True)
            if failure is None:
                raise
            raise failure from exc

    def _load_scripts(self) -> None:
        scripts = list(self.scripts)
        shas = [script.sha for script in scripts]
        for node in self.get_primaries():  # type: ignore[no-untyped-call]
            connection = self.get_redis_connection(node)
            for script, exists in zip(scripts, connection.script_exists(*shas), strict=True):
                if not exists:
                    script.sha = connection.script_load(script.script)


class _FailoverAsyncRedisCluster(redis.asyncio.cluster.RedisCluster):
    """redis-py's asyncio ``RedisCluster`` (which already initializes on first use, under a
    lock), reporting cluster-level unavailability as :class:`ClusterConnectionError`."""

    __slots__ = ()

    async def initialize(self, *args: Any, **kwargs: Any) -> _FailoverAsyncRedisCluster:
        try:
            await super().initialize(*args, **kwargs)
        except Exception as exc:
            failure = _cluster_failure(exc, pipeline=False)
            if failure is None:
                raise
            failure.never_sent = True
            raise failure from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (redis.exceptions.RedisClusterException, redis.exceptions.ClusterDownError) as exc:
            failure = _cluster_failure(exc, pipeline=False)
            if failure is None:
                raise
            raise failure from exc

    def pipeline(
        self, transaction: Any = None, shard_hint: Any = None
    ) -> redis.asyncio.cluster.ClusterPipeline:
        if shard_hint:
            raise redis.exceptions.RedisClusterException(
                "shard_hint is deprecated in cluster mode"
            )
        return _FailoverAsyncClusterPipeline(self, transaction)  # type: ignore[abstract]


class _FailoverAsyncClusterPipeline(redis.asyncio.cluster.ClusterPipeline):
    """redis-py's asyncio cluster pipeline, reporting failures as :func:`_cluster_failure`."""

    __slots__ = ()

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except (
            redis.exceptions.RedisClusterException,
            redis.exceptions.ClusterDownError,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        ) as exc:
            failure = _cluster_failure(exc, pipeline=True)
            if failure is None:
                raise
            raise failure from exc
