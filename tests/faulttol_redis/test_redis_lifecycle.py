"""Closing the failover clients (sync and asyncio) against real redis-server processes.

After ``close()`` / ``aclose()`` every call raises :class:`faulttol_redis.ClientClosedError`
(a ``redis.exceptions.ConnectionError``) without touching the network; commands racing the
close end with redis-py exceptions only; the client's pubsubs and WATCHing pipelines are
closed for good; nothing opens a socket afterwards. "No new socket" is checked on the servers:
``total_connections_received`` (INFO stats) counts every connection a server ever accepted.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio

import faulttol_redis
import faulttol_redis.asyncio as faulttol_async
from faulttol_redis import (
    ClientClosedError,
    DatabaseConfig,
    FailoverRedis,
    MultiDbConfig,
)
from faulttol_redis.testing import RedisServer

Servers = Callable[[int], list[RedisServer]]

TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def config_for(servers: list[RedisServer], **kwargs: Any) -> MultiDbConfig:
    kwargs.setdefault("health_check_interval", 0.2)
    kwargs.setdefault("health_check_probe_delay", 0.01)
    kwargs.setdefault("health_check_timeout", 0.3)
    return MultiDbConfig(
        [
            DatabaseConfig("127.0.0.1", s.port, name=f"db{i}", client_kwargs=dict(TIMEOUTS))
            for i, s in enumerate(servers, start=1)
        ],
        **kwargs,
    )


class Inspector:
    """A plain redis-py client per server (one connection each, opened at once) that reads
    what the servers see: connected clients, connections accepted so far, subscribers."""

    def __init__(self, servers: list[RedisServer]) -> None:
        self.clients = [s.client() for s in servers]
        for c in self.clients:
            c.ping()  # its own connection exists before any baseline is taken

    def accepted(self) -> list[int]:
        """Connections each server accepted since it started (ours included, once)."""
        return [int(c.info("stats")["total_connections_received"]) for c in self.clients]

    def connected(self) -> list[int]:
        """Clients connected to each server now, not counting the inspector."""
        return [len(c.client_list()) - 1 for c in self.clients]

    def wait_disconnected(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected() == [0] * len(self.clients):
                return True
            time.sleep(0.01)
        return self.connected() == [0] * len(self.clients)


READS = frozenset({"read_response", "can_read", "_read_from_socket", "read", "readline"})
"""Functions a pubsub reader is in while it waits for the server (sync and asyncio)."""


def thread_blocked_in_read(thread: threading.Thread) -> bool:
    """Whether ``thread`` is waiting in a socket read of redis-py right now."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name in READS:
            return True
        frame = frame.f_back
    return False


def task_waiting_in_read(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` is suspended in a socket read of redis.asyncio right now (follows
    the chain of awaited coroutines, which ``Task.get_stack()`` does not)."""
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is not None and frame.f_code.co_name in READS:
            return True
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return False


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --- the error ------------------------------------------------------------------------------


def test_client_closed_error_is_an_exported_redis_connection_error() -> None:
    assert issubclass(ClientClosedError, redis.exceptions.ConnectionError)
    assert not issubclass(ClientClosedError, faulttol_redis.TemporaryUnavailableError)
    assert not issubclass(ClientClosedError, faulttol_redis.NoValidDatabaseError)
    assert "ClientClosedError" in faulttol_redis.__all__
    assert faulttol_async.ClientClosedError is ClientClosedError
    assert "ClientClosedError" in faulttol_async.__all__


# --- sync -----------------------------------------------------------------------------------


def test_every_call_after_close_raises_client_closed_error_without_io(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = FailoverRedis.from_config(config_for(servers))
    client.set("k", "v")
    pipe = client.pipeline()
    pipe.set("p", 1)  # buffered before the close, executed after
    client.close()
    assert inspector.wait_disconnected()
    before = inspector.accepted()
    calls: list[Callable[[], object]] = [
        lambda: client.get("k"),
        lambda: client.set("k", "w"),
        lambda: client.execute_command("PING"),
        lambda: client.mget(["k", "x"]),
        pipe.execute,
        lambda: client.pipeline().set("a", 1).execute(),
        lambda: client.pipeline(transaction=False).get("a").execute(),
        lambda: client.transaction(lambda p: p.incr("t"), "t"),
        lambda: client.pubsub().subscribe("c"),
        lambda: client.lock("l", timeout=1).acquire(blocking=False),
        lambda: client.register_script("return 1")(),
        client.monitor,
        client.client,
        client.__enter__,
    ]
    for call in calls:
        with pytest.raises(ClientClosedError, match="closed"):
            call()
    assert inspector.accepted() == before, "a closed client opened connections"
    assert inspector.connected() == [0, 0]
    client.close()  # idempotent


def test_closing_the_provider_closes_the_clients_on_it(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = FailoverRedis.from_config(config_for(servers))
    client.set("k", "v")
    client.provider.close()
    assert inspector.wait_disconnected()
    before = inspector.accepted()
    with pytest.raises(ClientClosedError):
        client.get("k")
    with pytest.raises(ClientClosedError):
        client.pipeline().get("k").execute()
    assert inspector.accepted() == before
    client.close()


def test_threads_running_commands_while_close_runs_see_only_redis_errors(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = FailoverRedis.from_config(config_for(servers))
    workers = 8
    calls_after_close = 25
    errors: list[BaseException] = []  # every exception any call raised
    after_close: list[BaseException | str] = []  # outcomes of calls started after close()
    done = [0] * workers
    closed = threading.Event()
    drained = threading.Barrier(workers + 1, timeout=30)  # in-flight calls have ended
    measured = threading.Barrier(workers + 1, timeout=30)  # the baseline is taken

    def one_call(i: int, n: int) -> None:
        kind = n % 5
        if kind == 0:
            client.set(f"k{i}", n)
        elif kind == 1:
            client.get(f"k{i}")
        elif kind == 2:
            client.incr(f"c{i}")
        elif kind == 3:
            client.pipeline(transaction=False).set(f"p{i}", n).get(f"p{i}").execute()
        else:
            client.pipeline().incr(f"t{i}").execute()

    def worker(i: int) -> None:
        n = 0
        while not closed.is_set():  # until close() has returned: race it
            try:
                one_call(i, n)
            except Exception as exc:
                errors.append(exc)
            n += 1
            done[i] += 1
        drained.wait()
        measured.wait()
        for m in range(calls_after_close):
            try:
                one_call(i, m)
                after_close.append("succeeded")
            except Exception as exc:
                errors.append(exc)
                after_close.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    assert wait_for(lambda: min(done) >= 20, timeout=20)
    client.close()
    closed.set()
    drained.wait()  # every call that raced the close has returned or raised
    assert inspector.wait_disconnected(), inspector.connected()
    before = inspector.accepted()
    measured.wait()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    not_redis = [e for e in errors if not isinstance(e, redis.exceptions.RedisError)]
    assert not_redis == [], not_redis[:5]
    assert len(after_close) == workers * calls_after_close
    assert all(isinstance(o, ClientClosedError) for o in after_close), after_close[:5]
    assert inspector.accepted() == before, "calls after close() opened connections"
    assert inspector.connected() == [0, 0]


def test_close_closes_the_pubsubs_for_good(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = FailoverRedis.from_config(config_for(servers))
    ps = client.pubsub()
    ps.subscribe("chan")
    assert ps.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
    assert inspector.clients[0].pubsub_numsub("chan") == [(b"chan", 1)]
    client.close()
    assert inspector.wait_disconnected()
    before = inspector.accepted()
    with pytest.raises(ClientClosedError):
        ps.get_message(timeout=0.2)
    with pytest.raises(ClientClosedError):
        ps.subscribe("other")
    with pytest.raises(ClientClosedError):
        ps.ping()
    with pytest.raises(ClientClosedError):
        next(iter(ps.listen()))
    with pytest.raises(ClientClosedError):
        ps.run_in_thread(sleep_time=0.01)
    assert inspector.accepted() == before, "a closed pubsub reconnected"
    assert inspector.clients[0].pubsub_numsub("chan") == [(b"chan", 0)]
    ps.close()  # idempotent


def test_close_wakes_a_pubsub_reader_with_client_closed_error(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = FailoverRedis.from_config(config_for(servers))
    ps = client.pubsub(ignore_subscribe_messages=True)
    ps.subscribe("chan")
    outcome: list[BaseException | object] = []
    reading = threading.Event()

    def reader() -> None:
        try:
            while True:
                reading.set()
                ps.get_message(timeout=10)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    assert reading.wait(5)
    assert wait_for(lambda: thread_blocked_in_read(thread))
    client.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosedError), outcome
    assert inspector.wait_disconnected()


def test_close_stops_run_in_thread_workers_quietly(
    redis_servers: Servers, monkeypatch: pytest.MonkeyPatch,
) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    uncaught: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: uncaught.append(args.exc_value))
    client = FailoverRedis.from_config(config_for(servers))
    got: list[Any] = []
    ps = client.pubsub(ignore_subscribe_messages=True)
    ps.subscribe(chan=got.append)
    worker = ps.run_in_thread(sleep_time=0.05, daemon=True)
    assert wait_for(lambda: inspector.clients[0].publish("chan", "x") == 1)
    assert wait_for(lambda: len(got) >= 1)
    client.close()
    worker.join(5)
    assert not worker.is_alive()
    assert uncaught == []
    assert inspector.wait_disconnected()


def test_close_releases_a_watching_pipeline_for_good(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = FailoverRedis.from_config(config_for(servers))
    client.set("w", 1)
    pipe = client.pipeline()
    pipe.watch("w")  # holds a connection of database 1
    assert pipe.get("w") == b"1"
    client.close()
    assert inspector.wait_disconnected()
    before = inspector.accepted()
    with pytest.raises(ClientClosedError):
        pipe.get("w")
    pipe.multi()
    pipe.set("w", 2)
    with pytest.raises(ClientClosedError):
        pipe.execute()
    with pytest.raises(ClientClosedError):
        pipe.watch("w")
    assert inspector.accepted() == before
    assert inspector.clients[0].get("w") == b"1"


def test_a_child_client_closes_alone_and_follows_its_parent(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    client = FailoverRedis.from_config(config_for(servers))
    child = client.client()
    child_ps = child.pubsub()
    child_ps.subscribe("c")
    child.close()  # closes the child (and its pubsub), not the provider
    with pytest.raises(ClientClosedError):
        child.get("k")
    with pytest.raises(ClientClosedError):
        child_ps.get_message(timeout=0.1)
    assert client.set("k", "v") is True
    other = client.client()
    assert other.get("k") == b"v"
    client.close()  # closes the provider: every client on it is closed
    with pytest.raises(ClientClosedError):
        other.get("k")


# --- asyncio --------------------------------------------------------------------------------


async def test_async_every_call_after_aclose_raises_client_closed_error(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = faulttol_async.FailoverRedis.from_config(config_for(servers))
    await client.set("k", "v")
    pipe = client.pipeline()
    pipe.set("p", 1)
    await client.aclose()
    assert inspector.wait_disconnected()
    before = inspector.accepted()
    with pytest.raises(ClientClosedError, match="closed"):
        await client.get("k")
    with pytest.raises(ClientClosedError):
        await client.execute_command("PING")
    with pytest.raises(ClientClosedError):
        await pipe.execute()
    with pytest.raises(ClientClosedError):
        await client.pipeline().set("a", 1).execute()
    with pytest.raises(ClientClosedError):
        await client.transaction(lambda p: p.incr("t"), "t")
    with pytest.raises(ClientClosedError):
        await client.pubsub().subscribe("c")
    with pytest.raises(ClientClosedError):
        await client.initialize()
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    with pytest.raises(ClientClosedError):
        client.client()
    assert inspector.accepted() == before, "a closed client opened connections"
    await client.aclose()  # idempotent
    await client.close()


async def test_async_client_closed_before_first_use_raises_client_closed_error(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    before = inspector.accepted()
    client = faulttol_async.FailoverRedis.from_config(config_for(servers))
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.get("k")
    with pytest.raises(ClientClosedError):
        await client.pipeline().get("k").execute()
    with pytest.raises(ClientClosedError):
        await client.pubsub().subscribe("c")
    with pytest.raises(ClientClosedError):
        await client.initialize()
    assert inspector.accepted() == before


async def test_async_closing_the_provider_closes_the_clients_on_it(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = faulttol_async.FailoverRedis.from_config(config_for(servers))
    await client.set("k", "v")
    await client.provider.aclose()
    assert inspector.wait_disconnected()
    before = inspector.accepted()
    with pytest.raises(ClientClosedError):
        await client.get("k")
    assert inspector.accepted() == before
    await client.aclose()


async def test_async_tasks_running_commands_while_aclose_runs_see_only_redis_errors(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = faulttol_async.FailoverRedis.from_config(config_for(servers))
    tasks_n = 20
    errors: list[BaseException] = []
    after_close: list[BaseException | str] = []
    done = [0] * tasks_n
    closed = asyncio.Event()
    measured = asyncio.Event()
    drained = 0

    async def one_call(i: int, n: int) -> None:
        kind = n % 4
        if kind == 0:
            await client.set(f"k{i}", n)
        elif kind == 1:
            await client.get(f"k{i}")
        elif kind == 2:
            await client.pipeline(transaction=False).set(f"p{i}", n).get(f"p{i}").execute()
        else:
            await client.pipeline().incr(f"t{i}").execute()

    async def worker(i: int) -> None:
        nonlocal drained
        n = 0
        while not closed.is_set():
            try:
                await one_call(i, n)
            except Exception as exc:
                errors.append(exc)
            n += 1
            done[i] += 1
            await asyncio.sleep(0)  # a call that fails at once does not yield: let aclose() run
        drained += 1
        await measured.wait()
        for m in range(25):
            try:
                await one_call(i, m)
                after_close.append("succeeded")
            except Exception as exc:
                errors.append(exc)
                after_close.append(exc)

    tasks = [asyncio.create_task(worker(i)) for i in range(tasks_n)]
    deadline = time.monotonic() + 20
    while min(done) < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert min(done) >= 10
    await client.aclose()
    closed.set()
    while drained < tasks_n and time.monotonic() < deadline + 10:
        await asyncio.sleep(0.01)
    assert drained == tasks_n
    assert inspector.wait_disconnected(), inspector.connected()
    before = inspector.accepted()
    measured.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    not_redis = [e for e in errors if not isinstance(e, redis.exceptions.RedisError)]
    assert not_redis == [], not_redis[:5]
    assert len(after_close) == tasks_n * 25
    assert all(isinstance(o, ClientClosedError) for o in after_close), after_close[:5]
    assert inspector.accepted() == before, "calls after aclose() opened connections"
    assert inspector.connected() == [0, 0]


async def test_async_aclose_closes_the_pubsubs_for_good(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = faulttol_async.FailoverRedis.from_config(config_for(servers))
    ps = client.pubsub()
    await ps.subscribe("chan")
    message = await ps.get_message(timeout=2)
    assert message is not None and message["type"] == "subscribe"
    await client.aclose()
    assert inspector.wait_disconnected()
    before = inspector.accepted()
    with pytest.raises(ClientClosedError):
        await ps.get_message(timeout=0.2)
    with pytest.raises(ClientClosedError):
        await ps.subscribe("other")
    with pytest.raises(ClientClosedError):
        await ps.ping()
    assert inspector.accepted() == before, "a closed pubsub reconnected"
    assert inspector.clients[0].pubsub_numsub("chan") == [(b"chan", 0)]
    await ps.aclose()  # idempotent


async def test_async_aclose_wakes_a_pubsub_reader_with_client_closed_error(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = faulttol_async.FailoverRedis.from_config(config_for(servers))
    ps = client.pubsub(ignore_subscribe_messages=True)
    await ps.subscribe("chan")

    async def reader() -> None:
        while True:
            await ps.get_message(timeout=10)

    task = asyncio.create_task(reader())
    deadline = time.monotonic() + 5
    while not task_waiting_in_read(task) and time.monotonic() < deadline:
        await asyncio.sleep(0)
    assert task_waiting_in_read(task)
    await client.aclose()
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done
    assert isinstance(task.exception(), ClientClosedError), task.exception()


async def test_async_aclose_releases_a_watching_pipeline_for_good(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    inspector = Inspector(servers)
    client = faulttol_async.FailoverRedis.from_config(config_for(servers))
    await client.set("w", 1)
    pipe: Any = client.pipeline()
    await pipe.watch("w")
    assert await pipe.get("w") == b"1"
    await client.aclose()
    assert inspector.wait_disconnected()
    before = inspector.accepted()
    with pytest.raises(ClientClosedError):
        await pipe.get("w")
    pipe.multi()
    pipe.set("w", 2)
    with pytest.raises(ClientClosedError):
        await pipe.execute()
    assert inspector.accepted() == before
    assert inspector.clients[0].get("w") == b"1"


async def test_async_child_client_closes_alone_and_follows_its_parent(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = faulttol_async.FailoverRedis.from_config(config_for(servers))
    child = client.client()
    assert isinstance(child, faulttol_async.FailoverRedis)
    await child.aclose()
    with pytest.raises(ClientClosedError):
        await child.get("k")
    assert await client.set("k", "v") is True
    other = client.client()
    assert await other.get("k") == b"v"
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await other.get("k")
