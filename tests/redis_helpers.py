"""Helpers for tests that need real ``redis-server`` processes (used by conftest's fixtures)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from faulttol_redis._server import RedisServer

__all__ = ["server_factory"]


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
