"""The asyncio failover client on Redis Cluster databases, and PingHealthCheck's cluster
policies, on a real 3-primary cluster.

The clusters are real (``redis-cli --cluster create``, no replicas, 1 s node timeout) and
their faults are real: primaries are SIGKILLed. A module-wide cluster serves the tests that
do not hurt it (keys are per test); each test that kills nodes starts its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis_helpers import requires_redis_7

from faulttol import RetryConfig, State
from faulttol_redis import (
    ClusterConnectionError,
    DatabaseConfig,
    HealthCheckPolicy,
    MultiDbConfig,
    PingHealthCheck,
    SwitchEvent,
    SwitchReason,
    create_async_client,
    create_client,
)
from faulttol_redis._cluster import pubsub_node_pool
from faulttol_redis.asyncio import FailoverRedis
from faulttol_redis.testing import LocalCluster, RedisServer, cluster_factory, free_port

pytestmark = requires_redis_7

TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
POLICIES = (HealthCheckPolicy.HEALTHY_ALL, HealthCheckPolicy.HEALTHY_MAJORITY,
            HealthCheckPolicy.HEALTHY_ANY)

StartCluster = Callable[..., LocalCluster]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A healthy cluster shared by the tests that do not kill nodes (keys are per test)."""
    with cluster_factory() as start:
        yield start()


@pytest.fixture
def start_cluster() -> Iterator[StartCluster]:
    """Start a fresh cluster for a test that kills nodes; stopped at teardown."""
    with cluster_factory() as start:
        yield start


def cluster_db(cluster: LocalCluster, node: int = 0) -> DatabaseConfig:
    return DatabaseConfig("127.0.0.1", cluster.ports[node], cluster=True, name="cluster",
                          client_kwargs=dict(TIMEOUTS))


def standalone_db(server: RedisServer) -> DatabaseConfig:
    return DatabaseConfig("127.0.0.1", server.port, name="standalone",
                          client_kwargs=dict(TIMEOUTS))


def multi(databases: list[DatabaseConfig], **kwargs: Any) -> MultiDbConfig:
    kwargs.setdefault("health_check_interval", 0.2)
    kwargs.setdefault("health_check_probe_delay", 0.01)
    kwargs.setdefault("health_check_timeout", 0.3)
    return MultiDbConfig(databases, **kwargs)


def on_node(cluster: LocalCluster, node: int, key: str) -> bytes | None:
    with cluster.client(node) as client:
        value: bytes | None = client.get(key)
        return value


async def next_message(pubsub: Any, timeout: float = 5.0) -> dict[str, Any] | None:
    """The next message that is not a subscribe confirmation, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            return message  # type: ignore[no-any-return]
    return None


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


# --- FailoverRedis (asyncio) on a healthy cluster ---------------------------------------------


@pytest.fixture(params=["cluster-first", "standalone-first"])
async def mixed(
    request: pytest.FixtureRequest, cluster: LocalCluster, redis_server: RedisServer
) -> AsyncIterator[FailoverRedis]:
    """An asyncio FailoverRedis whose active database is the cluster, configured first or
    second."""
    if request.param == "cluster-first":
        databases = [cluster_db(cluster), standalone_db(redis_server)]
    else:
        databases = [standalone_db(redis_server), cluster_db(cluster)]
    client = FailoverRedis.from_config(multi(databases, health_check_interval=30.0))
    try:
        await client.initialize()
        if request.param == "standalone-first":
            await client.provider.set_active_index(2)
        yield client
    finally:
        await client.aclose()


def cluster_index(client: FailoverRedis) -> int:
    return 1 if client.provider.databases[0].cluster else 2


def prefix_of(request: pytest.FixtureRequest, name: str) -> str:
    return f"{name}:{request.node.callspec.id}"


async def test_commands_route_to_the_primary_of_each_slot(
    mixed: FailoverRedis, cluster: LocalCluster, redis_server: RedisServer,
    request: pytest.FixtureRequest,
) -> None:
    prefix = prefix_of(request, "aroute")
    keys = cluster.keys_on_every_node(prefix)
    assert await asyncio.gather(*(mixed.set(k, k) for k in keys)) == [True] * 3
    assert await asyncio.gather(*(mixed.get(k) for k in keys)) == [k.encode() for k in keys]
    for node, key in enumerate(keys):
        assert on_node(cluster, node, key) == key.encode()
    tag = f"{{{prefix}}}"
    assert await mixed.mset({f"{tag}:a": "1", f"{tag}:b": "2"}) is True
    assert await mixed.mget(f"{tag}:a", f"{tag}:b") == [b"1", b"2"]
    assert await mixed.incr(f"{prefix}:counter") == 1
    assert redis_server.client().dbsize() == 0  # nothing reached the standalone database
    assert mixed.provider.active_index == cluster_index(mixed)


async def test_cross_slot_commands_fail_without_counting_against_the_cluster(
    mixed: FailoverRedis, cluster: LocalCluster, request: pytest.FixtureRequest
) -> None:
    first, second, _ = cluster.keys_on_every_node(prefix_of(request, "across"))
    # redis.asyncio before 8.2 sends it and the node refuses it (ClusterCrossSlotError);
    # from 8.2 on it refuses it itself, as the sync client does (RedisClusterException)
    cross_slot = (redis.exceptions.ClusterCrossSlotError, redis.exceptions.RedisClusterException)
    with pytest.raises(cross_slot, match=r"same (key )?slot"):
        await mixed.mget(first, second)
    breaker = mixed.provider.breaker(cluster_index(mixed))
    assert breaker.metrics.number_of_failed_calls == 0
    assert breaker.state is State.CLOSED
    assert mixed.provider.active_index == cluster_index(mixed)


async def test_pipeline_without_transaction_spans_every_primary(
    mixed: FailoverRedis, cluster: LocalCluster, request: pytest.FixtureRequest
) -> None:
    keys = cluster.keys_on_every_node(prefix_of(request, "apipe"))
    pipe: Any = mixed.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, f"p-{key}").get(key)
    assert await pipe.execute() == [x for k in keys for x in (True, f"p-{k}".encode())]
    for node, key in enumerate(keys):
        assert on_node(cluster, node, key) == f"p-{key}".encode()
    assert await pipe.execute() == []  # the pipeline was reset


async def test_multi_exec_pipeline_in_one_slot(
    mixed: FailoverRedis, cluster: LocalCluster, request: pytest.FixtureRequest
) -> None:
    tag = f"{{{prefix_of(request, 'atx')}}}"
    tx: Any
    async with mixed.pipeline() as tx:
        tx.incr(f"{tag}:items").incr(f"{tag}:items").incr(f"{tag}:version")
        assert await tx.execute() == [1, 2, 1]
    assert on_node(cluster, cluster.owner_of(tag), f"{tag}:items") == b"2"
    first, second, _ = cluster.keys_on_every_node(prefix_of(request, "atx-cross"))
    cross: Any = mixed.pipeline()
    cross.set(first, 1).set(second, 1)
    with pytest.raises(redis.exceptions.RedisClusterException):
        await cross.execute()
    assert mixed.provider.breaker(cluster_index(mixed)).metrics.number_of_failed_calls == 0


async def test_watch_transaction_in_one_slot(
    mixed: FailoverRedis, cluster: LocalCluster, request: pytest.FixtureRequest
) -> None:
    key = f"{{{prefix_of(request, 'awatch')}}}:n"
    await mixed.set(key, 5)

    async def add_one(pipe: Any) -> int:
        value = int(await pipe.get(key))
        pipe.multi()
        pipe.set(key, value + 1)
        return value + 1

    assert await mixed.transaction(add_one, key, value_from_callable=True) == 6
    assert await mixed.get(key) == b"6"
    assert on_node(cluster, cluster.owner_of(key), key) == b"6"

    # A change between WATCH and EXEC aborts the transaction, as on a standalone server.
    pipe = mixed.pipeline()
    await pipe.watch(key)
    assert await pipe.get(key) == b"6"
    with cluster.client(cluster.owner_of(key)) as direct:
        direct.set(key, "changed")
    pipe.multi()
    pipe.set(key, "lost")
    with pytest.raises(redis.exceptions.WatchError):
        await pipe.execute()
    assert await mixed.get(key) == b"changed"
    breaker = mixed.provider.breaker(cluster_index(mixed))
    assert breaker.metrics.number_of_failed_calls == 0


async def test_scripts_in_a_pipeline_after_script_flush(
    mixed: FailoverRedis, cluster: LocalCluster, request: pytest.FixtureRequest
) -> None:
    prefix = prefix_of(request, "ascript")
    keys = cluster.keys_on_every_node(prefix)
    bump = mixed.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    await mixed.script_flush()  # on every primary: the pipeline must load it again
    with cluster.client(0) as direct:
        assert direct.script_exists(bump.sha) == [False]
    pipe = mixed.pipeline(transaction=False)
    for n, key in enumerate(keys):
        await bump(keys=[key], args=[n + 1], client=pipe)
    assert await pipe.execute() == [1, 2, 3]
    for node, key in enumerate(keys):
        assert on_node(cluster, node, key) == str(node + 1).encode()

    # In a WATCH transaction too (one slot).
    await mixed.script_flush()
    key = f"{{{prefix}}}:tx"

    async def bump_in_transaction(pipe: Any) -> None:
        pipe.multi()
        await bump(keys=[key], args=[10], client=pipe)

    assert await mixed.transaction(bump_in_transaction, key) == [10]
    assert await mixed.get(key) == b"10"


async def test_pubsub_on_a_cluster_database(
    mixed: FailoverRedis, cluster: LocalCluster, request: pytest.FixtureRequest
) -> None:
    channel = prefix_of(request, "anews")
    pubsub = mixed.pubsub()
    try:
        await pubsub.subscribe(channel)
        await pubsub.psubscribe(f"{channel}:*")
        confirmations = [await pubsub.get_message(timeout=2) for _ in range(2)]
        assert [m["type"] for m in confirmations if m] == ["subscribe", "psubscribe"]
        await mixed.publish(channel, "hello")  # the reply counts one node's receivers only
        message = await next_message(pubsub)
        assert message is not None
        assert (message["type"], message["data"]) == ("message", b"hello")
        # Published on every other node: the cluster bus brings it to the pubsub's node.
        port = pubsub.connection.port  # type: ignore[attr-defined]
        for node in (i for i, p in enumerate(cluster.ports) if p != port):
            with cluster.client(node) as direct:
                direct.publish(f"{channel}:{node}", f"from {node}")
            message = await next_message(pubsub)
            assert message is not None
            assert (message["type"], message["data"]) == ("pmessage", f"from {node}".encode())
    finally:
        await pubsub.aclose()


async def test_unreachable_cluster_at_startup_does_not_stop_the_client(
    redis_server: RedisServer,
) -> None:
    databases = [
        DatabaseConfig("127.0.0.1", free_port(), cluster=True, name="cluster",
                       client_kwargs=dict(TIMEOUTS)),
        standalone_db(redis_server),
    ]
    async with FailoverRedis.from_config(multi(databases)) as client:
        assert client.provider.active_index == 2
        assert await client.set("k", "v") is True
        assert client.provider.status()[0]["healthy"] is False
        with pytest.raises(ValueError, match="unhealthy"):
            await client.provider.set_active_index(1)


# --- failover with real faults ---------------------------------------------------------------


async def test_killing_a_primary_fails_over_without_application_errors(
    start_cluster: StartCluster, redis_server: RedisServer
) -> None:
    cluster = start_cluster()
    database = cluster_db(cluster)
    client = FailoverRedis.from_config(multi([database, standalone_db(redis_server)]))
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    keys = cluster.keys_on_every_node("akill")
    try:
        await asyncio.gather(*(client.set(k, "cluster") for k in keys))
        assert client.provider.active_index == 1
        assert [on_node(cluster, n, k) for n, k in enumerate(keys)] == [b"cluster"] * 3
        pubsub = client.pubsub()
        await pubsub.subscribe("alerts")
        assert (await pubsub.get_message(timeout=2) or {}).get("type") == "subscribe"

        cluster.kill(1)  # one primary down, no replica: unhealthy under HEALTHY_ALL
        killed = time.monotonic()
        errors: list[BaseException] = []
        writes = 0

        async def writer(n: int) -> None:
            nonlocal writes
            while client.provider.active_index == 1 and time.monotonic() - killed < 5.0:
                for key in keys:  # keys on the live primaries too: no errors either
                    try:
                        assert await client.set(key, f"w{n}") is True
                        writes += 1
                    except Exception as exc:  # pragma: no cover - reported below
                        errors.append(exc)

        await asyncio.gather(*(writer(n) for n in range(20)))
        switch_time = time.monotonic() - killed
        assert errors == []
        assert writes > 0
        assert client.provider.active_index == 2
        assert switch_time < 2.5
        assert [(e.previous_index, e.index, e.reason) for e in events] == [
            (1, 2, SwitchReason.HEALTH_CHECK)
        ]  # coroutine-free listeners ran before the switching call returned
        assert await asyncio.gather(*(client.set(k, "after") for k in keys)) == [True] * 3
        with redis_server.client() as standalone:
            assert [standalone.get(k) for k in keys] == [b"after"] * 3

        # The pubsub followed to the standalone database and re-subscribed there.
        await pubsub.get_message(timeout=0.5)  # moves and re-subscribes
        assert await wait_until(
            lambda: redis_server.client().pubsub_numsub("alerts")[0][1] == 1
        )
        assert await client.publish("alerts", "on standalone") == 1
        message = await next_message(pubsub)
        assert message is not None and message["data"] == b"on standalone"
        await pubsub.aclose()

        with pytest.raises(ValueError, match="unhealthy"):
            await client.provider.set_active_index(1)
        assert client.provider.status()[0]["healthy"] is False
        cluster.kill(0)
        cluster.kill(2)
        await client.provider.run_health_checks()
        assert client.provider.status()[0]["healthy"] is False
        assert await client.incr("still-working") == 1
        assert len(events) == 1
    finally:
        await client.aclose()


# --- cluster health policies -------------------------------------------------------------------


def sync_verdict(database: DatabaseConfig, policy: HealthCheckPolicy) -> bool | str:
    """One sync probe with a fresh probe client: True, False, or the error's class name."""
    client = create_client(database, socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        return PingHealthCheck(cluster_policy=policy).check(client, database)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        return type(exc).__name__
    finally:
        client.close()


async def async_verdict(
    database: DatabaseConfig, policy: HealthCheckPolicy, client: Any = None
) -> bool | str:
    """One asyncio probe (fresh probe client unless given): True, False or an error name."""
    own = client is None
    if own:
        client = create_async_client(database, socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        return await PingHealthCheck(cluster_policy=policy).check_async(client, database)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        return type(exc).__name__
    finally:
        if own:
            await client.aclose()


def healthy(verdict: bool | str) -> bool:
    return verdict is True


async def test_cluster_policies_as_primaries_die(start_cluster: StartCluster) -> None:
    cluster = start_cluster()
    database = cluster_db(cluster)
    # Probe clients that live through the kills (as the provider's do) and fresh ones.
    kept = {p: create_async_client(database, socket_timeout=0.3, socket_connect_timeout=0.3)
            for p in POLICIES}
    sync_client: Any = create_client(database, socket_timeout=0.3, socket_connect_timeout=0.3)

    async def verdicts() -> dict[HealthCheckPolicy, tuple[bool, bool, bool]]:
        found = {}
        for policy in POLICIES:
            found[policy] = (
                healthy(sync_verdict(database, policy)),
                healthy(await async_verdict(database, policy)),
                healthy(await async_verdict(database, policy, kept[policy])),
            )
        return found

    def expect(all_: bool, majority: bool, any_: bool) -> dict[HealthCheckPolicy, Any]:
        return {HealthCheckPolicy.HEALTHY_ALL: (all_,) * 3,
                HealthCheckPolicy.HEALTHY_MAJORITY: (majority,) * 3,
                HealthCheckPolicy.HEALTHY_ANY: (any_,) * 3}

    try:
        assert await verdicts() == expect(True, True, True)
        cluster.kill(1)
        assert await verdicts() == expect(False, True, True)  # 2 of 3 answer
        # A failed primary is reported as the probe's connection error under ALL...
        assert sync_verdict(database, HealthCheckPolicy.HEALTHY_ALL) == "ConnectionError"
        # ...and the same answer whichever policy is used, while the policy is met.
        assert sync_verdict(database, HealthCheckPolicy.HEALTHY_ANY) is True

        # A pipeline whose scripts cannot be loaded on every primary never ran.
        script_client: Any = create_client(database)
        try:
            script = script_client.register_script("return 1")
            pipe = script_client.pipeline(transaction=False)
            pipe.scripts.add(script)  # what FailoverRedis's pipeline hands over
            pipe.pipeline_execute_command("EVALSHA", script.sha, 1, "s")
            with pytest.raises(ClusterConnectionError) as caught:
                pipe.execute()
            assert caught.value.never_sent is True
        finally:
            script_client.close()
        async_client: Any = create_async_client(database)
        try:
            pipe = async_client.pipeline(transaction=False)
            script = async_client.register_script("return 1")
            pipe.scripts.add(script)
            pipe.execute_command("EVALSHA", script.sha, 1, "s")
            with pytest.raises(ClusterConnectionError) as caught:
                await pipe.execute()
            assert caught.value.never_sent is True
        finally:
            await async_client.aclose()

        # A sync pubsub's node: the first that answers, even when the default node is dead.
        sync_client.set_default_node(sync_client.get_node(port=cluster.ports[1]))
        pool = pubsub_node_pool(sync_client)
        assert pool.connection_kwargs["port"] in (cluster.ports[0], cluster.ports[2])

        cluster.kill(2)
        assert await verdicts() == expect(False, False, True)  # 1 of 3 answers
        cluster.kill(0)
        assert await verdicts() == expect(False, False, False)  # none: never vacuous
        for policy in POLICIES:  # a fresh client cannot even load the topology
            assert sync_verdict(database, policy) == "ClusterConnectionError"
            assert await async_verdict(database, policy) == "ClusterConnectionError"
        with pytest.raises(ClusterConnectionError, match="no node"):
            pubsub_node_pool(sync_client)
    finally:
        sync_client.close()
        for client in kept.values():
            await client.aclose()


async def test_majority_policy_keeps_a_cluster_that_lost_one_primary(
    start_cluster: StartCluster, redis_server: RedisServer
) -> None:
    """With HEALTHY_MAJORITY and ``cluster-require-full-coverage no`` the live primaries keep
    serving their slots after one primary died: the cluster stays healthy, the client stays
    on it while commands touch live slots, and a pubsub whose node died reconnects to a live
    node of the same cluster. A command on the dead slots still fails over."""
    cluster = start_cluster()
    for node in range(3):
        with cluster.client(node) as direct:
            direct.config_set("cluster-require-full-coverage", "no")
    config = multi(
        [cluster_db(cluster), standalone_db(redis_server)],
        health_checks=(PingHealthCheck(cluster_policy=HealthCheckPolicy.HEALTHY_MAJORITY),),
        retry=RetryConfig(max_attempts=2, wait_duration=0.01, retry_exceptions=(
            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)),
    )
    events: list[SwitchEvent] = []
    async with FailoverRedis.from_config(config) as client:
        client.provider.add_switch_listener(events.append)
        keys = cluster.keys_on_every_node("amaj")
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe("news")
            assert (await pubsub.get_message(timeout=2) or {}).get("type") == "subscribe"
            port = pubsub.connection.port  # type: ignore[attr-defined]
            dead = cluster.ports.index(port)
            cluster.kill(dead)  # the pubsub's node, a primary
            await client.provider.run_health_checks()
            assert client.provider.active_index == 1
            assert client.provider.status()[0]["healthy"] is True

            live = [n for n in range(3) if n != dead]
            for node in live:
                assert await client.set(keys[node], "still here") is True
                assert on_node(cluster, node, keys[node]) == b"still here"

            # Reading fails on the dead node; the probe passes (2 of 3): another node.
            assert await pubsub.get_message(timeout=0.5) is None
            connection: Any = pubsub.connection
            assert connection is not None
            assert connection.port in [cluster.ports[n] for n in live]
            confirmation = await pubsub.get_message(timeout=2)  # re-subscribed there
            assert confirmation is not None and confirmation["type"] == "subscribe"
            with cluster.client(live[-1]) as direct:
                direct.publish("news", "from a live primary")
            message = await next_message(pubsub)
            assert message is not None and message["data"] == b"from a live primary"
            assert events == []

            # A command on the dead primary's slots still fails with a connection error:
            # the database stays healthy, so the probe passes; after the retries the
            # fallback moves the command (and the client) to the next database.
            assert await client.set(keys[dead], "moved") is True
            assert [(e.index, e.reason) for e in events] == [(2, SwitchReason.CIRCUIT_BREAKER)]
            with redis_server.client() as standalone:
                assert standalone.get(keys[dead]) == b"moved"
            assert client.provider.status()[0]["healthy"] is True  # still a valid destination
        finally:
            await pubsub.aclose()
