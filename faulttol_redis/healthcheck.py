"""Health checks of one Redis database: PING (the default) and Redis Enterprise lag-aware.

A health check answers one *probe*: is this database healthy right now? The provider runs
``health_check_probes`` probes per round and decides with a
:class:`~faulttol.health.HealthCheckPolicy`; a probe that raises counts as failed, so checks
may simply let connection errors propagate. The probe's time limit comes from the client the
provider hands in (built with ``socket_timeout=health_check_timeout``).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import os
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import IO, Any, Protocol, Union, runtime_checkable

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from faulttol.health import HealthCheckPolicy, ProbeTally
from faulttol.validation import (
    check_bool,
    check_host,
    check_instance,
    check_int,
    check_path,
    check_port,
    check_positive,
    check_str,
)

from ._database import DatabaseConfig

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
            return _check_cluster(client, self._cluster_policy)
        return client.ping() is True

    async def check_async(self, client: AsyncClient, database: DatabaseConfig) -> bool:
        if isinstance(client, redis.asyncio.cluster.RedisCluster):
            await client.initialize()  # a no-op once initialized; raises if no node answers
            return await _check_cluster_async(client, self._cluster_policy)
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
            rest_api_host = _check_rest_api_host(rest_api_host)
        if client_key_file is not None and client_cert_file is None:
            raise ValueError("client_cert_file must be given with client_key_file")
        ca = _existing_file("ca_file", ca_file)
        cert = _existing_file("client_cert_file", client_cert_file)
        key = _existing_file("client_key_file", client_key_file)
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
        self._ssl_context = _tls_context(ca, cert, key, verify_tls)
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self._ssl_context),
            _SameOriginRedirects(self._warn_once),
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
        uid = _find_bdb_uid(json.loads(body), host)
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


# --- lag-aware helpers ------------------------------------------------------------------------


def _check_rest_api_host(value: object) -> str:
    """A host name or address (``[::1]`` is taken as ``::1``), never a URL."""
    host = value
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        host = value[1:-1]
    return check_host(
        "rest_api_host",
        host,
        hint="give a REST API URL as DatabaseConfig(health_check_url='https://...')",
    )


def _existing_file(name: str, value: object) -> str | None:
    """``value`` as a path to an existing file, or None."""
    path = check_path(name, value)
    if path is not None and not os.path.isfile(path):
        raise ValueError(f"{name} {path!r} does not exist or is not a file")
    return path


def _tls_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None, verify: bool
) -> ssl.SSLContext:
    """The TLS context of every request, built once: file problems surface at construction."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"ca_file {ca_file!r} holds no usable CA certificate (PEM expected): {exc}"
        ) from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            fields = "client_cert_file / client_key_file" if key_file else "client_cert_file"
            raise ValueError(
                f"{fields} ({cert_file!r}, {key_file!r}): no usable certificate and private "
                f"key (PEM, unencrypted key expected): {exc}"
            ) from None
    return context


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the default port filled in; raises ValueError."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _shown_origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` for a log line (no user info, path or query)."""
    try:
        scheme, host, port = _origin(url)
    except ValueError:
        return "<invalid url>"
    return f"{scheme}://{host}:{port}"


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same origin over https; refuse any other.

    urllib's own handler follows any redirect and copies every header, the Authorization
    header included, so credentials would reach another host or travel over plain http.
    A refused redirect ends the request with its 3xx status (an unhealthy probe).
    """

    def __init__(self, warn: Callable[..., None]) -> None:
        super().__init__()
        self._warn = warn

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        try:
            same = _origin(newurl) == _origin(req.full_url) and _origin(newurl)[0] == "https"
        except ValueError:
            same = False
        if same:
            return super().redirect_request(req, fp, code, msg, headers, newurl)
        source, target = _shown_origin(req.full_url), _shown_origin(newurl)
        self._warn(
            f"redirect:{source}->{target}",
            "lag-aware check: not following the HTTP %d redirect from %s to %s: redirects "
            "are followed only to the same origin over https (the credentials go nowhere "
            "else)",
            code,
            source,
            target,
        )
        return None


def _find_bdb_uid(bdbs: Any, host: str) -> Any:
    """The uid of the bdb with an endpoint whose dns_name or one of whose addrs is ``host``."""
    if not isinstance(bdbs, list):
        raise ValueError("GET /v1/bdbs did not answer a JSON list")
    wanted = host.lower()
    for bdb in bdbs:
        if not isinstance(bdb, dict):
            continue
        for endpoint in bdb.get("endpoints") or ():
            if not isinstance(endpoint, dict):
                continue
            dns_name = endpoint.get("dns_name")
            addrs = endpoint.get("addr") or ()
            if isinstance(addrs, str):
                addrs = (addrs,)
            if (isinstance(dns_name, str) and dns_name.lower() == wanted) or host in addrs:
                return bdb.get("uid")
    return None


# --- cluster probes --------------------------------------------------------------------------


def _covers_every_slot(nodes_manager: Any) -> bool:
    slots = getattr(nodes_manager, "slots_cache", None)
    if slots is None:  # a redis-py without a slot map we can read: rely on the primaries
        return True
    return len(slots) == REDIS_CLUSTER_HASH_SLOTS and all(slots.values())


def _is_pong(answer: Any) -> bool:
    return answer is True or answer in (b"PONG", "PONG")


class _PrimaryRound:
    """One asking of a cluster's primaries: the decision logic shared by the sync and
    asyncio checks (the policy's arithmetic is :class:`faulttol.health.ProbeTally`'s, with one
    primary for one probe)."""

    __slots__ = ("_tally", "error", "verdict")

    def __init__(self, policy: HealthCheckPolicy, primaries: int, covered: bool) -> None:
        self.error: BaseException | None = None
        self.verdict: bool | None = None
        self._tally: ProbeTally | None = None
        if primaries == 0 or (policy is HealthCheckPolicy.HEALTHY_ALL and not covered):
            self.verdict = False  # never vacuously healthy; ALL needs every slot served
        else:
            self._tally = ProbeTally(policy, primaries)

    def record(self, answered: bool, error: BaseException | None = None) -> bool:
        """Count one primary's answer; True once the outcome is decided."""
        if error is not None:
            self.error = error
        assert self._tally is not None
        self.verdict = self._tally.record(answered)
        return self.verdict is not None

    @property
    def worth_reloading(self) -> bool:
        """Unhealthy because a primary did not answer: the topology may have changed."""
        return self.verdict is not True and self.error is not None

    def reload_failed(self) -> BaseException:
        """What to raise when the topology could not be loaded again: the primary's error."""
        assert self.error is not None
        return self.error

    def outcome(self) -> bool:
        """The verdict; a primary's error propagates when the cluster is unhealthy."""
        if self.verdict is True:
            return True
        if self.error is not None:
            raise self.error
        return False


_PING_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _ask_primaries(client: redis.cluster.RedisCluster, policy: HealthCheckPolicy) -> _PrimaryRound:
    primaries = client.get_primaries()  # type: ignore[no-untyped-call]
    asking = _PrimaryRound(policy, len(primaries), _covers_every_slot(client.nodes_manager))
    for node in primaries:
        if asking.verdict is not None:
            break
        try:
            answered, error = client.get_redis_connection(node).ping() is True, None
        except _PING_ERRORS as exc:
            answered, error = False, exc
        asking.record(answered, error)
    return asking


def _check_cluster(client: redis.cluster.RedisCluster, policy: HealthCheckPolicy) -> bool:
    asking = _ask_primaries(client, policy)
    if asking.worth_reloading:
        try:  # load the slot map again, through any node that answers
            client.nodes_manager.initialize()
        except Exception as exc:
            _log.debug("reloading the cluster topology failed", exc_info=True)
            raise asking.reload_failed() from exc
        asking = _ask_primaries(client, policy)
    return asking.outcome()


async def _ask_primaries_async(
    client: redis.asyncio.cluster.RedisCluster, policy: HealthCheckPolicy
) -> _PrimaryRound:
    primaries = client.get_primaries()
    asking = _PrimaryRound(policy, len(primaries), _covers_every_slot(client.nodes_manager))
    for node in primaries:
        if asking.verdict is not None:
            break
        try:
            answered, error = _is_pong(await node.execute_command("PING")), None
        except _PING_ERRORS as exc:
            answered, error = False, exc
        asking.record(answered, error)
    return asking


async def _check_cluster_async(
    client: redis.asyncio.cluster.RedisCluster, policy: HealthCheckPolicy
) -> bool:
    asking = await _ask_primaries_async(client, policy)
    if asking.worth_reloading:
        try:  # load the slot map again, through any node that answers
            await client.nodes_manager.initialize()
        except Exception as exc:
            _log.debug("reloading the cluster topology failed", exc_info=True)
            raise asking.reload_failed() from exc
        asking = await _ask_primaries_async(client, policy)
    return asking.outcome()
