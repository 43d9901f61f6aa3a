"""FailoverRedis against real redis-server processes with real faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from faulttol import State
from faulttol.testing import FakeClock
from faulttol_redis import (
    DatabaseConfig,
    FailoverProvider,
    FailoverRedis,
    MultiDbConfig,
    NoValidDatabaseError,
    SwitchEvent,
    SwitchReason,
    TemporaryUnavailableError,
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


@pytest.fixture
def pair(redis_servers: Servers) -> Iterator[tuple[FailoverRedis, list[RedisServer],
                                                    list[SwitchEvent]]]:
    servers = redis_servers(2)
    client = FailoverRedis.from_config(config_for(servers))
    events: list[SwitchEvent] = []
    client.provider.add_switch_listener(events.append)
    try:
        yield client, servers, events
    finally:
        client.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_commands_run_on_the_first_database(pair: Any) -> None:
    client, servers, events = pair
    assert client.set("k", "v") is True
    assert client.get("k") == b"v"
    assert servers[0].client().get("k") == b"v"
    assert servers[1].client().get("k") is None
    assert client.provider.active_index == 1
    assert isinstance(client, redis.Redis)


def test_sigkill_fails_over_without_application_errors(pair: Any) -> None:
    client, servers, events = pair
    client.set("before", 1)
    servers[0].kill()
    started = time.monotonic()
    assert client.set("after", 2) is True
    elapsed = time.monotonic() - started
    assert client.provider.active_index == 2
    assert servers[1].client().get("after") == b"2"
    assert events == [SwitchEvent(1, 2, SwitchReason.HEALTH_CHECK)]
    assert elapsed < 1.0, elapsed


def test_no_automatic_failback_then_manual_failback(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    clock = FakeClock()
    # Health rounds are run by hand on a FakeClock: "no failback" is checked over many rounds
    # and well past the breaker's open wait and any grace period, without sleeping.
    provider = FailoverProvider(config_for(servers), clock=clock, start_health_checks=False)
    client = FailoverRedis(provider)
    events: list[SwitchEvent] = []
    provider.add_switch_listener(events.append)
    try:
        servers[0].kill()
        client.set("x", 1)
        assert provider.active_index == 2
        servers[0].restart()
        for _ in range(50):  # 50 rounds of 5 s: past the 60 s open wait and the grace period
            clock.advance(5.0)
            provider.run_health_checks()
            client.set("y", 2)
        assert provider.is_healthy(1)
        assert provider.active_index == 2
        provider.set_active_index(1)
        assert provider.active_index == 1
        assert provider.breaker(1).state is State.CLOSED
        client.set("z", 3)
        assert servers[0].client().get("z") == b"3"
        assert [e.reason for e in events] == [SwitchReason.HEALTH_CHECK, SwitchReason.MANUAL]
    finally:
        client.close()


def test_manual_switch_to_a_dead_database_is_refused(pair: Any) -> None:
    client, servers, events = pair
    servers[1].kill()
    with pytest.raises(ValueError, match="unhealthy"):
        client.provider.set_active_index(2)
    assert client.provider.active_index == 1


def test_sigstop_fails_over_within_the_socket_timeout(pair: Any) -> None:
    client, servers, events = pair
    client.set("a", 1)
    servers[0].pause()
    started = time.monotonic()
    assert client.set("b", 2) is True
    elapsed = time.monotonic() - started
    assert client.provider.active_index == 2
    assert elapsed < 0.5 + 0.4, elapsed


def test_incr_is_never_applied_twice_on_an_ambiguous_timeout(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    client = FailoverRedis.from_config(config_for(servers))
    try:
        client.set("n", 0)
        # DEBUG SLEEP blocks the server past the socket timeout after INCR was written
        blocker = threading.Thread(target=lambda: servers[0].client().execute_command(
            "DEBUG", "SLEEP", "1.0"))
        blocker.start()
        time.sleep(0.05)
        with pytest.raises(redis.exceptions.TimeoutError):
            client.incr("n")
        blocker.join()
        # the INCR ran once on database 1 (after the sleep), never on database 2
        assert servers[0].client().get("n") == b"1"
        assert servers[1].client().get("n") is None
    finally:
        client.close()


def test_client_pause_makes_reads_fail_over(pair: Any) -> None:
    client, servers, events = pair
    servers[1].client().set("r", "second")
    servers[0].client().execute_command("CLIENT", "PAUSE", "2000", "ALL")
    assert client.get("r") == b"second"
    assert client.provider.active_index == 2


def test_pipeline_runs_on_the_database_active_at_execute(pair: Any) -> None:
    client, servers, events = pair
    pipe = client.pipeline()
    pipe.set("p1", 1).set("p2", 2).get("p1")
    servers[0].kill()
    assert pipe.execute() == [True, True, b"1"]
    assert servers[1].client().get("p2") == b"2"


def test_transaction_never_commits_on_another_database(pair: Any) -> None:
    client, servers, events = pair
    client.set("w", 1)
    pipe = client.pipeline()
    pipe.watch("w")
    assert pipe.get("w") == b"1"
    pipe.multi()
    pipe.set("w", 2)
    client.provider.set_active_index(2)
    with pytest.raises(redis.WatchError):
        pipe.execute()
    assert servers[1].client().get("w") is None
    assert servers[0].client().get("w") == b"1"


def test_transaction_helper_and_watch_on_one_database(pair: Any) -> None:
    client, servers, events = pair
    client.set("c", 5)

    def double(pipe: Any) -> None:
        value = int(pipe.get("c"))
        pipe.multi()
        pipe.set("c", value * 2)

    assert client.transaction(double, "c") == [True]
    assert client.get("c") == b"10"


def test_register_script_survives_failover(pair: Any) -> None:
    client, servers, events = pair
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert script(keys=["s"], args=[2]) == 2
    servers[0].kill()
    client.set("probe", 1)  # fail over
    assert script(keys=["s"], args=[3]) == 3  # NOSCRIPT on the new database is handled
    assert servers[1].client().get("s") == b"3"


def test_lock_works(pair: Any) -> None:
    client, servers, events = pair
    lock = client.lock("resource", timeout=5)
    assert lock.acquire(blocking=False)
    assert not client.lock("resource").acquire(blocking=False)
    lock.release()


def test_pubsub_resubscribes_after_failover(pair: Any) -> None:
    client, servers, events = pair
    ps = client.pubsub(ignore_subscribe_messages=True)
    ps.subscribe("a", "b")
    ps.psubscribe("p.*")
    # the subscriptions are live on database 1 (read from the server, not the client)
    assert wait_for(lambda: servers[0].client().pubsub_numsub("a", "b") == [(b"a", 1), (b"b", 1)]
                    and servers[0].client().pubsub_numpat() == 1)
    servers[0].kill()
    client.set("trigger", 1)  # fail over
    assert client.provider.active_index == 2
    received: list[Any] = []

    def collect() -> bool:
        msg = ps.get_message(timeout=0.05)
        if msg is not None:
            received.append((msg["channel"], msg["data"]))
        return len(received) >= 3

    # publishing on database 2 reaches the pubsub once it re-subscribed there
    second = servers[1].client()

    def publish_and_collect() -> bool:
        second.publish("a", "1")
        second.publish("b", "2")
        second.publish("p.x", "3")
        return collect() or collect() or collect()

    assert wait_for(publish_and_collect, timeout=5)
    channels = {c for c, _ in received}
    assert {b"a", b"b", b"p.x"} <= channels
    ps.close()


def test_independent_pubsubs(pair: Any) -> None:
    client, servers, events = pair
    one, two = client.pubsub(), client.pubsub()
    one.subscribe("x")
    two.subscribe("y")
    assert one.get_message(timeout=1)["channel"] == b"x"
    assert two.get_message(timeout=1)["channel"] == b"y"
    client.publish("x", "for-one")
    assert one.get_message(timeout=1)["data"] == b"for-one"
    assert two.get_message(timeout=0.1) is None
    one.close()
    two.close()


def test_pubsub_run_in_thread_follows_a_switch(pair: Any) -> None:
    client, servers, events = pair
    got: list[bytes] = []
    ps = client.pubsub()
    ps.subscribe(**{"t": lambda m: got.append(m["data"])})
    worker = ps.run_in_thread(sleep_time=0.05, daemon=True)
    try:
        assert wait_for(lambda: (client.publish("t", "one") > 0) and bool(got))
        client.provider.set_active_index(2)
        assert wait_for(lambda: (servers[1].client().publish("t", "two") > 0) and b"two" in got)
    finally:
        worker.stop()
        worker.join(2)
        ps.close()


@pytest.mark.parametrize("timeout", [0.01, None], ids=["polling", "blocking"])
def test_pubsub_reader_survives_switches_from_another_thread(
    pair: Any, timeout: float | None
) -> None:
    """Switches made by another thread while a reader reads, reconnects or re-subscribes:
    the reader sees no error (both databases are up) and keeps receiving. The soak found
    redis-py failing on a socket or buffer a switch listener had removed under the reader
    (AttributeError), and a reply read from a connection already given back to the pool."""
    client, servers, events = pair
    ps = client.pubsub(ignore_subscribe_messages=True)
    ps.subscribe("ch")
    errors: list[BaseException] = []
    received: list[Any] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                message = ps.get_message(timeout=timeout)
            except BaseException as exc:  # every error is the finding
                errors.append(exc)
            else:
                if message is not None:
                    received.append(message["data"])

    def publish() -> None:
        while not done.is_set():
            client.publish("ch", "m")
            time.sleep(0.002)

    threads = [threading.Thread(target=read), threading.Thread(target=publish)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 3.0
        switches = 0
        while time.monotonic() < deadline:
            client.provider.set_active_index(2 if client.provider.active_index == 1 else 1)
            switches += 1
            time.sleep(0.001 * (switches % 4))
        before = len(received)
        assert wait_for(lambda: client.publish("ch", "end") == 1 and len(received) > before)
    finally:
        done.set()
        client.publish("ch", "wake")  # a blocking reader returns
        for thread in threads:
            thread.join(5)
        ps.close()
    assert errors == []
    assert switches > 100
    assert len(received) > 100


def test_all_down_temporary_then_permanent_exactly_at_the_window_then_recovery(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    clock = FakeClock()
    # failover_attempts x failover_delay = 1.0 s of the provider's (fake) clock; one probe
    # per check, so no call below moves the clock by itself.
    config = config_for(servers, failover_attempts=2, failover_delay=0.5, health_check_probes=1)
    client = FailoverRedis(FailoverProvider(config, clock=clock, start_health_checks=False))
    try:
        servers[0].kill()
        servers[1].kill()
        with pytest.raises(TemporaryUnavailableError):
            client.set("k", 1)
        assert clock.monotonic() == 0.0
        assert isinstance(TemporaryUnavailableError("x"), redis.exceptions.ConnectionError)
        clock.advance(0.999)
        with pytest.raises(TemporaryUnavailableError):
            client.set("k", 1)
        clock.advance(0.001)
        with pytest.raises(NoValidDatabaseError):
            client.set("k", 1)
        with pytest.raises(NoValidDatabaseError):
            client.get("k")
        servers[1].restart()
        clock.advance(60.0)  # the breakers' open wait
        client.provider.run_health_checks()
        assert client.set("k", 1) is True
        assert client.provider.active_index == 2
        assert servers[1].client().get("k") == b"1"
    finally:
        client.close()


def test_sixteen_threads_under_failover(pair: Any) -> None:
    client, servers, events = pair
    client.set("counter", 0)
    errors: list[BaseException] = []
    done = [0] * 16

    def worker(i: int) -> None:
        for n in range(150):
            try:
                client.set(f"k{i}", n)
                done[i] += 1
            except redis.exceptions.ConnectionError as exc:
                errors.append(exc)
            if i == 0 and n == 40:
                servers[0].kill()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert sum(done) + len(errors) == 16 * 150
    assert errors == []  # SET is replay-safe: no error reaches the application
    assert client.provider.active_index == 2
    assert len(events) == 1


def test_no_double_incr_under_failover_with_threads(pair: Any) -> None:
    client, servers, events = pair
    ok = [0] * 8
    ambiguous = [0] * 8

    def worker(i: int) -> None:
        for n in range(100):
            try:
                client.incr("hits")
                ok[i] += 1
            except redis.exceptions.ConnectionError:
                ambiguous[i] += 1
            if i == 0 and n == 30:
                servers[0].kill()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    on_second = int(servers[1].client().get("hits") or 0)
    # every acknowledged INCR after the switch is on database 2 exactly once; an ambiguous one
    # (at most one per in-flight thread) was not replayed
    assert all(a <= 1 for a in ambiguous)
    assert on_second <= sum(ok)
    assert sum(ok) + sum(ambiguous) == 800


def test_close_leaves_no_threads_or_sockets(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    before = set(threading.enumerate())
    client = FailoverRedis.from_config(config_for(servers))
    client.set("k", 1)
    ps = client.pubsub()
    ps.subscribe("c")
    ps.close()
    client.close()
    assert wait_for(lambda: set(threading.enumerate()) <= before, timeout=3)
    clients = servers[0].client().client_list()
    assert len(clients) == 1  # only the inspecting connection


def test_wrong_password_is_a_connection_failure_and_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    with RedisServer(extra_args=("--requirepass", "the-right-one")) as server:
        config = MultiDbConfig(
            [DatabaseConfig("127.0.0.1", server.port, client_kwargs={"password": "s3cr3t-pw"})],
            health_check_interval=0.2,
        )
        client = FailoverRedis.from_config(config)
        try:
            with pytest.raises(redis.exceptions.ConnectionError) as info:
                client.set("k", 1)
            shown = [str(info.value), repr(info.value), repr(config), repr(client),
                     str(client.provider.status()), caplog.text]
            assert not any("s3cr3t-pw" in text for text in shown)
        finally:
            client.close()


def test_status_reports_every_database(pair: Any) -> None:
    client, servers, events = pair
    rows = client.provider.status()
    assert [r["index"] for r in rows] == [1, 2]
    assert rows[0]["active"] and not rows[1]["active"]
    assert rows[0]["endpoint"] == f"127.0.0.1:{servers[0].port}/0"
    assert rows[0]["breaker_state"] is State.CLOSED


def test_active_index_store_survives_a_restart(redis_servers: Servers, tmp_path: Any) -> None:
    servers = redis_servers(2)
    store = str(tmp_path / "active-index")
    client = FailoverRedis.from_config(config_for(servers, active_index_store=store))
    client.provider.set_active_index(2)
    client.close()
    again = FailoverRedis.from_config(config_for(servers, active_index_store=store))
    try:
        assert again.provider.active_index == 2
    finally:
        again.close()


def test_provider_with_fake_clock_auto_failback(redis_servers: Servers) -> None:
    servers = redis_servers(2)
    clock = FakeClock()
    provider = FailoverProvider(
        config_for(servers, auto_failback_interval=10.0, auto_failback_grace_period=5.0),
        clock=clock, start_health_checks=False,
    )
    try:
        provider.set_active_index(2)
        clock.advance(10)
        provider.run_health_checks()
        clock.advance(10)
        provider.run_health_checks()
        assert provider.active_index == 1
    finally:
        provider.close()
