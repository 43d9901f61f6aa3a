"""Security of the configuration and the lag-aware health check (issue 7, items 5 and 6).

* The lag-aware health check never sends its Basic-auth credentials to another origin or
  over plain http: redirects are followed only to the same origin over https; an http://
  ``health_check_url`` is refused unless ``allow_insecure_http=True``; a missing CA file is
  an error at construction. Real HTTP and HTTPS servers on 127.0.0.1 (a throwaway CA made
  with the openssl CLI, as in test_healthcheck.py).
* No secret appears in an error message, a repr, a str or a log line, whatever the input:
  URLs whose password holds unencoded ``#``, ``?``, ``/``, ``@``, ``:`` or ``%``, and values
  of the wrong kind (a dict or a URL where a DatabaseConfig goes...). Construction only: no
  connection is opened to the example hosts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from faulttol import CircuitBreakerConfig, RetryConfig
from faulttol_redis.config import DatabaseConfig, MultiDbConfig
from faulttol_redis.healthcheck import LagAwareHealthCheck
from faulttol_redis.testing import free_port

NO_CLIENT = cast(Any, None)  # the lag-aware check does not use the Redis client
PASSWORD = "Hunter2Secret"
DB_HOST = "redis-12000.cluster.example"
BDBS = [{"uid": 7, "endpoints": [{"dns_name": DB_HOST, "addr": ["127.0.0.5"]}]}]


# --- local HTTP(S) servers ---------------------------------------------------------------


@dataclass
class Api:
    """A fake REST API: answers ``routes`` (path -> (status, headers, body)), records asks."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def healthy(self, prefix: str = "") -> Api:
        self.routes[f"{prefix}/v1/bdbs"] = (200, {}, json.dumps(BDBS).encode())
        self.routes[f"{prefix}/v1/bdbs/7/availability"] = (200, {}, b"{}")
        return self

    def redirect(self, path: str, location: str, status: int = 302) -> Api:
        self.routes[path] = (status, {"Location": location}, b"")
        return self

    def asked(self) -> list[tuple[str, str | None]]:
        with self.lock:
            return list(self.requests)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def _handler(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with api.lock:
                api.requests.append((self.path, self.headers.get("Authorization")))
            path = urllib.parse.urlsplit(self.path).path
            status, headers, body = api.routes.get(path, (404, {}, b"{}"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[..., Api]]:
    servers: list[_Server] = []

    def start(api: Api, tls: ssl.SSLContext | None = None) -> Api:
        server = _Server(("127.0.0.1", 0), _handler(api))
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        api.port = server.server_address[1]
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()
        servers.append(server)
        return api

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and a server certificate for localhost."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=faulttol security test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash", cwd=d,
    )
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2",
             "-extfile", "server.ext", cwd=d)
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key")


def _tls(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    return context


def _https_check(api: Api, pki: Pki, **kwargs: Any) -> LagAwareHealthCheck:
    return LagAwareHealthCheck(
        api.port, rest_api_host="localhost", ca_file=str(pki.ca),
        username="admin", password=PASSWORD, **kwargs,
    )


def _no_password_in(caplog: pytest.LogCaptureFixture) -> None:
    text = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert PASSWORD not in text


# --- item 5: credentials and redirects -----------------------------------------------------


def test_lag_aware_never_sends_credentials_along_a_redirect_to_plain_http(
    serve: Callable[..., Api], pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    plain = serve(Api().healthy())
    target = f"http://127.0.0.1:{plain.port}/v1/bdbs?fields=uid,endpoints"
    redirecting = serve(Api().redirect("/v1/bdbs", target), tls=_tls(pki))
    check = _https_check(redirecting, pki)
    with caplog.at_level(logging.DEBUG, logger="faulttol_redis"):
        assert check.check(NO_CLIENT, DatabaseConfig(DB_HOST, 12000)) is False
    assert plain.asked() == []  # nothing at all reached the plain server
    assert [path for path, _ in redirecting.asked()] == ["/v1/bdbs?fields=uid,endpoints"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("redirect" in r.getMessage() for r in warnings), caplog.text
    _no_password_in(caplog)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_lag_aware_does_not_follow_a_redirect_to_another_https_origin(
    serve: Callable[..., Api], pki: Pki, status: int
) -> None:
    other = serve(Api().healthy(), tls=_tls(pki))  # same host name, another port
    redirecting = serve(
        Api().redirect("/v1/bdbs", f"https://localhost:{other.port}/v1/bdbs", status),
        tls=_tls(pki),
    )
    assert _https_check(redirecting, pki).check(NO_CLIENT, DatabaseConfig(DB_HOST)) is False
    assert other.asked() == []


def test_lag_aware_follows_a_same_origin_https_redirect(
    serve: Callable[..., Api], pki: Pki
) -> None:
    api = Api().healthy(prefix="/moved")
    api.redirect("/v1/bdbs", "/moved/v1/bdbs?fields=uid,endpoints")  # relative
    serve(api, tls=_tls(pki))
    api.redirect(
        "/v1/bdbs/7/availability",
        f"https://localhost:{api.port}/moved/v1/bdbs/7/availability",  # absolute
        307,
    )
    assert _https_check(api, pki).check(NO_CLIENT, DatabaseConfig(DB_HOST)) is True
    paths = [urllib.parse.urlsplit(path).path for path, _ in api.asked()]
    assert paths == [
        "/v1/bdbs", "/moved/v1/bdbs", "/v1/bdbs/7/availability", "/moved/v1/bdbs/7/availability"
    ]
    assert all(auth is not None and auth.startswith("Basic ") for _, auth in api.asked())


def test_lag_aware_refuses_a_plain_http_url_unless_allowed(
    serve: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    plain = serve(Api().healthy())
    database = DatabaseConfig(DB_HOST, health_check_url=f"http://127.0.0.1:{plain.port}")
    strict = LagAwareHealthCheck(username="admin", password=PASSWORD)
    with caplog.at_level(logging.DEBUG, logger="faulttol_redis"):
        assert strict.check(NO_CLIENT, database) is False
    assert plain.asked() == []  # refused before any request
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("allow_insecure_http" in message for message in warnings), caplog.text
    _no_password_in(caplog)

    with pytest.raises(ValueError, match="allow_insecure_http") as info:
        MultiDbConfig([database], health_checks=[strict])
    assert "health_check_url" in str(info.value)

    allowed = LagAwareHealthCheck(username="admin", password=PASSWORD, allow_insecure_http=True)
    assert allowed.check(NO_CLIENT, database) is True
    assert len(plain.asked()) == 2
    assert MultiDbConfig([database], health_checks=[allowed]).health_checks == (allowed,)
    assert "allow_insecure_http=True" in repr(allowed)


def test_lag_aware_does_not_follow_redirects_over_plain_http_even_when_allowed(
    serve: Callable[..., Api],
) -> None:
    other = serve(Api().healthy())
    api = serve(Api().redirect("/v1/bdbs", f"http://127.0.0.1:{other.port}/v1/bdbs"))
    database = DatabaseConfig(DB_HOST, health_check_url=f"http://127.0.0.1:{api.port}")
    check = LagAwareHealthCheck(username="admin", password=PASSWORD, allow_insecure_http=True)
    assert check.check(NO_CLIENT, database) is False
    assert other.asked() == []


def test_lag_aware_missing_ca_file_is_a_construction_error(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(ValueError, match="ca_file") as info:
        LagAwareHealthCheck(ca_file=str(missing))
    assert str(missing) in str(info.value)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="ca_file"):
        LagAwareHealthCheck(ca_file=str(garbage))
    with pytest.raises(ValueError, match="client_cert_file"):
        LagAwareHealthCheck(client_cert_file=str(tmp_path / "missing-cert.pem"))
    with pytest.raises(ValueError, match="client_key_file"):
        LagAwareHealthCheck(
            client_cert_file=str(pki.server_cert),
            client_key_file=str(tmp_path / "missing-key.pem"),
        )
    assert LagAwareHealthCheck(ca_file=str(pki.ca)).ca_file == str(pki.ca)


def test_lag_aware_log_lines_never_show_the_password(caplog: pytest.LogCaptureFixture) -> None:
    url = f"https://admin:{PASSWORD}@127.0.0.1:{free_port()}"
    database = DatabaseConfig(DB_HOST, health_check_url=url)
    check = LagAwareHealthCheck(username="admin", password=PASSWORD, timeout=0.5)
    with caplog.at_level(logging.DEBUG, logger="faulttol_redis"):
        assert check.check(NO_CLIENT, database) is False
    assert caplog.records
    _no_password_in(caplog)
    assert PASSWORD not in repr(database) and PASSWORD not in repr(check)


# --- item 6: secrets in messages and reprs -------------------------------------------------


@dataclass(frozen=True)
class NastyUrl:
    url: str
    fragments: tuple[str, ...]  # pieces of the secret, none may show
    valid: bool  # a well-formed URL (else its syntax is broken and it must be refused)


NASTY_URLS = [
    NastyUrl("redis://user:Zq9#Xw7@db.example.com:6380/0", ("Zq9", "Xw7"), False),
    NastyUrl("redis://user:Zq9?Xw7@db.example.com:6380/0", ("Zq9", "Xw7"), False),
    NastyUrl("redis://user:Zq9/Xw7@db.example.com:6380/0", ("Zq9", "Xw7"), False),
    NastyUrl("redis://user:1234#5678@db.example.com", ("1234#5678", "5678"), False),
    NastyUrl("redis://user:1234?5678@db.example.com", ("1234?5678", "5678"), False),
    NastyUrl("redis://user:Zq9/Xw7?Kp3#Lm5@db.example.com", ("Zq9", "Xw7", "Kp3", "Lm5"), False),
    NastyUrl("rediss://:Zq9#Xw7@db.example.com:6380", ("Zq9", "Xw7"), False),
    NastyUrl("unix://user:Zq9#Xw7@/tmp/redis.sock?db=1", ("Zq9", "Xw7"), False),
    NastyUrl("redis://user:Zq9@Xw7:Kp3@db.example.com:6380/0", ("Zq9", "Xw7", "Kp3"), True),
    NastyUrl("redis://user:100%Zq9Xw7@db.example.com", ("Zq9Xw7",), True),
    NastyUrl("redis://user:Zq9%23Xw7@db.example.com", ("Zq9", "Xw7"), True),
    NastyUrl("rediss://:Zq9%2FXw7@db.example.com:6380/1", ("Zq9", "Xw7"), True),
    NastyUrl("redis://Zq9user:Xw7pass@db.example.com", ("Xw7pass",), True),
    NastyUrl("unix://user:Zq9Xw7@/tmp/redis.sock?db=1", ("Zq9Xw7",), True),
    NastyUrl("redis://db.example.com/0?password=Zq9Xw7&socket_timeout=1", ("Zq9Xw7",), True),
    NastyUrl("redis://user:Zq9Xw7@db.example.com:99999/0", ("Zq9Xw7",), False),
    NastyUrl("redis://user:Zq9Xw7@db.example.com/notadb", ("Zq9Xw7",), False),
    NastyUrl("http://user:Zq9Xw7@db.example.com", ("Zq9Xw7",), False),
]


def _assert_hidden(text: str, fragments: tuple[str, ...]) -> None:
    for fragment in fragments:
        assert fragment not in text, text


@pytest.mark.parametrize("nasty", NASTY_URLS, ids=[n.url for n in NASTY_URLS])
def test_no_password_of_a_nasty_url_in_messages_or_reprs(nasty: NastyUrl) -> None:
    if not nasty.valid:
        with pytest.raises(ValueError) as info:
            DatabaseConfig(url=nasty.url)
        _assert_hidden(str(info.value), nasty.fragments)
        _assert_hidden(repr(info.value), nasty.fragments)
        assert "url" in str(info.value)
    else:
        config = DatabaseConfig(url=nasty.url, name=None)
        if not nasty.url.startswith("unix:"):
            assert config.host == "db.example.com"  # never the user name or the password
        multi = MultiDbConfig([config])
        for text in (repr(config), str(config), config.endpoint, config.display_name,
                     repr(multi), str(multi)):
            _assert_hidden(text, nasty.fragments)
    # the same text where it does not belong: as a host, as a REST API URL
    with pytest.raises(ValueError) as info:
        DatabaseConfig(nasty.url)
    _assert_hidden(str(info.value), nasty.fragments)
    try:
        shown = repr(DatabaseConfig("db.example.com", health_check_url=nasty.url))
    except ValueError as exc:
        shown = f"{exc} {exc!r}"
    _assert_hidden(shown, nasty.fragments)


def test_a_url_a_parser_would_misread_is_refused_not_misread() -> None:
    # urllib and redis-py read this as host "user", port 1234: a silent wrong endpoint
    with pytest.raises(ValueError, match="percent-encode"):
        DatabaseConfig(url="redis://user:1234#5678@db.example.com")
    with pytest.raises(ValueError, match="percent-encode"):
        DatabaseConfig(url="redis://user:1234/5678@db.example.com")
    encoded = DatabaseConfig(url="redis://user:1234%235678@db.example.com")
    assert (encoded.host, encoded.port) == ("db.example.com", 6379)


_DB = DatabaseConfig("db.example.com")
_SECRET_URL = f"redis://admin:{PASSWORD}@db.example.com:6380/0"
WRONG_KINDS: list[tuple[str, Callable[[], object]]] = [
    ("dict as a database",
     lambda: MultiDbConfig([{"host": "db.example.com", "password": PASSWORD}])),  # type: ignore[list-item]
    ("url as a database", lambda: MultiDbConfig([_DB, _SECRET_URL])),  # type: ignore[list-item]
    ("url as the databases", lambda: MultiDbConfig(_SECRET_URL)),  # type: ignore[arg-type]
    ("dict as a health check",
     lambda: MultiDbConfig([_DB], health_checks=[{"password": PASSWORD}])),  # type: ignore[list-item]
    ("dict as the health checks",
     lambda: MultiDbConfig([_DB], health_checks={"password": PASSWORD})),  # type: ignore[dict-item]
    ("dict as the breaker",
     lambda: MultiDbConfig([_DB], circuit_breaker={"password": PASSWORD})),  # type: ignore[arg-type]
    ("dict as the retry",
     lambda: MultiDbConfig([_DB], retry={"password": PASSWORD})),  # type: ignore[arg-type]
    ("str as a fallback exception",
     lambda: MultiDbConfig([_DB], fallback_exceptions=[PASSWORD])),  # type: ignore[list-item]
    ("str as the health policy",
     lambda: MultiDbConfig([_DB], health_check_policy=PASSWORD)),  # type: ignore[arg-type]
    ("url as the host", lambda: DatabaseConfig(_SECRET_URL)),
    ("password as the port", lambda: DatabaseConfig("db.example.com", PASSWORD)),  # type: ignore[arg-type]
    ("password as the weight", lambda: DatabaseConfig(weight=PASSWORD)),  # type: ignore[arg-type]
    ("password as the name", lambda: DatabaseConfig(name=b"x" + PASSWORD.encode())),  # type: ignore[arg-type]
    ("bytes url", lambda: DatabaseConfig(url=_SECRET_URL.encode())),  # type: ignore[arg-type]
    ("list as client_kwargs", lambda: DatabaseConfig(client_kwargs=[("password", PASSWORD)])),  # type: ignore[arg-type]
    ("reserved client_kwargs",
     lambda: DatabaseConfig(client_kwargs={"password": PASSWORD, "host": "x"})),
    ("url with a bad port", lambda: DatabaseConfig(url=_SECRET_URL.replace("6380", "99999"))),
    ("health url with a bad port",
     lambda: DatabaseConfig(health_check_url=f"https://admin:{PASSWORD}@cluster:99999")),
    ("health url without a scheme",
     lambda: DatabaseConfig(health_check_url=f"admin:{PASSWORD}@cluster.example.com")),
    ("health url as bytes",
     lambda: DatabaseConfig(health_check_url=f"https://a:{PASSWORD}@c".encode())),  # type: ignore[arg-type]
    ("password without username", lambda: LagAwareHealthCheck(password=PASSWORD)),
    ("bytes password",
     lambda: LagAwareHealthCheck(username="admin", password=PASSWORD.encode())),  # type: ignore[arg-type]
    ("url as the REST host",
     lambda: LagAwareHealthCheck(rest_api_host=f"https://admin:{PASSWORD}@cluster")),
    ("password as the REST port", lambda: LagAwareHealthCheck(PASSWORD)),  # type: ignore[arg-type]
    ("dict as breaker exceptions",
     lambda: CircuitBreakerConfig(record_exceptions={"password": PASSWORD})),  # type: ignore[arg-type]
    ("dict as a breaker predicate",
     lambda: CircuitBreakerConfig(record_result={"password": PASSWORD})),  # type: ignore[arg-type]
    ("password as a breaker count",
     lambda: CircuitBreakerConfig(sliding_window_size=PASSWORD)),  # type: ignore[arg-type]
    ("dict as retry exceptions",
     lambda: RetryConfig(retry_exceptions={"password": PASSWORD})),  # type: ignore[arg-type]
    ("password as a retry wait", lambda: RetryConfig(wait_duration=PASSWORD)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("case", "build"), WRONG_KINDS, ids=[case for case, _ in WRONG_KINDS])
def test_no_secret_in_the_message_of_a_wrong_kind_value(
    case: str, build: Callable[[], object]
) -> None:
    with pytest.raises(ValueError) as info:  # ConfigTypeError is a ValueError too
        build()
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(info.value)
