"""Configuration of the failover client: one :class:`DatabaseConfig` per database, in priority
order, gathered in a :class:`MultiDbConfig` with the breaker, retry, health-check and failover
settings.

Both are immutable and validate at construction: a value out of range (negative, zero
where not allowed, NaN, infinite) raises ``ValueError`` naming the field and its allowed
range; a value of the wrong kind raises ``ConfigTypeError`` (both a ``TypeError`` and a
``ValueError``) naming the field. Defaults are those of Jedis's failover guide (breaker and
retry) and redis-py's multi-database client (health checks, failover timing).

Secrets (passwords in URLs, any ``client_kwargs`` key that looks like a password, token,
secret, key or credential) never appear in a ``repr``, a ``str`` or an error message, whatever
the input: a URL is shown with its password masked (also when an unencoded ``#``, ``?`` or
``/`` in the password breaks its syntax), and a value of the wrong kind is shown by its type
only (a dict given where a :class:`DatabaseConfig` goes may hold a password).
"""

from __future__ import annotations

import math
import os
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

from faulttol._errors import ConfigTypeError
from faulttol.breaker import CallNotPermittedError, CircuitBreakerConfig
from faulttol.health import (
    DEFAULT_HEALTH_CHECK_INTERVAL,
    DEFAULT_HEALTH_CHECK_POLICY,
    DEFAULT_HEALTH_CHECK_PROBE_DELAY,
    DEFAULT_HEALTH_CHECK_PROBES,
    HealthCheckPolicy,
)
from faulttol.retry import RetryConfig

from . import _cluster, _connection
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

_SECRET_MARKERS = ("password", "passwd", "pwd", "token", "secret", "key", "credential", "auth")
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


def _masked_url(url: object) -> str:
    """``url`` for display: its password, secret query values and fragment replaced.

    Works on the raw text rather than trusting a URL parser, so that a password holding an
    unencoded ``#``, ``?``, ``/`` or ``@`` (which moves the parser's idea of where the
    user info ends) is masked too: everything before the last ``@`` is user info. When that
    user info is not well formed (it holds ``/``, ``?`` or ``#``, or there is no scheme),
    all of it is masked, the user name included.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, tail = rest.rpartition("@")
    if at:
        if sep and not any(c in userinfo for c in "/?#"):
            user, colon, _password = userinfo.partition(":")
            userinfo = f"{user}:{_MASK}" if colon else user
        else:
            userinfo = _MASK
    tail, hash_mark, fragment = tail.partition("#")
    location, question_mark, query = tail.partition("?")
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{urllib.parse.quote(k, safe='')}="
            f"{_MASK if _is_secret(k) else urllib.parse.quote(v, safe='')}"
            for k, v in pairs
        )
    shown = f"{userinfo}{at}{location}{question_mark}{query}"
    if hash_mark:
        shown += f"#{_MASK}" if fragment else "#"
    return f"{scheme}://{shown}" if sep else shown


def _kind(value: object) -> str:
    """How a value of the wrong kind is shown in an error message: plain scalars as
    themselves, anything else by its type only (a string, a dict or a client given by
    mistake may hold a password)."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return f"a {type(value).__name__}"


# --- validation helpers --------------------------------------------------------------------


def _number(name: str, value: object, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigTypeError(f"{name} must be a number ({allowed}), got {_kind(value)}")
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN: it must be {allowed}")
    return float(value)


def _positive(name: str, value: object) -> float:
    allowed = "> 0 and finite"
    number = _number(name, value, allowed)
    if not 0 < number < math.inf:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def _non_negative(name: str, value: object) -> float:
    allowed = ">= 0 and finite"
    number = _number(name, value, allowed)
    if not 0 <= number < math.inf:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def _int_at_least(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{name} must be an int (>= {minimum}), got {_kind(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


_NOT_IN_HOST = frozenset("/@?#") | frozenset(" \t\r\n")


def _check_host(value: object) -> None:
    """A host name or address: not a URL (its password would end up in every repr)."""
    if not isinstance(value, str):
        raise ConfigTypeError(
            f"host must be a non-empty string (a host name or address), got {_kind(value)}"
        )
    if not value:
        raise ValueError("host must be a non-empty string (a host name or address), got ''")
    if "://" in value or _NOT_IN_HOST.intersection(value):
        raise ValueError(
            "host must be a host name or address, without '://', '/', '@', '?', '#' or "
            "spaces; give a redis:// URL as url=... (the value is not shown: it may hold "
            "a password)"
        )


def _check_url(url: object) -> None:
    """Refuse a URL whose syntax an unencoded character broke.

    A ``#`` anywhere (redis URLs have no fragment), or an ``@`` after the authority (which
    ends at the first ``/``, ``?`` or ``#``), means a password or user name held a character
    that should have been percent-encoded: parsed as is, its start would become the host
    name (``redis://user:1234#x@db`` is host ``user``, port 1234).
    """
    if not isinstance(url, str):
        raise ConfigTypeError(f"url must be a str or None, got {_kind(url)}")
    _scheme, _sep, rest = url.partition("://")
    ends = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
    if "#" in url or (ends and "@" in rest[min(ends):]):
        raise ValueError(
            "url must be a well-formed redis://, rediss:// or unix:// URL: percent-encode "
            "'#', '?', '/' and '@' in a user name or password (%23, %3F, %2F, %40), "
            f"got {_masked_url(url)!r}"
        )
    if _scheme.lower() in ("redis", "rediss") and ends:
        path = rest[min(ends):].partition("?")[0]
        if path not in ("", "/") and not (path[1:].isdigit() and path.isascii()):
            raise ValueError(
                "url path must be the database number (redis://host:port/0), "
                f"got {_masked_url(url)!r}"
            )


def _check_health_check_url(value: object) -> None:
    """The base URL of a REST API: http(s)://host[:port][/], nothing else."""
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigTypeError(
            f"health_check_url must be a str (an https:// URL) or None, got {_kind(value)}"
        )
    shown = _masked_url(value)
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        raise ValueError(f"health_check_url must be a well-formed URL, got {shown!r}") from None
    if "://" not in value or parts.scheme.lower() not in ("https", "http"):
        raise ValueError(
            "health_check_url must be an https:// URL such as "
            "https://cluster.example.com:9443 (http:// only with "
            f"LagAwareHealthCheck(allow_insecure_http=True)), got {shown!r}"
        )
    if not parts.hostname:
        raise ValueError(f"health_check_url must name a host, got {shown!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"health_check_url port must be in 1..65535, got {shown!r}")
    if parts.path not in ("", "/"):
        raise ValueError(
            "health_check_url must be the API base (scheme, host and port) without a path: "
            f"the REST paths (/v1/bdbs...) are added to it, got {shown!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"health_check_url must not have a query or a fragment, got {shown!r}"
        )


def _exception_types(name: str, value: object) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigTypeError(
            f"{name} must be an exception type or a tuple of them, got {_kind(value)}"
        )
    types = tuple(value)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            shown = repr(item) if isinstance(item, type) else _kind(item)
            raise ConfigTypeError(f"{name} must contain only exception types, got {shown}")
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
    Enterprise REST API for :class:`~faulttol_redis.LagAwareHealthCheck`: ``https://`` (or
    ``http://``, which the check refuses unless ``allow_insecure_http=True``), a host and
    optionally a port, no path, query or fragment.

    ``host`` is a host name or address, never a URL (give that as ``url``). In ``url``, a
    user name or password holding ``#``, ``?`` or ``/`` must be percent-encoded (``%23``,
    ``%3F``, ``%2F``; ``@`` as ``%40`` is safest): a URL whose syntax they break is refused,
    its password masked in the message, rather than read with the wrong host (parsed as is,
    ``redis://user:1234#x@db`` is host ``user``, port 1234). The path of a ``redis://`` URL
    is the database number, nothing else.
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
            raise ConfigTypeError(f"client_kwargs must be a mapping or None, got {_kind(kwargs)}")
        for key in kwargs:
            if not isinstance(key, str):
                raise ConfigTypeError(f"client_kwargs keys must be str, got {_kind(key)}")
            if key in _RESERVED_CLIENT_KWARGS:
                raise ValueError(
                    f"client_kwargs must not set {key!r}: use DatabaseConfig's host/port/url"
                )
        object.__setattr__(self, "client_kwargs", MappingProxyType(dict(kwargs)))
        db: object = kwargs.get("db", 0)
        if self.url is not None:
            _check_url(self.url)
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
                port = int(parsed.get("port", DEFAULT_PORT))
                if not 1 <= port <= 65535:
                    raise ValueError(
                        f"url port must be in 1..65535, got {port} in {_masked_url(self.url)!r}"
                    )
                object.__setattr__(self, "host", str(parsed.get("host", DEFAULT_HOST)))
                object.__setattr__(self, "port", port)
            db = parsed.get("db", db)
        else:
            _check_host(self.host)
            if isinstance(self.port, bool) or not isinstance(self.port, int):
                raise ConfigTypeError(f"port must be an int in 1..65535, got {_kind(self.port)}")
            if not 1 <= self.port <= 65535:
                raise ValueError(f"port must be in 1..65535, got {self.port}")
        if isinstance(db, bool) or not isinstance(db, int):
            raise ConfigTypeError(f"db must be an int >= 0, got {_kind(db)}")
        if db < 0:
            raise ValueError(f"db must be an int >= 0, got {db!r}")
        object.__setattr__(self, "db", db)
        object.__setattr__(self, "weight", _non_negative("weight", self.weight))
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigTypeError(f"name must be a str or None, got {_kind(self.name)}")
        if not isinstance(self.cluster, bool):
            raise ConfigTypeError(f"cluster must be a bool, got {_kind(self.cluster)}")
        _check_health_check_url(self.health_check_url)
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
        unavailable as a :class:`ClusterConnectionError`. A standalone client's connections
        mark a failure to connect or to complete the handshake as "never sent", so that the
        failover client replays the command (``faulttol_redis._connection``), unless
        ``client_kwargs`` chooses the connections (``connection_class``, ``connection_pool``).
        """
        kwargs = self._client_kwargs(overrides)
        if "retry" not in kwargs:
            kwargs["retry"] = redis.retry.Retry(NoBackoff(), 0)
        if self.cluster:
            if self.url is not None:
                return _cluster.FailoverRedisCluster(url=self.url, **kwargs)
            return _cluster.FailoverRedisCluster(host=self.host, port=self.port, **kwargs)
        if self.url is not None:
            client = redis.Redis.from_url(self.url, **kwargs)
        else:
            client = redis.Redis(host=self.host, port=self.port, **kwargs)
        _connection.use_failover_connections(client, kwargs)
        return client

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
                return _cluster.FailoverAsyncRedisCluster.from_url(self.url, **kwargs)
            return _cluster.FailoverAsyncRedisCluster(host=self.host, port=self.port, **kwargs)
        if self.url is not None:
            aclient = redis.asyncio.Redis.from_url(self.url, **kwargs)
        else:
            aclient = redis.asyncio.Redis(host=self.host, port=self.port, **kwargs)
        _connection.use_failover_connections(aclient, kwargs)
        return aclient

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
            raise ConfigTypeError(
                f"circuit_breaker must be a CircuitBreakerConfig or None, "
                f"got {_kind(circuit_breaker)}"
            )
        if retry is None:
            retry = default_retry_config()
        elif not isinstance(retry, RetryConfig):
            raise ConfigTypeError(f"retry must be a RetryConfig or None, got {_kind(retry)}")
        fallback = (
            default_fallback_exceptions()
            if fallback_exceptions is None
            else _exception_types("fallback_exceptions", fallback_exceptions)
        )
        checks = _validate_health_checks(health_checks)
        _refuse_insecure_health_check_urls(dbs, checks)
        if not isinstance(health_check_policy, HealthCheckPolicy):
            raise ConfigTypeError(
                "health_check_policy must be a HealthCheckPolicy (HEALTHY_ALL, HEALTHY_MAJORITY "
                f"or HEALTHY_ANY), got {_kind(health_check_policy)}"
            )
        if auto_failback_interval is not None:
            auto_failback_interval = _positive("auto_failback_interval", auto_failback_interval)
        strategies = ", ".join(FAILOVER_STRATEGIES)
        if not isinstance(failover_strategy, str):
            raise ConfigTypeError(
                f"failover_strategy must be a str, one of {strategies}; "
                f"got {_kind(failover_strategy)}"
            )
        if failover_strategy not in FAILOVER_STRATEGIES:
            raise ValueError(
                f"failover_strategy must be one of {strategies}, got {failover_strategy!r}"
            )
        store = _validate_store(active_index_store)
        if not isinstance(retry_ambiguous_writes, bool):
            raise ConfigTypeError(
                f"retry_ambiguous_writes must be a bool, got {_kind(retry_ambiguous_writes)}"
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
        raise ConfigTypeError(
            f"databases must be an iterable of DatabaseConfig, got {_kind(databases)}"
        )
    dbs = tuple(databases)
    if not dbs:
        raise ValueError("databases must contain at least 1 DatabaseConfig, got none")
    seen: dict[tuple[str, int, int], int] = {}
    for position, db in enumerate(dbs):
        if not isinstance(db, DatabaseConfig):
            raise ConfigTypeError(
                f"databases[{position}] must be a DatabaseConfig, got {_kind(db)}"
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
            f"check_async()) or None, got {_kind(health_checks)}"
        )
    checks = tuple(health_checks)
    for position, check in enumerate(checks):
        if not isinstance(check, HealthCheck):
            raise ConfigTypeError(
                "health_checks must contain objects with check() and check_async(), "
                f"got {_kind(check)} at health_checks[{position}]"
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
                    f"LagAwareHealthCheck, got {_masked_url(url)!r}; pass "
                    "LagAwareHealthCheck(allow_insecure_http=True) to allow plain http "
                    "(credentials and answers then travel unencrypted)"
                )


def _validate_store(active_index_store: object) -> str | None:
    if active_index_store is None:
        return None
    if not isinstance(active_index_store, (str, os.PathLike)):
        raise ConfigTypeError(
            "active_index_store must be a path (a str or os.PathLike) or None, "
            f"got {_kind(active_index_store)}"
        )
    store = os.fspath(active_index_store)
    if not isinstance(store, str):
        raise ConfigTypeError(
            f"active_index_store must be a path (a str or os.PathLike) or None, got {_kind(store)}"
        )
    if store == "":
        raise ValueError("active_index_store must be a non-empty path or None")
    return store


# --- cluster clients -----------------------------------------------------------------------
#
