"""Health checks of one Redis database: PING (the default) and Redis Enterprise lag-aware.

A health check answers one *probe*: is this database healthy right now? The provider runs
``health_check_probes`` probes per round and decides with a
:class:`~faulttol.health.HealthCheckPolicy`; a probe that raises counts as failed, so checks
may simply let connection errors propagate. The probe's time limit comes from the client the
provider hands in (built with ``socket_timeout=health_check_timeout``).

The pieces behind the checks live in their own modules: the REST API plumbing of the
lag-aware check in :mod:`faulttol_redis._rest_api`, the probing of a cluster's primaries in
:mod:`faulttol_redis._cluster_health`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol, Union, runtime_checkable

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from faulttol.health import HealthCheckPolicy
from faulttol.validation import (
    check_bool,
    check_instance,
    check_int,
    check_port,
    check_positive,
    check_str,
)

from ._cluster_health import check_cluster, check_cluster_async
from ._database import DatabaseConfig
from ._rest_api import (
    SameOriginRedirects,
    check_rest_api_host,
    existing_file,
    find_bdb_uid,
    tls_context,
)

__all__ = [
    "DEFAULT_CLUSTER_POLICY",
    "DEFAULT_LAG_TOLERANCE_MS",
    "DEFAULT_REST_API_PORT",
    "DEFAULT_REST_API_TIMEOUT",
    "AsyncClient",
    "HealthCheck",
    "LagAwareHealthCheck",
    "PingHealthCheck",
    "SyncClient",
]

_log = logging.getLogger("faulttol_redis.healthcheck")

SyncClient = Union["redis.Redis", "redis.cluster.RedisCluster"]
"""A synchronous client a health check may be given: standalone or cluster."""

AsyncClient = Union["redis.asyncio.Redis", "redis.asyncio.cluster.RedisCluster"]
"""An asyncio client a health check may be given: standalone or cluster."""

DEFAULT_CLUSTER_POLICY = HealthCheckPolicy.HEALTHY_ALL
"""How many primaries of a cluster database must answer PING by default: all of them."""

DEFAULT_REST_API_PORT = 9443
"""The Redis Enterprise cluster REST API port."""

DEFAULT_LAG_TOLERANCE_MS = 100
"""Replication lag (ms) beyond which an Active-Active database counts as unhealthy."""

DEFAULT_REST_API_TIMEOUT = 1.0
"""Seconds one REST API request may take."""


@runtime_checkable
class HealthCheck(Protocol):
    """One probe of a database's health, in a sync and an asyncio flavour.

    ``check`` is given the sync client of the database (``redis.Redis`` or ``RedisCluster``),
    ``check_async`` the asyncio one. Both return whether the database is healthy; raising
    counts as unhealthy.
    """

    def check(self, client: SyncClient, database: DatabaseConfig) -> bool:
        """Probe ``database`` once through ``client``."""
        ...

    async def check_async(self, client: AsyncClient, database: DatabaseConfig) -> bool:
        """Probe ``database`` once through the asyncio ``client``."""
        ...


class PingHealthCheck:
    """Healthy when PING answers PONG; for a cluster, when enough primaries do.

    ``cluster_policy`` says how many primaries of a cluster database must answer PING (each
    within the client's socket timeout); a standalone database ignores it:

    * ``HEALTHY_ALL`` (the default): every primary answers and the slot map covers every
      slot.
    * ``HEALTHY_MAJORITY``: more than half of the primaries answer (2 of 3, 3 of 4).
    * ``HEALTHY_ANY``: at least one primary answers.

    A cluster is never vacuously healthy: no known primary, or no primary answering, is
    unhealthy whatever the policy. (redis-py's ``RedisCluster.ping()`` asks one node only, so
    it answers True while other primaries are down.) Primaries are asked one after another
    and the asking stops once the outcome is decided. When the policy is not met because a
    primary did not answer, the topology is loaded again and the new primaries are asked
    once more, so that a primary replaced by its replica does not keep the cluster
    unhealthy. Connection errors and timeouts propagate (the probe counts as failed): a
    primary's error when the policy is still not met, and any error while loading the
    topology.
    """

    __slots__ = ("_cluster_policy",)

    def __init__(self, *, cluster_policy: HealthCheckPolicy = DEFAULT_CLUSTER_POLICY) -> None:
        self._cluster_policy = check_instance(
            "cluster_policy",
            cluster_policy,
            HealthCheckPolicy,
            "a HealthCheckPolicy (HEALTHY_ALL, HEALTHY_MAJORITY or HEALTHY_ANY)",
        )

    @property
    def cluster_policy(self) -> HealthCheckPolicy:
        """How many primaries of a cluster database must answer (see the class docstring)."""
        return self._cluster_policy

    def check(self, client: SyncClient, database: DatabaseConfig) -> bool:
        if isinstance(client, redis.cluster.RedisCluster):
            return check_cluster(client, self._cluster_policy)
        return client.ping() is True

    async def check_async(self, client: AsyncClient, database: DatabaseConfig) -> bool:
        if isinstance(client, redis.asyncio.cluster.RedisCluster):
            await client.initialize()  # a no-op once initialized; raises if no node answers
            return await check_cluster_async(client, self._cluster_policy)
        return await client.ping() is True

    def __repr__(self) -> str:
        if self._cluster_policy is DEFAULT_CLUSTER_POLICY:
            return "PingHealthCheck()"
        return f"PingHealthCheck(cluster_policy=HealthCheckPolicy.{self._cluster_policy.name})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PingHealthCheck):
            return NotImplemented
        return self._cluster_policy is other._cluster_policy

    def __hash__(self) -> int:
        return hash((PingHealthCheck, self._cluster_policy))


class LagAwareHealthCheck:
    """Redis Enterprise Active-Active: healthy when the REST API reports the database
    available with a replication lag within ``lag_tolerance_ms``.

    The REST API base is the database's ``health_check_url`` when set (e.g.
    ``https://cluster.example.com``; a port in it wins over ``rest_api_port``), else
    ``https://{rest_api_host or database.host}:{rest_api_port}``. The check looks up the bdb
    whose endpoint ``dns_name`` or ``addr`` matches the database host (``GET /v1/bdbs``, cached
    per API base and host), then asks
    ``GET /v1/bdbs/{uid}/availability?extend_check=lag&availability_lag_tolerance_ms=N``:
    HTTP 200 is healthy, anything else (another status, a timeout, a TLS or network error,
    no matching bdb) is unhealthy and logged at debug level. Uses HTTP basic auth when
    ``username`` is given. The password never appears in ``repr``, errors or logs.

    The credentials go only where they were meant to:

    * Over https only. A ``health_check_url`` with ``http://`` is refused (the probe fails
      with a warning, and :class:`~faulttol_redis.MultiDbConfig` refuses such a database at
      construction) unless ``allow_insecure_http=True`` says that sending the credentials
      and the answers unencrypted is acceptable (a test setup, a loopback API).
    * A redirect is followed only to the same origin (scheme, host and port) over https;
      any other redirect (another host or port, a downgrade to http, any redirect over
      plain http) is not followed: the probe fails, with a warning the first time.

    Certificate files (``ca_file``, ``client_cert_file``, ``client_key_file``) are loaded at
    construction: a file that is missing or holds no usable certificate or key is a
    ``ValueError`` naming the field, not a probe that fails quietly later.
    """

    def __init__(
        self,
        rest_api_port: int = DEFAULT_REST_API_PORT,
        *,
        username: str | None = None,
        password: str | None = None,
        lag_tolerance_ms: int = DEFAULT_LAG_TOLERANCE_MS,
        verify_tls: bool = True,
        ca_file: str | os.PathLike[str] | None = None,
        client_cert_file: str | os.PathLike[str] | None = None,
        client_key_file: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_REST_API_TIMEOUT,
        rest_api_host: str | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        check_port("rest_api_port", rest_api_port)
        check_str("username", username, optional=True, non_empty=True)
        check_str("password", password, optional=True)
        if password is not None and username is None:
            raise ValueError("username must be given with password")
        check_int("lag_tolerance_ms", lag_tolerance_ms, minimum=0, unit="milliseconds")
        check_bool("verify_tls", verify_tls)
        check_bool("allow_insecure_http", allow_insecure_http)
        timeout = check_positive("timeout", timeout)
        if rest_api_host is not None:
            rest_api_host = check_rest_api_host(rest_api_host)
        if client_key_file is not None and client_cert_file is None:
            raise ValueError("client_cert_file must be given with client_key_file")
        ca = existing_file("ca_file", ca_file)
        cert = existing_file("client_cert_file", client_cert_file)
        key = existing_file("client_key_file", client_key_file)
        self.rest_api_port = rest_api_port
        self.username = username
        self._password = password
        self.lag_tolerance_ms = lag_tolerance_ms
        self.verify_tls = verify_tls
        self.ca_file = ca
        self.client_cert_file = cert
        self.client_key_file = key
        self.timeout = float(timeout)
        self.rest_api_host = rest_api_host
        self.allow_insecure_http = allow_insecure_http
        self._lock = threading.Lock()
        self._uids: dict[tuple[str, str], Any] = {}
        self._warned: set[str] = set()
        self._ssl_context = tls_context(ca, cert, key, verify_tls)
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self._ssl_context),
            SameOriginRedirects(self._warn_once),
        )

    # --- the protocol --------------------------------------------------------------------

    def check(self, client: SyncClient, database: DatabaseConfig) -> bool:
        """Probe through the REST API (``client`` is unused)."""
        return self._probe(database)

    async def check_async(self, client: AsyncClient, database: DatabaseConfig) -> bool:
        """Like :meth:`check`, on a worker thread (the HTTP client is urllib's)."""
        return await asyncio.to_thread(self._probe, database)

    def _probe(self, database: DatabaseConfig) -> bool:
        host = database.host
        try:
            base = self._base_url(database)
        except ValueError as exc:
            self._warn_once(f"bad-url:{host}", "lag-aware check of %s: %s", host, exc)
            return False
        if not base.startswith("https:") and not self.allow_insecure_http:
            self._warn_once(
                f"insecure:{base}",
                "lag-aware check of %s refused to use %s: plain http would send the "
                "credentials and the answers unencrypted; use an https:// health_check_url, "
                "or LagAwareHealthCheck(allow_insecure_http=True) to allow it",
                host,
                base,
            )
            return False
        try:
            uid = self._bdb_uid(base, host)
            if uid is None:
                _log.warning("lag-aware check: no bdb at %s has an endpoint %r", base, host)
                return False
            query = urllib.parse.urlencode(
                {"extend_check": "lag", "availability_lag_tolerance_ms": self.lag_tolerance_ms}
            )
            status, _ = self._get(f"{base}/v1/bdbs/{uid}/availability?{query}")
        except (OSError, ValueError, ssl.SSLError) as exc:  # URLError and timeouts are OSError
            _log.debug("lag-aware check of %s via %s failed: %r", host, base, exc)
            return False
        if status == 404:  # the bdb was recreated: look it up again next time
            with self._lock:
                self._uids.pop((base, host.lower()), None)
        if status != 200:
            _log.debug("lag-aware check of %s via %s: HTTP %d", host, base, status)
        return status == 200

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        """Log a misconfiguration at WARNING the first time, at DEBUG afterwards (a check
        runs every few seconds: one warning says it, a warning per probe would drown it)."""
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        _log.log(logging.WARNING if first else logging.DEBUG, message, *args)

    # --- REST plumbing -------------------------------------------------------------------

    def _base_url(self, database: DatabaseConfig) -> str:
        """``scheme://host:port`` of the REST API for ``database`` (never credentials)."""
        configured: object = getattr(database, "health_check_url", None)
        if configured:
            if not isinstance(configured, str):
                raise ValueError("health_check_url must be a str")
            parsed = urllib.parse.urlsplit(configured)
            scheme = parsed.scheme.lower()
            hostname = parsed.hostname
            if scheme not in ("https", "http") or not hostname:
                raise ValueError("health_check_url must be an https:// URL naming a host")
            port = parsed.port or self.rest_api_port
        else:
            scheme, port = "https", self.rest_api_port
            hostname = self.rest_api_host or database.host
        if ":" in hostname:
            hostname = f"[{hostname}]"
        return f"{scheme}://{hostname}:{port}"

    def _bdb_uid(self, base: str, host: str) -> Any:
        key = (base, host.lower())
        with self._lock:
            if key in self._uids:
                return self._uids[key]
        status, body = self._get(f"{base}/v1/bdbs?fields=uid,endpoints")
        if status != 200:
            raise ValueError(f"GET /v1/bdbs answered HTTP {status}")
        uid = find_bdb_uid(json.loads(body), host)
        if uid is not None:
            with self._lock:
                self._uids[key] = uid
        return uid

    def _get(self, url: str) -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.username is not None:
            token = f"{self.username}:{self._password or ''}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return int(answer.status), answer.read()
        except urllib.error.HTTPError as exc:  # also a redirect that was not followed
            with exc:
                return int(exc.code), b""

    def __repr__(self) -> str:
        password = None if self._password is None else "***"
        insecure = ", allow_insecure_http=True" if self.allow_insecure_http else ""
        return (
            f"LagAwareHealthCheck(rest_api_port={self.rest_api_port!r}, "
            f"username={self.username!r}, password={password!r}, "
            f"lag_tolerance_ms={self.lag_tolerance_ms!r}, verify_tls={self.verify_tls!r}, "
            f"timeout={self.timeout!r}, rest_api_host={self.rest_api_host!r}{insecure})"
        )
