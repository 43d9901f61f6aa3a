"""Soak: minutes of mixed writes under real faults, then count on the servers what was kept.

Many threads (sync client) or asyncio tasks (asyncio client) write to two or three throwaway
``redis-server`` processes on loopback started with ``appendonly yes`` and ``appendfsync
always``, through one ``FailoverRedis``, while a fault loop keeps hitting the database that is
active at that moment. Every write the client acknowledged is recorded; at the end every
server is killed (SIGKILL) and restarted from its append-only file, and the data is read back
from all of them and compared with the record (Jepsen-style accounting).

Operations, on keys no other worker writes:

* ``set``: ``SET s:<w>:<n> <value>`` once per key (replay-safe: the client may re-run it);
* ``incr``: ``INCR`` on one of a few counters per worker (not replay-safe);
* ``tx``: a MULTI/EXEC transaction ``INCR tc:<w>`` + ``SET ts:<w>:<n> n``;
* ``lua``: a registered Lua script (``EVALSHA``, reloaded after ``NOSCRIPT``) doing the same
  as the transaction on ``lc:<w>`` / ``ls:<w>:<n>``;
* ``get``: reads back a key this worker wrote: the reply must be that value or nil (the key may
  live on another database);
* Pub/Sub: one publisher sends sequence numbers on one channel, one ``pubsub()`` (which
  follows switches) receives them.

Faults, in a seeded shuffled cycle, each on the active database: ``sigkill`` (SIGKILL, then a
restart from the AOF), ``sigstop`` (SIGSTOP/SIGCONT), ``client-pause`` (``CLIENT PAUSE ..
ALL``), ``debug-sleep`` (``DEBUG SLEEP``), ``black-hole`` (a database added live behind a
:class:`~faulttol_redis.testing.BlackHoleProxy`, made active, frozen, then removed),
``failback`` (manual ``set_active_index(1)``) and ``add-remove`` (the active database removed
live and added back).

Where an acknowledged write lives: the servers are independent (no replication), so a write
lives on the database that acknowledged it, which may be any of them (failover, manual
switches, replays of replay-safe commands). The accounting therefore reads every server:

* a ``SET`` acknowledged must be found, with its value, on at least one server;
* a counter's applied increments are the sum of its value over all servers (each application
  lands on exactly one server): it must be at least the acknowledged increments (else writes
  were lost) and at most acknowledged + ambiguous (else some were applied twice);
* a transaction or script is atomic: on every server, its counter equals the number of its
  marker keys there;
* a Pub/Sub message whose ``PUBLISH`` answered 0 receivers had no subscriber on that database
  (the subscriber was moving to the new database after a switch): its loss is inherent in
  Pub/Sub (at-most-once, no history) and counted apart. Messages received twice are counted
  as applied twice (``PUBLISH`` is never replayed).

Exit status 1 on any acknowledged write lost, any write applied twice, a wrong reply, a torn
transaction or script, an exception that is not a ``redis.exceptions.RedisError``, or a leak
(file descriptors or threads left after ``close()``, asyncio tasks left after ``aclose()``,
RSS growth beyond ``--rss-limit-mb`` after the warm-up, the ledger's own growth excluded).

Usage::

    python bench/soak.py --mode sync --minutes 10 --seed 1
    python bench/soak.py --mode asyncio --minutes 10 --seed 1 --json
    python bench/soak.py --mode both --minutes 1 --threads 8 --tasks 50
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import redis

import faulttol_redis.asyncio as ftr_asyncio
from faulttol import CircuitBreakerConfig
from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig, SwitchEvent
from faulttol_redis.config import default_circuit_breaker_config
from faulttol_redis.testing import BlackHoleProxy, RedisServer

DEFAULT_MINUTES = 1.0
DEFAULT_SEED = 1
DEFAULT_THREADS = 16
DEFAULT_TASKS = 100
DEFAULT_SERVERS = 3
DEFAULT_FAULT_INTERVAL = 3.0
"""Seconds of calm between the end of one fault (and its recovery) and the next."""
DEFAULT_RSS_LIMIT_MB = 64.0
"""RSS growth allowed between the end of the warm-up and the end of the run, ledger excluded."""

FAULT_HOLD = 1.5
"""Seconds a SIGSTOP, CLIENT PAUSE or DEBUG SLEEP lasts: longer than the client's default hang
window (``hang_detection_after`` + ``hang_probe_timeout`` = 1 s), so each one is a hang."""
KILL_DOWNTIME = 1.0
"""Seconds a SIGKILLed server stays down before it restarts from its AOF."""
SETTLE = 2.0
"""Seconds after a fault ends during which errors are still put down to it."""
HEALTH_CHECK_INTERVAL = 1.0
"""The soak's health-check interval: a restarted server is eligible again within seconds."""
BREAKER_OPEN_WAIT = 2.0
"""The breaker's open wait: a database left by failover may be chosen again after it (the
default 60 s would leave no eligible database after two faults in a row on a 3-server run)."""
WARMUP_FRACTION = 0.2
"""Share of the run (at least WARMUP_MIN s) before the RSS baseline is taken."""
WARMUP_MIN = 5.0
STALL_GRACE = 120.0
"""Seconds past the end of an asyncio run after which its event loop is deemed stalled."""
THREAD_GRACE = 5.0
"""Seconds allowed after close() for the client's threads to end."""
PUBLISH_INTERVAL = 0.002
SUB_DRAIN = 2.0
"""Seconds the subscriber keeps reading after the publisher stopped."""
COUNTERS_PER_WORKER = 8
POOL_SPARE = 32
"""Connections per database pool beyond one per worker (publisher, pipelines, stragglers)."""
AUDIT_CHUNK = 500
TRACE_FRAMES = 4
MAX_SAMPLES = 20
"""Examples kept per kind of anomaly (wrong replies, non-Redis exceptions...)."""

CHANNEL = "soak:seq"
OPS = ("set", "incr", "tx", "lua", "get")
OP_WEIGHTS = (35, 20, 15, 15, 15)
FAULTS = ("sigkill", "sigstop", "client-pause", "debug-sleep", "black-hole", "failback",
          "add-remove")
SERVER_ARGS = ("--appendonly", "yes", "--appendfsync", "always")

LUA = """
local n = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1])
return n
"""

# Status of one attempted write in a worker's ledger.
ATTEMPTED = 1  # sent, no reply yet (or an error): may or may not be applied
ACKED = 2  # acknowledged by the client


@dataclasses.dataclass(frozen=True)
class SoakOptions:
    """One soak run's settings (the command-line flags)."""

    minutes: float = DEFAULT_MINUTES
    seed: int = DEFAULT_SEED
    threads: int = DEFAULT_THREADS
    tasks: int = DEFAULT_TASKS
    mode: str = "sync"
    servers: int = DEFAULT_SERVERS
    fault_interval: float = DEFAULT_FAULT_INTERVAL
    rss_limit_mb: float = DEFAULT_RSS_LIMIT_MB
    faults: tuple[str, ...] = FAULTS
    log_file: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULTS)
        if not self.faults or unknown:
            raise ValueError(f"faults must be a non-empty subset of {', '.join(FAULTS)}, "
                             f"got {', '.join(self.faults)}")
        if not self.minutes > 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.tasks < 1:
            raise ValueError(f"tasks must be >= 1, got {self.tasks}")
        if self.mode not in ("sync", "asyncio", "both"):
            raise ValueError(f"mode must be sync, asyncio or both, got {self.mode!r}")
        if not 2 <= self.servers <= 3:
            raise ValueError(f"servers must be in 2..3, got {self.servers}")
        if self.fault_interval < 0:
            raise ValueError(f"fault_interval must be >= 0, got {self.fault_interval}")
        if not self.rss_limit_mb > 0:
            raise ValueError(f"rss_limit_mb must be > 0, got {self.rss_limit_mb}")


# --------------------------------------------------------------------------- the ledger


class FaultState:
    """The fault in progress (or settling), read by the workers to attribute their errors."""

    def __init__(self) -> None:
        self.label = "none"
        self._until = 0.0

    def begin(self, label: str) -> None:
        self.label = label
        self._until = float("inf")

    def end(self) -> None:
        self._until = time.monotonic() + SETTLE

    def current(self) -> str:
        if self.label != "none" and time.monotonic() > self._until:
            self.label = "none"
        return self.label


def describe(exc: BaseException) -> str:
    """An exception and the innermost frames it came from (for the samples)."""
    frames = traceback.extract_tb(exc.__traceback__)[-TRACE_FRAMES:]
    where = " < ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
                       for f in reversed(frames))
    return f"{type(exc).__name__}: {exc} [{where}]"


class WorkerLedger:
    """What one worker attempted and what the client acknowledged. Written by its worker only
    (no lock); read once the workers have stopped."""

    def __init__(self, worker: int, tag: str) -> None:
        self.worker = worker
        self.tag = tag
        self.sets = bytearray()  # index n: status of SET s:<w>:<n>
        self.counters = [[0, 0] for _ in range(COUNTERS_PER_WORKER)]  # [acked, ambiguous]
        self.txs = bytearray()
        self.tx_count = [0, 0]
        self.luas = bytearray()
        self.lua_count = [0, 0]
        self.acked: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.non_redis: list[str] = []
        self.non_redis_count = 0
        self.wrong: list[str] = []
        self.wrong_count = 0

    def set_value(self, n: int) -> bytes:
        return f"{self.tag}:{self.worker}:{n}".encode()

    def nbytes(self) -> int:
        return len(self.sets) + len(self.txs) + len(self.luas)

    def error(self, fault: FaultState, op: str, exc: BaseException) -> None:
        if isinstance(exc, redis.exceptions.RedisError):
            self.errors[(fault.current(), op, type(exc).__name__)] += 1
        else:
            self.non_redis_count += 1
            if len(self.non_redis) < MAX_SAMPLES:
                self.non_redis.append(f"{op}: {describe(exc)}")

    def wrong_reply(self, op: str, detail: str) -> None:
        self.wrong_count += 1
        if len(self.wrong) < MAX_SAMPLES:
            self.wrong.append(f"{op}: {detail}")


class Op:
    """One planned operation of a worker: what to send, and how to record its outcome."""

    __slots__ = ("counter", "kind", "ledger", "n")

    def __init__(self, ledger: WorkerLedger, rng: random.Random) -> None:
        self.ledger = ledger
        self.kind = rng.choices(OPS, OP_WEIGHTS)[0]
        self.n = 0
        self.counter = 0
        if self.kind == "get":
            acked = len(ledger.sets)
            for _ in range(3):
                n = rng.randrange(acked) if acked else -1
                if n >= 0 and ledger.sets[n] == ACKED:
                    self.n = n
                    return
            self.kind = "set"  # nothing to read back yet
        if self.kind == "set":
            self.n = len(ledger.sets)
            ledger.sets.append(ATTEMPTED)
        elif self.kind == "incr":
            self.counter = rng.randrange(COUNTERS_PER_WORKER)
        elif self.kind == "tx":
            self.n = len(ledger.txs)
            ledger.txs.append(ATTEMPTED)
        else:
            self.n = len(ledger.luas)
            ledger.luas.append(ATTEMPTED)

    def key(self) -> str:
        w = self.ledger.worker
        if self.kind in ("set", "get"):
            return f"s:{w}:{self.n}"
        if self.kind == "incr":
            return f"c:{w}:{self.counter}"
        if self.kind == "tx":
            return f"ts:{w}:{self.n}"
        return f"ls:{w}:{self.n}"

    def done(self, reply: Any) -> None:
        """Record an acknowledged operation, checking its reply."""
        ledger, kind = self.ledger, self.kind
        if kind == "set":
            if reply is not True:
                ledger.wrong_reply(kind, f"SET {self.key()} answered {reply!r}")
                return
            ledger.sets[self.n] = ACKED
        elif kind == "get":
            expected = ledger.set_value(self.n)
            if reply is not None and reply != expected:
                ledger.wrong_reply(kind, f"GET {self.key()} answered {reply!r}, "
                                         f"wrote {expected!r}")
        elif kind == "incr":
            if not isinstance(reply, int) or reply < 1:
                ledger.wrong_reply(kind, f"INCR {self.key()} answered {reply!r}")
                return
            ledger.counters[self.counter][0] += 1
        elif kind == "tx":
            if (not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[0], int)
                    or reply[1] is not True):
                ledger.wrong_reply(kind, f"MULTI/EXEC {self.key()} answered {reply!r}")
                return
            ledger.txs[self.n] = ACKED
            ledger.tx_count[0] += 1
        else:
            if not isinstance(reply, int) or reply < 1:
                ledger.wrong_reply(kind, f"EVALSHA {self.key()} answered {reply!r}")
                return
            ledger.luas[self.n] = ACKED
            ledger.lua_count[0] += 1
        ledger.acked[kind] += 1

    def failed(self, fault: FaultState, exc: BaseException) -> None:
        """Record a failed operation: its write may or may not have been applied."""
        ledger = self.ledger
        ledger.error(fault, self.kind, exc)
        if self.kind == "incr":
            ledger.counters[self.counter][1] += 1
        elif self.kind == "tx":
            ledger.tx_count[1] += 1
        elif self.kind == "lua":
            ledger.lua_count[1] += 1


class PubSubLedger:
    """Sequence numbers published (and how many subscribers each reached) and received."""

    def __init__(self) -> None:
        self.receivers: list[int] = []  # per sequence number: PUBLISH's reply, -1 on error
        self.received: collections.Counter[int] = collections.Counter()
        self.bogus = 0
        self.sub_errors: collections.Counter[str] = collections.Counter()

    def receive(self, message: Any) -> None:
        if not message or message.get("type") != "message":
            return
        try:
            seq = int(message["data"])
        except (TypeError, ValueError):
            self.bogus += 1
            return
        self.received[seq] += 1


class LogTally(logging.Handler):
    """Counts the library's log records by level (instead of printing thousands of failover
    warnings) and keeps the first error records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1
        if record.levelno >= logging.ERROR and len(self.errors) < MAX_SAMPLES:
            self.errors.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def tally_logs(log_file: str | None = None) -> Iterator[LogTally]:
    """Count the log records of the run; with ``log_file``, also append them there."""
    tally = LogTally()
    root = logging.getLogger()
    handlers: list[logging.Handler] = [tally]
    if log_file is not None:
        writer = logging.FileHandler(log_file)
        writer.setFormatter(logging.Formatter(
            "%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s"))
        handlers.append(writer)
    level = root.level
    if log_file is not None:
        root.setLevel(logging.INFO)
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield tally
    finally:
        root.setLevel(level)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


# ----------------------------------------------------------------------- process metrics


def fd_count() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- the servers


@contextlib.contextmanager
def durable_servers(count: int) -> Iterator[list[RedisServer]]:
    """``count`` loopback servers with ``appendonly yes`` and ``appendfsync always``; all
    stopped on exit."""
    started: list[RedisServer] = []
    try:
        for _ in range(count):
            started.append(RedisServer(extra_args=SERVER_ARGS))
        yield started
    finally:
        for server in started:
            with contextlib.suppress(Exception):
                server.stop()


def soak_config(ports: list[int], workers: int) -> MultiDbConfig:
    """The client's config: defaults, except faster health checks and a short breaker wait
    (see HEALTH_CHECK_INTERVAL and BREAKER_OPEN_WAIT), and pools sized for the workers
    (redis-py's asyncio pools stop at 100 connections: 100 tasks and a publisher need more).
    No socket timeouts: hung databases are left through hang detection (its defaults)."""
    breaker: CircuitBreakerConfig = dataclasses.replace(
        default_circuit_breaker_config(), wait_duration_in_open_state=BREAKER_OPEN_WAIT)
    return MultiDbConfig(
        [database_config(port, f"db{i}", workers) for i, port in enumerate(ports, 1)],
        circuit_breaker=breaker,
        health_check_interval=HEALTH_CHECK_INTERVAL,
    )


def database_config(port: int, name: str, workers: int) -> DatabaseConfig:
    return DatabaseConfig("127.0.0.1", port, name=name,
                          client_kwargs={"max_connections": workers + POOL_SPARE})


def checked_out(provider: Any) -> int:
    """Connections of the databases' pools still checked out (redis-py's private set of
    in-use connections): after the workers stopped, anything here was never given back."""
    total = 0
    for index in range(1, len(provider.databases) + 1):
        pool = getattr(provider.client(index), "connection_pool", None)
        total += len(getattr(pool, "_in_use_connections", ()))
    return total


# ------------------------------------------------------------------------- fault injection


class Control:
    """The fault loop's handle on the provider: direct calls for the sync one; for the
    asyncio one, its coroutines and methods run on the client's event loop."""

    def __init__(self, provider: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.provider = provider
        self._loop = loop

    def _run(self, fn: Callable[[], Any]) -> Any:
        if self._loop is None:
            return fn()

        async def call() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=60)

    def active_index(self) -> int:
        return int(self.provider.active_index)

    def ports(self) -> list[int]:
        return [int(db.port) for db in self.provider.databases]

    def set_active_index(self, index: int) -> None:
        self._run(lambda: self.provider.set_active_index(index))

    def add_database(self, config: DatabaseConfig) -> int:
        return int(self._run(lambda: self.provider.add_database(config)))

    def remove_database(self, index: int) -> None:
        self._run(lambda: self.provider.remove_database(index))


class FaultLoop:
    """Injects one fault after another on the active database until told to stop."""

    def __init__(self, servers: list[RedisServer], control: Control, state: FaultState,
                 seed: int, interval: float, workers: int,
                 kinds: tuple[str, ...] = FAULTS) -> None:
        self.kinds = kinds
        self.servers = servers
        self.workers = workers
        self.control = control
        self.state = state
        self.interval = interval
        self.rng = random.Random(seed * 7919 + 1)
        self.stop = threading.Event()
        self.injected: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []
        self.proxies: dict[int, BlackHoleProxy] = {}  # proxy port -> proxy
        self._holes = 0
        self._thread = threading.Thread(target=self._run, name="soak-faults", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        self._thread.join()

    def _server(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        proxy = self.proxies.get(port)
        if proxy is not None:
            return self._server(proxy._target)
        raise LookupError(f"no server behind port {port}")

    def _active_server(self) -> RedisServer:
        ports = self.control.ports()
        return self._server(ports[self.control.active_index() - 1])

    def _run(self) -> None:
        cycle: list[str] = []
        while not self.stop.wait(self.interval):
            if not cycle:
                cycle = list(self.kinds)
                self.rng.shuffle(cycle)
            kind = cycle.pop()
            self.state.begin(kind)
            try:
                getattr(self, "_" + kind.replace("-", "_"))()
                self.injected[kind] += 1
            except ValueError as exc:  # a manual switch refused (target unhealthy)
                self.refused[kind] += 1
                self.problems.append(f"{kind}: refused: {exc}")
            except Exception as exc:
                self.problems.append(f"{kind}: {type(exc).__name__}: {exc}")
            finally:
                self._repair()
                self.state.end()

    def _repair(self) -> None:
        """Every server running and not paused, whatever the fault left behind."""
        for server in self.servers:
            if server.is_paused:
                server.resume()
            if not server.is_running:
                server.restart()

    def _hold(self, seconds: float) -> None:
        time.sleep(seconds)

    def _raw(self, server: RedisServer) -> redis.Redis:
        return redis.Redis(host=server.host, port=server.port, socket_timeout=10)

    # The faults, each on the active database.

    def _sigkill(self) -> None:
        server = self._active_server()
        server.kill()
        self._hold(KILL_DOWNTIME)
        server.restart()  # same port, same directory: the data comes back from the AOF

    def _sigstop(self) -> None:
        server = self._active_server()
        server.pause()
        try:
            self._hold(FAULT_HOLD)
        finally:
            server.resume()

    def _client_pause(self) -> None:
        raw = self._raw(self._active_server())
        try:
            raw.execute_command("CLIENT", "PAUSE", int(FAULT_HOLD * 1000), "ALL")
        finally:
            raw.close()
        self._hold(FAULT_HOLD)

    def _debug_sleep(self) -> None:
        raw = self._raw(self._active_server())
        try:
            raw.execute_command("DEBUG", "SLEEP", FAULT_HOLD)  # blocks the server and us
        finally:
            raw.close()

    def _black_hole(self) -> None:
        server = self._active_server()
        proxy = BlackHoleProxy(server.port)
        self.proxies[proxy.port] = proxy
        self._holes += 1
        try:
            index = self.control.add_database(
                database_config(proxy.port, f"hole{self._holes}", self.workers))
            self.control.set_active_index(index)
            self._hold(1.0)  # traffic through the proxy
            proxy.freeze()
            self._hold(2 * FAULT_HOLD)  # hang detection leaves it
        finally:
            with contextlib.suppress(ValueError):
                self.control.remove_database(self.control.ports().index(proxy.port) + 1)
            proxy.close()
            del self.proxies[proxy.port]

    def _failback(self) -> None:
        if self.control.active_index() == 1:
            self.control.set_active_index(2)
            self._hold(1.0)
        self.control.set_active_index(1)

    def _add_remove(self) -> None:
        index = self.control.active_index()
        config = self.control.provider.databases[index - 1]
        self.control.remove_database(index)
        self._hold(1.0)
        self.control.add_database(config)


# ------------------------------------------------------------------------------ workers


class Run:
    """What one phase (sync or asyncio) shares between its workers and the harness."""

    def __init__(self, options: SoakOptions, mode: str) -> None:
        self.options = options
        self.mode = mode
        self.tag = f"r{options.seed}{mode[0]}"
        # the two phases of --mode both inject their faults in different orders
        self.fault_seed = options.seed if mode == "sync" else options.seed + 500_009
        self.fault = FaultState()
        self.stop = threading.Event()
        workers = options.threads if mode == "sync" else options.tasks
        self.ledgers = [WorkerLedger(w, self.tag) for w in range(workers)]
        self.pubsub = PubSubLedger()
        self.publisher_errors: collections.Counter[tuple[str, str]] = collections.Counter()
        self.publisher_non_redis: list[str] = []
        self.switches: collections.Counter[str] = collections.Counter()
        self.metrics: dict[str, float] = {}
        self.stalled = False

    def on_switch(self, event: SwitchEvent) -> None:
        self.switches[event.reason.name] += 1

    def ledger_bytes(self) -> int:
        return sum(ledger.nbytes() for ledger in self.ledgers) + 8 * len(self.pubsub.receivers)


def sync_worker(run: Run, client: FailoverRedis, ledger: WorkerLedger) -> None:
    rng = random.Random(run.options.seed * 100_003 + ledger.worker)
    script = client.register_script(LUA)
    while not run.stop.is_set():
        op = Op(ledger, rng)
        try:
            if op.kind == "set":
                reply = client.set(op.key(), ledger.set_value(op.n))
            elif op.kind == "get":
                reply = client.get(op.key())
            elif op.kind == "incr":
                reply = client.incr(op.key())
            elif op.kind == "tx":
                pipe = client.pipeline(transaction=True)
                pipe.incr(f"tc:{ledger.worker}")
                pipe.set(op.key(), op.n)
                reply = pipe.execute()
            else:
                reply = script(keys=[f"lc:{ledger.worker}", op.key()], args=[op.n])
        except BaseException as exc:
            op.failed(run.fault, exc)
            continue
        op.done(reply)


async def async_worker(run: Run, client: ftr_asyncio.FailoverRedis, ledger: WorkerLedger,
                       ) -> None:
    rng = random.Random(run.options.seed * 100_003 + ledger.worker)
    script = client.register_script(LUA)
    while not run.stop.is_set():
        op = Op(ledger, rng)
        try:
            if op.kind == "set":
                reply = await client.set(op.key(), ledger.set_value(op.n))
            elif op.kind == "get":
                reply = await client.get(op.key())
            elif op.kind == "incr":
                reply = await client.incr(op.key())
            elif op.kind == "tx":
                pipe = client.pipeline(transaction=True)
                pipe.incr(f"tc:{ledger.worker}")
                pipe.set(op.key(), op.n)
                reply = await pipe.execute()
            else:
                reply = await script(keys=[f"lc:{ledger.worker}", op.key()], args=[op.n])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            op.failed(run.fault, exc)
            continue
        op.done(reply)


def _publish_failed(run: Run, exc: BaseException) -> None:
    run.pubsub.receivers.append(-1)
    if isinstance(exc, redis.exceptions.RedisError):
        run.publisher_errors[(run.fault.current(), type(exc).__name__)] += 1
    elif len(run.publisher_non_redis) < MAX_SAMPLES:
        run.publisher_non_redis.append(f"publish: {describe(exc)}")
    else:
        run.publisher_non_redis.append("...")


def sync_publisher(run: Run, client: FailoverRedis) -> None:
    seq = 0
    while not run.stop.is_set():
        try:
            run.pubsub.receivers.append(int(client.publish(CHANNEL, seq)))
        except BaseException as exc:
            _publish_failed(run, exc)
        seq += 1
        time.sleep(PUBLISH_INTERVAL)


def sync_subscriber(run: Run, pubsub: Any, done: threading.Event) -> None:
    while not done.is_set():
        try:
            run.pubsub.receive(pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1))
        except BaseException as exc:
            run.pubsub.sub_errors[type(exc).__name__] += 1
            if not isinstance(exc, redis.exceptions.RedisError):
                run.publisher_non_redis.append(f"subscriber: {describe(exc)}")
            time.sleep(0.05)


async def async_publisher(run: Run, client: ftr_asyncio.FailoverRedis) -> None:
    seq = 0
    while not run.stop.is_set():
        try:
            run.pubsub.receivers.append(int(await client.publish(CHANNEL, seq)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            _publish_failed(run, exc)
        seq += 1
        await asyncio.sleep(PUBLISH_INTERVAL)


async def async_subscriber(run: Run, pubsub: Any, done: asyncio.Event) -> None:
    while not done.is_set():
        try:
            run.pubsub.receive(
                await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            run.pubsub.sub_errors[type(exc).__name__] += 1
            if not isinstance(exc, redis.exceptions.RedisError):
                run.publisher_non_redis.append(f"subscriber: {describe(exc)}")
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------ phases


def _stalled(run: Run) -> None:
    run.stalled = True
    run.stop.set()


def _settle_threads(baseline: int) -> int:
    deadline = time.monotonic() + THREAD_GRACE
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    return threading.active_count() - baseline


def _warmup(options: SoakOptions) -> float:
    return max(WARMUP_MIN, WARMUP_FRACTION * options.minutes * 60)


def run_sync(options: SoakOptions, servers: list[RedisServer]) -> Run:
    run = Run(options, "sync")
    fds0, threads0 = fd_count(), threading.active_count()
    start = time.monotonic()
    client = FailoverRedis.from_config(
        soak_config([s.port for s in servers], len(run.ledgers)))
    client.provider.add_switch_listener(run.on_switch)
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL)
    sub_done = threading.Event()
    loop = FaultLoop(servers, Control(client.provider, None), run.fault, run.fault_seed,
                     options.fault_interval, len(run.ledgers), options.faults)
    threads = [threading.Thread(target=sync_worker, args=(run, client, ledger),
                                name=f"soak-worker-{ledger.worker}", daemon=True)
               for ledger in run.ledgers]
    threads.append(threading.Thread(target=sync_publisher, args=(run, client), daemon=True))
    subscriber = threading.Thread(target=sync_subscriber, args=(run, pubsub, sub_done),
                                  daemon=True)
    subscriber.start()
    for thread in threads:
        thread.start()
    loop.start()
    time.sleep(_warmup(options))
    rss0, ledger0 = rss_bytes(), run.ledger_bytes()
    fds_running0 = fd_count()
    time.sleep(max(0.0, start + options.minutes * 60 - time.monotonic()))
    loop.join()
    run.stop.set()
    for thread in threads:
        thread.join()
    time.sleep(SUB_DRAIN)
    sub_done.set()
    subscriber.join()
    run.metrics.update(rss_growth=rss_bytes() - rss0, ledger_growth=run.ledger_bytes() - ledger0,
                       fds_running_growth=fd_count() - fds_running0,
                       seconds=time.monotonic() - start)
    pubsub.close()
    run.metrics["checked_out"] = checked_out(client.provider)
    client.close()
    run.metrics.update(thread_growth=_settle_threads(threads0), fd_growth=fd_count() - fds0,
                       task_growth=0)
    run.faults = loop  # type: ignore[attr-defined]
    return run


def run_asyncio(options: SoakOptions, servers: list[RedisServer]) -> Run:
    run = Run(options, "asyncio")
    fds0, threads0 = fd_count(), threading.active_count()
    # A starved event loop (a task that never yields) would never reach the deadline:
    # past it, a thread stops the workers, and the run fails.
    watchdog = threading.Timer(options.minutes * 60 + STALL_GRACE, _stalled, (run,))
    watchdog.daemon = True
    watchdog.start()

    async def main() -> FaultLoop:
        tasks0 = len(asyncio.all_tasks())
        start = time.monotonic()
        client = ftr_asyncio.FailoverRedis.from_config(
            soak_config([s.port for s in servers], len(run.ledgers)))
        await client.initialize()
        client.provider.add_switch_listener(run.on_switch)
        pubsub = client.pubsub()
        await pubsub.subscribe(CHANNEL)
        sub_done = asyncio.Event()
        loop = FaultLoop(servers, Control(client.provider, asyncio.get_running_loop()),
                         run.fault, run.fault_seed, options.fault_interval, len(run.ledgers),
                         options.faults)
        workers = [asyncio.create_task(async_worker(run, client, ledger))
                   for ledger in run.ledgers]
        workers.append(asyncio.create_task(async_publisher(run, client)))
        subscriber = asyncio.create_task(async_subscriber(run, pubsub, sub_done))
        loop.start()
        await asyncio.sleep(_warmup(options))
        rss0, ledger0 = rss_bytes(), run.ledger_bytes()
        fds_running0 = fd_count()
        await asyncio.sleep(max(0.0, start + options.minutes * 60 - time.monotonic()))
        await asyncio.to_thread(loop.join)
        run.stop.set()
        await asyncio.gather(*workers)
        await asyncio.sleep(SUB_DRAIN)
        sub_done.set()
        await subscriber
        run.metrics.update(rss_growth=rss_bytes() - rss0,
                           ledger_growth=run.ledger_bytes() - ledger0,
                           fds_running_growth=fd_count() - fds_running0,
                           seconds=time.monotonic() - start)
        await pubsub.aclose()
        run.metrics["checked_out"] = checked_out(client.provider)
        await client.aclose()
        await asyncio.sleep(0)
        run.metrics["task_growth"] = len(asyncio.all_tasks()) - tasks0
        return loop

    run.faults = asyncio.run(main())  # type: ignore[attr-defined]
    watchdog.cancel()
    watchdog.join()
    run.metrics.update(thread_growth=_settle_threads(threads0), fd_growth=fd_count() - fds0)
    return run


# ------------------------------------------------------------------------------ the audit


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _mget(raws: list[redis.Redis], keys: list[str]) -> list[list[Any]]:
    """The values of ``keys`` on every server (one list per server)."""
    return [raw.mget(keys) if keys else [] for raw in raws]


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


def restart_all_from_aof(servers: list[RedisServer]) -> None:
    """SIGKILL every server and start it again from its append-only file: what was
    acknowledged must have been fsynced."""
    for server in servers:
        server.kill()
        server.restart()


def audit(run: Run, servers: list[RedisServer]) -> dict[str, Any]:
    """Read every server and compare with the ledgers."""
    raws = [redis.Redis(host=s.host, port=s.port, socket_timeout=30) for s in servers]
    result: dict[str, Any] = collections.defaultdict(int)
    samples: dict[str, list[str]] = collections.defaultdict(list)

    def anomaly(kind: str, detail: str, count: int = 1) -> None:
        result[kind] += count
        if len(samples[kind]) < MAX_SAMPLES:
            samples[kind].append(detail)

    try:
        for ledger in run.ledgers:
            w = ledger.worker
            # SET: acknowledged ones must be on some server with their value.
            attempted = [n for n, status in enumerate(ledger.sets) if status]
            for chunk in _chunks(attempted, AUDIT_CHUNK):
                values = _mget(raws, [f"s:{w}:{n}" for n in chunk])
                for i, n in enumerate(chunk):
                    expected = ledger.set_value(n)
                    found = [v[i] for v in values]
                    if any(v is not None and v != expected for v in found):
                        anomaly("wrong_values", f"s:{w}:{n}: {found!r}, wrote {expected!r}")
                    elif ledger.sets[n] == ACKED:
                        result["set_acked"] += 1
                        if expected not in found:
                            anomaly("lost_acked", f"SET s:{w}:{n}")
                    elif expected in found:
                        result["set_ambiguous_applied"] += 1
                    else:
                        result["set_ambiguous_not_applied"] += 1
            # INCR: applied increments = the sum over servers.
            totals = _mget(raws, [f"c:{w}:{j}" for j in range(COUNTERS_PER_WORKER)])
            for j, (acked, maybe) in enumerate(ledger.counters):
                applied = sum(_int(v[j]) for v in totals)
                _check_counter(f"c:{w}:{j}", applied, acked, maybe, anomaly, result)
            # Transactions and scripts: counter bounds, markers, atomicity per server.
            for name, counter, marker, statuses, (acked, maybe) in (
                    ("tx", f"tc:{w}", "ts", ledger.txs, ledger.tx_count),
                    ("lua", f"lc:{w}", "ls", ledger.luas, ledger.lua_count)):
                per_server = [_int(raw.get(counter)) for raw in raws]
                _check_counter(counter, sum(per_server), acked, maybe, anomaly, result)
                markers = [0] * len(raws)
                attempted = [n for n, status in enumerate(statuses) if status]
                for chunk in _chunks(attempted, AUDIT_CHUNK):
                    values = _mget(raws, [f"{marker}:{w}:{n}" for n in chunk])
                    for s, server_values in enumerate(values):
                        markers[s] += sum(v is not None for v in server_values)
                    for i, n in enumerate(chunk):
                        found = [v[i] for v in values]
                        if any(v is not None and v != str(n).encode() for v in found):
                            anomaly("wrong_values", f"{marker}:{w}:{n}: {found!r}")
                        if statuses[n] == ACKED:
                            result[f"{name}_acked"] += 1
                            if all(v is None for v in found):
                                anomaly("lost_acked", f"{name} {marker}:{w}:{n}")
                for s, (count, markers_here) in enumerate(zip(per_server, markers, strict=True)):
                    if count != markers_here:
                        anomaly("torn", f"{name} of worker {w} on server {s + 1}: "
                                        f"{counter}={count}, {markers_here} markers")
    finally:
        for raw in raws:
            raw.close()
    # Pub/Sub.
    ps = run.pubsub
    for seq, receivers in enumerate(ps.receivers):
        got = ps.received.get(seq, 0)
        if got > 1:
            anomaly("double_applied", f"message {seq} received {got} times", got - 1)
            result["pubsub_duplicated"] += got - 1
        if receivers == -1:
            result["pubsub_ambiguous_received" if got else "pubsub_ambiguous_lost"] += 1
        elif got:
            result["pubsub_delivered"] += 1
        elif receivers == 0:
            result["pubsub_lost_no_subscriber"] += 1
        else:
            result["pubsub_lost_after_reaching_subscriber"] += 1
    result["pubsub_published"] = len(ps.receivers)
    result["pubsub_bogus"] = ps.bogus + sum(
        count for seq, count in ps.received.items() if seq >= len(ps.receivers))
    result["samples"] = dict(samples)
    return dict(result)


def _check_counter(key: str, applied: int, acked: int, maybe: int,
                   anomaly: Callable[..., None], result: dict[str, Any]) -> None:
    result["increments_acked"] += acked
    result["increments_ambiguous"] += maybe
    result["increments_applied"] += applied
    if applied < acked:
        anomaly("lost_acked", f"{key}: {applied} applied < {acked} acknowledged",
                acked - applied)
    if applied > acked + maybe:
        anomaly("double_applied", f"{key}: {applied} applied > {acked} acknowledged + "
                                  f"{maybe} ambiguous", applied - acked - maybe)


# ------------------------------------------------------------------------------ reporting


def summarize(run: Run, audit_result: dict[str, Any], logs: LogTally) -> dict[str, Any]:
    """One phase's figures and verdict, ready for the table or JSON."""
    loop: FaultLoop = run.faults  # type: ignore[attr-defined]
    errors: collections.Counter[tuple[str, str, str]] = collections.Counter()
    acked: collections.Counter[str] = collections.Counter()
    non_redis: list[str] = list(run.publisher_non_redis)
    wrong: list[str] = []
    non_redis_count = len(run.publisher_non_redis)
    wrong_count = 0
    for ledger in run.ledgers:
        errors.update(ledger.errors)
        acked.update(ledger.acked)
        non_redis += ledger.non_redis
        non_redis_count += ledger.non_redis_count
        wrong += ledger.wrong
        wrong_count += ledger.wrong_count
    for (fault, exc), count in run.publisher_errors.items():
        errors[(fault, "publish", exc)] += count
    by_fault: dict[str, dict[str, int]] = collections.defaultdict(dict)
    by_exc: collections.Counter[str] = collections.Counter()
    for (fault, op, exc), count in errors.items():
        by_fault[fault][op] = by_fault[fault].get(op, 0) + count
        by_exc[exc] += count
    m = run.metrics
    rss_net = m["rss_growth"] - m["ledger_growth"]
    leaks = {
        "fd_growth_after_close": int(m["fd_growth"]),
        "thread_growth_after_close": int(m["thread_growth"]),
        "task_growth_after_close": int(m["task_growth"]),
        "rss_growth_mb": round(m["rss_growth"] / 2**20, 1),
        "ledger_growth_mb": round(m["ledger_growth"] / 2**20, 1),
        "fd_growth_while_running": int(m["fds_running_growth"]),
        "connections_checked_out_when_idle": int(m["checked_out"]),
    }
    leaked = (leaks["fd_growth_after_close"] > 0
              or leaks["connections_checked_out_when_idle"] > 0
              or leaks["thread_growth_after_close"] > 0
              or leaks["task_growth_after_close"] > 0
              or rss_net > run.options.rss_limit_mb * 2**20)
    failures = {
        "lost_acked": audit_result.get("lost_acked", 0),
        "double_applied": audit_result.get("double_applied", 0),
        "wrong_replies": wrong_count,
        "wrong_values": audit_result.get("wrong_values", 0),
        "torn": audit_result.get("torn", 0),
        "non_redis_exceptions": non_redis_count,
        "leak": int(leaked),
        "event_loop_stalled": int(run.stalled),
    }
    return {
        "mode": run.mode,
        "seconds": round(m["seconds"], 1),
        "workers": len(run.ledgers),
        "ops_acked": dict(acked),
        "ops_acked_total": sum(acked.values()),
        "errors_total": sum(errors.values()),
        "faults_injected": dict(loop.injected),
        "faults_refused": dict(loop.refused),
        "fault_problems": loop.problems[:MAX_SAMPLES],
        "switches": dict(run.switches),
        "ambiguous_by_fault": {k: dict(v) for k, v in sorted(by_fault.items())},
        "errors_by_type": dict(by_exc),
        "subscriber_errors": dict(run.pubsub.sub_errors),
        "audit": audit_result,
        "leaks": leaks,
        "failures": failures,
        "non_redis_samples": non_redis[:MAX_SAMPLES],
        "wrong_reply_samples": wrong[:MAX_SAMPLES],
        "log_records": dict(logs.counts),
        "log_error_samples": logs.errors,
        "ok": not any(failures.values()),
    }


def render(summary: dict[str, Any]) -> str:
    """The accounting table of one phase, as Markdown."""
    a = summary["audit"]
    lines = [f"### {summary['mode']}: {summary['workers']} workers, {summary['seconds']} s",
             "",
             "| | count |", "|---|---:|"]

    def row(label: str, value: Any) -> None:
        lines.append(f"| {label} | {value} |")

    for op in OPS:
        row(f"ops acknowledged: {op}", summary["ops_acked"].get(op, 0))
    row("ops that raised (ambiguous or refused)", summary["errors_total"])
    row("faults injected", ", ".join(f"{k} {v}" for k, v in sorted(
        summary["faults_injected"].items())) or "none")
    if summary["faults_refused"]:
        row("manual switches refused", ", ".join(
            f"{k} {v}" for k, v in sorted(summary["faults_refused"].items())))
    row("switches", ", ".join(f"{k} {v}" for k, v in sorted(summary["switches"].items())))
    row("**acknowledged writes missing**", a.get("lost_acked", 0))
    row("**non-replay-safe writes applied twice**", a.get("double_applied", 0))
    row("**wrong replies / wrong values on a server**",
        f"{summary['failures']['wrong_replies']} / {a.get('wrong_values', 0)}")
    row("**torn transactions or scripts**", a.get("torn", 0))
    row("**exceptions that are not RedisError**", summary["failures"]["non_redis_exceptions"])
    if summary["failures"]["event_loop_stalled"]:
        row("**event loop stalled (workers stopped by the watchdog)**", "yes")
    row("SET acknowledged, checked", a.get("set_acked", 0))
    row("SET ambiguous: applied / not applied",
        f"{a.get('set_ambiguous_applied', 0)} / {a.get('set_ambiguous_not_applied', 0)}")
    row("increments (INCR, tx, Lua) acknowledged / ambiguous / applied",
        f"{a.get('increments_acked', 0)} / {a.get('increments_ambiguous', 0)} / "
        f"{a.get('increments_applied', 0)}")
    row("Pub/Sub published / delivered", f"{a.get('pubsub_published', 0)} / "
                                         f"{a.get('pubsub_delivered', 0)}")
    row("Pub/Sub lost, no subscriber on that database (inherent)",
        a.get("pubsub_lost_no_subscriber", 0))
    row("Pub/Sub lost after reaching a subscriber", a.get(
        "pubsub_lost_after_reaching_subscriber", 0))
    row("Pub/Sub duplicated / publish failed (received, not)",
        f"{a.get('pubsub_duplicated', 0)} / {a.get('pubsub_ambiguous_received', 0)}, "
        f"{a.get('pubsub_ambiguous_lost', 0)}")
    leaks = summary["leaks"]
    row("fds / threads / tasks left after close",
        f"{leaks['fd_growth_after_close']} / {leaks['thread_growth_after_close']} / "
        f"{leaks['task_growth_after_close']}")
    row("RSS growth after warm-up (ledger's share)",
        f"{leaks['rss_growth_mb']} MB ({leaks['ledger_growth_mb']} MB)")
    row("pool connections checked out once idle", leaks["connections_checked_out_when_idle"])
    row("fd growth while running (pools)", leaks["fd_growth_while_running"])
    row("library log records (warning / error)",
        f"{summary['log_records'].get('WARNING', 0)} / {summary['log_records'].get('ERROR', 0)}")
    row("verdict", "clean" if summary["ok"] else "**FAILED**")
    lines += ["", "Errors per fault and in-flight operation (the fault in progress or ended "
                  f"less than {SETTLE:g} s earlier):", "",
              "| fault | " + " | ".join((*OPS, "publish")) + " |",
              "|---|" + "---:|" * (len(OPS) + 1)]
    for fault, ops in summary["ambiguous_by_fault"].items():
        lines.append(f"| {fault} | " + " | ".join(
            str(ops.get(op, 0)) for op in (*OPS, "publish")) + " |")
    lines += ["", "By exception: " + ", ".join(
        f"{k} {v}" for k, v in sorted(summary["errors_by_type"].items())) + "."]
    for key in ("non_redis_samples", "wrong_reply_samples", "fault_problems",
                "log_error_samples"):
        if summary[key]:
            lines += ["", f"{key}:"] + [f"- {s}" for s in summary[key]]
    for kind, items in summary["audit"].get("samples", {}).items():
        lines += ["", f"{kind}:"] + [f"- {s}" for s in items]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ entry


def run_phase(options: SoakOptions, mode: str) -> dict[str, Any]:
    """One phase on fresh servers: run, restart every server from its AOF, audit."""
    with durable_servers(options.servers) as servers, tally_logs(options.log_file) as logs:
        run = (run_sync if mode == "sync" else run_asyncio)(options, servers)
        restart_all_from_aof(servers)
        return summarize(run, audit(run, servers), logs)


def soak(options: SoakOptions) -> list[dict[str, Any]]:
    """Run the soak; ``both`` runs a sync then an asyncio phase, half the minutes each."""
    if options.mode == "both":
        half = dataclasses.replace(options, minutes=options.minutes / 2)
        return [run_phase(half, "sync"), run_phase(half, "asyncio")]
    return [run_phase(options, options.mode)]


def parse_args(argv: list[str] | None = None) -> tuple[SoakOptions, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS)
    parser.add_argument("--mode", choices=("sync", "asyncio", "both"), default="sync")
    parser.add_argument("--servers", type=int, default=DEFAULT_SERVERS)
    parser.add_argument("--fault-interval", type=float, default=DEFAULT_FAULT_INTERVAL)
    parser.add_argument("--rss-limit-mb", type=float, default=DEFAULT_RSS_LIMIT_MB)
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help="comma-separated fault kinds to inject (default: all)")
    parser.add_argument("--log-file", help="append the library's log records (INFO and up)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    ns = parser.parse_args(argv)
    options = SoakOptions(minutes=ns.minutes, seed=ns.seed, threads=ns.threads, tasks=ns.tasks,
                          mode=ns.mode, servers=ns.servers, fault_interval=ns.fault_interval,
                          rss_limit_mb=ns.rss_limit_mb,
                          faults=tuple(f for f in ns.faults.split(",") if f),
                          log_file=ns.log_file)
    return options, ns.json


def main(argv: list[str] | None = None) -> int:
    options, as_json = parse_args(argv)
    summaries = soak(options)
    if as_json:
        print(json.dumps({"options": dataclasses.asdict(options), "phases": summaries},
                         indent=2, default=str))
    else:
        print(f"soak: {dataclasses.asdict(options)}")
        for summary in summaries:
            print()
            print(render(summary))
    return 0 if all(s["ok"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
