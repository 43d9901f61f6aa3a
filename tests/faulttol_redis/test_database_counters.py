"""The per-database counters of hang detection and hedged reads are exact from many threads.

Hedged reads count on the threads that run them and the watchdog on its own, so the
counters of one database are bumped from several threads at once; ``status()`` must show
every bump. The switch interval is cut to a microsecond while hammering, so that threads
interleave as often as the interpreter allows.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from faulttol_redis import DatabaseConfig, FailoverProvider, MultiDbConfig
from faulttol_redis.testing import RedisServer

THREADS = 8
BUMPS = 5_000


@pytest.fixture
def fast_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _hammer(*targets: object) -> None:
    start = threading.Barrier(THREADS)

    def work() -> None:
        start.wait()
        for _ in range(BUMPS):
            for bump in targets:
                bump()  # type: ignore[operator]

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_counters_bumped_from_many_threads_are_exact(
    redis_server: RedisServer, fast_switching: None,
) -> None:
    provider = FailoverProvider(MultiDbConfig([DatabaseConfig("127.0.0.1", redis_server.port)]))
    try:
        db = provider.ordered_provider.slot(1).target
        _hammer(db.count_hedge_sent, db.count_hedge_win, db.count_hang_detection)
        row = provider.status()[0]
        expected = THREADS * BUMPS
        assert (row["hedges_sent"], row["hedge_wins"], row["hang_detections"]) == (
            expected, expected, expected)
    finally:
        provider.close()


async def test_asyncio_database_counters_are_exact_from_threads(
    redis_server: RedisServer, fast_switching: None,
) -> None:
    import faulttol_redis.asyncio

    provider = faulttol_redis.asyncio.FailoverProvider(
        MultiDbConfig([DatabaseConfig("127.0.0.1", redis_server.port)]))
    try:
        db = provider.ordered_provider.slot(1).target
        _hammer(db.count_hedge_sent, db.count_hedge_win, db.count_hang_detection)
        row = provider.status()[0]
        expected = THREADS * BUMPS
        assert (row["hedges_sent"], row["hedge_wins"], row["hang_detections"]) == (
            expected, expected, expected)
    finally:
        await provider.aclose()
