"""Hedged reads: GET latency while the primary is frozen by ``CLIENT PAUSE 2000 ALL``,
faulttol_redis with ``hedge_reads_after`` vs redis-py's ``MultiDBClient``, side by side.

Two fresh ``redis-server`` processes on loopback per run, both healthy and holding the same
value (Active-Active: either may serve the read). No socket timeouts on any client (redis-py's
default). One thread (sync) or one task (asyncio) sends ``GET`` every ``--interval`` seconds
(default 1 ms between command starts). After a warm-up the same thread or task freezes the
primary between two GETs with ``CLIENT PAUSE 2000 ALL`` (sent on a connection of the
bench's own): the server keeps its connections open and answers nothing, PING included, for
2 s, then resumes by itself.

Clients (``--clients``):

* ``faulttol``: ``hedge_reads_after`` (``--hedge-after``, default 0.02 s) with hang detection
  at its defaults (0.5 s + 0.5 s probe). The paused primary does not answer the probe's PING
  either, so about 1 s into the pause detection marks it hung and fails over (contract: a
  server that answers nothing looks hung, whatever the reason); from then on reads go to
  database 2 directly;
* ``faulttol-hedge-only``: the same with ``hang_detection_after=None``: the hedge alone, no
  switch possible for the whole pause (only a health check failing the primary would switch;
  its PING times out after ``health_check_timeout`` 1 s);
* ``redis-py``: ``MultiDBClient``, default config (no hedging: its reads wait for the pause to
  end or for its 5 s health check to fail the primary over);
* ``anchor``: the floor of any hedge on this machine at this moment: during the pause each
  GET waits ``hedge_reads_after`` (``threading.Event.wait`` / ``asyncio.sleep``) and then
  reads database 2 on a plain redis-py connection (before the pause: database 1 directly).

Measured per run, over the GETs *started* during the 2 s pause: p50, p99 and max latency,
and the count; errors the application saw; switches (faulttol: switch listener; redis-py:
the database in use after the run); hedges sent and won (``status()`` rows). The GETs
before the pause give a baseline p50.

Runs alternate between the clients, and the pause's phase is spread over one 5 s
health-check interval across the runs (as in ``bench/failover.py``). Target (issue 9): p99
GET latency during the pause <= ``hedge_reads_after`` + 5 ms.

Run: ``python bench/hedged_reads.py`` (``--runs N``, ``--flavours sync asyncio``,
``--clients ...``, ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
import redis.asyncio
from _common import (
    close_redispy,
    close_redispy_async,
    has_async_multidb,
    machine_note,
    redispy_port,
    servers,
    table,
)

import faulttol_redis.asyncio
from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig
from faulttol_redis.testing import RedisServer

KEY = "bench:hedge:key"
PAUSE_MS = 2000
CLIENTS = ("faulttol", "faulttol-hedge-only", "redis-py", "anchor")
FLAVOURS = ("sync", "asyncio")
TARGET_MARGIN = 0.005
"""The issue's target: p99 <= hedge_reads_after + 5 ms."""


@dataclass
class RunResult:
    """One run of one client."""

    client: str
    flavour: str
    before_p50: float
    during: list[float]  # latencies (s) of the GETs started during the pause
    errors: dict[str, int] = field(default_factory=dict)
    switches: int = 0
    hedges_sent: int = 0
    hedge_wins: int = 0
    hang_detections: int = 0
    setup_error: str | None = None

    def pct(self, q: float) -> float:
        return _pct(self.during, q)


def _pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank, q in [0, 1])."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def _max(values: Sequence[float]) -> float:
    return max(values, default=float("nan"))


class _Loop:
    """The GET loop's bookkeeping, shared by the sync and asyncio drivers."""

    def __init__(self, pause: Callable[[], None], warmup: float,
                 args: argparse.Namespace) -> None:
        self.pause = pause
        self.warmup = warmup
        self.interval: float = args.interval
        self.after: float = args.after
        self.start = time.perf_counter()
        self.next_tick = self.start
        self.paused_at: float | None = None
        self.before: list[float] = []
        self.during: list[float] = []
        self.errors: Counter[str] = Counter()
        self.t0 = 0.0

    def next(self) -> float | None:
        """Pause the primary when due; None to stop, else how long to sleep first."""
        now = time.perf_counter()
        if self.paused_at is None and now - self.start >= self.warmup:
            self.pause()
            self.paused_at = time.perf_counter()
        if self.paused_at is not None and now - self.paused_at >= PAUSE_MS / 1000 + self.after:
            return None
        wait = max(0.0, self.next_tick - now)
        self.next_tick = max(self.next_tick + self.interval, now + wait)
        return wait

    def begin(self) -> None:
        self.t0 = time.perf_counter()

    def done(self, exc: BaseException | None) -> None:
        latency = time.perf_counter() - self.t0
        if exc is not None:
            self.errors[type(exc).__name__] += 1
            return
        if self.paused_at is None:
            self.before.append(latency)
        elif self.t0 - self.paused_at < PAUSE_MS / 1000:
            self.during.append(latency)


def _drive(get: Callable[[str], Any], pause: Callable[[], None], warmup: float,
           args: argparse.Namespace) -> _Loop:
    loop = _Loop(pause, warmup, args)
    while (wait := loop.next()) is not None:
        if wait:
            time.sleep(wait)
        loop.begin()
        try:
            get(KEY)
        except Exception as exc:  # the application sees it: count it, go on
            loop.done(exc)
            continue
        loop.done(None)
    return loop


async def _drive_async(get: Callable[[str], Awaitable[Any]], pause: Callable[[], None],
                       warmup: float, args: argparse.Namespace) -> _Loop:
    loop = _Loop(pause, warmup, args)
    while (wait := loop.next()) is not None:
        if wait:
            await asyncio.sleep(wait)
        loop.begin()
        try:
            await get(KEY)
        except Exception as exc:  # the application sees it: count it, go on
            loop.done(exc)
            continue
        loop.done(None)
    return loop


def _faulttol_config(ports: Sequence[int], kind: str, args: argparse.Namespace
                     ) -> MultiDbConfig:
    extra: dict[str, Any] = {}
    if kind == "faulttol-hedge-only":
        extra["hang_detection_after"] = None
    return MultiDbConfig([DatabaseConfig("127.0.0.1", p) for p in ports],
                         hedge_reads_after=args.hedge_after, **extra)


def _redispy_sync(ports: Sequence[int]) -> Any:
    from redis.multidb.client import MultiDBClient
    from redis.multidb.config import DatabaseConfig as RpDatabaseConfig
    from redis.multidb.config import MultiDbConfig as RpMultiDbConfig

    config = RpMultiDbConfig(databases_config=[
        RpDatabaseConfig(client_kwargs={"host": "127.0.0.1", "port": p}) for p in ports])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        client: Any = MultiDBClient(config)
    client.initialize()
    return client


async def _redispy_async(ports: Sequence[int]) -> Any:
    from redis.asyncio.multidb.client import MultiDBClient
    from redis.asyncio.multidb.config import DatabaseConfig as RpDatabaseConfig
    from redis.asyncio.multidb.config import MultiDbConfig as RpMultiDbConfig

    config = RpMultiDbConfig(databases_config=[
        RpDatabaseConfig(client_kwargs={"host": "127.0.0.1", "port": p}) for p in ports])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        client: Any = MultiDBClient(config)
    await client.initialize()
    return client


def _pauser(primary: RedisServer) -> tuple[Callable[[], None], Callable[[], None]]:
    """``CLIENT PAUSE 2000 ALL`` on a connection of the bench's own (opened beforehand, so
    the pause costs the loop one round trip), and its closer."""
    admin = primary.client()
    admin.ping()

    def pause() -> None:
        admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")

    return pause, admin.close


class _Anchor:
    """The ``anchor`` client: wait ``hedge_reads_after``, then GET on database 2, once the
    primary is paused (see the module docstring)."""

    def __init__(self, dbs: Sequence[RedisServer], after: float) -> None:
        self.after = after
        self.paused = False
        self.ports = [s.port for s in dbs]

    def wrap(self, pause: Callable[[], None]) -> Callable[[], None]:
        def paused() -> None:
            pause()
            self.paused = True
        return paused

    def sync_get(self) -> tuple[Callable[[str], Any], Callable[[], None]]:
        clients = [redis.Redis(port=p) for p in self.ports]
        for c in clients:
            c.ping()
        waiter = threading.Event()

        def get(key: str) -> Any:
            if not self.paused:
                return clients[0].get(key)
            waiter.wait(self.after)
            return clients[1].get(key)

        def close() -> None:
            for c in clients:
                c.close()
        return get, close

    async def async_get(self) -> tuple[Callable[[str], Awaitable[Any]], Any]:
        clients = [redis.asyncio.Redis(port=p) for p in self.ports]
        for c in clients:
            await c.ping()

        async def get(key: str) -> Any:
            if not self.paused:
                return await clients[0].get(key)
            await asyncio.sleep(self.after)
            return await clients[1].get(key)

        async def close() -> None:
            for c in clients:
                await c.aclose()
        return get, close


def _seed(dbs: Sequence[RedisServer]) -> None:
    for i, server in enumerate(dbs, 1):
        with server.client() as c:
            c.set(KEY, f"value from db{i}")


def _faulttol_counts(provider: Any, result: RunResult) -> None:
    rows = provider.status()
    result.hedges_sent = sum(int(r["hedges_sent"]) for r in rows)
    result.hedge_wins = sum(int(r["hedge_wins"]) for r in rows)
    result.hang_detections = sum(int(r["hang_detections"]) for r in rows)


def _result(kind: str, flavour: str, loop: _Loop) -> RunResult:
    before = statistics.median(loop.before) if loop.before else float("nan")
    return RunResult(kind, flavour, before, loop.during, dict(loop.errors))


def _run_sync(kind: str, warmup: float, args: argparse.Namespace) -> RunResult:
    with servers(2) as dbs:
        _seed(dbs)
        ports = [s.port for s in dbs]
        pause, close_admin = _pauser(dbs[0])
        try:
            if kind == "anchor":
                anchor = _Anchor(dbs, args.hedge_after)
                get, close = anchor.sync_get()
                try:
                    return _result(kind, "sync",
                                   _drive(get, anchor.wrap(pause), warmup, args))
                finally:
                    close()
            if kind == "redis-py":
                rp = _redispy_sync(ports)
                try:
                    if redispy_port(rp) != ports[0]:
                        return RunResult(kind, "sync", 0.0, [], setup_error="not on db1")
                    result = _result(kind, "sync", _drive(rp.get, pause, warmup, args))
                    result.switches = int(redispy_port(rp) != ports[0])
                finally:
                    close_redispy(rp)
                return result
            ft = FailoverRedis.from_config(_faulttol_config(ports, kind, args))
            switches: list[Any] = []
            ft.provider.add_switch_listener(switches.append)
            try:
                result = _result(kind, "sync", _drive(ft.get, pause, warmup, args))
                result.switches = len(switches)
                _faulttol_counts(ft.provider, result)
            finally:
                ft.close()
            return result
        finally:
            close_admin()


async def _async_session(kind: str, dbs: Sequence[RedisServer], warmup: float,
                         args: argparse.Namespace) -> RunResult:
    ports = [s.port for s in dbs]
    pause, close_admin = _pauser(dbs[0])
    try:
        if kind == "anchor":
            anchor = _Anchor(dbs, args.hedge_after)
            aget, aclose = await anchor.async_get()
            try:
                return _result(kind, "asyncio",
                               await _drive_async(aget, anchor.wrap(pause), warmup, args))
            finally:
                await aclose()
        if kind == "redis-py":
            rp = await _redispy_async(ports)
            try:
                if redispy_port(rp) != ports[0]:
                    return RunResult(kind, "asyncio", 0.0, [], setup_error="not on db1")
                result = _result(kind, "asyncio",
                                 await _drive_async(rp.get, pause, warmup, args))
                result.switches = int(redispy_port(rp) != ports[0])
            finally:
                await close_redispy_async(rp)
            return result
        ft = faulttol_redis.asyncio.FailoverRedis.from_config(
            _faulttol_config(ports, kind, args))
        await ft.initialize()
        switches: list[Any] = []
        ft.provider.add_switch_listener(switches.append)
        try:
            result = _result(kind, "asyncio", await _drive_async(ft.get, pause, warmup, args))
            result.switches = len(switches)
            _faulttol_counts(ft.provider, result)
        finally:
            await ft.aclose()
        return result
    finally:
        close_admin()


def _run_async(kind: str, warmup: float, args: argparse.Namespace) -> RunResult:
    with servers(2) as dbs:
        _seed(dbs)
        return asyncio.run(_async_session(kind, dbs, warmup, args))


def summarize(results: Sequence[RunResult], args: argparse.Namespace
              ) -> tuple[str, list[str]]:
    rows: list[list[str]] = []
    verdicts: list[str] = []
    target = args.hedge_after + TARGET_MARGIN
    for flavour in FLAVOURS:
        for kind in CLIENTS:
            runs = [r for r in results if r.client == kind and r.flavour == flavour
                    and r.setup_error is None]
            if not runs:
                continue
            p99s = [r.pct(0.99) for r in runs]
            errors: Counter[str] = Counter()
            for r in runs:
                errors.update(r.errors)
            rows.append([
                flavour, kind, str(len(runs)),
                f"{statistics.median(r.before_p50 for r in runs) * 1000:.2f} ms",
                f"{statistics.median(r.pct(0.5) for r in runs) * 1000:.1f} ms",
                f"{statistics.median(p99s) * 1000:.1f} ms "
                f"({min(p99s) * 1000:.1f}-{max(p99s) * 1000:.1f})",
                f"{statistics.median(_max(r.during) for r in runs) * 1000:.0f} ms",
                str(int(statistics.median(len(r.during) for r in runs))),
                str(sum(errors.values())) + (
                    " (" + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) + ")"
                    if errors else ""),
                "-" if kind == "anchor" else "/".join(str(r.switches) for r in runs),
                "-" if not kind.startswith("faulttol") else "/".join(
                    f"{r.hedges_sent}:{r.hedge_wins}" for r in runs),
                "-" if not kind.startswith("faulttol") else "/".join(
                    str(r.hang_detections) for r in runs),
            ])
            if kind.startswith("faulttol"):
                p99 = statistics.median(p99s)
                anchors = [r.pct(0.99) for r in results if r.client == "anchor"
                           and r.flavour == flavour and r.setup_error is None]
                over = ("" if not anchors else
                        f"; the anchor's p99 (median) {statistics.median(anchors) * 1000:.1f}"
                        f" ms, faulttol {(p99 - statistics.median(anchors)) * 1000:+.1f} ms")
                verdicts.append(
                    f"{flavour} {kind}: p99 GET latency during the pause (median of runs) "
                    f"{p99 * 1000:.1f} ms, target <= {target * 1000:.0f} ms: "
                    f"{'met' if p99 <= target else 'NOT met'}; runs meeting it "
                    f"{sum(1 for p in p99s if p <= target)}/{len(runs)}; application errors "
                    f"{sum(errors.values())}{over}")
    headers = ["flavour", "client", "runs", "p50 before", "p50 during", "p99 during (range)",
               "max during", "GETs during", "app errors", "switches per run",
               "hedges sent:won per run", "hang detections per run"]
    return table(headers, rows), verdicts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per client and flavour")
    parser.add_argument("--flavours", nargs="+", choices=FLAVOURS, default=list(FLAVOURS))
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS))
    parser.add_argument("--hedge-after", type=float, default=0.02,
                        help="faulttol's hedge_reads_after (default 0.02 s)")
    parser.add_argument("--interval", type=float, default=0.001,
                        help="seconds between GET starts (default 0.001)")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--phase-spread", type=float, default=5.0,
                        help="spread the pause over this many seconds across runs")
    parser.add_argument("--after", type=float, default=0.5,
                        help="seconds of traffic after the pause has ended")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    logging.getLogger().addHandler(logging.NullHandler())
    clients = list(dict.fromkeys(args.clients))
    results: list[RunResult] = []
    started = time.perf_counter()
    for flavour in dict.fromkeys(args.flavours):
        kinds = [k for k in clients
                 if not (k == "redis-py" and flavour == "asyncio" and not has_async_multidb())]
        for run in range(1, args.runs + 1):
            warmup = args.warmup + args.phase_spread * (run - 0.5) / args.runs
            for kind in kinds:
                runner = _run_sync if flavour == "sync" else _run_async
                r = runner(kind, warmup, args)
                results.append(r)
                if not args.json:
                    print(f"  {flavour} run {run}/{args.runs} {kind:19} (pause at "
                          f"{warmup:.1f} s): p50 {r.pct(0.5) * 1000:7.1f} ms, p99 "
                          f"{r.pct(0.99) * 1000:7.1f} ms, max "
                          f"{_max(r.during) * 1000:7.1f} ms, "
                          f"GETs {len(r.during)}, errors {sum(r.errors.values())}, "
                          f"switches {r.switches}, hedges {r.hedges_sent}:{r.hedge_wins}, "
                          f"detections {r.hang_detections}"
                          + (f", SETUP ERROR {r.setup_error}" if r.setup_error else ""),
                          file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    text, verdicts = summarize(results, args)
    if args.json:
        print(json.dumps({"machine": machine_note(), "elapsed_s": round(elapsed, 1),
                          "runs": [asdict(r) for r in results], "verdicts": verdicts},
                         indent=2))
        return 0
    print(f"# bench/hedged_reads.py — {machine_note()}")
    print(f"# {args.runs} run(s) per client and flavour, GET every {args.interval * 1000:g} ms, "
          f"CLIENT PAUSE {PAUSE_MS} ALL on the primary, hedge_reads_after "
          f"{args.hedge_after:g} s, no socket timeouts, {elapsed:.0f} s in all; redis-py "
          f"{redis.__version__}")
    print(text)
    print()
    for verdict in verdicts:
        print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
