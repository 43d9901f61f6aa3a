"""TLS and ACL on real servers (issue 11, item 4).

* Two redis-servers that speak TLS only to the client (``tls-port``, certificates signed by a CA
  the test makes with the openssl CLI): the client fails over between them over TLS.
* A certificate verification failure is a connection error that fails over: database 1
  starts serving a certificate from a CA the client does not trust (``CONFIG SET
  tls-cert-file``, then its connections are dropped), and the next command runs on database 2.
* An ACL user whose password is revoked on database 1 (``ACL SETUSER ... resetpass``, its
  connections killed) makes the client fail over: redis-py's ``AuthenticationError`` is a
  ``ConnectionError``, so the probe fails and the provider switches (reason HEALTH_CHECK);
  the password never shows in an error, a log line, an event or a status row.
* Credential rotation through redis-py's ``credential_provider``: a new password added, the
  provider switched to it, the old one removed and every connection dropped: commands go on
  on database 1 with no switch.

Sync and asyncio (the ACL revocation). Every server is on loopback, every fault real.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.credentials import CredentialProvider

from faulttol import SwitchEvent, SwitchReason
from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig
from faulttol_redis.asyncio import FailoverRedis as AsyncFailoverRedis
from faulttol_redis.testing import RedisServer, free_port

TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
USER = "app"
PASSWORD = "acl-pw-1f9c0e"  # must never be shown
NEW_PASSWORD = "acl-pw-rotated-77ab"


# --- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    """The CA the client trusts."""
    cert: Path
    key: Path
    """A server certificate for 127.0.0.1 signed by ``ca``, and its key."""
    rogue_cert: Path
    rogue_key: Path
    """A certificate for 127.0.0.1 signed by another CA, which the client does not trust."""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(name: str, cwd: Path) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name} test CA",
             # The extensions Python 3.13's default VERIFY_X509_STRICT asks of a CA.
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=cwd)


def _make_server_cert(ca: str, name: str, cwd: Path) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=127.0.0.1", cwd=cwd)
    # A leaf that VERIFY_X509_STRICT (Python 3.13's default) accepts: it names its issuer's key.
    (cwd / f"{name}.ext").write_text(
        "subjectAltName=IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        "subjectKeyIdentifier=hash\n",
        encoding="ascii",
    )
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext", cwd=cwd)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _make_ca("trusted", d)
    _make_ca("rogue", d)
    _make_server_cert("trusted", "server", d)
    _make_server_cert("rogue", "impostor", d)
    return Pki(d / "trusted.pem", d / "server.pem", d / "server.key",
               d / "impostor.pem", d / "impostor.key")


@dataclass
class TlsServer:
    server: RedisServer
    tls_port: int

    def admin(self) -> redis.Redis:
        """A plain (non-TLS) client on the server's loopback port, for the test's own checks."""
        return self.server.client()


@pytest.fixture
def tls_servers(pki: Pki) -> Iterator[list[TlsServer]]:
    """Two servers whose clients speak TLS (the plain port is the test's back door)."""
    started: list[TlsServer] = []
    try:
        for _ in range(2):
            port = free_port()
            server = RedisServer(extra_args=(
                "--tls-port", str(port), "--tls-cert-file", str(pki.cert),
                "--tls-key-file", str(pki.key), "--tls-ca-cert-file", str(pki.ca),
                "--tls-auth-clients", "no",
            ))
            started.append(TlsServer(server, port))
        yield started
    finally:
        for s in started:
            s.server.stop()


def tls_config(servers: list[TlsServer], pki: Pki, **kwargs: Any) -> MultiDbConfig:
    kwargs.setdefault("health_check_interval", 0.2)
    kwargs.setdefault("health_check_timeout", 0.5)
    kwargs.setdefault("health_check_probes", 1)
    return MultiDbConfig(
        [
            DatabaseConfig(url=f"rediss://127.0.0.1:{s.tls_port}/0", name=f"tls{i}",
                           client_kwargs={**TIMEOUTS, "ssl_ca_certs": str(pki.ca)})
            for i, s in enumerate(servers, start=1)
        ],
        **kwargs,
    )


def _events(client: Any) -> list[SwitchEvent]:
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    return events


# --- TLS ---------------------------------------------------------------------------------------


def test_failover_between_two_tls_servers(tls_servers: list[TlsServer], pki: Pki) -> None:
    client = FailoverRedis.from_config(tls_config(tls_servers, pki))
    events = _events(client)
    try:
        assert client.set("k", "one") is True
        assert tls_servers[0].admin().get("k") == b"one"
        # the client's connection to database 1 is a TLS one
        assert any(c["laddr"] and int(c["laddr"].rsplit(":", 1)[1]) == tls_servers[0].tls_port
                   for c in tls_servers[0].admin().client_list())
        tls_servers[0].server.kill()
        assert client.set("k", "two") is True
        assert client.get("k") == b"two"
        assert client.provider.active_index == 2
        assert tls_servers[1].admin().get("k") == b"two"
        assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
    finally:
        client.close()


def test_an_untrusted_certificate_is_a_connection_error_that_fails_over(
    tls_servers: list[TlsServer], pki: Pki,
) -> None:
    client = FailoverRedis.from_config(tls_config(tls_servers, pki))
    events = _events(client)
    try:
        assert client.set("k", "one") is True
        admin = tls_servers[0].admin()
        # database 1 now presents a certificate from a CA the client does not trust
        admin.execute_command("CONFIG", "SET", "tls-cert-file", str(pki.rogue_cert),
                              "tls-key-file", str(pki.rogue_key))  # both at once (Redis 7)
        admin.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(redis.exceptions.ConnectionError, match="certificate"):
            redis.Redis(host="127.0.0.1", port=tls_servers[0].tls_port, ssl=True,
                        ssl_ca_certs=str(pki.ca), **TIMEOUTS).ping()
        assert client.set("k", "two") is True
        assert client.provider.active_index == 2
        assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
        assert tls_servers[1].admin().get("k") == b"two"
        assert admin.get("k") == b"one"  # never written through the untrusted endpoint
        assert client.provider.status()[0]["healthy"] is False
    finally:
        client.close()


# --- ACL ---------------------------------------------------------------------------------------


def _acl_servers(redis_servers: Any) -> list[RedisServer]:
    servers: list[RedisServer] = redis_servers(2)
    for server in servers:
        server.client().acl_setuser(USER, enabled=True, passwords=[f"+{PASSWORD}"],
                                    keys=["*"], channels=["*"], commands=["+@all"])
    return servers


def acl_config(servers: list[RedisServer], **client_kwargs: Any) -> MultiDbConfig:
    credentials = client_kwargs or {"username": USER, "password": PASSWORD}
    return MultiDbConfig(
        [
            DatabaseConfig("127.0.0.1", s.port, name=f"acl{i}",
                           client_kwargs={**TIMEOUTS, **credentials})
            for i, s in enumerate(servers, start=1)
        ],
        health_check_interval=0.2,
        health_check_timeout=0.5,
        health_check_probes=1,
    )


def _revoke(server: RedisServer) -> None:
    """Revoke the user's password and drop its connections (ACL changes spare connections
    that already authenticated)."""
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", USER, "resetpass")
    admin.execute_command("CLIENT", "KILL", "USER", USER)


def test_revoked_acl_password_fails_over_and_is_never_shown(
    redis_servers: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    servers = _acl_servers(redis_servers)
    config = acl_config(servers)
    client = FailoverRedis.from_config(config)
    events = _events(client)
    try:
        assert client.set("k", "one") is True
        assert servers[0].client().get("k") == b"one"
        _revoke(servers[0])
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=servers[0].port, username=USER, password=PASSWORD).ping()
        assert client.set("k", "two") is True
        assert client.provider.active_index == 2
        assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
        assert servers[1].client().get("k") == b"two"
        shown = [repr(config), repr(client), str(client.provider.status()), caplog.text,
                 repr(events)]
        assert not any(PASSWORD in text for text in shown)
    finally:
        client.close()


def test_revoked_acl_password_everywhere_is_unavailable_and_never_shown(
    redis_servers: Any,
) -> None:
    servers = _acl_servers(redis_servers)
    client = FailoverRedis.from_config(acl_config(servers))
    try:
        client.set("k", "one")
        for server in servers:
            _revoke(server)
        with pytest.raises(redis.exceptions.ConnectionError) as info:
            client.set("k", "two")
        chain: list[BaseException] = []
        error: BaseException | None = info.value
        while error is not None and len(chain) < 10:
            chain.append(error)
            error = error.__cause__ or error.__context__
        assert not any(PASSWORD in f"{e!s} {e!r}" for e in chain)
        assert servers[0].client().get("k") == b"one"
        assert servers[1].client().get("k") is None
    finally:
        client.close()


async def test_async_revoked_acl_password_fails_over(redis_servers: Any) -> None:
    servers = _acl_servers(redis_servers)
    client = AsyncFailoverRedis.from_config(acl_config(servers))
    events = _events(client)
    try:
        assert await client.set("k", "one") is True
        _revoke(servers[0])
        assert await client.set("k", "two") is True
        assert client.provider.active_index == 2
        assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
        assert servers[1].client().get("k") == b"two"
    finally:
        await client.aclose()


# --- credential rotation -----------------------------------------------------------------------


class RotatingCredentials(CredentialProvider):
    """redis-py asks it on every new connection; the application changes what it answers."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password
        self.asked = 0

    def rotate(self, password: str) -> None:
        self._password = password

    def get_credentials(self) -> tuple[str, str]:
        self.asked += 1
        return self.username, self._password

    def __repr__(self) -> str:  # never the password
        return f"RotatingCredentials({self.username!r})"


def test_credential_rotation_through_credential_provider_needs_no_failover(
    redis_servers: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    servers = _acl_servers(redis_servers)
    credentials = RotatingCredentials(USER, PASSWORD)
    config = acl_config(servers, credential_provider=credentials)
    client = FailoverRedis.from_config(config)
    events = _events(client)
    try:
        assert client.set("k", "before") is True
        for server in servers:  # step 1: the new password is accepted alongside the old
            server.client().execute_command("ACL", "SETUSER", USER, f">{NEW_PASSWORD}")
        credentials.rotate(NEW_PASSWORD)  # step 2: the application switches to it
        asked = credentials.asked
        for server in servers:  # step 3: the old one is removed, old connections dropped
            admin = server.client()
            admin.execute_command("ACL", "SETUSER", USER, f"<{PASSWORD}")
            admin.execute_command("CLIENT", "KILL", "USER", USER)
        for i in range(20):
            assert client.set(f"after{i}", i) is True
        assert credentials.asked > asked  # new connections asked for the new password
        assert client.provider.active_index == 1
        assert events == []
        assert servers[0].client().get("after19") == b"19"
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=servers[0].port, username=USER, password=PASSWORD).ping()
        shown = [repr(config), repr(client), str(client.provider.status()), caplog.text]
        assert not any(NEW_PASSWORD in text or PASSWORD in text for text in shown)
    finally:
        client.close()
