"""Shared fixtures: real ``redis-server`` processes on loopback.

``redis_server`` is one fresh server per test; ``redis_servers(n)`` starts ``n`` more (call it
as often as needed). Every server a test started is stopped at teardown, whatever the test's
outcome, including paused (SIGSTOPped) ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from redis_helpers import server_factory

from faulttol_redis._server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """One running ``redis-server`` on 127.0.0.1 and a free port."""
    with server_factory() as start:
        (server,) = start(1)
        yield server


@pytest.fixture
def redis_servers() -> Iterator[Callable[[int], list[RedisServer]]]:
    """A factory: ``redis_servers(n)`` starts ``n`` servers and returns them in order."""
    with server_factory() as start:
        yield start
