"""faulttol_redis.chaos: chaos in one database's connections, against real redis-servers.

The failover client and its provider are the production code; only database 1's redis-py
connections get the chaos, and the tests check what the application sees (no error for
replay-safe commands), where the data went, and the switches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

import faulttol_redis.asyncio
from faulttol.chaos import ChaosBehavior, ChaosFault, ChaosLatency, ChaosOutcome
from faulttol.testing import FakeClock
from faulttol_redis import (
    DatabaseConfig,
    FailoverRedis,
    MultiDbConfig,
    SwitchEvent,
    SwitchReason,
)
from faulttol_redis.chaos import chaos_connection_class, chaos_database
from faulttol_redis.testing import RedisServer

Servers = Callable[[int], list[RedisServer]]

TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def chaos_error() -> RedisConnectionError:
    return RedisConnectionError("chaos: database 1 is down")


def config_with_chaos(servers: list[RedisServer], *strategies: Any, where: str = "send",
                      for_asyncio: bool = False) -> MultiDbConfig:
    first = chaos_database(
        DatabaseConfig("127.0.0.1", servers[0].port, name="db1", client_kwargs=dict(TIMEOUTS)),
        *strategies, where=where, for_asyncio=for_asyncio,
    )
    second = DatabaseConfig("127.0.0.1", servers[1].port, name="db2",
                            client_kwargs=dict(TIMEOUTS))
    return MultiDbConfig([first, second], health_check_interval=0.2,
                         health_check_probe_delay=0.01, health_check_timeout=0.3)


# --- the game day: a ConnectionError on every request to database 1 -----------------------------


def test_chaos_connection_errors_on_database_1_fail_over_to_database_2_with_no_app_error(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    switch = {"on": False}
    fault = ChaosFault(1.0, chaos_error, enabled=lambda: switch["on"], name="east-down")
    injected: list[Any] = []
    fault.events.on_fault(injected.append)
    client = FailoverRedis.from_config(config_with_chaos(servers, fault))
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    try:
        assert client.set("before", "1") is True
        assert client.provider.active_index == 1
        switch["on"] = True  # the game day starts
        for i in range(50):
            assert client.set(f"key:{i}", i) is True  # not one application error
        assert client.provider.active_index == 2
        assert [(e.previous_index, e.index) for e in events] == [(1, 2)]
        assert events[0].reason in (SwitchReason.HEALTH_CHECK, SwitchReason.CIRCUIT_BREAKER)
        assert injected  # the strategy's events tell the team what it did
        on_second = servers[1].client()
        assert [on_second.get(f"key:{i}") for i in range(50)] == [
            str(i).encode() for i in range(50)]
        on_first = servers[0].client()
        assert on_first.get("before") == b"1"
        assert on_first.exists(*[f"key:{i}" for i in range(50)]) == 0  # never sent there
    finally:
        client.close()


def test_a_fault_after_the_write_replays_safe_commands_but_not_an_incr(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    switch = {"on": False}
    fault = ChaosFault(1.0, chaos_error, enabled=lambda: switch["on"])
    client = FailoverRedis.from_config(config_with_chaos(servers, fault, where="reply"))
    try:
        assert client.set("before", "1") is True
        assert client.provider.active_index == 1
        switch["on"] = True
        with pytest.raises(RedisConnectionError):
            client.incr("counter")  # ran on database 1, its reply lost: not run again
        assert servers[0].client().get("counter") == b"1"
        assert servers[1].client().get("counter") is None
        assert client.set("safe", "v") is True  # replay-safe: no error, wherever it landed
        assert servers[1].client().get("safe") == b"v"
        assert client.provider.active_index == 2
        assert client.incr("counter") == 1  # database 2 from now on
    finally:
        client.close()


def test_asyncio_client_fails_over_under_chaos(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    switch = {"on": False}
    fault = ChaosFault(1.0, chaos_error, enabled=lambda: switch["on"])
    config = config_with_chaos(servers, fault, for_asyncio=True)

    async def main() -> list[SwitchEvent]:
        client = faulttol_redis.asyncio.FailoverRedis.from_config(config)
        events: list[SwitchEvent] = []
        client.provider.add_switch_listener(events.append)
        try:
            assert await client.set("before", "1") is True
            switch["on"] = True
            for i in range(20):
                assert await client.set(f"key:{i}", i) is True
            assert client.provider.active_index == 2
        finally:
            await client.aclose()
        return events

    events = asyncio.run(main())
    assert [(e.previous_index, e.index) for e in events] == [(1, 2)]
    assert servers[1].client().get("key:19") == b"19"
    assert servers[0].client().exists("key:0") == 0


def test_a_sync_config_is_refused_by_the_asyncio_client_classes(
    redis_servers: Servers,
) -> None:
    server = redis_servers(1)[0]
    cls = chaos_connection_class(ChaosFault(0.0, chaos_error), for_asyncio=True)
    assert issubclass(cls, redis.asyncio.connection.Connection)
    assert issubclass(cls, faulttol_redis._connection.AsyncFailoverConnection)

    async def main() -> bytes:
        client = redis.asyncio.Redis.from_url(server.url, connection_class=cls)
        try:
            await client.set("k", "v")
            return bytes(await client.get("k"))
        finally:
            await client.aclose()

    assert asyncio.run(main()) == b"v"


# --- what each strategy does in a connection --------------------------------------------------


def plain_client(server: RedisServer, *strategies: Any, where: str = "send") -> redis.Redis:
    cls = chaos_connection_class(*strategies, where=where)
    return redis.Redis.from_url(server.url, connection_class=cls, **TIMEOUTS)


def test_an_outcome_replaces_the_reply_and_the_connection_stays_in_step(
    redis_servers: Servers,
) -> None:
    server = redis_servers(1)[0]
    server.client().set("k", "real")
    switch = {"on": True}
    client = plain_client(server, ChaosOutcome(1.0, b"fake", enabled=lambda: switch["on"]),
                          where="reply")
    try:
        assert client.get("k") == b"fake"
        switch["on"] = False
        assert client.get("k") == b"real"  # the real reply of the first GET was read and dropped
        assert client.get("k") == b"real"
    finally:
        client.close()


def test_latency_before_the_send_and_behavior_run_on_each_request(
    redis_servers: Servers,
) -> None:
    server = redis_servers(1)[0]
    clock = FakeClock()
    calls: list[str] = []
    client = plain_client(
        server,
        ChaosLatency(1.0, 0.25, clock=clock),
        ChaosBehavior(1.0, lambda: calls.append("behavior")),
    )
    try:
        client.ping()
        client.set("a", 1)
        pipe = client.pipeline()
        pipe.set("b", 2).get("b")
        assert pipe.execute() == [True, b"2"]  # one request: one injection
    finally:
        client.close()
    assert calls == ["behavior"] * 3  # PING, SET, the pipeline: the handshake is left alone
    assert clock.sleeps == [0.25] * 3


def test_a_fault_before_the_send_is_marked_never_sent(redis_servers: Servers) -> None:
    server = redis_servers(1)[0]
    client = plain_client(server, ChaosFault(1.0, chaos_error))
    try:
        with pytest.raises(RedisConnectionError) as raised:
            client.incr("n")
    finally:
        client.close()
    assert getattr(raised.value, "never_sent", None) is True
    assert server.client().get("n") is None


def test_a_fault_after_the_write_is_marked_ambiguous_and_drops_the_connection(
    redis_servers: Servers,
) -> None:
    server = redis_servers(1)[0]
    switch = {"on": True}
    client = plain_client(server, ChaosFault(1.0, lambda: ResponseError("chaos"),
                                             enabled=lambda: switch["on"]), where="reply")
    try:
        with pytest.raises(ResponseError) as raised:
            client.incr("n")
        assert getattr(raised.value, "never_sent", None) is False
        switch["on"] = False
        assert client.incr("n") == 2  # the first INCR ran; a fresh connection, in step
    finally:
        client.close()


# --- the config copy ----------------------------------------------------------------------------


def test_the_copy_keeps_endpoint_name_weight_and_secrets_out_of_its_repr() -> None:
    original = DatabaseConfig("127.0.0.1", 6390, name="east", weight=2.0,
                              client_kwargs={"password": "s3cret", "db": 3, **TIMEOUTS})
    copy = chaos_database(original, ChaosFault(0.5, chaos_error))
    assert (copy.endpoint, copy.name, copy.weight, copy.db) == ("127.0.0.1:6390/3", "east",
                                                                2.0, 3)
    assert copy.endpoint_key == original.endpoint_key
    assert copy.client_kwargs is not None
    assert copy.client_kwargs["password"] == "s3cret"
    assert "s3cret" not in repr(copy)
    assert original.url is None and original.client_kwargs is not None
    assert "connection_class" not in original.client_kwargs  # the original is untouched
    tls = chaos_database(DatabaseConfig("::1", 6390, client_kwargs={"ssl": True}),
                         ChaosFault(0.5, chaos_error))
    assert tls.url == "rediss://[::1]:6390/0"
    assert tls.client_kwargs is not None
    assert issubclass(tls.client_kwargs["connection_class"], redis.connection.SSLConnection)
    by_url = chaos_database(DatabaseConfig(url="unix:///tmp/redis.sock?db=2"),
                            ChaosFault(0.5, chaos_error), for_asyncio=True)
    assert by_url.client_kwargs is not None
    assert issubclass(by_url.client_kwargs["connection_class"],
                      redis.asyncio.connection.UnixDomainSocketConnection)


def test_invalid_uses_are_refused() -> None:
    database = DatabaseConfig("127.0.0.1", 6390)
    fault = ChaosFault(1.0, chaos_error)
    with pytest.raises(ValueError, match="cluster"):
        chaos_database(DatabaseConfig("127.0.0.1", 7000, cluster=True), fault)
    with pytest.raises(ValueError, match="connection_class"):
        chaos_database(DatabaseConfig(url="redis://127.0.0.1:6390",
                                      client_kwargs={"connection_class": redis.Connection}),
                       fault)
    with pytest.raises(ValueError, match="at least one"):
        chaos_database(database)
    with pytest.raises(TypeError, match="strategies"):
        chaos_database(database, "boom")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="where"):
        chaos_database(database, fault, where="later")
    with pytest.raises(ValueError, match="reply"):
        chaos_database(database, ChaosOutcome(1.0, b"x"))
    with pytest.raises(TypeError, match="DatabaseConfig"):
        chaos_database("127.0.0.1:6390", fault)  # type: ignore[arg-type]
