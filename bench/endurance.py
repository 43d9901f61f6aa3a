"""Endurance: a million commands and a thousand failovers in one process, memory flat.

One ``FailoverRedis`` (``--mode sync``) or asyncio ``FailoverRedis`` (``--mode asyncio``)
over two throwaway ``redis-server`` processes on loopback runs ``--commands`` commands (SET,
GET and INCR on a bounded key space, so the servers' memory stays flat too) and fails over
``--failovers`` times, evenly spread:

* most failovers are forced manual switches (``set_active_index(other, force=True)``,
  alternating between the two databases): they are fast, so a thousand fit in minutes;
* every ``--kill-every``-th failover is a real one: the active server is SIGKILLed, the next
  command fails over by itself (probe, HEALTH_CHECK switch, replay of the SET), then the
  server is restarted and the run waits until the provider sees it healthy again.

Memory is measured after a warm-up (``--warmup`` of the commands and failovers, so pools,
caches and lazily built objects exist): ``tracemalloc`` traces every allocation from then on
and the largest growth of one source line between the warm-up and the end must be at most
``--max-line-growth-kb`` (1 MB by default); the number of objects the garbage collector
tracks and the RSS are sampled ten times and reported. Exit 1 when a limit is exceeded
(tracemalloc line growth, object growth ``--max-object-growth``, RSS growth ``--max-rss-mb``)
or a command failed other than during a real failover.

Usage::

    python bench/endurance.py                       # sync, 1,000,000 commands, 1,000 failovers
    python bench/endurance.py --mode asyncio --json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import redis

import faulttol_redis.asyncio as ftr_asyncio
from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig, SwitchEvent
from faulttol_redis.testing import RedisServer

DEFAULT_COMMANDS = 1_000_000
DEFAULT_FAILOVERS = 1_000
DEFAULT_KILL_EVERY = 50
"""Every 50th failover is a real SIGKILL (20 of the 1,000)."""
DEFAULT_WARMUP = 0.1
DEFAULT_MAX_LINE_GROWTH_KB = 1024.0
DEFAULT_MAX_OBJECT_GROWTH = 5_000
DEFAULT_MAX_RSS_MB = 32.0
KEYS = 10_000
"""Distinct keys written: the data set stays the same size however long the run."""
SAMPLES = 10
HEALTH_CHECK_INTERVAL = 0.2
RECOVERY_TIMEOUT = 30.0
TOP = 5


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def config(servers: list[RedisServer]) -> MultiDbConfig:
    return MultiDbConfig(
        [DatabaseConfig("127.0.0.1", s.port, name=f"db{i}") for i, s in enumerate(servers, 1)],
        health_check_interval=HEALTH_CHECK_INTERVAL,
    )


class Meter:
    """The run's counters and memory samples."""

    def __init__(self, commands: int, failovers: int, warmup: float,
                 trace: bool = True) -> None:
        self.trace = trace
        self.commands = commands
        self.failovers = failovers
        self.warmup_at = int(commands * warmup)
        self.switches: collections.Counter[str] = collections.Counter()
        self.forced = 0
        self.kills = 0
        self.errors_in_kills: collections.Counter[str] = collections.Counter()
        self.errors_elsewhere: collections.Counter[str] = collections.Counter()
        self.samples: list[dict[str, float]] = []
        self.snapshot0: tracemalloc.Snapshot | None = None
        self.types0: collections.Counter[str] = collections.Counter()
        self.objects0 = 0
        self.rss0 = 0
        self.started = time.perf_counter()
        self.warm_started = 0.0
        self.result: dict[str, Any] = {}

    def on_switch(self, event: SwitchEvent) -> None:
        self.switches[event.reason.name] += 1

    def warm(self) -> None:
        """End of the warm-up: take the baselines and start tracing."""
        gc.collect()
        self.types0 = collections.Counter(type(o).__name__ for o in gc.get_objects())
        self.objects0 = sum(self.types0.values())
        self.rss0 = rss_bytes()
        if self.trace:
            tracemalloc.start(1)
        self.snapshot0 = tracemalloc.take_snapshot() if self.trace else None
        self.warm_started = time.perf_counter()

    def sample(self, done: int) -> None:
        gc.collect()
        self.samples.append({"commands": done, "objects": len(gc.get_objects()),
                             "rss_mb": round(rss_bytes() / 2**20, 1),
                             "traced_mb": round(tracemalloc.get_traced_memory()[0] / 2**20, 2)})

    def finish(self) -> None:
        """The end of the run: compare with the warm-up's baselines (``self.result``)."""
        elapsed = time.perf_counter() - self.started
        gc.collect()
        types = collections.Counter(type(o).__name__ for o in gc.get_objects())
        objects = sum(types.values())  # counted before the snapshot's own objects exist
        stats: list[tracemalloc.StatisticDiff] = []
        if self.snapshot0 is not None:
            snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
            filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
            stats = snapshot.filter_traces(filters).compare_to(
                self.snapshot0.filter_traces(filters), "lineno")
        top = [{"line": str(s.traceback[0]), "growth_kb": round(s.size_diff / 1024, 1),
                "count_growth": s.count_diff} for s in stats[:TOP]]
        type_growth = (types - self.types0).most_common(TOP)
        self.result = {
            "commands": self.commands,
            "failovers_requested": self.failovers,
            "forced_switches": self.forced,
            "kill_failovers": self.kills,
            "switches": dict(self.switches),
            "seconds": round(elapsed, 1),
            "seconds_traced": round(time.perf_counter() - self.warm_started, 1),
            "errors_during_kills": dict(self.errors_in_kills),
            "errors_elsewhere": dict(self.errors_elsewhere),
            "tracemalloc_top_growth": top,
            "max_line_growth_kb": max((t["growth_kb"] for t in top), default=0.0),
            "object_growth": objects - self.objects0,
            "object_type_growth": type_growth,
            "rss_growth_mb": round((rss_bytes() - self.rss0) / 2**20, 1),
            "samples": self.samples,
        }


def _schedule(commands: int, failovers: int) -> Callable[[int], bool]:
    """Whether a failover comes after command ``i`` (evenly spread, ``failovers`` in all)."""
    every = max(1, commands // max(1, failovers))
    return lambda i: i % every == every - 1


def run_sync(args: argparse.Namespace, servers: list[RedisServer], meter: Meter) -> None:
    client = FailoverRedis.from_config(config(servers))
    client.provider.add_switch_listener(meter.on_switch)
    failover_due = _schedule(args.commands, args.failovers)
    sample_every = max(1, (args.commands - meter.warmup_at) // SAMPLES)
    done_failovers = 0
    try:
        for i in range(args.commands):
            if i == meter.warmup_at:
                meter.warm()
            if i > meter.warmup_at and (i - meter.warmup_at) % sample_every == 0:
                meter.sample(i)
            key = f"k{i % KEYS}"
            kind = i % 3
            try:
                if kind == 0:
                    client.set(key, i)
                elif kind == 1:
                    client.get(key)
                else:
                    client.incr("counter")
            except redis.exceptions.RedisError as exc:
                meter.errors_elsewhere[type(exc).__name__] += 1
            if failover_due(i) and done_failovers < args.failovers:
                done_failovers += 1
                if done_failovers % args.kill_every == 0:
                    _kill_failover_sync(client, servers, meter)
                else:
                    other = 3 - client.provider.active_index
                    client.provider.set_active_index(other, force=True)
                    meter.forced += 1
        meter.sample(args.commands)
        meter.finish()  # while the client is alive: what it holds on to counts
    finally:
        client.close()


def _kill_failover_sync(client: FailoverRedis, servers: list[RedisServer],
                        meter: Meter) -> None:
    provider = client.provider
    active = provider.active_index
    victim = servers[active - 1]
    victim.kill()
    meter.kills += 1
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while provider.active_index == active:
        try:
            client.set("after-kill", meter.kills)  # fails over by itself
        except redis.exceptions.RedisError as exc:
            meter.errors_in_kills[type(exc).__name__] += 1
        if time.monotonic() > deadline:
            raise RuntimeError("no failover within 30 s of a SIGKILL")
    victim.restart()
    while not provider.is_healthy(active):
        if time.monotonic() > deadline:
            raise RuntimeError("the restarted server was not healthy again within 30 s")
        time.sleep(0.02)


async def run_asyncio(args: argparse.Namespace, servers: list[RedisServer],
                      meter: Meter) -> None:
    client = ftr_asyncio.FailoverRedis.from_config(config(servers))
    await client.initialize()
    client.provider.add_switch_listener(meter.on_switch)
    failover_due = _schedule(args.commands, args.failovers)
    sample_every = max(1, (args.commands - meter.warmup_at) // SAMPLES)
    done_failovers = 0
    try:
        for i in range(args.commands):
            if i == meter.warmup_at:
                meter.warm()
            if i > meter.warmup_at and (i - meter.warmup_at) % sample_every == 0:
                meter.sample(i)
            key = f"k{i % KEYS}"
            kind = i % 3
            try:
                if kind == 0:
                    await client.set(key, i)
                elif kind == 1:
                    await client.get(key)
                else:
                    await client.incr("counter")
            except redis.exceptions.RedisError as exc:
                meter.errors_elsewhere[type(exc).__name__] += 1
            if failover_due(i) and done_failovers < args.failovers:
                done_failovers += 1
                if done_failovers % args.kill_every == 0:
                    await _kill_failover_async(client, servers, meter)
                else:
                    other = 3 - client.provider.active_index
                    await client.provider.set_active_index(other, force=True)
                    meter.forced += 1
        meter.sample(args.commands)
        meter.finish()
    finally:
        await client.aclose()


async def _kill_failover_async(client: ftr_asyncio.FailoverRedis, servers: list[RedisServer],
                               meter: Meter) -> None:
    provider = client.provider
    active = provider.active_index
    victim = servers[active - 1]
    victim.kill()
    meter.kills += 1
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while provider.active_index == active:
        try:
            await client.set("after-kill", meter.kills)
        except redis.exceptions.RedisError as exc:
            meter.errors_in_kills[type(exc).__name__] += 1
        if time.monotonic() > deadline:
            raise RuntimeError("no failover within 30 s of a SIGKILL")
    victim.restart()
    while not provider.is_healthy(active):
        if time.monotonic() > deadline:
            raise RuntimeError("the restarted server was not healthy again within 30 s")
        await asyncio.sleep(0.02)


def verdict(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The limits exceeded (empty: the run passed)."""
    problems = []
    if result["max_line_growth_kb"] > args.max_line_growth_kb:
        problems.append(f"tracemalloc: a line grew {result['max_line_growth_kb']} KB "
                        f"> {args.max_line_growth_kb} KB")
    if result["object_growth"] > args.max_object_growth:
        problems.append(f"objects grew by {result['object_growth']} > {args.max_object_growth}")
    if result["rss_growth_mb"] > args.max_rss_mb:
        problems.append(f"RSS grew {result['rss_growth_mb']} MB > {args.max_rss_mb} MB")
    if result["errors_elsewhere"]:
        problems.append(f"commands failed outside the real failovers: "
                        f"{result['errors_elsewhere']}")
    switches = sum(result["switches"].values())
    if switches < args.failovers:
        problems.append(f"only {switches} switches for {args.failovers} failovers")
    return problems


def render(result: dict[str, Any]) -> str:
    lines = [
        f"endurance ({result['mode']}): {result['commands']:,} commands, "
        f"{sum(result['switches'].values()):,} switches "
        f"({', '.join(f'{k} {v}' for k, v in sorted(result['switches'].items()))}: "
        f"{result['forced_switches']} forced, {result['kill_failovers']} SIGKILL), "
        f"{result['seconds']} s ({result['seconds_traced']} s traced)",
        "",
        "| after commands | gc objects | RSS MB | traced MB |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {s['commands']:,} | {s['objects']:,} | {s['rss_mb']} | {s['traced_mb']} |"
              for s in result["samples"]]
    lines += ["", "tracemalloc, largest growth per line between the warm-up and the end:", ""]
    lines += [f"- {t['growth_kb']} KB ({t['count_growth']:+} blocks) {t['line']}"
              for t in result["tracemalloc_top_growth"]]
    lines += ["", f"gc objects: {result['object_growth']:+} "
                  f"(largest by type: {result['object_type_growth']}); "
                  f"RSS: {result['rss_growth_mb']:+} MB",
              f"errors during the SIGKILL failovers: {result['errors_during_kills'] or 'none'}; "
              f"elsewhere: {result['errors_elsewhere'] or 'none'}",
              f"verdict: {'; '.join(result['problems']) or 'flat'}"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("sync", "asyncio"), default="sync")
    parser.add_argument("--commands", type=int, default=DEFAULT_COMMANDS)
    parser.add_argument("--failovers", type=int, default=DEFAULT_FAILOVERS)
    parser.add_argument("--kill-every", type=int, default=DEFAULT_KILL_EVERY)
    parser.add_argument("--warmup", type=float, default=DEFAULT_WARMUP)
    parser.add_argument("--max-line-growth-kb", type=float, default=DEFAULT_MAX_LINE_GROWTH_KB)
    parser.add_argument("--max-object-growth", type=int, default=DEFAULT_MAX_OBJECT_GROWTH)
    parser.add_argument("--max-rss-mb", type=float, default=DEFAULT_MAX_RSS_MB)
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="no tracing (to tell tracemalloc's own memory from the client's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for name in ("commands", "failovers", "kill_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < args.warmup < 1:
        parser.error("--warmup must be in (0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    servers = [RedisServer(), RedisServer()]
    meter = Meter(args.commands, args.failovers, args.warmup, not args.no_tracemalloc)
    try:
        if args.mode == "sync":
            run_sync(args, servers, meter)
        else:
            asyncio.run(run_asyncio(args, servers, meter))
    finally:
        for server in servers:
            server.stop()
    result = meter.result
    result["mode"] = args.mode
    result["problems"] = verdict(result, args)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
