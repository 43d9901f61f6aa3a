"""Switch events, forced switches, stale connections and the asyncio provider's sync-only entry
points, against real ``redis-server`` processes with real faults (SIGKILL, restart)."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from faulttol_redis import (
    DatabaseConfig,
    FailoverProvider,
    FailoverRedis,
    MultiDbConfig,
    SwitchEvent,
    SwitchReason,
)
from faulttol_redis.asyncio import FailoverProvider as AsyncFailoverProvider
from faulttol_redis.asyncio import FailoverRedis as AsyncFailoverRedis
from faulttol_redis.testing import RedisServer

Servers = Callable[[int], list[RedisServer]]
TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def config_for(servers: list[RedisServer], **kwargs: Any) -> MultiDbConfig:
    kwargs.setdefault("health_check_interval", 0.2)
    kwargs.setdefault("health_check_probe_delay", 0.01)
    kwargs.setdefault("health_check_timeout", 0.3)
    dbs = [
        DatabaseConfig("127.0.0.1", s.port, name=f"db{i}", client_kwargs=dict(TIMEOUTS))
        for i, s in enumerate(servers, start=1)
    ]
    return MultiDbConfig(dbs, **kwargs)


def stored(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return None


async def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# --- item 7: events in order, the store holds the final index ---------------------------------


def switcher(provider: FailoverProvider, barrier: threading.Barrier, seed: int) -> None:
    """Force a few switches to random databases, starting together with another thread."""
    rng = random.Random(seed)
    barrier.wait()
    for _ in range(4):
        provider.set_active_index(rng.randint(1, 3), force=True)


def test_concurrent_forced_switches_leave_the_store_holding_the_active_index(
    redis_servers: Servers, tmp_path: Path
) -> None:
    store = tmp_path / "active-index"
    provider = FailoverProvider(config_for(redis_servers(3), active_index_store=store),
                                start_health_checks=False)
    events: list[SwitchEvent] = []
    provider.add_switch_listener(events.append)
    wrong: list[tuple[int, int | None]] = []
    try:
        for trial in range(150):
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=switcher, args=(provider, barrier, trial * 2 + k))
                       for k in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert not any(t.is_alive() for t in threads)
            if stored(store) != provider.active_index:
                wrong.append((provider.active_index, stored(store)))
    finally:
        provider.close()
    assert wrong == []
    assert [(a, b) for a, b in itertools.pairwise(events) if b.previous_index != a.index] == []


# --- item 17: removing the active database is a switch -----------------------------------------


def test_removing_the_active_database_is_published_and_persisted(
    redis_servers: Servers, tmp_path: Path
) -> None:
    store = tmp_path / "active-index"
    provider = FailoverProvider(config_for(redis_servers(3), active_index_store=store),
                                start_health_checks=False)
    events: list[SwitchEvent] = []
    provider.add_switch_listener(events.append)
    try:
        assert provider.active_index == 1
        provider.remove_database(1)  # db2 takes over, and becomes index 1
        assert [d.name for d in provider.databases] == ["db2", "db3"]
        assert provider.active_index == 1
        assert events == [SwitchEvent(1, 1, SwitchReason.MANUAL)]
        assert stored(store) == 1
    finally:
        provider.close()


async def test_asyncio_removing_the_active_database_is_published(
    redis_servers: Servers, tmp_path: Path
) -> None:
    store = tmp_path / "active-index"
    provider = AsyncFailoverProvider(config_for(redis_servers(3), active_index_store=store),
                                     start_health_checks=False)
    events: list[SwitchEvent] = []
    provider.add_switch_listener(events.append)
    try:
        await provider.initialize()
        await provider.remove_database(1)
        assert provider.active_index == 1
        assert [d.name for d in provider.databases] == ["db2", "db3"]
        assert events == [SwitchEvent(1, 1, SwitchReason.MANUAL)]
        assert stored(store) == 1
    finally:
        await provider.aclose()


# --- item 9: a forced switch sticks --------------------------------------------------------------


def test_a_forced_switch_back_to_a_restarted_database_is_not_undone_by_the_next_command(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = FailoverRedis(FailoverProvider(config_for(servers), start_health_checks=False))
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    try:
        client.set("k", 0)
        servers[0].kill()
        assert client.set("k", 1) is True  # fails over: database 1 is marked unhealthy
        assert client.provider.active_index == 2
        servers[0].restart()
        client.provider.set_active_index(1, force=True)
        assert client.set("k", 2) is True
        assert client.provider.active_index == 1
        assert servers[0].client().get("k") == b"2"
        assert events == [
            SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK),
            SwitchEvent(2, 1, SwitchReason.MANUAL),
        ]
    finally:
        client.close()


async def test_asyncio_forced_switch_back_to_a_restarted_database_is_not_undone(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    provider = AsyncFailoverProvider(config_for(servers), start_health_checks=False)
    client = AsyncFailoverRedis(provider)
    events: list[SwitchEvent] = []
    provider.add_switch_listener(events.append)
    try:
        await client.set("k", 0)
        servers[0].kill()
        assert await client.set("k", 1) is True
        assert provider.active_index == 2
        servers[0].restart()
        await provider.set_active_index(1, force=True)
        assert await client.set("k", 2) is True
        assert provider.active_index == 1
        assert servers[0].client().get("k") == b"2"
        assert events == [
            SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK),
            SwitchEvent(2, 1, SwitchReason.MANUAL),
        ]
    finally:
        await client.aclose()


# --- item 4: no command on a connection that died while its database was away -----------------


async def fill_pool(provider: AsyncFailoverProvider, index: int, n: int) -> None:
    """Leave ``n`` connected idle connections in database ``index``'s pool. Set-up, not
    what is tested: a handshake slower than the 0.5 s socket timeout (a loaded 2-core CI
    machine) is tried again."""
    pool = provider.client(index).connection_pool
    conns = []
    for _ in range(n):
        for attempt in range(3):
            try:
                conns.append(await pool.get_connection())
                break
            except redis.exceptions.TimeoutError:
                if attempt == 2:
                    raise
    for conn in conns:
        await pool.release(conn)


async def test_asyncio_commands_after_switching_back_to_a_restarted_database_succeed(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    provider = AsyncFailoverProvider(config_for(servers), start_health_checks=False)
    client = AsyncFailoverRedis(provider)
    try:
        await provider.initialize()
        await fill_pool(provider, 1, 10)
        servers[0].kill()
        assert await client.get("x") is None  # fails over to database 2
        assert provider.active_index == 2
        servers[0].restart()
        await provider.set_active_index(1)
        results = await asyncio.gather(*(client.incr("n") for _ in range(10)),
                                       return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert servers[0].client().get("n") == b"10"
    finally:
        await client.aclose()


async def test_asyncio_a_database_back_from_unhealthy_serves_no_command_on_a_dead_connection(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    provider = AsyncFailoverProvider(config_for(servers, health_check_probes=1),
                                     start_health_checks=False)
    client = AsyncFailoverRedis(provider)
    try:
        await provider.initialize()
        await fill_pool(provider, 1, 10)
        servers[0].kill()
        await provider.run_health_checks()  # database 1 unhealthy: fail over
        assert provider.active_index == 2
        servers[0].restart()
        await provider.run_health_checks()  # healthy again
        assert provider.is_healthy(1)
        servers[1].kill()  # fail back over to database 1 through commands
        results = await asyncio.gather(*(client.incr("n") for _ in range(10)),
                                       return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert provider.active_index == 1
        assert servers[0].client().get("n") == b"10"
    finally:
        await client.aclose()


def test_commands_after_switching_back_to_a_restarted_database_succeed(
    redis_servers: Servers,
) -> None:
    """The sync twin (redis-py's sync pool checks a connection on checkout; this guards it)."""
    servers = redis_servers(2)
    client = FailoverRedis(FailoverProvider(config_for(servers), start_health_checks=False))
    try:
        pool = client.provider.client(1).connection_pool
        conns = [pool.get_connection() for _ in range(10)]
        for conn in conns:
            pool.release(conn)
        servers[0].kill()
        assert client.get("x") is None
        assert client.provider.active_index == 2
        servers[0].restart()
        client.provider.set_active_index(1)
        with ThreadPoolExecutor(10) as pool_of_threads:
            results = list(pool_of_threads.map(lambda _: client.incr("n"), range(10)))
        assert sorted(results) == list(range(1, 11))
        assert servers[0].client().get("n") == b"10"
    finally:
        client.close()


# --- item 8: a cancelled switching task does not cut delivery short ---------------------------


async def test_asyncio_listeners_get_the_event_when_the_switching_task_is_cancelled(
    redis_servers: Servers,
) -> None:
    provider = AsyncFailoverProvider(config_for(redis_servers(2)), start_health_checks=False)
    entered = asyncio.Event()
    release = asyncio.Event()
    slow_done: list[SwitchEvent] = []
    later: list[SwitchEvent] = []

    async def slow(event: SwitchEvent) -> None:
        entered.set()
        await release.wait()
        slow_done.append(event)

    provider.add_switch_listener(slow)
    provider.add_switch_listener(later.append)
    try:
        await provider.initialize()
        task = asyncio.create_task(provider.set_active_index(2))
        await asyncio.wait_for(entered.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert provider.active_index == 2
        release.set()
        assert await wait_for(lambda: later != [])
        assert later == [SwitchEvent(1, 2, SwitchReason.MANUAL)]
        assert slow_done == [SwitchEvent(1, 2, SwitchReason.MANUAL)]
        await provider.set_active_index(1)  # delivery goes on normally afterwards
        assert later[-1] == SwitchEvent(2, 1, SwitchReason.MANUAL)
    finally:
        await provider.aclose()


# --- item 15: the asyncio provider's sync-only entry points ----------------------------------


async def test_asyncio_start_on_first_healthy_is_a_coroutine_that_probes_with_check_async(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(3)
    provider = AsyncFailoverProvider(config_for(servers), start_health_checks=False)
    try:
        await provider.initialize()
        servers[0].kill()
        result = provider.start_on_first_healthy()
        assert inspect.isawaitable(result)
        assert await result == 2
        assert provider.active_index == 2
        assert [row["healthy"] for row in provider.status()] == [False, True, True]
    finally:
        await provider.aclose()


async def test_asyncio_sync_only_entry_points_raise_type_error(redis_servers: Servers) -> None:
    provider = AsyncFailoverProvider(config_for(redis_servers(2)), start_health_checks=False)
    try:
        with pytest.raises(TypeError, match="execute_async"):
            provider.execute(lambda db: db)
        with pytest.raises(TypeError, match="execute_with_async"):
            provider.execute_with(lambda db: db)
        assert [row["healthy"] for row in provider.status()] == [True, True]
    finally:
        await provider.aclose()
