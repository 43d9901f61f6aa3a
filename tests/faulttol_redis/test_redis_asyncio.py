"""faulttol_redis.asyncio against real redis-server processes with real faults."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from redis_helpers import requires_redis_7

from faulttol import State
from faulttol.testing import FakeClock
from faulttol_redis import (
    DatabaseConfig,
    MultiDbConfig,
    NoValidDatabaseError,
    PingHealthCheck,
    SwitchEvent,
    SwitchReason,
    TemporaryUnavailableError,
)
from faulttol_redis.asyncio import FailoverProvider, FailoverRedis
from faulttol_redis.testing import RedisServer

Servers = Callable[[int], list[RedisServer]]

TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def db_config(server: RedisServer, name: str, weight: float = 1.0) -> DatabaseConfig:
    return DatabaseConfig("127.0.0.1", server.port, name=name, weight=weight,
                          client_kwargs=dict(TIMEOUTS))


def config_for(servers: list[RedisServer], **kwargs: Any) -> MultiDbConfig:
    kwargs.setdefault("health_check_interval", 0.2)
    kwargs.setdefault("health_check_probe_delay", 0.01)
    kwargs.setdefault("health_check_timeout", 0.3)
    return MultiDbConfig(
        [db_config(s, f"db{i}") for i, s in enumerate(servers, start=1)], **kwargs
    )


Pair = tuple[FailoverRedis, list[RedisServer], list[SwitchEvent]]


@pytest.fixture
async def pair(redis_servers: Servers) -> AsyncIterator[Pair]:
    servers = redis_servers(2)
    client = FailoverRedis.from_config(config_for(servers))
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    try:
        yield client, servers, events
    finally:
        await client.aclose()


async def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` (plain or async) until it is true or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result or time.monotonic() >= deadline:
            return bool(result)
        await asyncio.sleep(0.01)


def started(client: FailoverRedis) -> bool:
    return client.provider.initialized


def other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


def connections(server: RedisServer) -> int:
    """Clients connected to ``server``, not counting the inspecting one."""
    inspector = server.client()
    try:
        return len(inspector.client_list()) - 1
    finally:
        inspector.close()


# --- basics ---------------------------------------------------------------------------------


async def test_from_config_then_a_command_starts_lazily(pair: Pair) -> None:
    client, servers, events = pair
    assert isinstance(client, redis.asyncio.Redis)
    assert not started(client)  # constructing did no I/O
    assert await client.set("k", "v") is True
    assert started(client)
    assert await client.get("k") == b"v"
    assert servers[0].client().get("k") == b"v"
    assert servers[1].client().get("k") is None
    assert client.provider.active_index == 1
    assert events == []


async def test_startup_connects_in_order_to_the_first_healthy(redis_servers: Servers) -> None:
    servers = redis_servers(3)
    servers[0].kill()
    async with FailoverRedis.from_config(config_for(servers)) as client:
        assert client.provider.active_index == 2
        assert await client.set("k", 1) is True
        assert servers[1].client().get("k") == b"1"
        assert [row["healthy"] for row in client.provider.status()] == [False, True, True]


async def test_async_with_initializes_and_closes(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    before = other_tasks()
    async with FailoverRedis.from_config(config_for(servers)) as client:
        assert client.provider.initialized
        assert sorted(t.get_name() for t in other_tasks() - before) == [
            "faulttol-redis-hang-watchdog", "faulttol-redis-health"]
        assert await client.incr("n") == 1
    assert other_tasks() <= before
    assert await wait_for(lambda: connections(servers[0]) == 0)


# --- failover ---------------------------------------------------------------------------------


async def test_sigkill_fails_over_without_application_errors(pair: Pair) -> None:
    client, servers, events = pair
    await client.set("before", 1)
    servers[0].kill()
    started = time.monotonic()
    assert await client.set("after", 2) is True
    elapsed = time.monotonic() - started
    assert client.provider.active_index == 2
    assert servers[1].client().get("after") == b"2"
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
    assert elapsed < 1.0, elapsed


async def test_sigstop_fails_over_within_the_socket_timeout(pair: Pair) -> None:
    client, servers, events = pair
    await client.set("a", 1)
    servers[0].pause()
    started = time.monotonic()
    assert await client.set("b", 2) is True
    elapsed = time.monotonic() - started
    assert client.provider.active_index == 2
    assert servers[1].client().get("b") == b"2"
    assert elapsed < 0.5 + 0.4, elapsed  # socket timeout + a fast probe + a little


async def test_health_task_fails_over_without_traffic(pair: Pair) -> None:
    client, servers, events = pair
    await client.provider.initialize()
    servers[0].kill()
    assert await wait_for(lambda: client.provider.active_index == 2, timeout=3)
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]


async def test_no_automatic_failback_then_manual_failback(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    clock = FakeClock()
    # Health rounds are run by hand on a FakeClock: "no failback" is checked over many rounds
    # and well past the breaker's open wait and any grace period, without sleeping.
    provider = FailoverProvider(config_for(servers), clock=clock, start_health_checks=False)
    client = FailoverRedis(provider)
    events: list[SwitchEvent] = []
    provider.add_switch_listener(events.append)
    try:
        await client.set("w", 0)
        servers[0].kill()
        await client.set("x", 1)
        assert provider.active_index == 2
        servers[0].restart()
        for _ in range(50):  # 50 rounds of 5 s: past the 60 s open wait and the grace period
            clock.advance(5.0)
            await provider.run_health_checks()
            await client.set("y", 2)
        assert provider.is_healthy(1)
        assert provider.active_index == 2
        await provider.set_active_index(1)
        assert provider.active_index == 1
        assert provider.breaker(1).state is State.CLOSED
        await client.set("z", 3)
        assert servers[0].client().get("z") == b"3"
        assert [e.reason for e in events] == [SwitchReason.HEALTH_CHECK, SwitchReason.MANUAL]
    finally:
        await client.aclose()


async def test_manual_switch_to_a_dead_database_is_refused(pair: Pair) -> None:
    client, servers, events = pair
    servers[1].kill()
    with pytest.raises(ValueError, match="unhealthy"):
        await client.provider.set_active_index(2)
    assert client.provider.active_index == 1
    await client.provider.set_active_index(2, force=True)
    assert client.provider.active_index == 2
    with pytest.raises(ValueError):
        await client.provider.set_active_index(3)


async def test_incr_is_never_applied_twice_on_an_ambiguous_timeout(pair: Pair) -> None:
    client, servers, events = pair
    await client.set("n", 0)
    # DEBUG SLEEP blocks the server past the socket timeout after INCR was written
    blocker = asyncio.create_task(asyncio.to_thread(
        servers[0].client().execute_command, "DEBUG", "SLEEP", "1.0"))
    await asyncio.sleep(0.05)
    with pytest.raises(redis.exceptions.TimeoutError):
        await client.incr("n")
    await blocker
    # the INCR ran once on database 1 (after the sleep), never on database 2
    assert servers[0].client().get("n") == b"1"
    assert servers[1].client().get("n") is None


async def test_all_down_temporary_then_permanent_exactly_at_the_window_then_recovery(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    clock = FakeClock()
    # failover_attempts x failover_delay = 1.0 s of the provider's (fake) clock; one probe
    # per check, so no call below moves the clock by itself.
    config = config_for(servers, failover_attempts=2, failover_delay=0.5, health_check_probes=1)
    client = FailoverRedis(FailoverProvider(config, clock=clock, start_health_checks=False))
    try:
        await client.set("k", 0)
        servers[0].kill()
        servers[1].kill()
        with pytest.raises(TemporaryUnavailableError):
            await client.set("k", 1)
        assert clock.monotonic() == 0.0
        clock.advance(0.999)
        with pytest.raises(TemporaryUnavailableError):
            await client.set("k", 1)
        clock.advance(0.001)
        with pytest.raises(NoValidDatabaseError):
            await client.set("k", 1)
        with pytest.raises(NoValidDatabaseError):
            await client.get("k")
        servers[1].restart()
        clock.advance(60.0)  # the breakers' open wait
        await client.provider.run_health_checks()
        assert await client.set("k", 1) is True
        assert client.provider.active_index == 2
        assert servers[1].client().get("k") == b"1"
    finally:
        await client.aclose()


async def test_hundred_tasks_under_failover(pair: Pair) -> None:
    client, servers, events = pair
    await client.set("warm", 1)
    errors: list[BaseException] = []
    done = [0] * 100
    killed = asyncio.Event()

    async def worker(i: int) -> None:
        for n in range(40):
            try:
                await client.set(f"k{i}", n)
                done[i] += 1
            except redis.exceptions.ConnectionError as exc:
                errors.append(exc)
            if i == 0 and n == 10:
                servers[0].kill()
                killed.set()

    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(100))), timeout=30)
    assert killed.is_set()
    assert sum(done) + len(errors) == 100 * 40
    assert errors == []  # SET is replay-safe: no error reaches the application
    assert client.provider.active_index == 2
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
    second = servers[1].client()
    assert all(second.get(f"k{i}") == b"39" for i in range(100))


async def test_no_double_incr_under_failover_with_tasks(pair: Pair) -> None:
    client, servers, events = pair
    ok = [0] * 20
    ambiguous = [0] * 20

    async def worker(i: int) -> None:
        for n in range(50):
            try:
                await client.incr("hits")
                ok[i] += 1
            except redis.exceptions.ConnectionError:
                ambiguous[i] += 1
            if i == 0 and n == 15:
                servers[0].kill()

    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(20))), timeout=30)
    on_second = int(servers[1].client().get("hits") or 0)
    # an ambiguous INCR (at most one per in-flight task) was not replayed; every INCR
    # counted on database 2 was acknowledged exactly once
    assert all(a <= 1 for a in ambiguous)
    assert sum(ok) + sum(ambiguous) == 20 * 50
    assert on_second <= sum(ok)
    assert client.provider.active_index == 2


# --- listeners ------------------------------------------------------------------------------


async def test_coroutine_listeners_are_awaited_in_order_before_the_call_returns(
    pair: Pair,
) -> None:
    client, servers, events = pair
    log: list[str] = []

    async def slow(event: SwitchEvent) -> None:
        log.append("slow:start")
        await asyncio.sleep(0.05)
        log.append(f"slow:end:{event.index}")

    def plain(event: SwitchEvent) -> None:
        log.append(f"plain:{event.index}")

    async def last(event: SwitchEvent) -> None:
        await asyncio.sleep(0)
        log.append(f"last:{event.reason.value}")

    async def broken(event: SwitchEvent) -> None:
        raise RuntimeError("listener bug")

    for listener in (slow, broken, plain, last):
        client.provider.add_switch_listener(listener)
    await client.set("k", 1)
    servers[0].kill()
    assert await client.set("k", 2) is True  # the listener's exception is not raised
    assert log == ["slow:start", "slow:end:2", "plain:2", "last:HEALTH_CHECK"]
    log.clear()
    await client.provider.set_active_index(1, force=True)
    assert log == ["slow:start", "slow:end:1", "plain:1", "last:MANUAL"]


async def test_concurrent_callers_all_wait_for_the_listeners(pair: Pair) -> None:
    client, servers, events = pair
    delivered = asyncio.Event()

    async def slow(event: SwitchEvent) -> None:
        await asyncio.sleep(0.1)
        delivered.set()

    client.provider.add_switch_listener(slow)
    await client.set("k", 0)
    servers[0].kill()

    async def one(i: int) -> bool:
        await client.set(f"c{i}", i)
        return delivered.is_set()

    results = await asyncio.gather(*(one(i) for i in range(10)))
    assert all(results)  # every call that met the switch returned after delivery
    assert len(events) == 1


async def test_a_listener_may_use_the_client(pair: Pair) -> None:
    client, servers, events = pair
    seen: list[Any] = []

    async def record(event: SwitchEvent) -> None:
        await client.set("switched-to", event.index)  # no deadlock
        seen.append(await client.get("switched-to"))

    client.provider.add_switch_listener(record)
    await client.provider.set_active_index(2)
    assert seen == [b"2"]
    assert servers[1].client().get("switched-to") == b"2"


# --- pipelines, transactions, scripts, locks ----------------------------------------------------


async def test_pipeline_runs_on_the_database_active_at_execute(pair: Pair) -> None:
    client, servers, events = pair
    pipe: Any = client.pipeline()
    pipe.set("p1", 1).set("p2", 2).get("p1")
    assert len(pipe) == 3
    servers[0].kill()
    assert await pipe.execute() == [True, True, b"1"]
    assert servers[1].client().get("p2") == b"2"
    assert client.provider.active_index == 2


async def test_non_transactional_pipeline_and_async_with(pair: Pair) -> None:
    client, servers, events = pair
    pipeline: Any = client.pipeline(transaction=False)
    async with pipeline as pipe:
        pipe.incr("a").incr("a").get("a")
        assert await pipe.execute() == [1, 2, b"2"]
    assert await client.pipeline().execute() == []


async def test_pipeline_with_a_non_idempotent_command_is_not_replayed(pair: Pair) -> None:
    client, servers, events = pair
    await client.set("n", 0)
    blocker = asyncio.create_task(asyncio.to_thread(
        servers[0].client().execute_command, "DEBUG", "SLEEP", "1.0"))
    await asyncio.sleep(0.05)
    pipe: Any = client.pipeline()
    pipe.incr("n").set("other", 1)
    with pytest.raises(redis.exceptions.TimeoutError):
        await pipe.execute()
    await blocker
    assert servers[0].client().get("n") == b"1"
    assert servers[1].client().get("n") is None


async def test_transaction_never_commits_on_another_database(pair: Pair) -> None:
    client, servers, events = pair
    await client.set("w", 1)
    pipe: Any = client.pipeline()
    await pipe.watch("w")
    assert await pipe.get("w") == b"1"
    pipe.multi()
    pipe.set("w", 2)
    await client.provider.set_active_index(2)
    with pytest.raises(redis.WatchError):
        await pipe.execute()
    assert servers[1].client().get("w") is None
    assert servers[0].client().get("w") == b"1"
    # the pipeline is reusable: a new WATCH binds to the now active database
    await pipe.watch("w")
    pipe.multi()
    pipe.set("w", 3)
    assert await pipe.execute() == [True]
    assert servers[1].client().get("w") == b"3"


async def test_watch_conflict_and_unwatch(pair: Pair) -> None:
    client, servers, events = pair
    await client.set("w", 1)
    pipe: Any = client.pipeline()
    await pipe.watch("w")
    await client.set("w", 5)  # a concurrent change
    pipe.multi()
    pipe.set("w", 2)
    with pytest.raises(redis.WatchError):
        await pipe.execute()
    assert await client.get("w") == b"5"
    await pipe.watch("w")
    assert await pipe.unwatch() is True
    pipe.set("w", 7)
    assert await pipe.execute() == [True]
    assert await client.get("w") == b"7"


async def test_transaction_helper(pair: Pair) -> None:
    client, servers, events = pair
    await client.set("c", 5)

    async def double(pipe: Any) -> None:
        value = int(await pipe.get("c"))
        pipe.multi()
        pipe.set("c", value * 2)

    assert await client.transaction(double, "c") == [True]
    assert await client.get("c") == b"10"


async def test_register_script_survives_failover(pair: Pair) -> None:
    client, servers, events = pair
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await script(keys=["s"], args=[2]) == 2
    servers[0].kill()
    await client.set("probe", 1)  # fail over
    assert await script(keys=["s"], args=[3]) == 3  # NOSCRIPT on the new database is handled
    assert servers[1].client().get("s") == b"3"
    pipe: Any = client.pipeline()
    await script(keys=["s"], args=[4], client=pipe)
    pipe.get("s")
    servers[1].client().script_flush()  # the pipeline loads the script again
    assert await pipe.execute() == [7, b"7"]


async def test_lock_works(pair: Pair) -> None:
    client, servers, events = pair
    lock = client.lock("resource", timeout=5)
    assert await lock.acquire(blocking=False)
    assert not await client.lock("resource").acquire(blocking=False)
    await lock.release()
    async with client.lock("resource", timeout=5):
        assert await client.exists("resource") == 1
    assert await client.exists("resource") == 0


# --- pubsub ---------------------------------------------------------------------------------


async def collect(pubsub: Any, publish: Callable[[], None], wanted: int,
                  timeout: float = 5.0) -> list[tuple[Any, Any]]:
    """Publish (again and again) and read until ``wanted`` distinct channels arrived."""
    received: list[tuple[Any, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publish()
        for _ in range(5):
            msg = await pubsub.get_message(timeout=0.05)
            if msg is not None and msg["type"] in ("message", "pmessage", "smessage"):
                received.append((msg["channel"], msg["data"]))
        if len({c for c, _ in received}) >= wanted:
            break
    return received


@requires_redis_7
async def test_pubsub_resubscribes_after_failover(pair: Pair) -> None:
    client, servers, events = pair
    ps = client.pubsub(ignore_subscribe_messages=True)
    await ps.subscribe("a", "b")
    await ps.psubscribe("p.*")
    await ps.ssubscribe("s1")
    await ps.get_message(timeout=0.1)
    servers[0].kill()
    await client.set("trigger", 1)  # fail over
    assert client.provider.active_index == 2
    second = servers[1].client()

    def publish() -> None:
        second.publish("a", "1")
        second.publish("b", "2")
        second.publish("p.x", "3")
        second.spublish("s1", "4")

    received = await collect(ps, publish, wanted=4)
    assert {b"a", b"b", b"p.x", b"s1"} <= {c for c, _ in received}
    await ps.aclose()


async def test_pubsub_handlers_survive_a_switch(pair: Pair) -> None:
    client, servers, events = pair
    got: list[bytes] = []
    ps = client.pubsub()
    await ps.subscribe(t=lambda m: got.append(m["data"]))
    worker = asyncio.create_task(ps.run(poll_timeout=0.05))
    try:
        assert await wait_for(lambda: servers[0].client().publish("t", "one"))
        assert await wait_for(lambda: b"one" in got)
        await client.provider.set_active_index(2)
        assert await wait_for(lambda: servers[1].client().publish("t", "two") > 0
                              and b"two" in got)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await ps.aclose()


async def test_a_blocked_listen_follows_a_switch(pair: Pair) -> None:
    client, servers, events = pair
    ps = client.pubsub(ignore_subscribe_messages=True)
    await ps.subscribe("chan")
    got: list[bytes] = []

    async def listen() -> None:
        async for msg in ps.listen():
            got.append(msg["data"])

    reader = asyncio.create_task(listen())
    try:
        await asyncio.sleep(0.05)  # the reader blocks on database 1
        await client.provider.set_active_index(2)
        second = servers[1].client()
        assert await wait_for(lambda: second.publish("chan", "moved") > 0 and b"moved" in got)
        assert await wait_for(
            lambda: servers[0].client().pubsub_numsub("chan") == [(b"chan", 0)])
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await ps.aclose()


async def test_independent_pubsubs(pair: Pair) -> None:
    client, servers, events = pair
    one, two = client.pubsub(), client.pubsub()
    await one.subscribe("x")
    await two.subscribe("y")
    assert (await one.get_message(timeout=1))["channel"] == b"x"
    assert (await two.get_message(timeout=1))["channel"] == b"y"
    await client.publish("x", "for-one")
    assert (await one.get_message(timeout=1))["data"] == b"for-one"
    assert await two.get_message(timeout=0.1) is None
    await one.aclose()
    await two.aclose()


@pytest.mark.parametrize("timeout", [0.01, None], ids=["polling", "blocking"])
async def test_pubsub_reader_survives_rapid_switches(pair: Pair, timeout: float | None) -> None:
    """Switches while the reader reads, moves or re-subscribes: with both databases up the
    reader sees no error (a switch cutting a re-subscription short used to surface as a
    ConnectionError) and keeps receiving."""
    client, servers, events = pair
    ps = client.pubsub(ignore_subscribe_messages=True)
    await ps.subscribe("ch")
    errors: list[BaseException] = []
    received: list[Any] = []
    done = asyncio.Event()

    async def read() -> None:
        while not done.is_set():
            try:
                message = await ps.get_message(timeout=timeout)
            except Exception as exc:  # every error is the finding
                errors.append(exc)
            else:
                if message is not None:
                    received.append(message["data"])

    async def publish() -> None:
        while not done.is_set():
            await client.publish("ch", "m")
            await asyncio.sleep(0.002)

    tasks = [asyncio.ensure_future(read()), asyncio.ensure_future(publish())]
    try:
        deadline = time.monotonic() + 3.0
        switches = 0
        while time.monotonic() < deadline:
            await client.provider.set_active_index(2 if client.provider.active_index == 1 else 1)
            switches += 1
            await asyncio.sleep(0.001 * (switches % 4))
        before = len(received)

        async def delivered() -> bool:
            return await client.publish("ch", "end") == 1 and len(received) > before

        assert await wait_for(delivered)
    finally:
        done.set()
        await client.publish("ch", "wake")  # a blocking reader returns
        await asyncio.wait(tasks, timeout=5)
        await ps.aclose()
    assert errors == []
    assert switches > 100
    assert len(received) > 100


# --- closing ----------------------------------------------------------------------------------


async def test_aclose_leaves_no_tasks_and_no_connections(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    before = other_tasks()
    client = FailoverRedis.from_config(config_for(servers))
    await asyncio.gather(*(client.set(f"k{i}", i) for i in range(20)))  # a pool of several
    ps = client.pubsub()
    await ps.subscribe("c")  # left open: aclose() closes it
    pipe: Any = client.pipeline()
    await pipe.watch("k1")  # a bound pipeline holds a connection
    await client.provider.set_active_index(2)
    await client.set("on-2", 1)
    await client.provider.run_health_checks()
    assert connections(servers[0]) > 0 and connections(servers[1]) > 0
    await client.aclose()
    assert other_tasks() <= before
    assert await wait_for(lambda: connections(servers[0]) == 0, timeout=3), \
        servers[0].client().client_list()
    assert await wait_for(lambda: connections(servers[1]) == 0, timeout=3), \
        servers[1].client().client_list()
    await client.aclose()  # idempotent


# --- live changes -----------------------------------------------------------------------------


async def test_add_remove_and_weights_under_traffic(redis_servers: Servers) -> None:
    a, b, c = redis_servers(3)
    client = FailoverRedis.from_config(
        config_for([a, b], failover_strategy="weighted")
    )
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    errors: list[BaseException] = []
    ok = 0
    stop = asyncio.Event()

    async def traffic(i: int) -> None:
        nonlocal ok
        n = 0
        while not stop.is_set():
            try:
                await client.set(f"t{i}", n)
                ok += 1
            except Exception as exc:  # anything: a failing task must not hide
                errors.append(exc)
            n += 1
            await asyncio.sleep(0)

    try:
        await client.provider.initialize()
        tasks = [asyncio.create_task(traffic(i)) for i in range(20)]
        await asyncio.sleep(0.05)
        index = client.provider.add_database(db_config(c, "c", weight=1.0))
        assert index == 3
        with pytest.raises(ValueError, match="duplicate"):
            client.provider.add_database(db_config(c, "again"))
        client.provider.set_weight(3, 5.0)  # later choices only: no switch by itself
        await asyncio.sleep(0.05)
        assert client.provider.active_index == 1
        await client.provider.remove_database(1)  # the active one: switches first
        assert client.provider.active_index == 2  # database c (weight 5), now index 2
        assert client.provider.databases[1].name == "c"
        await asyncio.sleep(0.05)
        c_count = int(c.client().dbsize())
        assert c_count > 0  # traffic moved to c
        client.provider.set_weight(2, 0.0)
        with pytest.raises(ValueError):
            client.provider.set_weight(2, -1.0)
        c.kill()  # failover by weight: b is the only one left
        await asyncio.sleep(0.3)
        assert client.provider.active_index == 1
        with pytest.raises(ValueError):
            await client.provider.remove_database(3)
        await client.provider.remove_database(2)
        with pytest.raises(ValueError, match="last"):
            await client.provider.remove_database(1)
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    finally:
        stop.set()
        await client.aclose()
    assert errors == []
    assert ok > 100
    assert events[0] == SwitchEvent(1, 2, SwitchReason.MANUAL)
    assert [e.index for e in events][-1] == 1
    assert len(client.provider.databases) == 1


async def test_add_health_check_and_status(pair: Pair) -> None:
    client, servers, events = pair

    class RefuseFirst:
        def check(self, c: Any, database: DatabaseConfig) -> bool:
            return database.name != "db1"

        async def check_async(self, c: Any, database: DatabaseConfig) -> bool:
            return database.name != "db1"

    await client.provider.initialize()
    rows = client.provider.status()
    assert [r["index"] for r in rows] == [1, 2]
    assert rows[0]["active"] and not rows[1]["active"]
    assert rows[0]["endpoint"] == f"127.0.0.1:{servers[0].port}/0"
    assert rows[0]["breaker_state"] is State.CLOSED
    client.provider.add_health_check(RefuseFirst())
    assert await wait_for(lambda: client.provider.active_index == 2, timeout=3)
    assert [row["healthy"] for row in client.provider.status()] == [False, True]
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]


async def test_add_health_check_turns_checks_on_when_they_were_off(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    async with FailoverRedis.from_config(config_for(servers, health_checks=())) as client:
        await client.set("k", 1)
        client.provider.add_health_check(PingHealthCheck())
        servers[0].kill()  # no command runs: only the newly enabled checks can notice
        assert await wait_for(lambda: client.provider.active_index == 2, timeout=3)


# --- persistence and time ---------------------------------------------------------------------


async def test_active_index_store_survives_a_restart(redis_servers: Servers,
                                                     tmp_path: Any) -> None:
    servers = redis_servers(2)
    store = str(tmp_path / "active-index")
    async with FailoverRedis.from_config(config_for(servers, active_index_store=store)) as c:
        await c.provider.set_active_index(2)
    async with FailoverRedis.from_config(config_for(servers, active_index_store=store)) as c:
        assert c.provider.active_index == 2


async def test_auto_failback_with_a_fake_clock(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    clock = FakeClock()
    provider = FailoverProvider(
        config_for(servers, auto_failback_interval=10.0, auto_failback_grace_period=5.0),
        clock=clock, start_health_checks=False,
    )
    events: list[SwitchEvent] = []
    provider.add_switch_listener(events.append)
    try:
        await provider.set_active_index(2)
        clock.advance(5)
        await provider.run_health_checks()
        assert provider.active_index == 2  # the failback interval has not passed yet
        clock.advance(5)
        await provider.run_health_checks()
        assert provider.active_index == 1
        assert [e.reason for e in events] == [SwitchReason.MANUAL, SwitchReason.FAILBACK]
    finally:
        await provider.aclose()


async def test_sync_provider_api_is_refused(redis_servers: Servers) -> None:
    servers = redis_servers(1)
    async with FailoverProvider(config_for(servers)) as provider:
        with pytest.raises(TypeError), provider:
            pass
        with pytest.raises(TypeError):
            FailoverRedis(object())  # type: ignore[arg-type]
