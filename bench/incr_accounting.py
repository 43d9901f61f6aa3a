"""INCR accounting through a hung primary: what the application was told vs what the servers
applied, one INCR at a time.

Two fresh ``redis-server`` processes on loopback per run (database 1 = primary), no socket
timeouts (redis-py's default), faulttol_redis with hang detection at its defaults (0.5 s +
0.5 s probe) or tuned (0.05 / 0.1), sync (threads) or asyncio (tasks on one loop).

``--workers`` threads or tasks each send ``INCR`` on a **fresh key per command**
(``incr:<worker>:<n>``), one every ``--interval`` seconds, and one more sends ``SET`` on fresh
keys; every reply or error is recorded with the command's start and end. After a warm-up
the primary is stopped (SIGSTOP) from the bench's own thread; traffic goes on for
``--after`` seconds, then stops; the primary is resumed (SIGCONT: whatever was still in its
sockets runs now) and, ``--drain`` seconds later, every key is read from both servers. Since
each key is incremented by exactly one command, each command's fate is known exactly:

* acknowledged (the reply, 1): applied on exactly one database is right; on none is a
  **lost** increment, on both a **doubled** one;
* ``OutcomeUnknownError`` (ambiguous): applied on the hung primary after SIGCONT, or nowhere;
  either is allowed, on database 2 or both is not (INCR is never replayed);
* any other error: counted as an application error.

"In flight" are the INCRs that started before the switch listener heard of the failover and
ended after the SIGSTOP: the ones that waited on the frozen primary, plus (an upper bound)
any that ran in the instants between the switch and its announcement. A worker has one
command at a time, so "at most one ambiguous error per in-flight INCR" also reads: at most
one per worker. Targets (issue 9): ambiguous <= in flight, at most one per worker, none
for an INCR started after the switch, none applied on database 2; no acknowledged increment
lost or doubled; 0 application errors for the SET traffic.

Run: ``python bench/incr_accounting.py`` (``--runs N``, ``--flavours sync asyncio``,
``--configs defaults tuned``, ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from _common import machine_note, servers, table

import faulttol_redis.asyncio
from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig, OutcomeUnknownError
from faulttol_redis.testing import RedisServer

FLAVOURS = ("sync", "asyncio")
CONFIGS: dict[str, dict[str, float]] = {
    "defaults": {},
    "tuned": {"hang_detection_after": 0.05, "hang_probe_timeout": 0.1},
}


@dataclass
class Op:
    """One command: its key, when it ran, what the application got."""

    key: str
    kind: str  # incr | set
    start: float
    end: float = 0.0
    outcome: str = ""  # ack | unknown | <error type>
    reply: Any = None


@dataclass
class RunResult:
    """The accounting of one run."""

    flavour: str
    config: str
    incrs: int = 0
    acked: int = 0
    in_flight: int = 0
    ambiguous: int = 0
    ambiguous_applied_db1: int = 0
    ambiguous_applied_nowhere: int = 0
    ambiguous_applied_db2_or_both: int = 0
    ambiguous_not_in_flight: int = 0
    ambiguous_max_per_worker: int = 0
    lost: int = 0
    doubled: int = 0
    bad_reply: int = 0
    incr_errors: dict[str, int] = field(default_factory=dict)
    sets: int = 0
    set_errors: dict[str, int] = field(default_factory=dict)
    sets_lost: int = 0
    switch_after_ms: float | None = None
    sigstop_call_ms: float = 0.0
    stall_ms: float | None = None  # fault to the first INCR acknowledged after it

    def met(self) -> bool:
        return (self.ambiguous <= self.in_flight and self.ambiguous_not_in_flight == 0
                and self.ambiguous_max_per_worker <= 1
                and self.switch_after_ms is not None and self.switch_after_ms > 0
                and self.ambiguous_applied_db2_or_both == 0 and self.lost == 0
                and self.doubled == 0 and not self.incr_errors and not self.set_errors
                and self.sets_lost == 0 and self.bad_reply == 0)


class _Recorder:
    """The commands of a run and the run's clock marks."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.lock = threading.Lock()
        self.fault_at: float | None = None
        self.switch_at: float | None = None
        self.fault_sent = 0.0  # how long sending the SIGSTOP took (a starved bench thread)

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)


def _config(ports: Sequence[int], name: str) -> MultiDbConfig:
    return MultiDbConfig([DatabaseConfig("127.0.0.1", p) for p in ports], **CONFIGS[name])


def _outcome(op: Op, exc: BaseException | None, reply: Any) -> None:
    op.end = time.perf_counter()
    if exc is None:
        op.outcome, op.reply = "ack", reply
    elif isinstance(exc, OutcomeUnknownError):
        op.outcome = "unknown"
    else:
        op.outcome = type(exc).__name__


def _fault(primary: RedisServer, rec: _Recorder, warmup: float, after: float,
           stop: threading.Event) -> None:
    """From the bench's thread: SIGSTOP after the warm-up, stop the traffic ``after`` later."""
    time.sleep(warmup)
    rec.fault_at = time.perf_counter()  # from here on the primary may be frozen
    primary.pause()
    rec.fault_sent = time.perf_counter() - rec.fault_at
    time.sleep(after)
    stop.set()


# --- traffic --------------------------------------------------------------------------------


def _sync_traffic(client: FailoverRedis, rec: _Recorder, args: argparse.Namespace,
                  stop: threading.Event) -> None:
    def worker(name: str, kind: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            op = Op(f"{kind}:{name}:{n}", kind, time.perf_counter())
            rec.add(op)
            try:
                reply = client.incr(op.key) if kind == "incr" else client.set(op.key, 1)
            except Exception as exc:
                _outcome(op, exc, None)
            else:
                _outcome(op, None, reply)
            stop.wait(args.interval)

    threads = [threading.Thread(target=worker, args=(str(w), "incr"), daemon=True)
               for w in range(args.workers)]
    threads.append(threading.Thread(target=worker, args=("s", "set"), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


async def _async_traffic(client: Any, rec: _Recorder, args: argparse.Namespace,
                         stop: threading.Event) -> None:
    async def worker(name: str, kind: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            op = Op(f"{kind}:{name}:{n}", kind, time.perf_counter())
            rec.add(op)
            try:
                reply = await (client.incr(op.key) if kind == "incr"
                               else client.set(op.key, 1))
            except Exception as exc:
                _outcome(op, exc, None)
            else:
                _outcome(op, None, reply)
            await asyncio.sleep(args.interval)

    await asyncio.gather(*(worker(str(w), "incr") for w in range(args.workers)),
                         worker("s", "set"))


def _run_sync(ports: Sequence[int], primary: RedisServer, rec: _Recorder, warmup: float,
              config: str, args: argparse.Namespace) -> None:
    client = FailoverRedis.from_config(_config(ports, config))
    client.provider.add_switch_listener(lambda e: _switched(rec))
    stop = threading.Event()
    fault = threading.Thread(target=_fault, args=(primary, rec, warmup, args.after, stop))
    fault.start()
    try:
        _sync_traffic(client, rec, args, stop)
    finally:
        fault.join()
        client.close()


async def _async_session(ports: Sequence[int], primary: RedisServer, rec: _Recorder,
                         warmup: float, config: str, args: argparse.Namespace) -> None:
    client = faulttol_redis.asyncio.FailoverRedis.from_config(_config(ports, config))
    await client.initialize()
    client.provider.add_switch_listener(lambda e: _switched(rec))
    stop = threading.Event()
    fault = threading.Thread(target=_fault, args=(primary, rec, warmup, args.after, stop))
    fault.start()
    try:
        await _async_traffic(client, rec, args, stop)
    finally:
        await asyncio.get_running_loop().run_in_executor(None, fault.join)
        await client.aclose()


def _switched(rec: _Recorder) -> None:
    if rec.switch_at is None:
        rec.switch_at = time.perf_counter()


# --- accounting -------------------------------------------------------------------------------


def _read_all(server: RedisServer, keys: Sequence[str]) -> dict[str, int]:
    values: dict[str, int] = {}
    with server.client() as c:
        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            for key, value in zip(chunk, c.mget(chunk), strict=True):
                if value is not None:
                    values[key] = int(value)
    return values


def account(rec: _Recorder, dbs: Sequence[RedisServer], flavour: str,
            config: str) -> RunResult:
    """Each command's fate from both servers' contents (see the module docstring)."""
    ops = list(rec.ops)
    keys = [op.key for op in ops]
    db1, db2 = _read_all(dbs[0], keys), _read_all(dbs[1], keys)
    r = RunResult(flavour, config)
    fault_at = rec.fault_at or 0.0
    switch_at = rec.switch_at
    r.sigstop_call_ms = round(rec.fault_sent * 1000, 1)
    if switch_at is not None:
        r.switch_after_ms = round((switch_at - fault_at) * 1000, 1)
    incr_errors: Counter[str] = Counter()
    set_errors: Counter[str] = Counter()
    first_ack_after: float | None = None
    per_worker: Counter[str] = Counter()
    for op in ops:
        on1, on2 = op.key in db1, op.key in db2
        if op.kind == "set":
            r.sets += 1
            if op.outcome == "ack":
                r.sets_lost += int(not (on1 or on2))
            else:
                set_errors[op.outcome] += 1
            continue
        r.incrs += 1
        in_flight = op.end > fault_at and (switch_at is None or op.start < switch_at)
        r.in_flight += int(in_flight)
        if op.outcome == "ack":
            r.acked += 1
            r.bad_reply += int(op.reply != 1)
            r.lost += int(not (on1 or on2))
            r.doubled += int(on1 and on2) + int(db1.get(op.key, 0) > 1 or db2.get(op.key, 0) > 1)
            # stall: to the first acknowledged INCR sent after the SIGSTOP call returned
            if (op.start >= fault_at + rec.fault_sent
                    and (first_ack_after is None or op.end < first_ack_after)):
                first_ack_after = op.end
        elif op.outcome == "unknown":
            r.ambiguous += 1
            per_worker[op.key.rsplit(":", 1)[0]] += 1
            r.ambiguous_not_in_flight += int(not in_flight)
            if on2:
                r.ambiguous_applied_db2_or_both += 1
            elif on1:
                r.ambiguous_applied_db1 += 1
            else:
                r.ambiguous_applied_nowhere += 1
        else:
            incr_errors[op.outcome] += 1
    r.ambiguous_max_per_worker = max(per_worker.values(), default=0)
    r.incr_errors, r.set_errors = dict(incr_errors), dict(set_errors)
    if first_ack_after is not None:
        r.stall_ms = round((first_ack_after - fault_at) * 1000, 1)
    return r


def one_run(flavour: str, config: str, warmup: float, args: argparse.Namespace) -> RunResult:
    with servers(2) as dbs:
        ports = [s.port for s in dbs]
        rec = _Recorder()
        try:
            if flavour == "sync":
                _run_sync(ports, dbs[0], rec, warmup, config, args)
            else:
                asyncio.run(_async_session(ports, dbs[0], rec, warmup, config, args))
        finally:
            if dbs[0].is_paused:
                dbs[0].resume()
        time.sleep(args.drain)  # the resumed primary runs what was left in its sockets
        return account(rec, dbs, flavour, config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="runs per flavour and config")
    parser.add_argument("--flavours", nargs="+", choices=FLAVOURS, default=list(FLAVOURS))
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--workers", type=int, default=8, help="concurrent INCR workers")
    parser.add_argument("--interval", type=float, default=0.001,
                        help="pause between one worker's commands (default 0.001 s)")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--after", type=float, default=2.0,
                        help="seconds of traffic after the fault (default 2)")
    parser.add_argument("--drain", type=float, default=0.5,
                        help="seconds between SIGCONT and reading the servers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    logging.getLogger().addHandler(logging.NullHandler())
    results: list[RunResult] = []
    started = time.perf_counter()
    for flavour in dict.fromkeys(args.flavours):
        for config in dict.fromkeys(args.configs):
            for run in range(1, args.runs + 1):
                r = one_run(flavour, config, args.warmup, args)
                results.append(r)
                if not args.json:
                    print(f"  {flavour} {config} run {run}/{args.runs}: {asdict(r)}",
                          file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"machine": machine_note(), "elapsed_s": round(elapsed, 1),
                          "args": vars(args), "runs": [asdict(r) for r in results]},
                         indent=2))
        return 0
    print(f"# bench/incr_accounting.py — {machine_note()}")
    print(f"# {args.runs} run(s) per flavour and config; {args.workers} INCR workers + 1 SET "
          f"worker, fresh key per command, {args.interval * 1000:g} ms pause between one "
          f"worker's commands; SIGSTOP, {args.after:g} s of traffic, SIGCONT, read both "
          f"servers; no socket timeouts; {elapsed:.0f} s in all")
    headers = ["flavour", "config", "run", "switch after", "INCR stall", "INCRs", "acked",
               "in flight", "ambiguous (db1/nowhere/db2)", "max per worker", "lost",
               "doubled",
               "other INCR errors", "SETs", "SET errors", "SETs lost"]
    rows = []
    for i, r in enumerate(results):
        rows.append([
            r.flavour, r.config, str(i % args.runs + 1),
            "-" if r.switch_after_ms is None else f"{r.switch_after_ms:.0f} ms"
            + (f" (SIGSTOP call {r.sigstop_call_ms:.0f} ms)" if r.sigstop_call_ms >= 10 else ""),
            "-" if r.stall_ms is None else f"{r.stall_ms:.0f} ms",
            str(r.incrs), str(r.acked), str(r.in_flight),
            f"{r.ambiguous} ({r.ambiguous_applied_db1}/{r.ambiguous_applied_nowhere}/"
            f"{r.ambiguous_applied_db2_or_both})", str(r.ambiguous_max_per_worker),
            str(r.lost), str(r.doubled), str(sum(r.incr_errors.values())), str(r.sets),
            str(sum(r.set_errors.values())), str(r.sets_lost),
        ])
    print(table(headers, rows))
    print()
    met = sum(1 for r in results if r.met())
    print(f"targets (ambiguous <= in flight, <= 1 per worker, none after the switch, none "
          f"applied on db2, "
          f"0 lost, 0 doubled, 0 other errors, 0 SET errors): met in {met}/{len(results)} runs")
    for r in results:
        if r.incr_errors or r.set_errors:
            print(f"{r.flavour} {r.config}: INCR errors {r.incr_errors}, SET errors "
                  f"{r.set_errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
