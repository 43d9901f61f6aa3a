"""Hang detection against real redis-server processes: a hung database never stalls a command.

Faults are real: SIGSTOP (``RedisServer.pause``), ``CLIENT PAUSE``, ``DEBUG SLEEP`` and a
black-hole TCP proxy on loopback that stops forwarding both ways without closing anything.
No socket timeouts are set on the command clients (redis-py's default: wait forever), so
only hang detection can release a waiting command.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import faulttol_redis.asyncio as ftr_asyncio
from faulttol_redis import (
    DatabaseConfig,
    FailoverRedis,
    MultiDbConfig,
    OutcomeUnknownError,
    SwitchEvent,
    SwitchReason,
    TemporaryUnavailableError,
)
from faulttol_redis.testing import BlackHoleProxy, RedisServer

Servers = Callable[[int], list[RedisServer]]

TUNED = {"hang_detection_after": 0.05, "hang_probe_timeout": 0.1}
SLACK = 0.6
"""Seconds allowed on top of the detection window (a loaded 2-core machine)."""


def config_for(ports: list[int], **kwargs: Any) -> MultiDbConfig:
    """Databases with redis-py's default socket settings (no timeouts)."""
    return MultiDbConfig(
        [DatabaseConfig("127.0.0.1", p, name=f"db{i}") for i, p in enumerate(ports, start=1)],
        **kwargs,
    )


@pytest.fixture
def pair(redis_servers: Servers) -> Iterator[tuple[FailoverRedis, list[RedisServer],
                                                    list[SwitchEvent]]]:
    servers = redis_servers(2)
    client = FailoverRedis.from_config(config_for([s.port for s in servers], **TUNED))
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    try:
        yield client, servers, events
    finally:
        for s in servers:
            if s.is_paused:
                s.resume()
        client.close()


def _window(client: Any) -> float:
    config = client.provider.config
    return float(config.hang_detection_after + config.hang_probe_timeout)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            out["result"] = fn()
        except BaseException as exc:
            out["error"] = exc
        out["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _warm(client: FailoverRedis) -> None:
    """A pooled connection exists on database 1 (so the next command does not connect)."""
    client.set("warm", 1)


def test_sigstop_releases_a_waiting_get_and_replays_it_on_the_next_database(pair: Any) -> None:
    client, servers, events = pair
    _warm(client)
    servers[1].client().set("k", "from db2")
    servers[0].pause()
    started = time.monotonic()
    assert client.get("k") == b"from db2"
    elapsed = time.monotonic() - started
    assert elapsed < _window(client) + SLACK, elapsed
    assert client.provider.active_index == 2
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
    rows = client.provider.status()
    assert rows[0]["hang_detections"] == 1
    assert rows[1]["hang_detections"] == 0


def test_sigstop_fails_a_waiting_incr_with_outcome_unknown(pair: Any) -> None:
    client, servers, _ = pair
    _warm(client)
    servers[0].pause()
    started = time.monotonic()
    with pytest.raises(OutcomeUnknownError, match="outcome is unknown") as info:
        client.incr("counter")
    assert "db1" in str(info.value)
    assert isinstance(info.value, redis.exceptions.TimeoutError)
    assert time.monotonic() - started < _window(client) + SLACK
    assert client.provider.active_index == 2
    assert client.incr("counter") == 1  # new commands run on database 2


def test_default_settings_release_a_hung_command_within_about_a_second(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = FailoverRedis.from_config(config_for([s.port for s in servers]))
    try:
        _warm(client)
        servers[0].pause()
        started = time.monotonic()
        assert client.set("k", "v") is True  # replay-safe: runs again on database 2
        elapsed = time.monotonic() - started
        assert elapsed < 1.0 + SLACK, elapsed
        assert servers[1].client().get("k") == b"v"
    finally:
        servers[0].resume()
        client.close()


def test_a_hung_handshake_is_released_and_the_command_replayed(pair: Any) -> None:
    client, servers, _ = pair
    # No command ran yet: the command pool is empty, so GET connects (the kernel accepts
    # the TCP connection of a stopped server) and then waits on the handshake.
    assert not client.provider.client(1).connection_pool._in_use_connections
    servers[1].client().set("k", "v2")
    servers[0].pause()
    started = time.monotonic()
    assert client.get("k") == b"v2"
    assert time.monotonic() - started < _window(client) + SLACK
    assert client.provider.active_index == 2


def test_black_hole_proxy_is_detected(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    proxy = BlackHoleProxy(servers[0].port)
    client = FailoverRedis.from_config(config_for([proxy.port, servers[1].port], **TUNED))
    try:
        _warm(client)
        proxy.freeze()
        started = time.monotonic()
        assert client.set("k", "v") is True
        assert time.monotonic() - started < _window(client) + SLACK
        assert client.provider.active_index == 2
        assert servers[1].client().get("k") == b"v"
    finally:
        client.close()
        proxy.close()


def test_client_pause_all_is_detected(pair: Any) -> None:
    client, servers, _ = pair
    _warm(client)
    servers[0].client().execute_command("CLIENT", "PAUSE", 3000, "ALL")
    started = time.monotonic()
    assert client.set("k", "v") is True
    assert time.monotonic() - started < _window(client) + SLACK
    assert client.provider.active_index == 2


def test_debug_sleep_shorter_than_the_window_is_not_a_hang(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    client = FailoverRedis.from_config(
        config_for([s.port for s in servers], hang_detection_after=0.2, hang_probe_timeout=0.8)
    )
    try:
        _warm(client)
        # The probe goes out 0.2 s in and waits behind the sleep: it answers at 0.5 s.
        assert client.execute_command("DEBUG", "SLEEP", "0.5") in (True, b"OK", "OK")
        assert client.provider.active_index == 1
        assert client.provider.status()[0]["hang_detections"] == 0
    finally:
        client.close()


def test_debug_sleep_longer_than_the_window_fails_over(pair: Any) -> None:
    client, servers, events = pair
    _warm(client)
    sleeper, _ = _in_thread(lambda: servers[0].client().execute_command("DEBUG", "SLEEP", 2))
    time.sleep(0.05)  # let the sleep start on the server
    started = time.monotonic()
    assert client.set("k", "v") is True
    assert time.monotonic() - started < _window(client) + SLACK
    assert client.provider.active_index == 2
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
    sleeper.join()


def test_blpop_with_its_own_timeout_on_a_healthy_database_is_not_detected(pair: Any) -> None:
    client, servers, events = pair
    assert client.blpop(["empty"], timeout=1) is None
    assert client.provider.active_index == 1
    assert events == []
    assert client.provider.status()[0]["hang_detections"] == 0


def test_replay_safe_pipeline_is_replayed_and_a_transaction_fails_unknown(pair: Any) -> None:
    client, servers, _ = pair
    _warm(client)
    servers[0].pause()
    pipe = client.pipeline(transaction=False)
    pipe.set("a", 1).set("b", 2).get("a")
    assert pipe.execute() == [True, True, b"1"]
    assert client.provider.active_index == 2
    servers[0].resume()


def test_a_transaction_with_writes_waiting_on_a_hung_database_fails_unknown(
    pair: Any,
) -> None:
    client, servers, _ = pair
    _warm(client)
    servers[0].pause()
    pipe = client.pipeline(transaction=True)
    pipe.incr("n").incr("n")
    with pytest.raises(OutcomeUnknownError):
        pipe.execute()
    assert client.provider.active_index == 2


def test_sixteen_threads_waiting_on_a_hung_database_are_released_together(
    pair: Any,
) -> None:
    client, servers, _ = pair
    for i in range(16):
        client.set(f"warm{i}", i)
    servers[1].client().set("k", "v")
    barrier = threading.Barrier(17)

    def work(i: int) -> Callable[[], Any]:
        def run() -> Any:
            barrier.wait()
            return client.incr(f"n{i}") if i % 2 else client.get("k")
        return run

    threads = [_in_thread(work(i)) for i in range(16)]
    servers[0].pause()
    barrier.wait()
    started = time.monotonic()
    for thread, _ in threads:
        thread.join(10)
    elapsed = time.monotonic() - started
    assert elapsed < _window(client) + SLACK + 0.5, elapsed
    for i, (_, out) in enumerate(threads):
        if i % 2:  # INCR: ran on database 2 or its outcome is unknown
            assert "result" in out or isinstance(out["error"], OutcomeUnknownError), out
        else:
            assert out.get("result") == b"v", out
    assert client.provider.status()[0]["hang_detections"] == 1


def test_every_database_hung_waiting_commands_fail_unknown_new_ones_unavailable(
    pair: Any,
) -> None:
    client, servers, _ = pair
    _warm(client)
    servers[1].pause()
    servers[0].pause()
    with pytest.raises(OutcomeUnknownError):
        client.incr("n")
    # Database 2 is found hung by the next command that waits on it (or its health check).
    with pytest.raises((OutcomeUnknownError, TemporaryUnavailableError)):
        client.incr("n")
    with pytest.raises(TemporaryUnavailableError):
        client.get("k")


def test_detection_off_leaves_the_command_waiting(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    client = FailoverRedis.from_config(
        config_for([s.port for s in servers], hang_detection_after=None)
    )
    try:
        _warm(client)
        servers[0].pause()
        thread, out = _in_thread(lambda: client.get("k"))
        thread.join(0.6)
        assert thread.is_alive()  # nothing releases it
        servers[0].resume()
        thread.join(5)
        assert out.get("result") is None and "error" not in out
        assert client.provider.active_index == 1
    finally:
        client.close()


def test_pubsub_connections_are_never_watched(pair: Any) -> None:
    client, servers, events = pair
    pubsub = client.pubsub()
    pubsub.subscribe("ch")
    # The confirmation is left unread for several windows: no probe, no detection.
    time.sleep(0.4)
    assert client.provider.status()[0]["hang_detections"] == 0
    conn = pubsub.connection
    assert conn is not None and conn._ft_unwatched
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    pubsub.close()
    assert events == []


def test_hang_detections_are_exported_per_database(pair: Any) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from faulttol.metrics.prometheus import PrometheusExporter

    client, servers, _ = pair
    registry = prometheus_client.CollectorRegistry()
    PrometheusExporter(registry).register_provider(client.provider)
    _warm(client)
    servers[0].pause()
    client.get("k")
    text = prometheus_client.generate_latest(registry).decode()
    assert ('faulttol_provider_target_hang_detections_total{index="1",provider="faulttol-redis",'
            'target="db1"} 1.0') in text
    assert ('faulttol_provider_target_hang_detections_total{index="2",provider="faulttol-redis",'
            'target="db2"} 0.0') in text


# --- asyncio -------------------------------------------------------------------------------


def _async_client(ports: list[int], **kwargs: Any) -> Any:
    return ftr_asyncio.FailoverRedis.from_config(config_for(ports, **kwargs))


async def test_async_sigstop_releases_a_waiting_get_and_replays_it(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = _async_client([s.port for s in servers], **TUNED)
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    try:
        await client.set("warm", 1)
        servers[1].client().set("k", "from db2")
        servers[0].pause()
        started = time.monotonic()
        assert await client.get("k") == b"from db2"
        assert time.monotonic() - started < _window(client) + SLACK
        assert client.provider.active_index == 2
        assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
        assert client.provider.status()[0]["hang_detections"] == 1
    finally:
        servers[0].resume()
        await client.aclose()


async def test_async_sigstop_fails_a_waiting_incr_with_outcome_unknown(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = _async_client([s.port for s in servers], **TUNED)
    try:
        await client.set("warm", 1)
        servers[0].pause()
        with pytest.raises(OutcomeUnknownError, match="db1"):
            await client.incr("n")
        assert client.provider.active_index == 2
        assert await client.incr("n") == 1
    finally:
        servers[0].resume()
        await client.aclose()


async def test_async_default_settings_release_within_about_a_second(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = _async_client([s.port for s in servers])
    try:
        await client.set("warm", 1)
        servers[0].pause()
        started = time.monotonic()
        assert await client.set("k", "v") is True
        assert time.monotonic() - started < 1.0 + SLACK
        assert servers[1].client().get("k") == b"v"
    finally:
        servers[0].resume()
        await client.aclose()


async def test_async_black_hole_proxy_is_detected(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    proxy = BlackHoleProxy(servers[0].port)
    client = _async_client([proxy.port, servers[1].port], **TUNED)
    try:
        await client.set("warm", 1)
        proxy.freeze()
        started = time.monotonic()
        assert await client.set("k", "v") is True
        assert time.monotonic() - started < _window(client) + SLACK
        assert client.provider.active_index == 2
    finally:
        await client.aclose()
        proxy.close()


async def test_async_hundred_tasks_waiting_on_a_hung_database_are_released_together(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = _async_client([s.port for s in servers], **TUNED)
    try:
        await asyncio.gather(*(client.set(f"warm{i}", i) for i in range(100)))
        servers[1].client().set("k", "v")
        servers[0].pause()
        started = time.monotonic()
        results = await asyncio.gather(
            *(client.incr(f"n{i}") if i % 2 else client.get("k") for i in range(100)),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
        assert elapsed < _window(client) + SLACK + 0.5, elapsed
        for i, result in enumerate(results):
            if i % 2:
                assert result == 1 or isinstance(result, OutcomeUnknownError), result
            else:
                assert result == b"v", result
        assert client.provider.status()[0]["hang_detections"] == 1
    finally:
        servers[0].resume()
        await client.aclose()


async def test_async_cancellation_during_detection_leaves_the_client_usable(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = _async_client([s.port for s in servers], hang_detection_after=0.2,
                           hang_probe_timeout=0.3)
    try:
        await client.set("warm", 1)
        servers[0].pause()
        task = asyncio.ensure_future(client.get("k"))
        await asyncio.sleep(0.3)  # the watchdog is probing now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.4)
        # The probe still failed: database 1 was left; new commands run on database 2.
        assert client.provider.active_index == 2
        assert await client.set("k", "v") is True
        assert servers[1].client().get("k") == b"v"
    finally:
        servers[0].resume()
        await client.aclose()


async def test_async_blpop_with_its_own_timeout_is_not_detected(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = _async_client([s.port for s in servers], **TUNED)
    try:
        assert await client.blpop(["empty"], timeout=1) is None
        assert client.provider.active_index == 1
        assert client.provider.status()[0]["hang_detections"] == 0
    finally:
        await client.aclose()


async def test_async_transaction_waiting_on_a_hung_database_fails_unknown(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    client = _async_client([s.port for s in servers], **TUNED)
    try:
        await client.set("warm", 1)
        servers[0].pause()
        pipe = client.pipeline(transaction=True)
        pipe.incr("n").incr("n")
        with pytest.raises(OutcomeUnknownError):
            await pipe.execute()
        pipe = client.pipeline(transaction=False)
        pipe.set("a", 1).get("a")
        assert await pipe.execute() == [True, b"1"]
    finally:
        servers[0].resume()
        await client.aclose()
