"""Data safety of the failover client's replay decisions, with real servers and real faults.

A failed command runs again (on the same or the next database) only when that cannot apply it
twice: it surely never reached a server, or running it twice has the effect of running it
once. These tests cut pipelines in the middle of their write (a proxy in front of database 1
forwards the first megabyte a connection sends, so the server runs the commands before the
oversized value, then resets both sides) and hang connection handshakes (a SIGSTOPped server
accepts TCP connections in the kernel backlog but never answers), then count what each server
applied.

The cut is made by a proxy, not by the server itself: a server started with a small
``--proto-max-bulk-len`` answers the oversized value with a protocol error before it closes,
and whether the client sees that error or the reset is a race that Python 3.12+'s asyncio
streams win on the error side (redis-py alone then raises ResponseError, no connection error).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis

from faulttol.testing import FakeClock
from faulttol_redis import (
    DatabaseConfig,
    FailoverProvider,
    FailoverRedis,
    MultiDbConfig,
    create_async_client,
    create_client,
)
from faulttol_redis import asyncio as ft_asyncio
from faulttol_redis._connection import (
    AsyncFailoverConnection,
    AsyncFailoverSSLConnection,
    AsyncFailoverUnixDomainSocketConnection,
    FailoverConnection,
    FailoverSSLConnection,
    FailoverUnixDomainSocketConnection,
)
from faulttol_redis.testing import RedisServer, free_port

Servers = Callable[[int], list[RedisServer]]

BIG = 8 << 20
"""Bytes of the value that the cutting server refuses (its limit is 1 MB), large enough that
the client is still writing when the server drops the connection."""

INCRS = 50


class _Server(Protocol):
    """What these tests need of a database: its port and a direct client."""

    @property
    def port(self) -> int: ...

    def client(self) -> redis.Redis: ...


def _config(servers: Sequence[_Server], **client_kwargs: Any) -> MultiDbConfig:
    kwargs: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    kwargs.update(client_kwargs)
    return MultiDbConfig(
        [
            DatabaseConfig("127.0.0.1", s.port, name=f"db{i}", client_kwargs=kwargs)
            for i, s in enumerate(servers, start=1)
        ],
        health_check_probes=1,
        health_check_timeout=0.3,
    )


CUT_AFTER = 1 << 20
"""Bytes a connection to database 1 may send before the cutting proxy resets it."""


class _CuttingServer:
    """A server behind a loopback proxy that forwards the first :data:`CUT_AFTER` bytes each
    client connection sends, then resets the connection on both sides (a cut mid-write: the
    server has run the complete commands before the cut and discards the partial one)."""

    def __init__(self) -> None:
        self.server = RedisServer()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def client(self) -> redis.Redis:
        return self.server.client()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.server.port))
            with self._lock:
                self._sockets += [downstream, upstream]
            threading.Thread(target=self._forward, args=(downstream, upstream, CUT_AFTER),
                             daemon=True).start()
            threading.Thread(target=self._forward, args=(upstream, downstream, None),
                             daemon=True).start()

    @staticmethod
    def _forward(source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                if limit is not None and sent + len(data) > limit:
                    sink.sendall(data[: limit - sent])
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (source, sink):  # a reset both ways, not an orderly close
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()

    def stop(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        self.server.stop()


@pytest.fixture
def cutting_pair() -> Iterator[list[_Server]]:
    """Database 1's connections are cut once they send over 1 MB; database 2 is normal."""
    cutting = _CuttingServer()
    try:
        normal = RedisServer()
        try:
            yield [cutting, normal]
        finally:
            normal.stop()
    finally:
        cutting.stop()


def _sync_client(servers: Sequence[_Server], **client_kwargs: Any) -> FailoverRedis:
    # A fake clock: the retry backoff between attempts does not sleep.
    provider = FailoverProvider(_config(servers, **client_kwargs), clock=FakeClock(),
                                start_health_checks=False)
    return FailoverRedis(provider)


def _async_client(servers: Sequence[_Server], **client_kwargs: Any) -> ft_asyncio.FailoverRedis:
    provider = ft_asyncio.FailoverProvider(_config(servers, **client_kwargs), clock=FakeClock(),
                                           start_health_checks=False)
    return ft_asyncio.FailoverRedis(provider)


def _counter(server: _Server, key: str = "k") -> int | None:
    value = server.client().get(key)
    return None if value is None else int(value)


def _queue_incrs_then_big_set(pipe: Any) -> None:
    for _ in range(INCRS):
        pipe.incr("k")
    pipe.set("big", b"x" * BIG)


def _queue_sets_then_big_set(pipe: Any) -> None:
    for i in range(INCRS):
        pipe.set(f"s{i}", i)
    pipe.set("big", b"x" * BIG)


# --- item 1: a pipeline cut in the middle of its write -------------------------------------


def test_non_transactional_pipeline_cut_mid_write_is_not_replayed(
    cutting_pair: list[_Server],
) -> None:
    servers = cutting_pair
    client = _sync_client(servers)
    try:
        pipe = client.pipeline(transaction=False)
        _queue_incrs_then_big_set(pipe)
        with pytest.raises(redis.exceptions.ConnectionError, match="writing to socket"):
            pipe.execute()
        # database 1 ran the INCRs before it dropped the connection, exactly once
        assert _counter(servers[0]) == INCRS
        assert _counter(servers[1]) is None
        assert client.provider.active_index == 1  # database 1 answers PING: no switch
    finally:
        client.close()


def test_transaction_cut_mid_write_is_replayed_on_the_next_database_once(
    cutting_pair: list[_Server],
) -> None:
    servers = cutting_pair
    client = _sync_client(servers)
    try:
        pipe = client.pipeline(transaction=True)
        _queue_incrs_then_big_set(pipe)
        results = pipe.execute()
        assert results == [*range(1, INCRS + 1), True]
        # EXEC never arrived at database 1, which discarded the queued INCRs
        assert _counter(servers[0]) is None
        assert _counter(servers[1]) == INCRS
        assert client.provider.active_index == 2
    finally:
        client.close()


def test_replay_safe_pipeline_cut_mid_write_is_replayed(
    cutting_pair: list[_Server],
) -> None:
    servers = cutting_pair
    client = _sync_client(servers)
    try:
        pipe = client.pipeline(transaction=False)
        _queue_sets_then_big_set(pipe)
        assert pipe.execute() == [True] * (INCRS + 1)
        assert servers[1].client().get(f"s{INCRS - 1}") == str(INCRS - 1).encode()
        assert servers[1].client().strlen("big") == BIG
        assert client.provider.active_index == 2
    finally:
        client.close()


async def test_async_non_transactional_pipeline_cut_mid_write_is_not_replayed(
    cutting_pair: list[_Server],
) -> None:
    servers = cutting_pair
    client = _async_client(servers)
    try:
        pipe: Any = client.pipeline(transaction=False)
        _queue_incrs_then_big_set(pipe)
        with pytest.raises(redis.exceptions.ConnectionError):
            await pipe.execute()
        assert _counter(servers[0]) == INCRS
        assert _counter(servers[1]) is None
        assert client.provider.active_index == 1
    finally:
        await client.aclose()


async def test_async_transaction_cut_mid_write_is_replayed_on_the_next_database_once(
    cutting_pair: list[_Server],
) -> None:
    servers = cutting_pair
    client = _async_client(servers)
    try:
        pipe: Any = client.pipeline(transaction=True)
        _queue_incrs_then_big_set(pipe)
        results = await pipe.execute()
        assert results == [*range(1, INCRS + 1), True]
        assert _counter(servers[0]) is None
        assert _counter(servers[1]) == INCRS
        assert client.provider.active_index == 2
    finally:
        await client.aclose()


async def test_async_replay_safe_pipeline_cut_mid_write_is_replayed(
    cutting_pair: list[_Server],
) -> None:
    servers = cutting_pair
    client = _async_client(servers)
    try:
        pipe: Any = client.pipeline(transaction=False)
        _queue_sets_then_big_set(pipe)
        assert await pipe.execute() == [True] * (INCRS + 1)
        assert servers[1].client().strlen("big") == BIG
        assert client.provider.active_index == 2
    finally:
        await client.aclose()


# --- item 3: a failure before the command was written ----------------------------------------


def _drop_pooled_connections(client: Any) -> None:
    """Close database 1's pooled command connections, so the next command connects again
    (with a handshake) instead of reusing a connected socket."""
    client.provider.client(1).connection_pool.disconnect()


def test_incr_whose_handshake_timed_out_runs_on_the_next_database_once(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    # client_name: the handshake sends CLIENT SETNAME and waits for its reply
    client = _sync_client(servers, client_name="app")
    try:
        assert client.incr("warm") == 1  # database 1 works; its pool has a connection
        _drop_pooled_connections(client)
        servers[0].pause()  # TCP connect succeeds (kernel backlog), the handshake hangs
        assert client.incr("k") == 1
        assert client.provider.active_index == 2
        assert _counter(servers[1]) == 1
        servers[0].resume()
        assert _counter(servers[0]) is None  # never written to database 1
    finally:
        client.close()


async def test_async_incr_whose_handshake_timed_out_runs_on_the_next_database_once(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = _async_client(servers, client_name="app")
    try:
        assert await client.incr("warm") == 1
        await client.provider.client(1).connection_pool.disconnect()
        servers[0].pause()
        assert await client.incr("k") == 1
        assert client.provider.active_index == 2
        assert _counter(servers[1]) == 1
        servers[0].resume()
        assert _counter(servers[0]) is None
    finally:
        await client.aclose()


def _health_check_due(client: Any) -> None:
    """Make database 1's pooled connections due for redis-py's pre-write PING health check
    (as after ``health_check_interval`` seconds idle, without waiting for it)."""
    for connection in client.provider.client(1).connection_pool._available_connections:
        connection.next_health_check = -1.0


def test_incr_whose_pre_write_health_check_timed_out_runs_on_the_next_database_once(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = _sync_client(servers, health_check_interval=30)
    try:
        assert client.incr("warm") == 1  # a connected connection is back in the pool
        _health_check_due(client)
        servers[0].pause()  # the PING before the INCR times out; the INCR is never written
        assert client.incr("k") == 1
        assert client.provider.active_index == 2
        assert _counter(servers[1]) == 1
        servers[0].resume()
        assert _counter(servers[0]) is None
    finally:
        client.close()


async def test_async_incr_whose_pre_write_health_check_timed_out_runs_on_the_next_database_once(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = _async_client(servers, health_check_interval=30)
    try:
        assert await client.incr("warm") == 1
        _health_check_due(client)
        servers[0].pause()
        assert await client.incr("k") == 1
        assert client.provider.active_index == 2
        assert _counter(servers[1]) == 1
        servers[0].resume()
        assert _counter(servers[0]) is None
    finally:
        await client.aclose()


def test_incr_whose_tcp_connect_timed_out_runs_on_the_next_database_once(
    redis_servers: Servers,
) -> None:
    servers = [RedisServer(extra_args=("--tcp-backlog", "1")), *redis_servers(1)]
    fillers: list[socket.socket] = []
    client = _sync_client(servers)
    try:
        assert client.incr("warm") == 1
        _drop_pooled_connections(client)
        servers[0].pause()
        for _ in range(8):  # fill the accept queue (backlog + 1 entries): later SYNs drop
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", servers[0].port))
            fillers.append(sock)
        assert client.incr("k") == 1
        assert client.provider.active_index == 2
        assert _counter(servers[1]) == 1
        for sock in fillers:
            sock.close()
        servers[0].resume()
        assert _counter(servers[0]) is None
    finally:
        client.close()
        for sock in fillers:
            sock.close()
        servers[0].stop()


# --- the connection classes: TCP, TLS, Unix socket --------------------------------------------


def _pool_class(client: Any) -> type[Any]:
    cls: type[Any] = client.connection_pool.connection_class
    return cls


class _OwnConnection(redis.connection.Connection):
    """A user's own connection class."""


def test_the_connection_class_follows_redis_pys_choice(tmp_path: Path) -> None:
    cases: list[tuple[DatabaseConfig, type[Any], type[Any]]] = [
        (DatabaseConfig("127.0.0.1", 6379), FailoverConnection, AsyncFailoverConnection),
        (DatabaseConfig("127.0.0.1", 6379, client_kwargs={"ssl": True}),
         FailoverSSLConnection, AsyncFailoverSSLConnection),
        (DatabaseConfig(url="redis://127.0.0.1:6379/0"),
         FailoverConnection, AsyncFailoverConnection),
        (DatabaseConfig(url="rediss://127.0.0.1:6379/0"),
         FailoverSSLConnection, AsyncFailoverSSLConnection),
        (DatabaseConfig(url=f"unix://{tmp_path}/redis.sock"),
         FailoverUnixDomainSocketConnection, AsyncFailoverUnixDomainSocketConnection),
    ]
    for config, sync_class, async_class in cases:
        client = create_client(config)
        assert _pool_class(client) is sync_class, config
        assert _pool_class(create_async_client(config)) is async_class, config
        client.close()
    # the user's own choice is left alone
    own = DatabaseConfig(url="redis://127.0.0.1:6379/0",
                         client_kwargs={"connection_class": _OwnConnection})
    assert _pool_class(create_client(own)) is _OwnConnection
    pool = redis.ConnectionPool(host="127.0.0.1", port=6379)
    given = DatabaseConfig("127.0.0.1", 6379, client_kwargs={"connection_pool": pool})
    assert create_client(given).connection_pool is pool
    assert pool.connection_class is redis.connection.Connection


def test_a_single_connection_client_marks_its_failures_too(redis_server: RedisServer) -> None:
    config = DatabaseConfig("127.0.0.1", redis_server.port,
                            client_kwargs={"single_connection_client": True,
                                           "socket_timeout": 0.5, "client_name": "app"})
    client: Any = create_client(config)
    try:
        assert isinstance(client.connection, FailoverConnection)
        assert client.ping() is True
        client.connection.disconnect()
        redis_server.pause()
        with pytest.raises(redis.exceptions.TimeoutError) as caught:
            client.ping()  # reconnects: the handshake (CLIENT SETNAME) hangs
        redis_server.resume()
        assert caught.value.never_sent is True  # type: ignore[attr-defined]
    finally:
        client.close()


def test_a_reconnect_asked_for_after_a_command_is_not_marked_never_sent(
    redis_server: RedisServer,
) -> None:
    # redis-py reconnects a connection that a maintenance notification marked, right after
    # the command it ran, and raises that reconnect's failure in place of the command's
    # outcome: such a failure must stay ambiguous.
    connection = FailoverConnection(host="127.0.0.1", port=redis_server.port,
                                    socket_timeout=0.3, socket_connect_timeout=0.3,
                                    client_name="app")
    try:
        connection.connect()
        connection.mark_for_reconnect()
        connection.disconnect()
        redis_server.pause()
        with pytest.raises(redis.exceptions.TimeoutError) as caught:
            connection.connect()
        assert caught.value.never_sent is False  # type: ignore[attr-defined]
        with pytest.raises(redis.exceptions.TimeoutError) as again:
            connection.connect()  # an ordinary reconnect: never sent
        assert again.value.never_sent is True  # type: ignore[attr-defined]
    finally:
        redis_server.resume()
        connection.disconnect()


async def test_async_a_reconnect_asked_for_after_a_command_is_not_marked_never_sent(
    redis_server: RedisServer,
) -> None:
    connection = AsyncFailoverConnection(host="127.0.0.1", port=redis_server.port,
                                         socket_timeout=0.3, socket_connect_timeout=0.3,
                                         client_name="app")
    try:
        await connection.connect()
        connection.mark_for_reconnect()
        await connection.disconnect()
        redis_server.pause()
        with pytest.raises(redis.exceptions.TimeoutError) as caught:
            await connection.connect()
        assert caught.value.never_sent is False  # type: ignore[attr-defined]
        with pytest.raises(redis.exceptions.TimeoutError) as again:
            await connection.connect()
        assert again.value.never_sent is True  # type: ignore[attr-defined]
    finally:
        redis_server.resume()
        await connection.disconnect()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (the certificate is its own CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=d, check=True, capture_output=True, timeout=30,
    )
    return d / "cert.pem", d / "key.pem"


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path]) -> Iterator[tuple[RedisServer, int]]:
    """A server that also listens with TLS; yields it and its TLS port."""
    cert, key = tls_files
    tls_port = free_port()
    server = RedisServer(extra_args=(
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    ))
    try:
        yield server, tls_port
    finally:
        server.stop()


def test_incr_whose_tls_handshake_timed_out_runs_on_the_next_database_once(
    tls_server: tuple[RedisServer, int], tls_files: tuple[Path, Path], redis_server: RedisServer,
) -> None:
    server, tls_port = tls_server
    cert, _ = tls_files
    timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    config = MultiDbConfig(
        [
            DatabaseConfig(url=f"rediss://127.0.0.1:{tls_port}/0", name="tls",
                           client_kwargs={**timeouts, "ssl_ca_certs": str(cert)}),
            DatabaseConfig("127.0.0.1", redis_server.port, name="plain",
                           client_kwargs=timeouts),
        ],
        health_check_probes=1,
        health_check_timeout=0.3,
    )
    client = FailoverRedis(FailoverProvider(config, clock=FakeClock(),
                                            start_health_checks=False))
    try:
        assert _pool_class(client.provider.client(1)) is FailoverSSLConnection
        assert client.incr("warm") == 1  # TLS works
        assert server.client().get("warm") == b"1"
        _drop_pooled_connections(client)
        server.pause()  # the TLS handshake itself now times out
        assert client.incr("k") == 1
        assert client.provider.active_index == 2
        assert _counter(redis_server) == 1
        server.resume()
        assert _counter(server) is None
    finally:
        client.close()


async def test_async_tls_database_works_with_the_marking_connection(
    tls_server: tuple[RedisServer, int], tls_files: tuple[Path, Path],
) -> None:
    server, tls_port = tls_server
    cert, _ = tls_files
    config = DatabaseConfig(url=f"rediss://127.0.0.1:{tls_port}/0",
                            client_kwargs={"ssl_ca_certs": str(cert), "socket_timeout": 0.5})
    client: Any = create_async_client(config)
    try:
        assert _pool_class(client) is AsyncFailoverSSLConnection
        assert await client.incr("k") == 1
        assert server.client().get("k") == b"1"
    finally:
        await client.aclose()


def test_incr_whose_unix_socket_handshake_timed_out_runs_on_the_next_database_once(
    tmp_path: Path, redis_server: RedisServer,
) -> None:
    path = tmp_path / "redis.sock"
    server = RedisServer(extra_args=("--unixsocket", str(path), "--unixsocketperm", "700"))
    timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    config = MultiDbConfig(
        [
            DatabaseConfig(url=f"unix://{path}", name="unix",
                           client_kwargs={**timeouts, "client_name": "app"}),
            DatabaseConfig("127.0.0.1", redis_server.port, name="tcp", client_kwargs=timeouts),
        ],
        health_check_probes=1,
        health_check_timeout=0.3,
    )
    client = FailoverRedis(FailoverProvider(config, clock=FakeClock(),
                                            start_health_checks=False))
    try:
        assert _pool_class(client.provider.client(1)) is FailoverUnixDomainSocketConnection
        assert client.incr("warm") == 1
        _drop_pooled_connections(client)
        server.pause()
        assert client.incr("k") == 1
        assert client.provider.active_index == 2
        assert _counter(redis_server) == 1
        server.resume()
        assert _counter(server) is None
    finally:
        client.close()
        server.stop()
