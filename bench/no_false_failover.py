"""No false failover: hang detection left on (defaults) under steady mixed traffic on healthy
servers must never switch databases.

Two fresh ``redis-server`` processes on loopback (database 1 = primary). The sync client
(``faulttol_redis.FailoverRedis``) and the asyncio client (``faulttol_redis.asyncio
.FailoverRedis``, on an event loop of its own thread) run **at the same time**, over the
same two servers, each with the default ``MultiDbConfig`` (no socket timeouts: redis-py's
default; ``hang_detection_after=0.5``, ``hang_probe_timeout=0.5``; health checks every 5 s):

* ``--workers`` threads (sync) and as many tasks (asyncio) cycle through GET, SET, INCR, a
  3-command pipeline without transaction and a MULTI/EXEC transaction (INCR, SET, GET), each
  on keys of its own, one operation every ``--interval`` seconds;
* one thread / task sends ``DEBUG SLEEP 0.2`` (``--debug-sleep``) every ``--debug-every``
  seconds: the server is busy for 0.2 s, every command sent meanwhile waits behind it (a
  busy server, shorter than the detection window: it must not look hung);
* one thread / task loops ``BLPOP`` on an always-empty list with timeout 2 (a blocking
  command that waits its full timeout every time: watched only after it).

Counted per client: operations and their latency (p50, p99, max, how many took >= 0.5 s),
application errors by type, switches (switch listener), hang detections (``status()``), and
hang **probes**: the watchdog's PINGs, each sent because a command had waited
``hang_detection_after``. The probes are not counted by faulttol_redis itself; this bench
samples each database's hang watch every 20 ms (``last probe answered at``, which changes
with every probe that answers; probes of one database are at least 0.5 s apart) and adds the
detections (probes that failed). That is read-only bench instrumentation of the providers'
database objects, not public API.

Target (issue 9): 0 switches over 10 minutes.

Run: ``python bench/no_false_failover.py --minutes 10`` (``--flavours sync asyncio``,
``--hang-detection-after S --hang-probe-timeout S`` for another window, ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import machine_note, servers, table

import faulttol_redis.asyncio
from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig

FLAVOURS = ("sync", "asyncio")
OPS = ("get", "set", "incr", "pipeline", "transaction")
SLOW = 0.5
"""Latency counted as slow: the default detection window."""


@dataclass
class Tally:
    """What one client saw over the run."""

    flavour: str
    ops: Counter[str] = field(default_factory=Counter)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    slow: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    switches: list[str] = field(default_factory=list)
    probes_answered: int = 0
    hang_detections: int = 0
    debug_sleeps: int = 0
    debug_sleep_max: float = 0.0
    blpops: int = 0
    blpop_max: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: str, seconds: float) -> None:
        with self.lock:
            self.ops[op] += 1
            self.latencies.append(seconds)
            if seconds >= SLOW:
                self.slow += 1

    def failed(self, op: str, exc: BaseException) -> None:
        with self.lock:
            self.errors[f"{op}: {type(exc).__name__}: {exc}"[:160]] += 1


WINDOW: dict[str, float] = {}
"""``--hang-detection-after`` / ``--hang-probe-timeout`` when given (else the defaults)."""


def _config(ports: Sequence[int]) -> MultiDbConfig:
    """The default config (no socket timeouts, hang detection on), or the window given."""
    return MultiDbConfig([DatabaseConfig("127.0.0.1", p) for p in ports], **WINDOW)


def _sync_op(client: FailoverRedis, op: str, prefix: str) -> None:
    if op == "get":
        client.get(f"{prefix}:s")
    elif op == "set":
        client.set(f"{prefix}:s", "v")
    elif op == "incr":
        client.incr(f"{prefix}:n")
    elif op == "pipeline":
        pipe = client.pipeline(transaction=False)
        pipe.set(f"{prefix}:p", "v").get(f"{prefix}:p").incr(f"{prefix}:pn")
        pipe.execute()
    else:
        pipe = client.pipeline(transaction=True)
        pipe.incr(f"{prefix}:t").set(f"{prefix}:ts", "v").get(f"{prefix}:ts")
        pipe.execute()


async def _async_op(client: Any, op: str, prefix: str) -> None:
    if op == "get":
        await client.get(f"{prefix}:s")
    elif op == "set":
        await client.set(f"{prefix}:s", "v")
    elif op == "incr":
        await client.incr(f"{prefix}:n")
    elif op == "pipeline":
        pipe = client.pipeline(transaction=False)
        pipe.set(f"{prefix}:p", "v").get(f"{prefix}:p").incr(f"{prefix}:pn")
        await pipe.execute()
    else:
        pipe = client.pipeline(transaction=True)
        pipe.incr(f"{prefix}:t").set(f"{prefix}:ts", "v").get(f"{prefix}:ts")
        await pipe.execute()


class _ProbeCounter:
    """Counts the watchdog's answered probes by sampling each database's hang watch (see the
    module docstring)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.seen: dict[int, float | None] = {}
        self.answered = 0

    def sample(self) -> None:
        ordered = self.provider.ordered_provider
        for index in range(1, len(self.provider) + 1):
            watch = ordered.slot(index).target.hang_watch
            alive_at = None if watch is None else watch.alive_at
            if alive_at is not None and alive_at != self.seen.get(index):
                self.answered += 1
            self.seen[index] = alive_at


def _listen(provider: Any, tally: Tally, start: float) -> None:
    def on_switch(event: Any) -> None:
        with tally.lock:
            tally.switches.append(f"{time.perf_counter() - start:.1f}s: {event}")
    provider.add_switch_listener(on_switch)


def _finish(provider: Any, tally: Tally, probes: _ProbeCounter) -> None:
    probes.sample()
    tally.probes_answered = probes.answered
    tally.hang_detections = sum(int(row["hang_detections"]) for row in provider.status())


# --- sync ---------------------------------------------------------------------------------


def run_sync(ports: Sequence[int], args: argparse.Namespace, stop: threading.Event,
             start: float, tally: Tally, ready: threading.Barrier) -> None:
    client = FailoverRedis.from_config(_config(ports))
    provider = client.provider
    _listen(provider, tally, start)
    probes = _ProbeCounter(provider)

    def worker(n: int) -> None:
        prefix = f"nff:sync:{n}"
        i = 0
        next_at = time.perf_counter()
        while not stop.is_set():
            op = OPS[i % len(OPS)]
            i += 1
            t0 = time.perf_counter()
            try:
                _sync_op(client, op, prefix)
            except Exception as exc:
                tally.failed(op, exc)
            else:
                tally.record(op, time.perf_counter() - t0)
            next_at = max(next_at + args.interval, time.perf_counter())
            stop.wait(max(0.0, next_at - time.perf_counter()))

    def debug_sleeper() -> None:
        while not stop.wait(args.debug_every):
            t0 = time.perf_counter()
            try:
                client.execute_command("DEBUG", "SLEEP", str(args.debug_sleep))
            except Exception as exc:
                tally.failed("debug-sleep", exc)
                continue
            with tally.lock:
                tally.debug_sleeps += 1
                tally.debug_sleep_max = max(tally.debug_sleep_max, time.perf_counter() - t0)

    def blpopper() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                client.blpop(["nff:sync:empty"], timeout=2)
            except Exception as exc:
                tally.failed("blpop", exc)
                stop.wait(args.interval)  # no database: do not spin
                continue
            with tally.lock:
                tally.blpops += 1
                tally.blpop_max = max(tally.blpop_max, time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True)
               for n in range(args.workers)]
    threads += [threading.Thread(target=debug_sleeper, daemon=True),
                threading.Thread(target=blpopper, daemon=True)]
    ready.wait()
    for t in threads:
        t.start()
    while not stop.wait(0.02):
        probes.sample()
    for t in threads:
        t.join()
    _finish(provider, tally, probes)
    client.close()


# --- asyncio ------------------------------------------------------------------------------


async def _run_async(ports: Sequence[int], args: argparse.Namespace, stop: threading.Event,
                     start: float, tally: Tally, ready: threading.Barrier) -> None:
    client = faulttol_redis.asyncio.FailoverRedis.from_config(_config(ports))
    await client.initialize()
    provider = client.provider
    _listen(provider, tally, start)
    probes = _ProbeCounter(provider)

    async def worker(n: int) -> None:
        prefix = f"nff:async:{n}"
        i = 0
        next_at = time.perf_counter()
        while not stop.is_set():
            op = OPS[i % len(OPS)]
            i += 1
            t0 = time.perf_counter()
            try:
                await _async_op(client, op, prefix)
            except Exception as exc:
                tally.failed(op, exc)
            else:
                tally.record(op, time.perf_counter() - t0)
            next_at = max(next_at + args.interval, time.perf_counter())
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def debug_sleeper() -> None:
        while not stop.is_set():
            await asyncio.sleep(args.debug_every)
            if stop.is_set():
                break
            t0 = time.perf_counter()
            try:
                await client.execute_command("DEBUG", "SLEEP", str(args.debug_sleep))
            except Exception as exc:
                tally.failed("debug-sleep", exc)
                continue
            tally.debug_sleeps += 1
            tally.debug_sleep_max = max(tally.debug_sleep_max, time.perf_counter() - t0)

    async def blpopper() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                await client.blpop(["nff:async:empty"], timeout=2)
            except Exception as exc:
                tally.failed("blpop", exc)
                await asyncio.sleep(args.interval)  # no database: do not spin
                continue
            tally.blpops += 1
            tally.blpop_max = max(tally.blpop_max, time.perf_counter() - t0)

    async def sampler() -> None:
        while not stop.is_set():
            probes.sample()
            await asyncio.sleep(0.02)

    await asyncio.get_running_loop().run_in_executor(None, ready.wait)
    await asyncio.gather(*(worker(n) for n in range(args.workers)), debug_sleeper(),
                         blpopper(), sampler())
    _finish(provider, tally, probes)
    await client.aclose()


def run_async(ports: Sequence[int], args: argparse.Namespace, stop: threading.Event,
              start: float, tally: Tally, ready: threading.Barrier) -> None:
    asyncio.run(_run_async(ports, args, stop, start, tally, ready))


_RUNNERS: dict[str, Callable[..., None]] = {"sync": run_sync, "asyncio": run_async}


# --- summary ------------------------------------------------------------------------------


def _pct(values: array[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.1f} ms"


def summary(tallies: Sequence[Tally]) -> dict[str, Any]:
    return {
        t.flavour: {
            "operations": dict(t.ops),
            "operations_total": sum(t.ops.values()),
            "p50_ms": round(_pct(t.latencies, 0.5) * 1000, 3),
            "p99_ms": round(_pct(t.latencies, 0.99) * 1000, 3),
            "max_ms": round(max(t.latencies, default=float("nan")) * 1000, 1),
            "slow_ge_500ms": t.slow,
            "debug_sleeps": t.debug_sleeps,
            "debug_sleep_max_ms": round(t.debug_sleep_max * 1000, 1),
            "blpops": t.blpops,
            "blpop_max_ms": round(t.blpop_max * 1000, 1),
            "errors": dict(t.errors),
            "switches": t.switches,
            "hang_probes": t.probes_answered + t.hang_detections,
            "hang_probes_answered": t.probes_answered,
            "hang_detections": t.hang_detections,
        }
        for t in tallies
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run")
    parser.add_argument("--flavours", nargs="+", choices=FLAVOURS, default=list(FLAVOURS))
    parser.add_argument("--workers", type=int, default=4,
                        help="traffic threads (sync) and tasks (asyncio) per client")
    parser.add_argument("--interval", type=float, default=0.002,
                        help="seconds between operation starts of one worker")
    parser.add_argument("--debug-every", type=float, default=5.0,
                        help="seconds between DEBUG SLEEPs of one client")
    parser.add_argument("--debug-sleep", type=float, default=0.2,
                        help="DEBUG SLEEP seconds (shorter than the 0.5 s window)")
    parser.add_argument("--hang-detection-after", type=float, default=None,
                        help="MultiDbConfig's hang_detection_after (default: its default)")
    parser.add_argument("--hang-probe-timeout", type=float, default=None,
                        help="MultiDbConfig's hang_probe_timeout (default: its default)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    for name in ("hang_detection_after", "hang_probe_timeout"):
        if getattr(args, name) is not None:
            WINDOW[name] = getattr(args, name)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    flavours = list(dict.fromkeys(args.flavours))
    tallies = [Tally(f) for f in flavours]
    stop = threading.Event()
    ready = threading.Barrier(len(flavours) + 1)
    with servers(2) as dbs:
        ports = [s.port for s in dbs]
        start = time.perf_counter()
        threads = [threading.Thread(target=_RUNNERS[t.flavour],
                                    args=(ports, args, stop, start, t, ready), daemon=True)
                   for t in tallies]
        for t in threads:
            t.start()
        ready.wait()
        start = time.perf_counter()
        stop.wait(args.minutes * 60)
        stop.set()
        elapsed = time.perf_counter() - start
        for t in threads:
            t.join(timeout=30)
    result = summary(tallies)
    switches = sum(len(t.switches) for t in tallies)
    verdict = f"switches {switches}, target 0: {'met' if switches == 0 else 'NOT met'}"
    if args.json:
        print(json.dumps({"machine": machine_note(), "elapsed_s": round(elapsed, 1),
                          "args": vars(args), "clients": result, "verdict": verdict},
                         indent=2))
        return 0
    print(f"# bench/no_false_failover.py — {machine_note()}")
    print(f"# {elapsed:.0f} s of traffic; {args.workers} workers per client, one operation "
          f"every {args.interval * 1000:g} ms each; DEBUG SLEEP {args.debug_sleep:g} every "
          f"{args.debug_every:g} s; BLPOP timeout 2 on an empty list; MultiDbConfig "
          f"{WINDOW or 'defaults'}")
    headers = ["client", "operations", "p50", "p99", "max", ">= 500 ms", "DEBUG SLEEPs (max)",
               "BLPOPs (max)", "app errors", "switches", "hang probes", "hang detections"]
    rows = []
    for name, r in result.items():
        rows.append([
            name, str(r["operations_total"]), _ms(r["p50_ms"] / 1000), _ms(r["p99_ms"] / 1000),
            _ms(r["max_ms"] / 1000), str(r["slow_ge_500ms"]),
            f"{r['debug_sleeps']} ({r['debug_sleep_max_ms']:.0f} ms)",
            f"{r['blpops']} ({r['blpop_max_ms']:.0f} ms)",
            str(sum(r["errors"].values())), str(len(r["switches"])), str(r["hang_probes"]),
            str(r["hang_detections"]),
        ])
    print(table(headers, rows))
    for name, r in result.items():
        for error, count in r["errors"].items():
            print(f"{name} error x{count}: {error}")
        for switch in r["switches"]:
            print(f"{name} switch at {switch}")
    print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
