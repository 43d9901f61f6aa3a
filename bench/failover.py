"""Failover stall: faulttol_redis vs redis-py's ``MultiDBClient``, same scenario side by side.

Scenarios (``--only`` picks one or more; all by default):

* ``kill``, ``stop``: the sync clients (``faulttol_redis.FailoverRedis``, redis-py's
  ``redis.multidb`` ``MultiDBClient``) over two fresh ``redis-server`` processes on loopback
  (database 1 = primary, database 2 = secondary);
* ``async-kill``, ``async-stop``: the same with the asyncio clients
  (``faulttol_redis.asyncio.FailoverRedis``, redis-py's ``redis.asyncio.multidb``
  ``MultiDBClient`` when this redis-py has it), one event loop per run;
* ``cluster-kill``: database 1 is a real 3-primary Redis Cluster (no replicas,
  ``cluster-node-timeout`` 1 s, started with the test suite's ``LocalCluster``) and the
  primary owning the benchmark's key is killed. faulttol's database 2 is a standalone server.
  redis-py's ``MultiDbConfig`` has one ``client_class`` for all databases, so it cannot mix a
  cluster and a standalone server: its database 2 is a second 3-primary cluster. The startup
  node given to both clients is a primary other than the one killed.

Every client has socket and connect timeouts of 0.5 s and default config otherwise. One
thread (or one task) sends ``SET`` commands at a steady pace (``--interval``, default 1 ms
between command starts). After a warm-up the same thread or task injects the fault between
two commands, so no command is half-way when the fault lands and the first command after it
is the first to meet the fault:

* ``SIGKILL``: the primary (or the cluster primary) is killed (connections reset, new ones
  refused);
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
``--deadline`` seconds after the fault if none succeeds ("no recovery"; a command in flight
at the deadline is let finish). Runs alternate between the clients (faulttol, redis-py,
faulttol, ...) so machine noise hits both alike. The summary shows median and max stall per
client and the ratio faulttol/redis-py, and checks the targets of the issues (the same for
every scenario): faulttol <= 100 ms after SIGKILL, <= 700 ms after SIGSTOP, no application
errors, and at most 1/10 of redis-py's stall.

* ``hung``, ``hung-tuned``, ``async-hung``, ``async-hung-tuned``: SIGSTOP with **no socket
  timeouts** on any client (redis-py's default: wait forever), faulttol with its default
  hang detection (0.5 s + 0.5 s probe) or tuned (``hang_detection_after=0.05``,
  ``hang_probe_timeout=0.1``); targets: faulttol <= 1.2 s (defaults) / <= 200 ms (tuned), no
  application errors, <= 0.15 x redis-py;
* ``blackhole``, ``blackhole-tuned``: database 1 is reached through a local TCP proxy on
  loopback that stops forwarding both ways without closing anything (a lost route), no
  socket timeouts; same targets.

With no socket timeouts a client that never leaves the hung database would wait forever:
``--deadline`` seconds after the fault the primary is resumed (or the proxy closed), and a
stall that long is reported as "no recovery".

Run: ``python bench/failover.py`` (``--runs N``, ``--only kill stop async-kill async-stop
cluster-kill``, ``--clients ...``, ``--json`` for machine-readable output).

The other hung-database benchmarks measure something other than a stall, so they have files
of their own: ``bench/hedged_reads.py`` (GET latency with ``hedge_reads_after`` while the
primary is frozen by ``CLIENT PAUSE``), ``bench/incr_accounting.py`` (every INCR's reply
against what the servers applied, through a SIGSTOP) and ``bench/no_false_failover.py``
(minutes of mixed traffic on healthy servers: no switch).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
import redis.cluster
from _common import (
    Cluster,
    close_redispy,
    close_redispy_async,
    clusters,
    fmt_ms,
    fmt_ratio,
    has_async_multidb,
    machine_note,
    median,
    redispy_async_client,
    redispy_client,
    redispy_port,
    servers,
    table,
    timeouts,
)

import faulttol_redis.asyncio
from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig
from faulttol_redis.testing import BlackHoleProxy, RedisServer

KEY = "bench:failover:seq"
CLIENTS = ("faulttol", "redis-py")
FAULT_NAMES = {"kill": "SIGKILL", "stop": "SIGSTOP", "blackhole": "black hole"}
TARGET_STALL = {"kill": 0.100, "stop": 0.700, "blackhole": 0.700}
"""The issues' targets for faulttol's stall, in seconds."""
TARGET_RATIO = 0.1
"""faulttol's stall must be at most this fraction of redis-py's."""


@dataclass(frozen=True)
class Scenario:
    """One fault against one kind of setup."""

    name: str  # the --only key
    label: str  # the table's "scenario" cell
    fault: str  # kill | stop | blackhole
    flavour: str  # sync | asyncio | cluster
    socket_timeouts: bool = True  # False: redis-py's default (wait forever), both clients
    faulttol_kwargs: tuple[tuple[str, float], ...] = ()  # MultiDbConfig overrides
    target: float | None = None  # faulttol's stall target (None: TARGET_STALL[fault])
    ratio: float = TARGET_RATIO  # faulttol/redis-py stall target


TUNED = (("hang_detection_after", 0.05), ("hang_probe_timeout", 0.1))
"""The tuned hang-detection window of the issue: about 0.15 s."""


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("kill", "SIGKILL", "kill", "sync"),
        Scenario("stop", "SIGSTOP", "stop", "sync"),
        Scenario("async-kill", "asyncio SIGKILL", "kill", "asyncio"),
        Scenario("async-stop", "asyncio SIGSTOP", "stop", "asyncio"),
        Scenario("cluster-kill", "cluster SIGKILL", "kill", "cluster"),
        # Hung databases (issue 9): no socket timeouts anywhere (redis-py's default).
        Scenario("hung", "hung (SIGSTOP, no timeouts, defaults)", "stop", "sync",
                 socket_timeouts=False, target=1.2, ratio=0.15),
        Scenario("hung-tuned", "hung (SIGSTOP, no timeouts, 0.05/0.1)", "stop", "sync",
                 socket_timeouts=False, faulttol_kwargs=TUNED, target=0.2, ratio=0.15),
        Scenario("async-hung", "asyncio hung (SIGSTOP, no timeouts, defaults)", "stop",
                 "asyncio", socket_timeouts=False, target=1.2, ratio=0.15),
        Scenario("async-hung-tuned", "asyncio hung (SIGSTOP, no timeouts, 0.05/0.1)", "stop",
                 "asyncio", socket_timeouts=False, faulttol_kwargs=TUNED, target=0.2,
                 ratio=0.15),
        Scenario("blackhole", "black-hole proxy (no timeouts, defaults)", "blackhole", "sync",
                 socket_timeouts=False, target=1.2, ratio=0.15),
        Scenario("blackhole-tuned", "black-hole proxy (no timeouts, 0.05/0.1)", "blackhole",
                 "sync", socket_timeouts=False, faulttol_kwargs=TUNED, target=0.2, ratio=0.15),
    )
}


@dataclass
class RunResult:
    """One run of one client in one scenario."""

    client: str
    scenario: str
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


@dataclass
class _Traffic:
    """What the SET loop saw."""

    stall: float | None
    max_gap: float
    commands: int
    errors: Counter[str]
    last_ok_value: int


class _Loop:
    """The SET loop's bookkeeping, shared by the sync and asyncio drivers."""

    def __init__(self, inject: Callable[[], None], warmup: float,
                 args: argparse.Namespace) -> None:
        self.inject = inject
        self.warmup = warmup
        self.interval: float = args.interval
        self.settle: float = args.settle
        self.deadline: float = args.deadline
        self.errors: Counter[str] = Counter()
        self.seq = 0
        self.last_ok_value = -1
        self.last_ok_end: float | None = None
        self.max_gap = 0.0
        self.fault_at: float | None = None
        self.first_ok_after: float | None = None
        self.start = time.perf_counter()
        self.next_tick = self.start

    def before(self) -> float | None:
        """Inject the fault when due; None to stop, else how long to sleep first."""
        now = time.perf_counter()
        if self.fault_at is None and now - self.start >= self.warmup:
            self.fault_at = time.perf_counter()
            self.inject()
        if self.fault_at is not None:
            if self.first_ok_after is not None and now - self.first_ok_after >= self.settle:
                return None
            if self.first_ok_after is None and now - self.fault_at >= self.deadline:
                return None
        wait = max(0.0, self.next_tick - now)
        self.next_tick = max(self.next_tick + self.interval, now + wait)
        self.seq += 1
        return wait

    def failed(self, exc: BaseException) -> None:
        self.errors[type(exc).__name__] += 1

    def succeeded(self) -> None:
        end = time.perf_counter()
        if self.last_ok_end is not None:
            self.max_gap = max(self.max_gap, end - self.last_ok_end)
        self.last_ok_end = end
        self.last_ok_value = self.seq
        if self.fault_at is not None and self.first_ok_after is None:
            self.first_ok_after = end

    def traffic(self) -> _Traffic:
        stall = (None if self.first_ok_after is None or self.fault_at is None
                 else self.first_ok_after - self.fault_at)
        max_gap = self.max_gap
        if stall is None and self.last_ok_end is not None:  # no recovery: the gap runs on
            max_gap = max(max_gap, time.perf_counter() - self.last_ok_end)
        return _Traffic(stall, max_gap, self.seq, self.errors, self.last_ok_value)


def _drive(set_: Callable[[str, int], Any], inject: Callable[[], None], warmup: float,
           args: argparse.Namespace) -> _Traffic:
    """Steady SETs from this thread; the fault injected between two of them."""
    loop = _Loop(inject, warmup, args)
    while (wait := loop.before()) is not None:
        if wait:
            time.sleep(wait)
        try:
            set_(KEY, loop.seq)
        except Exception as exc:  # the application sees it: count it, go on
            loop.failed(exc)
            continue
        loop.succeeded()
    return loop.traffic()


async def _drive_async(set_: Callable[[str, int], Awaitable[Any]], inject: Callable[[], None],
                       warmup: float, args: argparse.Namespace) -> _Traffic:
    """Steady awaited SETs from this task; the fault injected between two of them."""
    loop = _Loop(inject, warmup, args)
    while (wait := loop.before()) is not None:
        if wait:
            await asyncio.sleep(wait)
        try:
            await set_(KEY, loop.seq)
        except Exception as exc:  # the application sees it: count it, go on
            loop.failed(exc)
            continue
        loop.succeeded()
    return loop.traffic()


def _inject(fault: str, primary: RedisServer) -> None:
    if fault == "kill":
        primary.kill()
    else:
        primary.pause()


class _Fault:
    """The fault of one run, and its rescue: with no socket timeouts a client that cannot
    leave the hung database would wait forever, so ``deadline`` seconds after the fault the
    primary is resumed (or the proxy closed); a stall that long counts as no recovery."""

    def __init__(self, scenario: Scenario, primary: RedisServer, deadline: float) -> None:
        self.scenario = scenario
        self.primary = primary
        self.deadline = deadline
        self.proxy = BlackHoleProxy(primary.port) if scenario.fault == "blackhole" else None
        self._timer: threading.Timer | None = None

    def port(self) -> int:
        return self.proxy.port if self.proxy is not None else self.primary.port

    def inject(self) -> None:
        if self.proxy is not None:
            self.proxy.freeze()
        else:
            _inject(self.scenario.fault, self.primary)
        if not self.scenario.socket_timeouts:
            self._timer = threading.Timer(self.deadline, self.end)
            self._timer.daemon = True
            self._timer.start()

    def end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.primary.is_paused:
            with contextlib.suppress(Exception):
                self.primary.resume()
        if self.proxy is not None:
            self.proxy.close()


def _faulttol_config(ports: Sequence[int], scenario: Scenario) -> MultiDbConfig:
    kwargs = timeouts() if scenario.socket_timeouts else None
    return MultiDbConfig([DatabaseConfig("127.0.0.1", p, client_kwargs=kwargs) for p in ports],
                         **dict(scenario.faulttol_kwargs))


def _redispy_sync(ports: Sequence[int], scenario: Scenario) -> Any:
    if scenario.socket_timeouts:
        return redispy_client(ports)
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


async def _redispy_async(ports: Sequence[int], scenario: Scenario) -> Any:
    if scenario.socket_timeouts:
        return await redispy_async_client(ports)
    client_module = importlib.import_module("redis.asyncio.multidb.client")
    config_module = importlib.import_module("redis.asyncio.multidb.config")
    config = config_module.MultiDbConfig(databases_config=[
        config_module.DatabaseConfig(client_kwargs={"host": "127.0.0.1", "port": p})
        for p in ports])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        client = client_module.MultiDBClient(config)
    await client.initialize()
    return client


# --- reading where the last value went --------------------------------------------------

_Reader = Callable[[], Any]


def _server_reader(server: RedisServer) -> _Reader:
    def read() -> Any:
        if not server.is_running or server.is_paused:
            return None
        with redis.Redis(host=server.host, port=server.port, socket_timeout=2.0) as raw:
            return raw.get(KEY)
    return read


def _cluster_reader(cluster: Cluster) -> _Reader:
    def read() -> Any:
        live = [n for n in cluster.nodes if n.is_running]
        if not live:
            return None
        client = redis.cluster.RedisCluster(host=live[0].host, port=live[0].port,
                                            socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            return client.get(KEY)
        finally:
            client.close()
    return read


def _served_by(value: int, readers: Sequence[_Reader]) -> str:
    """``db<i>`` for the database(s) holding ``value`` under KEY (read with plain clients)."""
    holders = []
    for i, read in enumerate(readers, start=1):
        try:
            stored = read()
        except Exception:  # a dead database (or a cluster without the key's primary)
            continue
        if stored is not None and int(stored) == value:
            holders.append(f"db{i}")
    return "+".join(holders) or "none"


def _result(kind: str, scenario: Scenario, traffic: _Traffic, readers: Sequence[_Reader],
            args: argparse.Namespace | None = None,
            ) -> RunResult:
    stall = traffic.stall
    if stall is not None and args is not None and stall >= args.deadline:
        stall = None  # released by the rescue at the deadline (see _Fault): no recovery
    return RunResult(kind, scenario.name, scenario.fault, stall, traffic.max_gap,
                     traffic.commands, dict(traffic.errors),
                     _served_by(traffic.last_ok_value, readers))


def _redispy_index(client: Any, ports: Sequence[int]) -> int:
    """1-based index of the standalone database redis-py's client uses (0: unknown)."""
    port = redispy_port(client)
    return ports.index(port) + 1 if port is not None and port in ports else 0


def _setup_error(kind: str, scenario: Scenario, message: str) -> RunResult:
    return RunResult(kind, scenario.name, scenario.fault, None, 0.0, 0, setup_error=message)


# --- one run per flavour ----------------------------------------------------------------


def _run_sync(kind: str, scenario: Scenario, warmup: float,
              args: argparse.Namespace) -> RunResult:
    """Two fresh servers, one sync client, steady SETs, one fault; servers always stopped."""
    with servers(2) as dbs:
        primary = dbs[0]
        fault = _Fault(scenario, primary, args.deadline)
        ports = [fault.port(), dbs[1].port]
        set_: Callable[[str, int], Any]
        close: Callable[[], None]
        try:
            if kind == "faulttol":
                ft = FailoverRedis.from_config(_faulttol_config(ports, scenario))
                set_, close = ft.set, ft.close
                active = ft.provider.active_index
            else:
                rp: Any = _redispy_sync(ports, scenario)  # redis-py's multidb: not fully typed
                set_, close = rp.set, lambda: close_redispy(rp)
                active = _redispy_index(rp, ports)
            try:
                if active != 1:
                    return _setup_error(kind, scenario, f"started on database {active}")
                traffic = _drive(set_, fault.inject, warmup, args)
            finally:
                fault.end()
                close()
        finally:
            fault.end()
        return _result(kind, scenario, traffic, [_server_reader(s) for s in dbs], args)


async def _async_session(kind: str, scenario: Scenario, dbs: Sequence[RedisServer],
                         warmup: float, args: argparse.Namespace) -> _Traffic | str:
    """One asyncio client over ``dbs`` in this loop; the traffic, or a setup error."""
    primary = dbs[0]
    fault = _Fault(scenario, primary, args.deadline)
    ports = [fault.port(), dbs[1].port]
    client: Any = None
    try:
        if kind == "faulttol":
            client = faulttol_redis.asyncio.FailoverRedis.from_config(
                _faulttol_config(ports, scenario))
            await client.initialize()
            active = client.provider.active_index
        else:
            client = await _redispy_async(ports, scenario)
            active = _redispy_index(client, ports)
        if active != 1:
            return f"started on database {active}"
        return await _drive_async(client.set, fault.inject, warmup, args)
    finally:
        fault.end()
        if client is not None:
            if kind == "faulttol":
                await client.aclose()
            else:
                await close_redispy_async(client)


def _run_async(kind: str, scenario: Scenario, warmup: float,
               args: argparse.Namespace) -> RunResult:
    """Two fresh servers, one asyncio client in a fresh event loop, one fault."""
    with servers(2) as dbs:
        outcome = asyncio.run(_async_session(kind, scenario, dbs, warmup, args))
        if isinstance(outcome, str):
            return _setup_error(kind, scenario, outcome)
        return _result(kind, scenario, outcome, [_server_reader(s) for s in dbs], args)


def _run_cluster(kind: str, scenario: Scenario, warmup: float,
                 args: argparse.Namespace) -> RunResult:
    """A fresh 3-primary cluster as database 1 (faulttol: a standalone server as database 2;
    redis-py: a second cluster), one sync client, the key's primary killed."""
    redispy = kind != "faulttol"
    with clusters(2 if redispy else 1) as started, servers(0 if redispy else 1) as standalone:
        cluster = started[0]
        victim = cluster.owner_of(KEY)
        startup = cluster.ports[(victim + 1) % len(cluster.ports)]
        set_: Callable[[str, int], Any]
        close: Callable[[], None]
        if not redispy:
            config = MultiDbConfig([
                DatabaseConfig(cluster.host, startup, cluster=True, name="cluster",
                               client_kwargs=timeouts()),
                DatabaseConfig(standalone[0].host, standalone[0].port, name="standalone",
                               client_kwargs=timeouts()),
            ])
            ft = FailoverRedis.from_config(config)
            set_, close = ft.set, ft.close
            active = ft.provider.active_index
            readers = [_cluster_reader(cluster), _server_reader(standalone[0])]
        else:
            second = started[1]
            rp: Any = redispy_client([startup, second.ports[0]],
                                     client_class=redis.cluster.RedisCluster)
            set_, close = rp.set, lambda: close_redispy(rp)
            nodes = {n.port for n in rp.command_executor.active_database.client.get_nodes()}
            active = 1 if nodes & set(cluster.ports) else 2
            readers = [_cluster_reader(cluster), _cluster_reader(second)]
        try:
            if active != 1:
                return _setup_error(kind, scenario, f"started on database {active}")
            traffic = _drive(set_, lambda: cluster.kill(victim), warmup, args)
        finally:
            close()
        return _result(kind, scenario, traffic, readers)


_RUNNERS: dict[str, Callable[[str, Scenario, float, argparse.Namespace], RunResult]] = {
    "sync": _run_sync,
    "asyncio": _run_async,
    "cluster": _run_cluster,
}


# --- summary ----------------------------------------------------------------------------


def _stalls(results: Sequence[RunResult]) -> list[float]:
    return [r.stall for r in results if r.stall is not None]


def summarize(results: Sequence[RunResult], scenarios: Sequence[Scenario],
              clients: Sequence[str], deadline: float) -> tuple[str, list[str], bool]:
    """The table, the target verdicts and whether all targets are met."""
    rows: list[list[str]] = []
    verdicts: list[str] = []
    all_met = True
    for scenario in scenarios:
        medians: dict[str, float] = {}
        no_recovery: dict[str, int] = {}
        for kind in clients:
            runs = [r for r in results if r.client == kind and r.scenario == scenario.name]
            if not runs:
                continue
            stalls = _stalls(runs)
            no_recovery[kind] = sum(1 for r in runs if r.stall is None)
            medians[kind] = median(stalls) if not no_recovery[kind] else float("inf")
            errors: Counter[str] = Counter()
            for r in runs:
                errors.update(r.errors)
            served = Counter(r.served_after for r in runs)
            setup = sum(1 for r in runs if r.setup_error)
            rows.append([
                scenario.label,
                kind,
                str(len(runs)),
                fmt_ms(median(stalls)) + (f" ({no_recovery[kind]} no recovery)"
                                          if no_recovery[kind] else ""),
                fmt_ms(max(stalls)) if stalls else "-",
                fmt_ms(median([r.max_gap for r in runs])),
                str(sum(errors.values())) + (
                    " (" + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) + ")"
                    if errors else ""),
                ", ".join(f"{k} x{v}" for k, v in sorted(served.items()))
                + (f" ({setup} setup errors)" if setup else ""),
            ])
        if "faulttol" not in medians:
            continue
        name = scenario.label
        ft_runs = [r for r in results if r.client == "faulttol" and r.scenario == scenario.name]
        ft_max = max(_stalls(ft_runs), default=float("inf"))
        if no_recovery["faulttol"]:
            ft_max = float("inf")
        target = scenario.target if scenario.target is not None else TARGET_STALL[scenario.fault]
        ok_stall = medians["faulttol"] <= target
        ft_errors = sum(r.error_count for r in ft_runs)
        served_ok = all(r.served_after == "db2" for r in ft_runs)
        verdicts.append(
            f"{name}: faulttol median stall {fmt_ms(medians['faulttol'])} "
            f"(max {fmt_ms(ft_max)}), target <= {fmt_ms(target)}: "
            f"{'met' if ok_stall else 'NOT met'}; application errors {ft_errors}, "
            f"target 0: {'met' if ft_errors == 0 else 'NOT met'}; served after by db2 in "
            f"every run: {'yes' if served_ok else 'no'}"
        )
        all_met &= ok_stall and ft_errors == 0
        if "redis-py" not in medians:
            continue
        rp_runs = [r for r in results if r.client == "redis-py" and r.scenario == scenario.name]
        if no_recovery["redis-py"]:
            # redis-py's median is unknown (at least the deadline): the ratio is a bound
            rp_stalls = sorted([*_stalls(rp_runs), *[deadline] * no_recovery["redis-py"]])
            bound = median(rp_stalls)
            ok_ratio = medians["faulttol"] / bound <= scenario.ratio
            verdicts.append(
                f"{name}: redis-py did not recover within the {deadline:g} s deadline in "
                f"{no_recovery['redis-py']} of {len(rp_runs)} runs; ratio faulttol/redis-py "
                f"(median stalls) < {fmt_ratio(medians['faulttol'], bound)}, "
                f"target <= {scenario.ratio}: {'met' if ok_ratio else 'NOT met'}"
            )
        else:
            ok_ratio = medians["faulttol"] / medians["redis-py"] <= scenario.ratio
            verdicts.append(
                f"{name}: ratio faulttol/redis-py (median stalls) "
                f"{fmt_ratio(medians['faulttol'], medians['redis-py'])}, "
                f"target <= {scenario.ratio}: {'met' if ok_ratio else 'NOT met'}"
            )
        all_met &= ok_ratio
    headers = ["scenario", "client", "runs", "stall median", "stall max", "max gap (median)",
               "app errors (all runs)", "served after"]
    return table(headers, rows), verdicts, all_met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per client and scenario")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), metavar="SCENARIO",
                        help=f"these scenarios only, of: {', '.join(SCENARIOS)}")
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
    parser.add_argument("--deadline", type=float, default=10.0,
                        help="give up waiting for a success this long after the fault "
                             "(default 10: redis-py's slowest detection, a 5 s health-check "
                             "interval plus 3 probes 0.5 s apart, is ~7.5 s)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--verbose", action="store_true",
                        help="show the clients' log messages (switches, failed probes)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if not args.verbose:  # both clients log every switch; keep the table readable
        logging.getLogger().addHandler(logging.NullHandler())
    scenarios = [SCENARIOS[name] for name in dict.fromkeys(args.only or SCENARIOS)]
    clients = list(dict.fromkeys(args.clients))
    notes: list[str] = []
    if not has_async_multidb() and any(s.flavour == "asyncio" for s in scenarios):
        notes.append(f"redis-py {redis.__version__} has no asyncio MultiDBClient: "
                     "the asyncio scenarios run faulttol only")

    results: list[RunResult] = []
    started = time.perf_counter()
    for scenario in scenarios:
        kinds = [k for k in clients
                 if not (k == "redis-py" and scenario.flavour == "asyncio"
                         and not has_async_multidb())]
        for run in range(1, args.runs + 1):
            warmup = args.warmup + args.phase_spread * (run - 0.5) / args.runs
            for kind in kinds:
                result = _RUNNERS[scenario.flavour](kind, scenario, warmup, args)
                results.append(result)
                if not args.json:
                    stall = "no recovery" if result.stall is None else fmt_ms(result.stall)
                    print(f"  {scenario.label} run {run}/{args.runs} {kind:9} "
                          f"(fault at {warmup:.1f} s): "
                          f"stall {stall:>12}, max gap {fmt_ms(result.max_gap):>8}, "
                          f"errors {result.error_count}, served after {result.served_after}"
                          + (f", SETUP ERROR {result.setup_error}" if result.setup_error
                             else ""),
                          file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    text, verdicts, all_met = summarize(results, scenarios, clients, args.deadline)
    if args.json:
        print(json.dumps({
            "machine": machine_note(),
            "elapsed_s": round(elapsed, 1),
            "runs": [asdict(r) for r in results],
            "notes": notes,
            "verdicts": verdicts,
            "all_targets_met": all_met,
        }, indent=2))
    else:
        print(f"# bench/failover.py — {machine_note()}")
        print(f"# {args.runs} run(s) per client and scenario, SET every "
              f"{args.interval * 1000:g} ms, socket timeouts 0.5 s (none in the hung and "
              f"black-hole scenarios), {elapsed:.0f} s in all")
        for note in notes:
            print(f"# {note}")
        print(text)
        print()
        for verdict in verdicts:
            print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
