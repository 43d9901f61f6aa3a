"""Redis Cluster databases in the failover client, on a real 3-primary cluster.

The clusters are real (``redis-cli --cluster create``, no replicas, 1 s node timeout) and
their faults are real: primaries are SIGKILLed one by one. A module-wide cluster serves the
tests that do not hurt it; each test that kills nodes starts its own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
from redis_helpers import requires_redis_7

from faulttol import State
from faulttol_redis import (
    ClusterConnectionError,
    DatabaseConfig,
    FailoverRedis,
    MultiDbConfig,
    PingHealthCheck,
    SwitchEvent,
    SwitchReason,
    create_async_client,
    create_client,
)
from faulttol_redis._replay import never_sent
from faulttol_redis.testing import LocalCluster, RedisServer, cluster_factory, free_port

pytestmark = requires_redis_7

TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}

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


def cluster_client(database: DatabaseConfig, **overrides: Any) -> redis.cluster.RedisCluster:
    client = create_client(database, **overrides)
    assert isinstance(client, redis.cluster.RedisCluster)
    return client


def cluster_db(cluster: LocalCluster, node: int = 0, **kwargs: Any) -> DatabaseConfig:
    return DatabaseConfig(
        "127.0.0.1", cluster.ports[node], cluster=True, name="cluster",
        client_kwargs=dict(TIMEOUTS), **kwargs,
    )


def standalone_db(server: RedisServer) -> DatabaseConfig:
    return DatabaseConfig("127.0.0.1", server.port, name="standalone",
                          client_kwargs=dict(TIMEOUTS))


def multi(databases: list[DatabaseConfig], **kwargs: Any) -> MultiDbConfig:
    kwargs.setdefault("health_check_interval", 0.2)
    kwargs.setdefault("health_check_probe_delay", 0.01)
    kwargs.setdefault("health_check_timeout", 0.3)
    return MultiDbConfig(databases, **kwargs)


def healthy(database: DatabaseConfig, client: Any = None) -> bool:
    """One PingHealthCheck probe, as the provider runs it: raising counts as unhealthy."""
    own = client is None
    if own:
        client = create_client(database, socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        return PingHealthCheck().check(client, database)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return False
    finally:
        if own:
            client.close()


def on_node(cluster: LocalCluster, node: int, key: str) -> bytes | None:
    with cluster.client(node) as client:
        value: bytes | None = client.get(key)
        return value


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --- the launcher ----------------------------------------------------------------------------


def test_launcher_builds_three_primaries_covering_every_slot(cluster: LocalCluster) -> None:
    assert len(cluster.nodes) == 3
    for i in range(3):
        assert cluster.state(i) == "ok"
        with cluster.client(i, decode_responses=True) as client:
            nodes = client.execute_command("CLUSTER", "NODES")
            info = client.execute_command("CLUSTER", "INFO")
        assert "cluster_slots_assigned:16384" in info
        assert "cluster_known_nodes:3" in info
        assert sum("master" in line for line in nodes.splitlines()) == 3
    keys = cluster.keys_on_every_node("probe")
    assert [cluster.owner_of(k) for k in keys] == [0, 1, 2]


def test_launcher_stops_every_node_even_when_the_body_raises() -> None:
    pids: list[int | None] = []
    with pytest.raises(RuntimeError, match="boom"), cluster_factory() as start:
        started = start()
        pids = [node.pid for node in started.nodes]
        started.kill(1)
        raise RuntimeError("boom")
    assert all(pid is not None for pid in pids)
    assert not any(node.is_running for node in started.nodes)
    for port in started.ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


# --- the cluster client ----------------------------------------------------------------------


def test_cluster_client_is_made_without_io_and_reports_unreachable_as_connection_error() -> None:
    database = DatabaseConfig("127.0.0.1", free_port(), cluster=True)
    client = create_client(database, socket_connect_timeout=0.2)  # nothing listens: no error
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        with pytest.raises(ClusterConnectionError) as caught:
            client.set("k", "v")
        assert isinstance(caught.value, redis.exceptions.ConnectionError)
        assert caught.value.never_sent is True
        assert isinstance(caught.value.__cause__, redis.exceptions.RedisClusterException)
        # optional attributes stay optional: no exception from getattr/hasattr
        assert getattr(client, "connection_pool", None) is None
        with pytest.raises(ClusterConnectionError):
            client.get_primaries()  # type: ignore[no-untyped-call]
        assert healthy(database, client) is False
    finally:
        client.close()
    assert "not initialized" in repr(client)


def test_cluster_client_has_no_retries_of_its_own(cluster: LocalCluster) -> None:
    client = cluster_client(cluster_db(cluster))
    try:
        assert client.set("noretry", 1) is True
        assert client.retry.get_retries() == 0
        for node in client.get_nodes():  # type: ignore[no-untyped-call]
            retry = client.get_redis_connection(node).get_retry()
            assert retry is not None
            assert retry.get_retries() == 0
    finally:
        client.close()


def test_concurrent_first_commands_initialize_once(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = redis.cluster.NodesManager.initialize

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        time.sleep(0.05)  # widen the window in which other threads arrive
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.cluster.NodesManager, "initialize", counting)
    client = create_client(cluster_db(cluster))
    keys = [f"first:{i}" for i in range(24)]
    barrier = threading.Barrier(len(keys))
    results: dict[str, Any] = {}

    def first_command(key: str) -> None:
        barrier.wait()
        try:
            results[key] = client.set(key, key)
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            results[key] = exc

    threads = [threading.Thread(target=first_command, args=(k,)) for k in keys]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == dict.fromkeys(keys, True)
        assert len(calls) == 1
        assert {cluster.owner_of(k) for k in keys} == {0, 1, 2}
        for key in keys:
            assert on_node(cluster, cluster.owner_of(key), key) == key.encode()
    finally:
        client.close()


def test_ping_check_asks_every_primary(cluster: LocalCluster) -> None:
    database = cluster_db(cluster)
    client = cluster_client(database, socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        assert healthy(database, client) is True
        assert len(client.get_primaries()) == 3  # type: ignore[no-untyped-call]
        cluster.nodes[2].pause()  # a primary that does not answer within the timeout
        try:
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                PingHealthCheck().check(client, database)
            assert time.monotonic() - started < 2.0
        finally:
            cluster.nodes[2].resume()
        assert healthy(database, client) is True
    finally:
        client.close()


async def test_async_cluster_client_routes_and_is_health_checked(cluster: LocalCluster) -> None:
    database = cluster_db(cluster)
    client = create_async_client(database)
    assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    keys = cluster.keys_on_every_node("async")
    try:
        assert await PingHealthCheck().check_async(client, database) is True  # initializes
        await asyncio.gather(*(client.set(k, k) for k in keys))
        for node, key in enumerate(keys):
            assert on_node(cluster, node, key) == key.encode()
        pipe = client.pipeline()
        for key in keys:
            pipe.get(key)
        assert await pipe.execute() == [k.encode() for k in keys]
    finally:
        await client.aclose()


async def test_async_cluster_client_reports_unreachable_as_connection_error() -> None:
    database = DatabaseConfig("127.0.0.1", free_port(), cluster=True)
    client = create_async_client(database, socket_connect_timeout=0.2)
    try:
        with pytest.raises(ClusterConnectionError) as caught:
            await client.set("k", "v")
        assert caught.value.never_sent is True
        with pytest.raises(redis.exceptions.ConnectionError):
            await PingHealthCheck().check_async(client, database)
    finally:
        await client.aclose()


# --- FailoverRedis on a healthy cluster ------------------------------------------------------


@pytest.fixture(params=["cluster-first", "standalone-first"])
def mixed(
    request: pytest.FixtureRequest, cluster: LocalCluster, redis_server: RedisServer
) -> Iterator[FailoverRedis]:
    """A FailoverRedis whose active database is the cluster, configured first or second."""
    if request.param == "cluster-first":
        databases = [cluster_db(cluster), standalone_db(redis_server)]
    else:
        databases = [standalone_db(redis_server), cluster_db(cluster)]
    client = FailoverRedis.from_config(multi(databases, health_check_interval=30.0))
    try:
        if request.param == "standalone-first":
            client.provider.set_active_index(2)
        yield client
    finally:
        client.close()


def cluster_index(client: FailoverRedis) -> int:
    return 1 if client.provider.databases[0].cluster else 2


def test_commands_route_to_the_primary_of_each_slot(
    mixed: FailoverRedis, cluster: LocalCluster, redis_server: RedisServer, request: Any
) -> None:
    prefix = f"route:{request.node.callspec.id}"
    keys = cluster.keys_on_every_node(prefix)
    for key in keys:
        assert mixed.set(key, key) is True
    for node, key in enumerate(keys):
        assert mixed.get(key) == key.encode()
        assert on_node(cluster, node, key) == key.encode()
    assert mixed.incr(f"{prefix}:counter") == 1
    assert mixed.hset(f"{prefix}:hash", mapping={"a": "1", "b": "2"}) == 2
    assert mixed.hgetall(f"{prefix}:hash") == {b"a": b"1", b"b": b"2"}
    assert redis_server.client().dbsize() == 0  # nothing reached the standalone database
    assert mixed.provider.active_index == cluster_index(mixed)


def test_multi_key_commands_within_one_slot_via_hash_tags(
    mixed: FailoverRedis, cluster: LocalCluster, request: Any
) -> None:
    tag = f"{{user:{request.node.callspec.id}}}"
    a, b, c = f"{tag}:a", f"{tag}:b", f"{tag}:c"
    node = cluster.owner_of(a)
    assert cluster.owner_of(b) == cluster.owner_of(c) == node
    assert mixed.sadd(a, "x", "y", "z") == 3
    assert mixed.sadd(b, "y", "z", "w") == 3
    assert mixed.sinterstore(c, [a, b]) == 2
    assert mixed.smembers(c) == {b"y", b"z"}
    assert mixed.smove(a, b, "x") is True
    assert mixed.rpush(f"{tag}:src", "1", "2") == 2
    assert mixed.lmove(f"{tag}:src", f"{tag}:dst", "LEFT", "RIGHT") == b"1"
    assert mixed.rename(c, f"{tag}:renamed") is True
    assert mixed.mset({f"{tag}:m1": "1", f"{tag}:m2": "2"}) is True
    assert mixed.mget(f"{tag}:m1", f"{tag}:m2") == [b"1", b"2"]
    with cluster.client(node) as direct:
        assert direct.smembers(f"{tag}:renamed") == {b"y", b"z"}


def test_cross_slot_commands_fail_without_counting_against_the_cluster(
    mixed: FailoverRedis, cluster: LocalCluster
) -> None:
    first, second, _ = cluster.keys_on_every_node("cross")
    mixed.set(first, 1)
    index = cluster_index(mixed)
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        mixed.rename(first, second)
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        mixed.mget(first, second)
    breaker = mixed.provider.breaker(index)
    assert breaker.metrics.number_of_failed_calls == 0
    assert breaker.state is State.CLOSED
    assert mixed.provider.active_index == index


def test_scripts_run_on_the_node_of_their_keys(
    mixed: FailoverRedis, cluster: LocalCluster, request: Any
) -> None:
    prefix = f"script:{request.node.callspec.id}"
    keys = cluster.keys_on_every_node(prefix)
    script = mixed.register_script("redis.call('SET', KEYS[1], ARGV[1]); return ARGV[1]")
    for node, key in enumerate(keys):
        assert script(keys=[key], args=[f"v{node}"]) == f"v{node}".encode()
        assert on_node(cluster, node, key) == f"v{node}".encode()
    mixed.script_flush()  # on every primary: the next call gets NOSCRIPT and loads it again
    assert script(keys=[keys[1]], args=["again"]) == b"again"
    assert on_node(cluster, 1, keys[1]) == b"again"
    tag = f"{{{prefix}}}"
    assert mixed.eval(
        "redis.call('SET', KEYS[1], 'x'); return redis.call('APPEND', KEYS[2], 'y')",
        2, f"{tag}:1", f"{tag}:2",
    ) == 1


def test_cluster_pipelines_span_every_primary(cluster: LocalCluster) -> None:
    """The database's own client (what FailoverRedis replays a pipeline on)."""
    client = cluster_client(cluster_db(cluster))
    keys = cluster.keys_on_every_node("pipe")
    try:
        pipe: Any = client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
        for key in keys:
            pipe.set(key, key).get(key)
        assert pipe.execute() == [x for k in keys for x in (True, k.encode())]
        tag = "{pipe-tx}"
        tx: Any = client.pipeline(transaction=True)  # type: ignore[no-untyped-call]
        tx.set(f"{tag}:a", 1).incr(f"{tag}:a").get(f"{tag}:a")
        set_reply, *rest = tx.execute()
        assert set_reply in (True, b"OK")  # redis-py's cluster MULTI/EXEC skips SET's callback
        assert rest == [2, b"2"]
        with pytest.raises(redis.exceptions.RedisClusterException):  # one slot per transaction
            cross: Any = client.pipeline(transaction=True)  # type: ignore[no-untyped-call]
            cross.set(keys[0], 1).set(keys[1], 1).execute()
    finally:
        client.close()


# Pipelines, WATCH transactions and pubsub on a cluster database.


def test_failover_pipeline_on_a_cluster_database(
    mixed: FailoverRedis, cluster: LocalCluster
) -> None:
    keys = cluster.keys_on_every_node("fpipe")
    pipe = mixed.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, "p")
    assert pipe.execute() == [True, True, True]
    for node, key in enumerate(keys):
        assert on_node(cluster, node, key) == b"p"


def test_watch_transaction_and_pipelined_scripts_on_a_cluster_database(
    mixed: FailoverRedis, request: Any
) -> None:
    key = f"{{watch:{request.node.callspec.id}}}:n"
    mixed.set(key, 5)

    def incr(pipe: Any) -> None:
        value = int(pipe.get(key))
        pipe.multi()
        pipe.set(key, value + 1)

    mixed.transaction(incr, key)
    assert mixed.get(key) == b"6"
    script = mixed.register_script("return redis.call('INCR', KEYS[1])")
    mixed.script_flush()
    pipe = mixed.pipeline(transaction=False)
    script(keys=[key], client=pipe)
    assert pipe.execute() == [7]


def test_pubsub_on_a_cluster_database(mixed: FailoverRedis, request: Any) -> None:
    channel = f"news:{request.node.callspec.id}"
    pubsub = mixed.pubsub()
    try:
        pubsub.subscribe(channel)
        confirmation = pubsub.get_message(timeout=2)  # the server has the subscription
        assert confirmation is not None
        assert confirmation["type"] == "subscribe"
        mixed.publish(channel, "hello")  # whichever node gets it, the cluster bus spreads it
        message = pubsub.get_message(timeout=2)
        assert message is not None
        assert (message["type"], message["data"]) == ("message", b"hello")
    finally:
        pubsub.close()


# --- failover with real faults ---------------------------------------------------------------


def test_killing_primaries_one_by_one_cluster_first(
    start_cluster: StartCluster, redis_server: RedisServer
) -> None:
    cluster = start_cluster()
    database = cluster_db(cluster)
    client = FailoverRedis.from_config(multi([database, standalone_db(redis_server)]))
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    keys = cluster.keys_on_every_node("kill")
    try:
        for key in keys:
            client.set(key, "cluster")
        assert client.provider.active_index == 1
        assert [on_node(cluster, n, k) for n, k in enumerate(keys)] == [b"cluster"] * 3

        cluster.kill(1)  # one primary down, no replica: the cluster is unhealthy
        killed = time.monotonic()
        errors: list[BaseException] = []
        written = 0
        while client.provider.active_index == 1 and time.monotonic() - killed < 5.0:
            for key in keys:  # keys on the live primaries too: they must not error either
                try:
                    client.set(key, f"w{written}")
                    written += 1
                except Exception as exc:  # pragma: no cover - reported below
                    errors.append(exc)
        switch_time = time.monotonic() - killed
        assert errors == []
        assert client.provider.active_index == 2
        assert switch_time < 2.0
        assert wait_for(lambda: len(events) == 1)  # listeners run after the switch is visible
        assert events[0].previous_index == 1
        assert events[0].index == 2
        assert events[0].reason is SwitchReason.HEALTH_CHECK
        for key in keys:
            assert client.set(key, "after") is True
        with redis_server.client() as standalone:
            assert [standalone.get(k) for k in keys] == [b"after"] * 3
        assert healthy(database) is False
        with pytest.raises(ValueError, match="unhealthy"):
            client.provider.set_active_index(1)
        assert client.provider.status()[0]["healthy"] is False

        cluster.kill(2)
        assert healthy(database) is False
        cluster.kill(0)  # every node down
        assert healthy(database) is False
        with pytest.raises(ValueError, match="unhealthy"):
            client.provider.set_active_index(1)
        assert client.provider.active_index == 2
        assert client.incr("still-working") == 1
        assert len(events) == 1
    finally:
        client.close()


def test_killing_a_primary_standalone_first(
    start_cluster: StartCluster, redis_server: RedisServer
) -> None:
    cluster = start_cluster()
    database = cluster_db(cluster, node=2)
    # No background check in time: the commands themselves must find out (CLUSTERDOWN once
    # the live primaries noticed the dead one, reported as a connection error, then a probe).
    config = multi([standalone_db(redis_server), database], health_check_interval=60.0)
    client = FailoverRedis.from_config(config)
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    keys = cluster.keys_on_every_node("sf")
    try:
        client.set(keys[0], "standalone")
        assert on_node(cluster, 0, keys[0]) is None
        client.provider.set_active_index(2)  # the cluster is healthy: allowed
        for key in keys:
            client.set(key, "cluster")
        assert [on_node(cluster, n, k) for n, k in enumerate(keys)] == [b"cluster"] * 3

        cluster.kill(0)
        killed = time.monotonic()
        errors: list[BaseException] = []
        while client.provider.active_index == 2 and time.monotonic() - killed < 5.0:
            try:
                client.set(keys[2], "x")  # a key on a live primary
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
        switch_time = time.monotonic() - killed
        assert errors == []
        assert client.provider.active_index == 1
        assert switch_time < 4.0  # node timeout (1 s) + failure detection + redis-py's 0.25 s
        assert wait_for(lambda: len(events) == 2)
        assert [e.reason for e in events] == [SwitchReason.MANUAL, SwitchReason.HEALTH_CHECK]
        with pytest.raises(ValueError, match="unhealthy"):
            client.provider.set_active_index(2)
        assert client.get(keys[0]) == b"standalone"
    finally:
        client.close()


def test_clusterdown_and_unreachable_cluster_are_connection_errors(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster()
    database = cluster_db(cluster)
    client = create_client(database)
    probe = create_client(database, socket_timeout=0.3, socket_connect_timeout=0.3)
    keys = cluster.keys_on_every_node("down")
    redis_py = redis.cluster.RedisCluster("127.0.0.1", cluster.ports[0])
    try:
        assert healthy(database, probe) is True
        client.set(keys[0], 1)
        cluster.kill(1)
        assert redis_py.ping() is True  # redis-py's cluster PING asks one node only
        assert healthy(database, probe) is False
        cluster.wait_until_state("fail", timeout=10)  # the others noticed: CLUSTERDOWN
        with pytest.raises(ClusterConnectionError) as down:
            client.set(keys[0], 2)
        assert isinstance(down.value.__cause__, redis.exceptions.ClusterDownError)
        assert down.value.never_sent is True
        with pytest.raises(ClusterConnectionError) as pipe_down:
            pipe: Any = client.pipeline(transaction=False)
            pipe.set(keys[0], 3).set(keys[2], 3).execute()
        assert pipe_down.value.never_sent is False  # other nodes may have run their part

        cluster.kill(0)
        cluster.kill(2)
        with pytest.raises(redis.exceptions.ConnectionError) as unreachable:
            client.set(keys[0], 4)
        if isinstance(unreachable.value, ClusterConnectionError):
            # no node answered the topology refresh that followed the failed command
            assert isinstance(unreachable.value.__cause__,
                              redis.exceptions.RedisClusterException)
        else:
            # redis-py >= 8.2 backs off refreshes after failed ones and gives up with the
            # node's own connection error: one that proves the command was never sent
            assert "connecting to" in str(unreachable.value)
            assert never_sent(unreachable.value) is True
        assert healthy(database, probe) is False
        assert healthy(database) is False  # a fresh probe client cannot even initialize
    finally:
        for c in (client, probe, redis_py):
            c.close()


def test_unreachable_cluster_at_startup_does_not_stop_the_client(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    databases = [
        DatabaseConfig("127.0.0.1", port, cluster=True, name="cluster",
                       client_kwargs=dict(TIMEOUTS)),
        standalone_db(redis_server),
    ]
    client = FailoverRedis.from_config(multi(databases))
    try:
        assert client.provider.active_index == 2
        assert client.set("k", "v") is True
        assert redis_server.client().get("k") == b"v"
        assert client.provider.status()[0]["healthy"] is False
        with pytest.raises(ValueError, match="unhealthy"):
            client.provider.set_active_index(1)
    finally:
        client.close()


# --- PingHealthCheck's cluster policy --------------------------------------------------------


def test_cluster_policy_defaults_to_every_primary() -> None:
    from faulttol_redis import HealthCheckPolicy
    from faulttol_redis.healthcheck import DEFAULT_CLUSTER_POLICY

    assert DEFAULT_CLUSTER_POLICY is HealthCheckPolicy.HEALTHY_ALL
    assert PingHealthCheck().cluster_policy is HealthCheckPolicy.HEALTHY_ALL
    assert MultiDbConfig([DatabaseConfig()]).health_checks == (
        PingHealthCheck(cluster_policy=HealthCheckPolicy.HEALTHY_ALL),
    )


@pytest.mark.parametrize("value", ["healthy_all", "HEALTHY_MAJORITY", None, 1, True])
def test_cluster_policy_must_be_a_health_check_policy(value: Any) -> None:
    with pytest.raises(TypeError, match="cluster_policy must be a HealthCheckPolicy") as caught:
        PingHealthCheck(cluster_policy=value)
    assert isinstance(caught.value, ValueError)  # the project's rule for bad config
    with pytest.raises(TypeError):
        PingHealthCheck(value)  # type: ignore[call-arg]  # keyword-only


def test_cluster_policy_repr_equality_hash_and_pickle() -> None:
    import pickle

    from faulttol_redis import HealthCheckPolicy

    every = PingHealthCheck()
    majority = PingHealthCheck(cluster_policy=HealthCheckPolicy.HEALTHY_MAJORITY)
    any_one = PingHealthCheck(cluster_policy=HealthCheckPolicy.HEALTHY_ANY)
    assert repr(every) == "PingHealthCheck()"
    assert repr(majority) == "PingHealthCheck(cluster_policy=HealthCheckPolicy.HEALTHY_MAJORITY)"
    for check in (every, majority, any_one):
        assert eval(repr(check), {"PingHealthCheck": PingHealthCheck,
                                  "HealthCheckPolicy": HealthCheckPolicy}) == check
        assert pickle.loads(pickle.dumps(check)) == check
    assert every == PingHealthCheck(cluster_policy=HealthCheckPolicy.HEALTHY_ALL)
    assert every != majority != any_one != every
    assert every != "PingHealthCheck()"
    assert len({every, PingHealthCheck(), majority, any_one,
                PingHealthCheck(cluster_policy=HealthCheckPolicy.HEALTHY_ANY)}) == 3
    with pytest.raises(AttributeError):
        majority.cluster_policy = HealthCheckPolicy.HEALTHY_ALL  # type: ignore[misc]
    config = MultiDbConfig([DatabaseConfig()], health_checks=(majority,))
    assert config.health_checks == (majority,)
    assert "HEALTHY_MAJORITY" in repr(config)


@pytest.mark.parametrize(
    ("policy", "answers", "verdict", "asked"),
    [
        ("HEALTHY_ALL", [True, True, True], True, 3),
        ("HEALTHY_ALL", [True, False, True], False, 2),  # decided at the first silence
        ("HEALTHY_MAJORITY", [True, False, True], True, 3),
        ("HEALTHY_MAJORITY", [True, True, False], True, 2),  # 2 of 3: decided
        ("HEALTHY_MAJORITY", [False, False, True], False, 2),
        ("HEALTHY_MAJORITY", [True, False, True, False], False, 4),  # a tie is unhealthy
        ("HEALTHY_ANY", [False, False, True], True, 3),
        ("HEALTHY_ANY", [True, False, False], True, 1),
        ("HEALTHY_ANY", [False, False, False], False, 3),
        ("HEALTHY_ANY", [False], False, 1),
    ],
)
def test_primary_answers_decide_by_policy(
    policy: str, answers: list[bool], verdict: bool, asked: int
) -> None:
    """The decision logic the sync and asyncio checks share, without a cluster."""
    from faulttol_redis import HealthCheckPolicy
    from faulttol_redis._cluster_health import _PrimaryRound

    asking = _PrimaryRound(HealthCheckPolicy[policy], len(answers), covered=True)
    count = 0
    for answered in answers:
        count += 1
        if asking.record(answered):
            break
    assert count == asked
    assert asking.outcome() is verdict


def test_primary_answers_are_never_vacuously_healthy() -> None:
    from faulttol_redis import HealthCheckPolicy
    from faulttol_redis._cluster_health import _PrimaryRound

    for policy in HealthCheckPolicy:
        assert _PrimaryRound(policy, 0, covered=True).outcome() is False
    # Every slot served is part of HEALTHY_ALL only: the others tolerate missing slots.
    assert _PrimaryRound(HealthCheckPolicy.HEALTHY_ALL, 3, covered=False).outcome() is False
    for policy in (HealthCheckPolicy.HEALTHY_MAJORITY, HealthCheckPolicy.HEALTHY_ANY):
        asking = _PrimaryRound(policy, 3, covered=False)
        asking.record(True)
        asking.record(True)
        assert asking.outcome() is True
    # A silent primary's error is what the probe raises when the policy is not met.
    asking = _PrimaryRound(HealthCheckPolicy.HEALTHY_MAJORITY, 3, covered=True)
    error = redis.exceptions.ConnectionError("node 2 refused")
    asking.record(False, error)
    asking.record(False, redis.exceptions.TimeoutError("node 3 timed out"))
    assert asking.worth_reloading
    with pytest.raises(redis.exceptions.TimeoutError, match="node 3"):
        asking.outcome()
    met = _PrimaryRound(HealthCheckPolicy.HEALTHY_ANY, 2, covered=True)
    met.record(False, error)
    met.record(True)
    assert not met.worth_reloading
    assert met.outcome() is True


def test_sync_cluster_policies_on_a_paused_primary(cluster: LocalCluster) -> None:
    """A primary that does not answer in time: ALL fails (the timeout propagates), MAJORITY
    and ANY pass; every policy passes again once it answers."""
    from faulttol_redis import HealthCheckPolicy

    database = cluster_db(cluster)
    client = cluster_client(database, socket_timeout=0.3, socket_connect_timeout=0.3)
    checks = {p: PingHealthCheck(cluster_policy=p) for p in HealthCheckPolicy}
    try:
        assert all(check.check(client, database) is True for check in checks.values())
        cluster.nodes[1].pause()
        try:
            with pytest.raises(redis.exceptions.TimeoutError):
                checks[HealthCheckPolicy.HEALTHY_ALL].check(client, database)
            assert checks[HealthCheckPolicy.HEALTHY_MAJORITY].check(client, database) is True
            assert checks[HealthCheckPolicy.HEALTHY_ANY].check(client, database) is True
        finally:
            cluster.nodes[1].resume()
        assert all(check.check(client, database) is True for check in checks.values())
    finally:
        client.close()
