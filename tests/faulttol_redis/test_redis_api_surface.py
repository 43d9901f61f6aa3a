"""Every public member of ``redis.Redis`` / ``redis.asyncio.Redis`` works on the failover client
or raises a clear error saying why, against real redis-server processes.

Commands (the members redis-py's command mixins define) are covered by the other suites; this
one walks the rest: ``dir()`` of a plain redis-py client, minus the command mixins' names. Each
such member has an entry in ``SYNC_MEMBERS`` / ``ASYNC_MEMBERS`` with a check that uses it on a
``FailoverRedis`` over two databases. A member that a new redis-py adds makes
``test_every_public_member_is_classified`` fail until it gets an entry here (and, if needed, an
implementation in the client).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.retry
from redis.backoff import NoBackoff

import faulttol_redis.asyncio as faulttol_async
from faulttol_redis import ClientClosedError, DatabaseConfig, FailoverRedis, MultiDbConfig
from faulttol_redis.testing import RedisServer

Servers = Callable[[int], list[RedisServer]]

# redis-py marks its HIMPORT helpers experimental: calling them is what these tests do.
pytestmark = pytest.mark.filterwarnings("ignore:Call to experimental method himport")

TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def config_for(servers: list[RedisServer], **client_kwargs: Any) -> MultiDbConfig:
    return MultiDbConfig(
        [
            DatabaseConfig("127.0.0.1", s.port, name=f"db{i}",
                           client_kwargs={**TIMEOUTS, **client_kwargs})
            for i, s in enumerate(servers, start=1)
        ],
        health_check_interval=0.2,
        health_check_probe_delay=0.01,
        health_check_timeout=0.5,
    )


def command_names(cls: type) -> set[str]:
    """Names defined by redis-py's command mixins (``redis.commands.*``) in ``cls``'s MRO."""
    names: set[str] = set()
    for base in cls.__mro__:
        if base.__module__.startswith("redis.commands"):
            names.update(n for n in vars(base) if not n.startswith("_"))
    return names


def non_command_members(instance: object) -> set[str]:
    """Public members of a redis-py client (instance attributes included), commands aside."""
    public = {n for n in dir(instance) if not n.startswith("_")}
    return public - command_names(type(instance))


def sync_members() -> set[str]:
    return non_command_members(redis.Redis(host="127.0.0.1", port=1))  # no I/O


def async_members() -> set[str]:
    return non_command_members(redis.asyncio.Redis(host="127.0.0.1", port=1))  # no I/O


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def retries_of(retry: Any) -> int:
    get = getattr(retry, "get_retries", None)
    return int(get() if get is not None else retry._retries)


# --- sync -----------------------------------------------------------------------------------


@dataclass
class Env:
    client: FailoverRedis
    servers: list[RedisServer]

    def direct(self, index: int) -> redis.Redis:
        """A plain client of database ``index`` (1-based), to look at what happened."""
        return self.servers[index - 1].client()


SyncCheck = Callable[[Env], None]


def s_auto_close_connection_pool(env: Env) -> None:
    assert env.client.auto_close_connection_pool is False  # the provider owns the pools


def s_client(env: Env) -> None:
    child = env.client.client()
    assert isinstance(child, FailoverRedis) and child is not env.client
    assert child.provider is env.client.provider
    assert child.set("k", "v") is True
    child.close()  # closes the child only
    assert env.client.get("k") == b"v"
    env.client.provider.set_active_index(2)
    other = env.client.client()
    assert other.set("k2", "v2") is True
    assert env.direct(2).get("k2") == b"v2"  # it follows the provider's switches


def s_close(env: Env) -> None:
    env.client.close()
    with pytest.raises(ClientClosedError):
        env.client.ping()


def s_connection(env: Env) -> None:
    assert env.client.connection is None  # no pinned connection


def s_connection_pool(env: Env) -> None:
    assert env.client.connection_pool.connection_kwargs["port"] == env.servers[0].port
    env.client.provider.set_active_index(2)
    assert env.client.connection_pool.connection_kwargs["port"] == env.servers[1].port


def s_execute_command(env: Env) -> None:
    assert env.client.execute_command("SET", "k", "v") is True
    assert env.client.execute_command("GET", "k") == b"v"


def s_from_pool(env: Env) -> None:
    pool = redis.ConnectionPool(host="127.0.0.1", port=env.servers[0].port)
    with pytest.raises(NotImplementedError, match=r"from_config\(MultiDbConfig"):
        FailoverRedis.from_pool(pool)
    pool.disconnect()


def s_from_url(env: Env) -> None:
    with pytest.raises(NotImplementedError, match=r"from_config\(MultiDbConfig"):
        FailoverRedis.from_url(env.servers[0].url)


def s_get_cache(env: Env) -> None:
    # No client-side cache configured (redis-py's needs Redis >= 7.4): None, as the
    # active database's client says.
    assert env.client.get_cache() is None
    assert env.client.provider.client().get_cache() is None


def s_get_connection_kwargs(env: Env) -> None:
    assert env.client.get_connection_kwargs()["port"] == env.servers[0].port
    env.client.provider.set_active_index(2)
    assert env.client.get_connection_kwargs()["port"] == env.servers[1].port


def s_get_encoder(env: Env) -> None:
    assert env.client.get_encoder().encode(1) == b"1"


def s_get_retry(env: Env) -> None:
    retry = env.client.get_retry()
    assert isinstance(retry, redis.retry.Retry)
    assert retries_of(retry) == 0  # the databases' own retries are off
    assert retry is env.client.provider.client().get_retry()


def s_himport_prepare(env: Env) -> None:
    assert env.client.himport_prepare("fs", ["a", "b"]) is True
    for i in (1, 2):  # on every database, so HIMPORT SET works after a switch
        assert "fs" in env.client.provider.client(i).himport_registry


def s_himport_registry(env: Env) -> None:
    env.client.himport_prepare("fs", ["a"])
    assert "fs" in env.client.himport_registry
    assert env.client.himport_registry is env.client.provider.client().himport_registry


def s_himport_discard(env: Env) -> None:
    env.client.himport_prepare("fs", ["a"])
    assert env.client.himport_discard("fs") == 1
    assert env.client.himport_discard("fs") == 0
    for i in (1, 2):
        assert "fs" not in env.client.provider.client(i).himport_registry


def s_himport_discard_all(env: Env) -> None:
    env.client.himport_prepare("one", ["a"])
    env.client.himport_prepare("two", ["b"])
    assert env.client.himport_discard_all() == 2
    for i in (1, 2):
        assert len(env.client.provider.client(i).himport_registry) == 0


def s_keyspace_notifications(env: Env) -> None:
    for i in (1, 2):
        env.direct(i).config_set("notify-keyspace-events", "KEA")
    notifications = env.client.keyspace_notifications()
    try:
        notifications.subscribe_keyspace("ks:*")
        found: list[Any] = []

        def arrived() -> bool:
            env.client.set("ks:1", "v")
            note = notifications.get_message(timeout=0.1)
            if note is not None:
                found.append(note)
            return bool(found)

        assert wait_until(arrived)
        assert found[0].key in ("ks:1", b"ks:1")
    finally:
        notifications.close()


def s_load_external_module(env: Env) -> None:
    env.client.load_external_module("answer", lambda: 42)
    assert env.client.answer() == 42  # type: ignore[attr-defined]


def s_lock(env: Env) -> None:
    with env.client.lock("lk", timeout=5):
        assert env.direct(1).get("lk") is not None
    assert env.direct(1).get("lk") is None


def s_monitor(env: Env) -> None:
    with env.client.monitor() as monitor:
        env.client.set("monitored", "1")
        for _ in range(50):  # health-check PINGs may come first
            if "monitored" in monitor.next_command()["command"]:
                break
        else:
            pytest.fail("MONITOR never showed the SET")


def s_parse_response(env: Env) -> None:
    pool = env.client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command("PING")
        assert env.client.parse_response(conn, "PING") is True  # the PING callback ran
    finally:
        pool.release(conn)


def s_pipeline(env: Env) -> None:
    pipe = env.client.pipeline()
    pipe.set("a", 1).get("a")
    assert pipe.execute() == [True, b"1"]


def s_pubsub(env: Env) -> None:
    pubsub = env.client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe("chan")
        got: list[Any] = []

        def arrived() -> bool:
            env.direct(1).publish("chan", "hello")
            message = pubsub.get_message(timeout=0.1)
            if message is not None:
                got.append(message)
            return bool(got)

        assert wait_until(arrived)
        assert got[0]["data"] == b"hello"
    finally:
        pubsub.close()


def s_response_callbacks(env: Env) -> None:
    callbacks = env.client.response_callbacks
    assert callbacks is env.client.provider.client().response_callbacks
    assert "PING" in callbacks


def s_set_response_callback(env: Env) -> None:
    env.client.set_response_callback("GET", lambda r, **o: None if r is None else b"cb:" + r)
    env.client.set("k", "v")
    assert env.client.get("k") == b"cb:v"
    env.client.provider.set_active_index(2)  # on every database
    env.client.set("k", "w")
    assert env.client.get("k") == b"cb:w"


def s_set_retry(env: Env) -> None:
    with pytest.raises(NotImplementedError, match=r"MultiDbConfig\(retry="):
        env.client.set_retry(redis.retry.Retry(NoBackoff(), 3))
    for i in (1, 2):  # nothing changed: the failover retry is still the only one
        assert retries_of(env.client.provider.client(i).get_retry()) == 0


def s_single_connection_client(env: Env) -> None:
    assert env.client.single_connection_client is False


def s_single_connection_lock(env: Env) -> None:
    with env.client.single_connection_lock:  # there, but nothing needs it
        assert env.client.ping() is True


def s_transaction(env: Env) -> None:
    def increment(pipe: Any) -> None:
        value = int(pipe.get("t") or 0)
        pipe.multi()
        pipe.set("t", value + 1)

    assert env.client.transaction(increment, "t") == [True]
    assert env.client.transaction(increment, "t") == [True]
    assert env.direct(1).get("t") == b"2"


SYNC_MEMBERS: dict[str, SyncCheck] = {
    "auto_close_connection_pool": s_auto_close_connection_pool,
    "client": s_client,
    "close": s_close,
    "connection": s_connection,
    "connection_pool": s_connection_pool,
    "execute_command": s_execute_command,
    "from_pool": s_from_pool,
    "from_url": s_from_url,
    "get_cache": s_get_cache,
    "get_connection_kwargs": s_get_connection_kwargs,
    "get_encoder": s_get_encoder,
    "get_retry": s_get_retry,
    "himport_discard": s_himport_discard,
    "himport_discard_all": s_himport_discard_all,
    "himport_prepare": s_himport_prepare,
    "himport_registry": s_himport_registry,
    "keyspace_notifications": s_keyspace_notifications,
    "load_external_module": s_load_external_module,
    "lock": s_lock,
    "monitor": s_monitor,
    "parse_response": s_parse_response,
    "pipeline": s_pipeline,
    "pubsub": s_pubsub,
    "response_callbacks": s_response_callbacks,
    "set_response_callback": s_set_response_callback,
    "set_retry": s_set_retry,
    "single_connection_client": s_single_connection_client,
    "single_connection_lock": s_single_connection_lock,
    "transaction": s_transaction,
}


def test_every_public_member_of_redis_is_classified() -> None:
    unknown = sync_members() - SYNC_MEMBERS.keys()
    assert not unknown, (
        f"redis.Redis has public members this suite does not know: {sorted(unknown)}; make "
        "them work on FailoverRedis (or raise a clear error) and add them to SYNC_MEMBERS"
    )


@pytest.fixture
def env(redis_servers: Servers) -> Iterator[Env]:
    servers = redis_servers(2)
    client = FailoverRedis.from_config(config_for(servers))
    try:
        yield Env(client, servers)
    finally:
        client.close()


@pytest.mark.parametrize("name", sorted(SYNC_MEMBERS))
def test_member_works_on_the_failover_client_or_says_why(name: str, env: Env) -> None:
    if name not in sync_members():
        pytest.skip(f"this redis-py's Redis has no {name!r}")
    assert hasattr(env.client, name)
    SYNC_MEMBERS[name](env)


# --- asyncio --------------------------------------------------------------------------------


@dataclass
class AsyncEnv:
    client: faulttol_async.FailoverRedis
    servers: list[RedisServer]

    def direct(self, index: int) -> redis.Redis:
        return self.servers[index - 1].client()


AsyncCheck = Callable[[AsyncEnv], Awaitable[None]]


async def a_aclose(env: AsyncEnv) -> None:
    await env.client.aclose()
    with pytest.raises(ClientClosedError):
        await env.client.ping()


async def a_auto_close_connection_pool(env: AsyncEnv) -> None:
    assert env.client.auto_close_connection_pool is False


async def a_client(env: AsyncEnv) -> None:
    child = env.client.client()
    assert isinstance(child, faulttol_async.FailoverRedis) and child is not env.client
    assert child.provider is env.client.provider
    assert await child.set("k", "v") is True
    await child.aclose()
    assert await env.client.get("k") == b"v"
    await env.client.provider.set_active_index(2)
    other = env.client.client()
    assert await other.set("k2", "v2") is True
    assert env.direct(2).get("k2") == b"v2"


async def a_close(env: AsyncEnv) -> None:
    await env.client.close()  # an alias of aclose()
    with pytest.raises(ClientClosedError):
        await env.client.ping()


async def a_connection(env: AsyncEnv) -> None:
    assert env.client.connection is None


async def a_connection_pool(env: AsyncEnv) -> None:
    await env.client.initialize()
    assert env.client.connection_pool.connection_kwargs["port"] == env.servers[0].port
    await env.client.provider.set_active_index(2)
    assert env.client.connection_pool.connection_kwargs["port"] == env.servers[1].port


async def a_execute_command(env: AsyncEnv) -> None:
    assert await env.client.execute_command("SET", "k", "v") is True
    assert await env.client.execute_command("GET", "k") == b"v"


async def a_from_pool(env: AsyncEnv) -> None:
    pool = redis.asyncio.ConnectionPool(host="127.0.0.1", port=env.servers[0].port)
    with pytest.raises(NotImplementedError, match=r"from_config\(MultiDbConfig"):
        faulttol_async.FailoverRedis.from_pool(pool)
    await pool.disconnect()


async def a_from_url(env: AsyncEnv) -> None:
    with pytest.raises(NotImplementedError, match=r"from_config\(MultiDbConfig"):
        faulttol_async.FailoverRedis.from_url(env.servers[0].url)


async def a_get_connection_kwargs(env: AsyncEnv) -> None:
    await env.client.initialize()
    assert env.client.get_connection_kwargs()["port"] == env.servers[0].port
    await env.client.provider.set_active_index(2)
    assert env.client.get_connection_kwargs()["port"] == env.servers[1].port


async def a_get_encoder(env: AsyncEnv) -> None:
    assert env.client.get_encoder().encode(1) == b"1"


async def a_get_retry(env: AsyncEnv) -> None:
    retry = env.client.get_retry()
    assert retry is not None and retries_of(retry) == 0
    assert retry is env.client.provider.client().get_retry()


async def a_himport_prepare(env: AsyncEnv) -> None:
    assert await env.client.himport_prepare("fs", ["a", "b"]) is True
    for i in (1, 2):
        assert "fs" in env.client.provider.client(i).himport_registry


async def a_himport_registry(env: AsyncEnv) -> None:
    await env.client.himport_prepare("fs", ["a"])
    assert "fs" in env.client.himport_registry


async def a_himport_discard(env: AsyncEnv) -> None:
    await env.client.himport_prepare("fs", ["a"])
    assert await env.client.himport_discard("fs") == 1
    assert await env.client.himport_discard("fs") == 0
    for i in (1, 2):
        assert "fs" not in env.client.provider.client(i).himport_registry


async def a_himport_discard_all(env: AsyncEnv) -> None:
    await env.client.himport_prepare("one", ["a"])
    await env.client.himport_prepare("two", ["b"])
    assert await env.client.himport_discard_all() == 2
    for i in (1, 2):
        assert len(env.client.provider.client(i).himport_registry) == 0


async def a_initialize(env: AsyncEnv) -> None:
    assert not env.client.provider.initialized
    assert await env.client.initialize() is env.client
    assert env.client.provider.initialized


async def a_keyspace_notifications(env: AsyncEnv) -> None:
    for i in (1, 2):
        env.direct(i).config_set("notify-keyspace-events", "KEA")
    notifications = env.client.keyspace_notifications()
    try:
        await notifications.subscribe_keyspace("ks:*")
        note = None
        deadline = time.monotonic() + 5
        while note is None and time.monotonic() < deadline:
            await env.client.set("ks:1", "v")
            note = await notifications.get_message(timeout=0.1)
        assert note is not None and note.key in ("ks:1", b"ks:1")
    finally:
        await notifications.aclose()


async def a_load_external_module(env: AsyncEnv) -> None:
    env.client.load_external_module("answer", lambda: 42)
    assert env.client.answer() == 42  # type: ignore[attr-defined]


async def a_lock(env: AsyncEnv) -> None:
    async with env.client.lock("lk", timeout=5):
        assert env.direct(1).get("lk") is not None
    assert env.direct(1).get("lk") is None


async def a_monitor(env: AsyncEnv) -> None:
    await env.client.initialize()
    async with env.client.monitor() as monitor:
        await env.client.set("monitored", "1")
        for _ in range(50):
            if "monitored" in (await monitor.next_command())["command"]:
                break
        else:
            pytest.fail("MONITOR never showed the SET")


async def a_parse_response(env: AsyncEnv) -> None:
    await env.client.initialize()
    pool = env.client.connection_pool
    conn = await pool.get_connection()
    try:
        await conn.send_command("PING")
        assert await env.client.parse_response(conn, "PING") is True
    finally:
        await pool.release(conn)


async def a_pipeline(env: AsyncEnv) -> None:
    pipe = env.client.pipeline()
    pipe.set("a", 1).get("a")
    assert await pipe.execute() == [True, b"1"]


async def a_pubsub(env: AsyncEnv) -> None:
    pubsub = env.client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe("chan")
        message = None
        deadline = time.monotonic() + 5
        while message is None and time.monotonic() < deadline:
            env.direct(1).publish("chan", "hello")
            message = await pubsub.get_message(timeout=0.1)
        assert message is not None and message["data"] == b"hello"
    finally:
        await pubsub.aclose()


async def a_response_callbacks(env: AsyncEnv) -> None:
    assert env.client.response_callbacks is env.client.provider.client().response_callbacks
    assert "PING" in env.client.response_callbacks


async def a_set_response_callback(env: AsyncEnv) -> None:
    env.client.set_response_callback("GET", lambda r, **o: None if r is None else b"cb:" + r)
    await env.client.set("k", "v")
    assert await env.client.get("k") == b"cb:v"
    await env.client.provider.set_active_index(2)
    await env.client.set("k", "w")
    assert await env.client.get("k") == b"cb:w"


async def a_set_retry(env: AsyncEnv) -> None:
    with pytest.raises(NotImplementedError, match=r"MultiDbConfig\(retry="):
        env.client.set_retry(redis.asyncio.retry.Retry(NoBackoff(), 3))
    for i in (1, 2):
        assert retries_of(env.client.provider.client(i).get_retry()) == 0


async def a_single_connection_client(env: AsyncEnv) -> None:
    assert env.client.single_connection_client is False


async def a_transaction(env: AsyncEnv) -> None:
    async def increment(pipe: Any) -> None:
        value = int(await pipe.get("t") or 0)
        pipe.multi()
        pipe.set("t", value + 1)

    assert await env.client.transaction(increment, "t") == [True]
    assert await env.client.transaction(increment, "t") == [True]
    assert env.direct(1).get("t") == b"2"


ASYNC_MEMBERS: dict[str, AsyncCheck] = {
    "aclose": a_aclose,
    "auto_close_connection_pool": a_auto_close_connection_pool,
    "client": a_client,
    "close": a_close,
    "connection": a_connection,
    "connection_pool": a_connection_pool,
    "execute_command": a_execute_command,
    "from_pool": a_from_pool,
    "from_url": a_from_url,
    "get_connection_kwargs": a_get_connection_kwargs,
    "get_encoder": a_get_encoder,
    "get_retry": a_get_retry,
    "himport_discard": a_himport_discard,
    "himport_discard_all": a_himport_discard_all,
    "himport_prepare": a_himport_prepare,
    "himport_registry": a_himport_registry,
    "initialize": a_initialize,
    "keyspace_notifications": a_keyspace_notifications,
    "load_external_module": a_load_external_module,
    "lock": a_lock,
    "monitor": a_monitor,
    "parse_response": a_parse_response,
    "pipeline": a_pipeline,
    "pubsub": a_pubsub,
    "response_callbacks": a_response_callbacks,
    "set_response_callback": a_set_response_callback,
    "set_retry": a_set_retry,
    "single_connection_client": a_single_connection_client,
    "transaction": a_transaction,
}


def test_every_public_member_of_redis_asyncio_is_classified() -> None:
    unknown = async_members() - ASYNC_MEMBERS.keys()
    assert not unknown, (
        f"redis.asyncio.Redis has public members this suite does not know: {sorted(unknown)}; "
        "make them work on the asyncio FailoverRedis (or raise a clear error) and add them "
        "to ASYNC_MEMBERS"
    )


@pytest.fixture
async def async_env(redis_servers: Servers) -> AsyncIterator[AsyncEnv]:
    servers = redis_servers(2)
    client = faulttol_async.FailoverRedis.from_config(config_for(servers))
    try:
        yield AsyncEnv(client, servers)
    finally:
        await client.aclose()


@pytest.mark.parametrize("name", sorted(ASYNC_MEMBERS))
async def test_async_member_works_on_the_failover_client_or_says_why(
    name: str, async_env: AsyncEnv,
) -> None:
    if name not in async_members():
        pytest.skip(f"this redis-py's asyncio Redis has no {name!r}")
    assert hasattr(async_env.client, name)
    await ASYNC_MEMBERS[name](async_env)


def test_sync_and_async_clients_have_the_same_extra_members() -> None:
    """Beyond what redis-py's own classes differ in, the two failover clients match."""
    def extras(cls: type, base: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")} - set(dir(base))

    sync_extra = extras(FailoverRedis, redis.Redis)
    async_extra = extras(faulttol_async.FailoverRedis, redis.asyncio.Redis)
    assert sync_extra == async_extra, sync_extra ^ async_extra
    for name in ("client", "pipeline", "pubsub", "from_config"):
        assert inspect.signature(getattr(FailoverRedis, name)) == inspect.signature(
            getattr(faulttol_async.FailoverRedis, name)
        ), name
