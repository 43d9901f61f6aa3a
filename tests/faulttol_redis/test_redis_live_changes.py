"""Weights, strategies and live reconfiguration of the sync failover client, under traffic."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from faulttol_redis import (
    DatabaseConfig,
    FailoverRedis,
    MultiDbConfig,
    PingHealthCheck,
    SwitchEvent,
    SwitchReason,
)
from faulttol_redis.testing import RedisServer

Servers = Callable[[int], list[RedisServer]]
TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def db(server: RedisServer, name: str, weight: float = 1.0) -> DatabaseConfig:
    return DatabaseConfig("127.0.0.1", server.port, name=name, weight=weight,
                          client_kwargs=dict(TIMEOUTS))


def make_config(dbs: list[DatabaseConfig], **kwargs: Any) -> MultiDbConfig:
    kwargs.setdefault("health_check_interval", 0.2)
    kwargs.setdefault("health_check_probe_delay", 0.01)
    kwargs.setdefault("health_check_timeout", 0.3)
    return MultiDbConfig(dbs, **kwargs)


class Traffic:
    """Threads doing SETs until stopped; counts successes and errors."""

    def __init__(self, client: FailoverRedis, threads: int = 8) -> None:
        self.client = client
        self.stop = threading.Event()
        self.ok = 0
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i: int) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                self.client.set(f"t{i}", n)
                with self.lock:
                    self.ok += 1
            except Exception as exc:  # anything, so that a dying thread cannot hide
                with self.lock:
                    self.errors.append(exc)
            n += 1

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)
        assert not any(t.is_alive() for t in self.threads)


def test_weighted_strategy_starts_on_the_heaviest_and_set_weight_steers_failover(
    redis_servers: Servers,
) -> None:
    a, b, c = redis_servers(3)
    config = make_config([db(a, "a", 1), db(b, "b", 5), db(c, "c", 3)],
                         failover_strategy="weighted")
    client = FailoverRedis.from_config(config)
    try:
        assert client.provider.active_index == 2
        client.provider.set_weight(1, 10)  # later choices only: no switch now
        assert client.provider.active_index == 2
        b.kill()
        client.set("k", 1)
        assert client.provider.active_index == 1  # heaviest eligible, not the next in order
        with pytest.raises(ValueError, match="weight"):
            client.provider.set_weight(1, -1)
        with pytest.raises(ValueError):
            client.provider.set_weight(9, 1)
    finally:
        client.close()


def test_unknown_strategy_is_refused(redis_servers: Servers) -> None:
    (a,) = redis_servers(1)
    with pytest.raises(ValueError, match="failover_strategy"):
        make_config([db(a, "a")], failover_strategy="random")


def test_add_and_remove_databases_under_traffic(redis_servers: Servers) -> None:
    a, b, c = redis_servers(3)
    client = FailoverRedis.from_config(make_config([db(a, "a"), db(b, "b")]))
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    try:
        with Traffic(client) as traffic:
            time.sleep(0.1)
            index = client.provider.add_database(db(c, "c"))
            assert index == 3
            with pytest.raises(ValueError, match="duplicate"):
                client.provider.add_database(db(c, "c-again"))
            client.provider.set_active_index(3)
            time.sleep(0.1)
            client.provider.remove_database(1)  # not active: indices shift down
            assert client.provider.active_index == 2
            assert events[-1] == SwitchEvent(3, 2, SwitchReason.MANUAL)
            time.sleep(0.1)
            client.provider.remove_database(2)  # the active one: switched away first
            assert client.provider.active_index == 1
            time.sleep(0.1)
            with pytest.raises(ValueError, match="last"):
                client.provider.remove_database(1)
        assert traffic.errors == []
        assert traffic.ok > 0
        assert [d.name for d in client.provider.databases] == ["b"]
        assert b.client().exists("t0") == 1
    finally:
        client.close()


def test_remove_database_out_of_range(redis_servers: Servers) -> None:
    a, b = redis_servers(2)
    client = FailoverRedis.from_config(make_config([db(a, "a"), db(b, "b")]))
    try:
        for bad in (0, 3):
            with pytest.raises(ValueError):
                client.provider.remove_database(bad)
        assert len(client.provider.databases) == 2
    finally:
        client.close()


def test_add_health_check_takes_effect(redis_servers: Servers) -> None:
    a, b = redis_servers(2)
    client = FailoverRedis.from_config(make_config([db(a, "a"), db(b, "b")]))

    class RefuseFirst:
        def check(self, c: Any, database: DatabaseConfig) -> bool:
            return database.name != "a"

        async def check_async(self, c: Any, database: DatabaseConfig) -> bool:
            return database.name != "a"

    try:
        client.provider.add_health_check(RefuseFirst())
        deadline = time.monotonic() + 3
        while client.provider.active_index != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.provider.active_index == 2
        assert [row["healthy"] for row in client.provider.status()] == [False, True]
    finally:
        client.close()


def test_health_checks_can_be_turned_off(redis_servers: Servers) -> None:
    a, b = redis_servers(2)
    client = FailoverRedis.from_config(make_config([db(a, "a"), db(b, "b")], health_checks=()))
    try:
        a.kill()
        assert client.set("k", 1) is True  # breaker + fallback list still fail over
        assert client.provider.active_index == 2
    finally:
        client.close()


def test_ping_health_check_is_the_default(redis_servers: Servers) -> None:
    (a,) = redis_servers(1)
    config = make_config([db(a, "a")])
    assert any(isinstance(c, PingHealthCheck) for c in config.health_checks)


def test_add_health_check_turns_checks_on_when_they_were_off(redis_servers: Servers) -> None:
    a, b = redis_servers(2)
    client = FailoverRedis.from_config(make_config([db(a, "a"), db(b, "b")], health_checks=()))
    try:
        client.provider.add_health_check(PingHealthCheck())
        a.kill()  # no command runs: only the newly enabled background checks can notice
        deadline = time.monotonic() + 3
        while client.provider.active_index != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.provider.active_index == 2
        assert [row["healthy"] for row in client.provider.status()] == [False, True]
    finally:
        client.close()
