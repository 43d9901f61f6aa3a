"""Tests for faulttol_redis.healthcheck: PING against real servers (standalone and a one-node
cluster) and the lag-aware check against a fake Redis Enterprise REST API on loopback."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from faulttol.health import HealthCheckPolicy, run_probes
from faulttol.testing import FakeClock
from faulttol_redis import create_async_client, create_client
from faulttol_redis.config import DatabaseConfig
from faulttol_redis.healthcheck import HealthCheck, LagAwareHealthCheck, PingHealthCheck
from faulttol_redis.testing import RedisServer

# --- PING against real servers ---------------------------------------------------------


def test_ping_health_check_is_a_health_check() -> None:
    assert isinstance(PingHealthCheck(), HealthCheck)
    assert isinstance(LagAwareHealthCheck(), HealthCheck)
    assert PingHealthCheck() == PingHealthCheck()
    assert repr(PingHealthCheck()) == "PingHealthCheck()"


def test_ping_live_killed_paused(redis_server: RedisServer) -> None:
    database = DatabaseConfig(url=redis_server.url)
    client = create_client(database, socket_timeout=0.2, socket_connect_timeout=0.2)
    check = PingHealthCheck()
    try:
        assert check.check(client, database) is True

        redis_server.pause()
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            check.check(client, database)
        assert time.monotonic() - started < 1.5
        # as one round of probes: unhealthy, and quickly (ALL stops at the first failure)
        healthy = run_probes(
            lambda: check.check(client, database),
            probes=3, policy=HealthCheckPolicy.HEALTHY_ALL, delay=0.5, clock=FakeClock(),
        )
        assert healthy is False

        redis_server.resume()
        assert check.check(client, database) is True

        redis_server.kill()
        with pytest.raises(redis.exceptions.ConnectionError):
            check.check(client, database)

        redis_server.restart()
        assert check.check(client, database) is True
    finally:
        client.close()


async def test_ping_async_live_killed_paused(redis_server: RedisServer) -> None:
    database = DatabaseConfig(url=redis_server.url)
    client = create_async_client(database, socket_timeout=0.2, socket_connect_timeout=0.2)
    check = PingHealthCheck()
    try:
        assert await check.check_async(client, database) is True
        redis_server.pause()
        with pytest.raises(redis.exceptions.TimeoutError):
            await check.check_async(client, database)
        redis_server.resume()
        assert await check.check_async(client, database) is True
        redis_server.kill()
        with pytest.raises(redis.exceptions.ConnectionError):
            await check.check_async(client, database)
    finally:
        await client.aclose()


def _cluster_server() -> RedisServer:
    """A one-node Redis Cluster owning every slot."""
    server = RedisServer(extra_args=["--cluster-enabled", "yes"])
    try:
        client = server.client(decode_responses=True)
        if server.version >= (7, 0, 0):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")  # type: ignore[no-untyped-call]
        else:
            client.execute_command("CLUSTER", "ADDSLOTS", *range(16384))  # type: ignore[no-untyped-call]
        # PING needs no cluster_state:ok (which a fresh primary delays by 2 s); the slot map
        # is what RedisCluster needs to initialize.
        assert client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def cluster_server() -> Iterator[RedisServer]:
    server = _cluster_server()
    try:
        yield server
    finally:
        server.stop()


def test_ping_cluster_every_primary(cluster_server: RedisServer) -> None:
    database = DatabaseConfig(url=cluster_server.url, cluster=True)
    client = create_client(database, socket_timeout=0.2, socket_connect_timeout=0.2)
    assert isinstance(client, redis.cluster.RedisCluster)
    check = PingHealthCheck()
    try:
        assert len(client.get_primaries()) == 1  # type: ignore[no-untyped-call]
        assert check.check(client, database) is True
        cluster_server.pause()
        with pytest.raises(redis.exceptions.TimeoutError):
            check.check(client, database)
        cluster_server.resume()
        assert check.check(client, database) is True
        cluster_server.kill()
        with pytest.raises(redis.exceptions.ConnectionError):
            check.check(client, database)
    finally:
        client.close()


def test_ping_cluster_without_primaries_is_unhealthy(
    cluster_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = DatabaseConfig(url=cluster_server.url, cluster=True)
    client = create_client(database)
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        monkeypatch.setattr(client, "get_primaries", lambda: [])
        assert PingHealthCheck().check(client, database) is False
    finally:
        client.close()


async def test_ping_async_cluster(cluster_server: RedisServer) -> None:
    database = DatabaseConfig(url=cluster_server.url, cluster=True)
    client = create_async_client(database, socket_timeout=0.2, socket_connect_timeout=0.2)
    assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    check = PingHealthCheck()
    try:
        await client.initialize()
        assert await check.check_async(client, database) is True
        cluster_server.kill()
        with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            await check.check_async(client, database)
    finally:
        await client.aclose()


async def test_ping_async_cluster_without_primaries_is_unhealthy(
    cluster_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = DatabaseConfig(url=cluster_server.url, cluster=True)
    client = create_async_client(database)
    assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    try:
        await client.initialize()
        monkeypatch.setattr(client, "get_primaries", lambda: [])
        assert await PingHealthCheck().check_async(client, database) is False
    finally:
        await client.aclose()


# --- a fake Redis Enterprise REST API ----------------------------------------------------


@dataclass
class FakeRestApi:
    """What the fake REST API answers, and what it was asked."""

    bdbs: Any = field(
        default_factory=lambda: [
            {"uid": 1, "endpoints": [{"dns_name": "other.example", "addr": ["127.0.0.9"]}]},
            {
                "uid": 7,
                "endpoints": [
                    {"dns_name": "redis-12000.cluster.example", "addr": ["127.0.0.5"]}
                ],
            },
        ]
    )
    bdbs_status: int = 200
    raw_bdbs: bytes | None = None
    availability_status: int = 200
    delay: float = 0.0
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0

    def paths(self) -> list[str]:
        return [urllib.parse.urlsplit(path).path for path, _ in self.requests]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def _handler(api: FakeRestApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            api.requests.append((self.path, self.headers.get("Authorization")))
            if api.delay:
                time.sleep(api.delay)
            path = urllib.parse.urlsplit(self.path).path
            if path == "/v1/bdbs":
                body = api.raw_bdbs if api.raw_bdbs is not None else json.dumps(api.bdbs).encode()
                self._answer(api.bdbs_status, body)
            elif path.startswith("/v1/bdbs/") and path.endswith("/availability"):
                self._answer(api.availability_status, b"{}")
            else:
                self._answer(404, b"{}")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up (timeout test)
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def serve_api() -> Iterator[Callable[..., FakeRestApi]]:
    servers: list[_Server] = []

    def serve(api: FakeRestApi | None = None, tls: ssl.SSLContext | None = None) -> FakeRestApi:
        api = api or FakeRestApi()
        server = _Server(("127.0.0.1", 0), _handler(api))
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        api.port = server.server_address[1]
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()
        servers.append(server)
        return api

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _db(api: FakeRestApi, host: str = "redis-12000.cluster.example") -> DatabaseConfig:
    # plain http: the checks below are built with allow_insecure_http=True
    return DatabaseConfig(host, 12000, health_check_url=f"http://127.0.0.1:{api.port}")


NO_CLIENT = cast(Any, None)  # the lag-aware check does not use the Redis client


def test_lag_aware_healthy_by_dns_name_with_auth(serve_api: Callable[..., FakeRestApi]) -> None:
    api = serve_api()
    check = LagAwareHealthCheck(
        username="admin", password="hunter2", lag_tolerance_ms=250, allow_insecure_http=True
    )
    assert check.check(NO_CLIENT, _db(api)) is True
    (bdbs_path, auth), (availability_path, _) = api.requests
    assert bdbs_path == "/v1/bdbs?fields=uid,endpoints"
    assert auth == "Basic " + base64.b64encode(b"admin:hunter2").decode()
    parsed = urllib.parse.urlsplit(availability_path)
    assert parsed.path == "/v1/bdbs/7/availability"
    assert urllib.parse.parse_qs(parsed.query) == {
        "extend_check": ["lag"], "availability_lag_tolerance_ms": ["250"],
    }
    # the uid is cached: the next probe asks for availability only
    assert check.check(NO_CLIENT, _db(api)) is True
    assert api.paths() == ["/v1/bdbs", "/v1/bdbs/7/availability", "/v1/bdbs/7/availability"]


def test_lag_aware_matches_addr_and_host_case(serve_api: Callable[..., FakeRestApi]) -> None:
    api = serve_api()
    check = LagAwareHealthCheck(allow_insecure_http=True)
    assert check.check(NO_CLIENT, _db(api, host="127.0.0.5")) is True
    assert api.paths()[-1] == "/v1/bdbs/7/availability"
    assert check.check(NO_CLIENT, _db(api, host="REDIS-12000.Cluster.Example")) is True
    assert api.paths()[-1] == "/v1/bdbs/7/availability"
    assert api.requests[0][1] is None  # no username: no Authorization header


def test_lag_aware_unhealthy_answers(
    serve_api: Callable[..., FakeRestApi], caplog: pytest.LogCaptureFixture
) -> None:
    api = serve_api(FakeRestApi(availability_status=503))
    check = LagAwareHealthCheck(allow_insecure_http=True)
    assert check.check(NO_CLIENT, _db(api)) is False  # lag beyond tolerance / not available

    api.availability_status = 200
    assert check.check(NO_CLIENT, _db(api)) is True

    assert check.check(NO_CLIENT, _db(api, host="unknown.example")) is False
    assert "no bdb" in caplog.text

    api.bdbs_status = 401  # wrong credentials
    assert LagAwareHealthCheck(allow_insecure_http=True).check(NO_CLIENT, _db(api)) is False

    api.bdbs_status = 200
    api.raw_bdbs = b"{not json"
    assert LagAwareHealthCheck(allow_insecure_http=True).check(NO_CLIENT, _db(api)) is False
    api.raw_bdbs = b'{"uid": 7}'  # JSON, but not a list of bdbs
    assert LagAwareHealthCheck(allow_insecure_http=True).check(NO_CLIENT, _db(api)) is False


def test_lag_aware_recreated_bdb_is_looked_up_again(
    serve_api: Callable[..., FakeRestApi],
) -> None:
    api = serve_api()
    check = LagAwareHealthCheck(allow_insecure_http=True)
    assert check.check(NO_CLIENT, _db(api)) is True
    api.availability_status = 404
    assert check.check(NO_CLIENT, _db(api)) is False
    api.availability_status = 200
    api.bdbs[1]["uid"] = 8
    assert check.check(NO_CLIENT, _db(api)) is True
    assert api.paths()[-2:] == ["/v1/bdbs", "/v1/bdbs/8/availability"]


def test_lag_aware_timeout(serve_api: Callable[..., FakeRestApi]) -> None:
    api = serve_api(FakeRestApi(delay=0.5))
    check = LagAwareHealthCheck(timeout=0.1, allow_insecure_http=True)
    started = time.monotonic()
    assert check.check(NO_CLIENT, _db(api)) is False
    assert time.monotonic() - started < 0.45


def test_lag_aware_unreachable_api() -> None:
    from faulttol_redis.testing import free_port

    database = DatabaseConfig("h", health_check_url=f"http://127.0.0.1:{free_port()}")
    check = LagAwareHealthCheck(timeout=0.5, allow_insecure_http=True)
    assert check.check(NO_CLIENT, database) is False


async def test_lag_aware_async(serve_api: Callable[..., FakeRestApi]) -> None:
    api = serve_api()
    check = LagAwareHealthCheck(allow_insecure_http=True)
    assert await check.check_async(NO_CLIENT, _db(api)) is True
    api.availability_status = 503
    assert await check.check_async(NO_CLIENT, _db(api)) is False


def test_lag_aware_base_url_rules() -> None:
    check = LagAwareHealthCheck(rest_api_port=9443)
    base = check._base_url
    assert base(DatabaseConfig("db.example")) == "https://db.example:9443"
    assert base(DatabaseConfig("db.example", health_check_url="https://api.example")) == (
        "https://api.example:9443"
    )
    assert base(DatabaseConfig("db", health_check_url="http://api:8080")) == "http://api:8080"
    assert LagAwareHealthCheck(rest_api_host="api.example")._base_url(
        DatabaseConfig("db.example")
    ) == "https://api.example:9443"
    assert base(DatabaseConfig("::1")) == "https://[::1]:9443"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rest_api_port": 0}, r"rest_api_port must be in 1\.\.65535"),
        ({"lag_tolerance_ms": -1}, "lag_tolerance_ms must be >= 0"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"password": "x"}, "username must be given with password"),
        ({"client_key_file": "k.pem"}, "client_cert_file must be given"),
    ],
)
def test_lag_aware_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LagAwareHealthCheck(**kwargs)


# --- TLS with a throwaway CA -----------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=faulttol test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash", cwd=d,
    )
    for who, usage, san in (
        ("server", "serverAuth", "subjectAltName=DNS:localhost\n"),
        ("client", "clientAuth", ""),
    ):
        _openssl("req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr",
                 "-subj", f"/CN=faulttol test {who}", cwd=d)
        (d / f"{who}.ext").write_text(
            san + "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
            f"extendedKeyUsage={usage}\nauthorityKeyIdentifier=keyid,issuer\n"
            "subjectKeyIdentifier=hash\n"
        )
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{who}.pem", "-days", "2",
                 "-extfile", f"{who}.ext", cwd=d)
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
               d / "client.key")


def _server_tls(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context


def _tls_db() -> DatabaseConfig:
    return DatabaseConfig("redis-12000.cluster.example", 12000)


def test_lag_aware_tls_verified_with_ca(
    serve_api: Callable[..., FakeRestApi], pki: Pki
) -> None:
    api = serve_api(tls=_server_tls(pki))
    check = LagAwareHealthCheck(api.port, rest_api_host="localhost", ca_file=str(pki.ca))
    assert check.check(NO_CLIENT, _tls_db()) is True
    assert api.paths() == ["/v1/bdbs", "/v1/bdbs/7/availability"]


def test_lag_aware_tls_fails_verification_without_ca(
    serve_api: Callable[..., FakeRestApi], pki: Pki
) -> None:
    api = serve_api(tls=_server_tls(pki))
    check = LagAwareHealthCheck(api.port, rest_api_host="localhost")
    assert check.check(NO_CLIENT, _tls_db()) is False
    assert api.requests == []  # the handshake failed: no request got through
    # verification off: the same server is accepted
    insecure = LagAwareHealthCheck(api.port, rest_api_host="localhost", verify_tls=False)
    assert insecure.check(NO_CLIENT, _tls_db()) is True


def test_lag_aware_tls_wrong_host_name_fails(
    serve_api: Callable[..., FakeRestApi], pki: Pki
) -> None:
    api = serve_api(tls=_server_tls(pki))
    # the certificate names localhost, not 127.0.0.1 (which does reach the server)
    check = LagAwareHealthCheck(api.port, rest_api_host="127.0.0.1", ca_file=str(pki.ca))
    assert check.check(NO_CLIENT, _tls_db()) is False
    assert api.requests == []


def test_lag_aware_mutual_tls(serve_api: Callable[..., FakeRestApi], pki: Pki) -> None:
    api = serve_api(tls=_server_tls(pki, require_client_cert=True))
    without = LagAwareHealthCheck(api.port, rest_api_host="localhost", ca_file=str(pki.ca))
    assert without.check(NO_CLIENT, _tls_db()) is False
    with_cert = LagAwareHealthCheck(
        api.port, rest_api_host="localhost", ca_file=str(pki.ca),
        client_cert_file=str(pki.client_cert), client_key_file=str(pki.client_key),
    )
    assert with_cert.check(NO_CLIENT, _tls_db()) is True
