"""Failover stall: faulttol_redis vs redis-py's ``MultiDBClient``, same scenario side by side.

Each run starts two fresh ``redis-server`` processes on loopback (database 1 = primary,
database 2 = secondary) and one client over them, with socket and connect timeouts of 0.5 s
and default config otherwise. One thread sends ``SET`` commands at a steady pace
(``--interval``, default 1 ms between command starts). After a warm-up the same thread
injects the fault between two commands — so no command is half-way when the fault lands and
the first command after it is the first to meet the fault:

* ``SIGKILL``: the primary is killed (connections reset, new ones refused);
* ``SIGSTOP``: the primary is stopped (it keeps its port but answers nothing; it is resumed
  after the run).

Measured per run:

* stall: from the fault to the completion of the next successful command;
* max gap: the longest time between two consecutive successful commands in the run;
* errors: exceptions the application saw (every ``SET`` that raised);
* served after: the database that holds the value of the last successful ``SET`` (read
  directly from the servers once the run is over; for SIGSTOP after resuming the primary).

Both clients run background health checks every 5 s (their default), and redis-py only leaves
a dead database once a health check has failed it, so its stall depends on where in that cycle
the fault lands. The warm-up is therefore ``--warmup`` plus a phase spread evenly over
``--phase-spread`` seconds (default 5, one health-check interval) across the runs — run k of N
waits ``warmup + spread * (k - 0.5) / N`` — and both clients get the same phases.

A run ends ``--settle`` seconds after the first successful command after the fault, or
``--deadline`` seconds after the fault if none succeeds ("no recovery"). Runs alternate
between the clients (faulttol, redis-py, faulttol, ...) so machine noise hits both alike.
The summary shows median and max stall per client and the ratio faulttol/redis-py, and checks
the targets of the issue: faulttol <= 100 ms after SIGKILL, <= 700 ms after SIGSTOP, no
application errors, and at most 1/10 of redis-py's stall.

Run: ``python bench/failover.py`` (``--runs N``, ``--only kill|stop``, ``--clients ...``,
``--json`` for machine-readable output).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from _common import (
    close_redispy,
    faulttol_client,
    fmt_ms,
    fmt_ratio,
    machine_note,
    median,
    redispy_client,
    redispy_port,
    servers,
    table,
)

from faulttol_redis._server import RedisServer

KEY = "bench:failover:seq"
FAULTS = ("kill", "stop")
FAULT_NAMES = {"kill": "SIGKILL", "stop": "SIGSTOP"}
CLIENTS = ("faulttol", "redis-py")
TARGET_STALL = {"kill": 0.100, "stop": 0.700}
"""The issue's targets for faulttol's stall, in seconds."""
TARGET_RATIO = 0.1
"""faulttol's stall must be at most this fraction of redis-py's."""


@dataclass
class RunResult:
    """One run of one client against one fault."""

    client: str
    fault: str
    stall: float | None  # seconds; None: no successful command before the deadline
    max_gap: float
    commands: int
    errors: dict[str, int] = field(default_factory=dict)
    served_after: str = "?"
    setup_error: str | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class _Client:
    """The client under test, behind one interface: ``set``, the active port, ``close``."""

    def __init__(self, kind: str, ports: Sequence[int]) -> None:
        self.kind = kind
        if kind == "faulttol":
            self._ft = faulttol_client(ports)
            self.set: Callable[[str, int], Any] = self._ft.set
        else:
            self._rp = redispy_client(ports)
            handle: Any = self._rp  # redis-py's multidb module is not fully typed
            self.set = handle.set
        self._ports = list(ports)

    def active_index(self) -> int | None:
        """1-based index of the database the client says it uses."""
        if self.kind == "faulttol":
            return self._ft.provider.active_index
        port = redispy_port(self._rp)
        return self._ports.index(port) + 1 if port in self._ports else None

    def close(self) -> None:
        if self.kind == "faulttol":
            self._ft.close()
        else:
            close_redispy(self._rp)


def _inject(fault: str, primary: RedisServer) -> None:
    if fault == "kill":
        primary.kill()
    else:
        primary.pause()


def _served_by(value: int, dbs: Sequence[RedisServer]) -> str:
    """``db<i>`` for the server(s) holding ``value`` under KEY (read with a raw client)."""
    holders = []
    for i, server in enumerate(dbs, start=1):
        if not server.is_running or server.is_paused:
            continue
        try:
            raw = redis.Redis(host=server.host, port=server.port, socket_timeout=2.0)
            try:
                stored = raw.get(KEY)
            finally:
                raw.close()
        except redis.RedisError:
            continue
        if stored is not None and int(stored) == value:
            holders.append(f"db{i}")
    return "+".join(holders) or "none"


def one_run(kind: str, fault: str, warmup: float, args: argparse.Namespace) -> RunResult:
    """Two fresh servers, one client, steady SETs, one fault; servers always stopped."""
    with servers(2) as dbs:
        primary = dbs[0]
        client = _Client(kind, [s.port for s in dbs])
        try:
            if client.active_index() != 1:
                return RunResult(kind, fault, None, 0.0, 0,
                                 setup_error=f"started on database {client.active_index()}")
            return _drive(client, fault, primary, dbs, warmup, args)
        finally:
            if primary.is_paused:
                with contextlib.suppress(Exception):
                    primary.resume()
            client.close()


def _drive(client: _Client, fault: str, primary: RedisServer, dbs: Sequence[RedisServer],
           warmup: float, args: argparse.Namespace) -> RunResult:
    clock = time.perf_counter
    interval: float = args.interval
    errors: Counter[str] = Counter()
    seq = 0
    last_ok_value = -1
    last_ok_end: float | None = None
    max_gap = 0.0
    fault_at: float | None = None
    first_ok_after: float | None = None
    start = clock()
    next_tick = start
    while True:
        now = clock()
        if fault_at is None and now - start >= warmup:
            fault_at = clock()
            _inject(fault, primary)
        if fault_at is not None:
            if first_ok_after is not None and now - first_ok_after >= args.settle:
                break
            if first_ok_after is None and now - fault_at >= args.deadline:
                break
        if now < next_tick:
            time.sleep(next_tick - now)
        next_tick = max(next_tick + interval, clock())
        seq += 1
        try:
            client.set(KEY, seq)
        except Exception as exc:  # the application sees it: count it, go on
            errors[type(exc).__name__] += 1
            continue
        end = clock()
        if last_ok_end is not None:
            max_gap = max(max_gap, end - last_ok_end)
        last_ok_end = end
        last_ok_value = seq
        if fault_at is not None and first_ok_after is None:
            first_ok_after = end
    if primary.is_paused:
        primary.resume()
    stall = None if first_ok_after is None or fault_at is None else first_ok_after - fault_at
    return RunResult(client.kind, fault, stall, max_gap, seq, dict(errors),
                     _served_by(last_ok_value, dbs))


# --- summary ----------------------------------------------------------------------------


def _stalls(results: Sequence[RunResult]) -> list[float]:
    return [r.stall for r in results if r.stall is not None]


def summarize(results: Sequence[RunResult], faults: Sequence[str],
              clients: Sequence[str]) -> tuple[str, list[str], bool]:
    """The table, the target verdicts and whether all targets are met."""
    rows: list[list[str]] = []
    verdicts: list[str] = []
    all_met = True
    for fault in faults:
        medians: dict[str, float] = {}
        for kind in clients:
            runs = [r for r in results if r.client == kind and r.fault == fault]
            stalls = _stalls(runs)
            no_recovery = sum(1 for r in runs if r.stall is None)
            medians[kind] = median(stalls) if not no_recovery else float("inf")
            errors: Counter[str] = Counter()
            for r in runs:
                errors.update(r.errors)
            served = Counter(r.served_after for r in runs)
            rows.append([
                FAULT_NAMES[fault],
                kind,
                str(len(runs)),
                fmt_ms(median(stalls)) + (f" ({no_recovery} no recovery)" if no_recovery else ""),
                fmt_ms(max(stalls)) if stalls else "-",
                fmt_ms(median([r.max_gap for r in runs])),
                str(sum(errors.values())) + (
                    " (" + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) + ")"
                    if errors else ""),
                ", ".join(f"{k} x{v}" for k, v in sorted(served.items())),
            ])
        if "faulttol" in medians:
            ft_runs = [r for r in results if r.client == "faulttol" and r.fault == fault]
            ft_max = max(_stalls(ft_runs), default=float("inf"))
            if len(_stalls(ft_runs)) < len(ft_runs):
                ft_max = float("inf")
            ok_stall = medians["faulttol"] <= TARGET_STALL[fault]
            ft_errors = sum(r.error_count for r in ft_runs)
            served_ok = all(r.served_after == "db2" for r in ft_runs)
            verdicts.append(
                f"{FAULT_NAMES[fault]}: faulttol median stall {fmt_ms(medians['faulttol'])} "
                f"(max {fmt_ms(ft_max)}), target <= {fmt_ms(TARGET_STALL[fault])}: "
                f"{'met' if ok_stall else 'NOT met'}; application errors {ft_errors}, "
                f"target 0: {'met' if ft_errors == 0 else 'NOT met'}; served after by db2 in "
                f"every run: {'yes' if served_ok else 'no'}"
            )
            all_met &= ok_stall and ft_errors == 0
            if "redis-py" in medians:
                ratio = medians["faulttol"] / medians["redis-py"]
                ok_ratio = ratio <= TARGET_RATIO
                verdicts.append(
                    f"{FAULT_NAMES[fault]}: ratio faulttol/redis-py (median stalls) "
                    f"{fmt_ratio(medians['faulttol'], medians['redis-py'])}, "
                    f"target <= {TARGET_RATIO}: {'met' if ok_ratio else 'NOT met'}"
                )
                all_met &= ok_ratio
    headers = ["fault", "client", "runs", "stall median", "stall max", "max gap (median)",
               "app errors (all runs)", "served after"]
    return table(headers, rows), verdicts, all_met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per client and fault")
    parser.add_argument("--only", choices=FAULTS, help="one fault only")
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS))
    parser.add_argument("--interval", type=float, default=0.001,
                        help="seconds between command starts (default 0.001)")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="seconds of traffic before the fault")
    parser.add_argument("--phase-spread", type=float, default=5.0,
                        help="spread the fault's time over this many seconds across runs "
                             "(default 5: one health-check interval)")
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds of traffic after the first success after the fault")
    parser.add_argument("--deadline", type=float, default=15.0,
                        help="give up waiting for a success this long after the fault")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--verbose", action="store_true",
                        help="show the clients' log messages (switches, failed probes)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if not args.verbose:  # both clients log every switch; keep the table readable
        logging.getLogger().addHandler(logging.NullHandler())
    faults = [args.only] if args.only else list(FAULTS)
    clients = list(dict.fromkeys(args.clients))

    results: list[RunResult] = []
    started = time.perf_counter()
    for fault in faults:
        for run in range(1, args.runs + 1):
            warmup = args.warmup + args.phase_spread * (run - 0.5) / args.runs
            for kind in clients:
                result = one_run(kind, fault, warmup, args)
                results.append(result)
                if not args.json:
                    stall = "no recovery" if result.stall is None else fmt_ms(result.stall)
                    print(f"  {FAULT_NAMES[fault]} run {run}/{args.runs} {kind:9} "
                          f"(fault at {warmup:.1f} s): "
                          f"stall {stall:>12}, max gap {fmt_ms(result.max_gap):>8}, "
                          f"errors {result.error_count}, served after {result.served_after}"
                          + (f", SETUP ERROR {result.setup_error}" if result.setup_error
                             else ""),
                          file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    text, verdicts, all_met = summarize(results, faults, clients)
    if args.json:
        print(json.dumps({
            "machine": machine_note(),
            "elapsed_s": round(elapsed, 1),
            "runs": [asdict(r) for r in results],
            "verdicts": verdicts,
            "all_targets_met": all_met,
        }, indent=2))
    else:
        print(f"# bench/failover.py — {machine_note()}")
        print(f"# {args.runs} run(s) per client and fault, SET every {args.interval * 1000:g} ms, "
              f"socket timeouts 0.5 s, {elapsed:.0f} s in all")
        print(text)
        print()
        for verdict in verdicts:
            print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
