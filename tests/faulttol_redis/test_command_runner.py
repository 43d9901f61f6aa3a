"""How the failover clients reach a database's redis-py client: ``Database.execute``.

For a plain ``redis.Redis`` whose ``execute_command`` only forwards to ``_execute_command``
(redis-py 8) the clients call the latter directly (one frame less per command); any class
that overrides ``execute_command`` (a subclass, an instrumentation wrapper, a cluster client)
is always called through its override. Real server: the command must still run.
"""

from __future__ import annotations

from typing import Any

import redis

from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig
from faulttol_redis._clients import command_runner
from faulttol_redis.testing import RedisServer


def _forwards() -> bool:
    code = redis.Redis.execute_command.__code__
    return code.co_names == ("_execute_command",)


class _Counting(redis.Redis):
    calls = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        type(self).calls += 1
        return super().execute_command(*args, **options)


def test_a_plain_client_is_run_through_its_execute_command_body(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        run = command_runner(client)
        if _forwards():
            assert run == client._execute_command
        else:
            assert run == client.execute_command
        assert run("SET", "k", "v") is True
        assert run("GET", "k", keys=["k"]) == b"v"
    finally:
        client.close()


def test_an_overridden_execute_command_is_always_called(redis_server: RedisServer) -> None:
    client = _Counting(host="127.0.0.1", port=redis_server.port)
    try:
        run = command_runner(client)
        assert run == client.execute_command
        _Counting.calls = 0
        assert run("PING") is True
        assert _Counting.calls == 1
    finally:
        client.close()


def test_setting_a_database_client_sets_what_the_failover_client_calls(
    redis_server: RedisServer,
) -> None:
    client = FailoverRedis.from_config(
        MultiDbConfig([DatabaseConfig("127.0.0.1", redis_server.port)]))
    replacement = _Counting(host="127.0.0.1", port=redis_server.port)
    try:
        db = client.provider.ordered_provider.slot(1).target
        original = db.client
        assert db.execute == command_runner(original)
        db.client = replacement
        _Counting.calls = 0
        assert client.set("k", "v") is True
        assert client.get("k") == b"v"
        assert _Counting.calls == 2  # every command went through the new client
        db.client = original
    finally:
        replacement.close()
        client.close()


async def test_the_asyncio_database_runs_commands_through_execute_command(
    redis_server: RedisServer,
) -> None:
    import faulttol_redis.asyncio

    client = faulttol_redis.asyncio.FailoverRedis.from_config(
        MultiDbConfig([DatabaseConfig("127.0.0.1", redis_server.port)]))
    try:
        await client.initialize()
        db = client.provider.ordered_provider.slot(1).target
        assert db.execute == db.client.execute_command
        assert await client.set("k", "v") is True
        assert await client.get("k") == b"v"
    finally:
        await client.aclose()


def test_a_marking_connection_subclass_that_overrides_sending_sees_every_command(
    redis_server: RedisServer,
) -> None:
    # The marking connection packs and sends a command itself (one frame less) only when
    # nothing in front of it overrides send_packed_command: a subclass's override runs.
    from faulttol_redis._connection import FailoverConnection

    sent: list[bytes] = []

    class Recording(FailoverConnection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sent.append(b"".join(command) if isinstance(command, list) else command)
            super().send_packed_command(command, check_health)

    assert Recording._ft_pack_then_send is False
    pool = redis.ConnectionPool(host="127.0.0.1", port=redis_server.port,
                                connection_class=Recording)
    client = redis.Redis(connection_pool=pool)
    try:
        assert client.set("k", "v") is True
        assert client.get("k") == b"v"
        assert any(b"SET" in chunk for chunk in sent) and any(b"GET" in chunk for chunk in sent)
    finally:
        client.close()
