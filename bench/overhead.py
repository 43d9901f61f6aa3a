"""Per-call overhead of faulttol against pybreaker and circuitbreaker, in one process.

Parts:

1. Success path: the cost per call of guarding a trivial function, for each row of
   :func:`overhead_rows` (a bare call, faulttol's breaker with each window type, pybreaker,
   circuitbreaker, and — when those modules are implemented — faulttol's Retry, a full
   Decorators stack and tenacity). Each row is timed for several rounds (interleaved, so noise
   hits all rows alike); the table shows the median and best ns/call and their ratios to
   pybreaker's.
2. ``--threads``: 8 threads calling a 10 ms function through one breaker. faulttol holds its
   lock for bookkeeping only, so the calls overlap (wall time ~1/8 of serial); pybreaker holds
   its lock across the call and serialises them.
3. ``--memory``: a TIME_BASED window has the same size after 1,000,000 recorded calls as after
   10 (its buckets aggregate counts).
4. ``--only hedge``: the success path of a hedged call (it succeeds long before the delay, so
   no hedge starts), sync and asyncio, against a plain call and the cheapest way to run a call
   on another thread (``ThreadPoolExecutor``) or as a task, and asynchedging's ``hedge``.
5. ``--only bulkhead``: the success path of a :class:`faulttol.Bulkhead` (a slot free) against a
   ``threading.BoundedSemaphore`` decorator (sync) and an ``asyncio.Semaphore`` one (asyncio),
   the success path of a :class:`faulttol.TimeLimiter` against ``asyncio.wait_for`` and
   ``ThreadPoolExecutor`` submit + ``result(timeout)``, and the event loop's worst lag (a 1 ms
   heartbeat task) while 10,000 tasks go through ``Bulkhead(max_concurrent_calls=100)`` (and
   through an ``asyncio.Semaphore(100)``, the anchor).
6. ``--only ratelimiter``: a :class:`faulttol.RateLimiter` with a permission available
   against limits (in-memory moving and fixed windows) and pyrate-limiter (sync), and
   aiolimiter (asyncio); the chaos strategies at rate 0 against a bare call; and the accuracy
   scenario: 10 threads for 2 s through 100 permits per 0.1 s admit 2,000 calls.

Run: ``python bench/overhead.py`` (all parts; ``--quick`` for a shorter run,
``--only success|threads|memory|hedge|bulkhead|ratelimiter`` for one part). Add rows by appending
``(name, callable)`` pairs in :func:`overhead_rows`.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import sys
import threading
import time
import timeit
from collections.abc import Callable
from importlib import metadata
from typing import Any

import circuitbreaker
import pybreaker

from faulttol.breaker import CircuitBreaker, CircuitBreakerConfig, SlidingWindowType

Row = tuple[str, Callable[[], object]]
ANCHOR = "pybreaker"


def target() -> int:
    """The protected function: as cheap as possible, so the table shows pure overhead."""
    return 1


def _implemented(module_name: str) -> Any | None:
    """The module if it exists and is no longer a stub, else None."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    doc = module.__doc__ or ""
    return None if doc.lstrip().startswith("STUB") else module


def overhead_rows() -> list[Row]:
    """Every row of the success-path table, in display order."""
    time_based = CircuitBreakerConfig(sliding_window_type=SlidingWindowType.TIME_BASED)
    rows: list[Row] = [
        ("bare call", target),
        ("faulttol breaker COUNT_BASED", CircuitBreaker("bench-count").decorate(target)),
        ("faulttol breaker TIME_BASED", CircuitBreaker("bench-time", time_based).decorate(target)),
        *_exported_rows(),
        (ANCHOR, pybreaker.CircuitBreaker(name="bench")(target)),
        ("circuitbreaker", circuitbreaker.circuit(target)),
    ]
    rows += _optional_rows()
    return rows


def _exported_rows() -> list[Row]:
    """A COUNT_BASED breaker registered with a Prometheus exporter (when prometheus-client is
    installed): what production users, who export metrics, pay per call."""
    try:
        from prometheus_client import CollectorRegistry

        from faulttol.metrics.prometheus import PrometheusExporter
    except ImportError:
        return []
    breaker = CircuitBreaker("bench-exported")
    PrometheusExporter(CollectorRegistry()).register_circuit_breaker(breaker)
    return [("faulttol breaker + prometheus exporter", breaker.decorate(target))]


def _optional_rows() -> list[Row]:
    """Rows for modules other helpers provide; skipped while they are stubs."""
    rows: list[Row] = []
    retry_module = _implemented("faulttol.retry")
    if retry_module is not None:
        rows.append(("faulttol Retry", retry_module.Retry("bench").decorate(target)))
    decorators_module = _implemented("faulttol.decorators")
    fallback_module = _implemented("faulttol.fallback")
    if None not in (retry_module, decorators_module, fallback_module):
        assert decorators_module is not None and retry_module is not None
        stack = (
            decorators_module.Decorators.of(target)
            .with_circuit_breaker(CircuitBreaker("bench-stack"))
            .with_retry(retry_module.Retry("bench-stack"))
            .with_fallback((Exception,), lambda exc: None)
            .decorate()
        )
        rows.append(("faulttol stack CB+Retry+Fallback", stack))
    try:
        import tenacity
    except ImportError:
        pass
    else:
        rows.append(("tenacity retry", tenacity.retry(stop=tenacity.stop_after_attempt(3))(target)))
        import pybreaker

        inner = pybreaker.CircuitBreaker(name="bench-in-tenacity")
        rows.append((
            PYBREAKER_IN_TENACITY,
            tenacity.retry(stop=tenacity.stop_after_attempt(3))(inner(target)),
        ))
    return rows


PYBREAKER_IN_TENACITY = "pybreaker inside tenacity"


def print_targets(medians: dict[str, float]) -> None:
    """The issue's targets, checked against this run's medians."""
    checks = [
        ("faulttol breaker COUNT_BASED", ANCHOR, 0.25),
        ("faulttol breaker COUNT_BASED", "circuitbreaker", 0.75),
        ("faulttol breaker TIME_BASED", ANCHOR, 0.25),
        ("faulttol breaker TIME_BASED", "circuitbreaker", 0.75),
        ("faulttol stack CB+Retry+Fallback", PYBREAKER_IN_TENACITY, 0.05),
    ]
    print("\nTargets (median ratios)")
    for row, anchor, limit in checks:
        if row not in medians or anchor not in medians:
            continue
        ratio = medians[row] / medians[anchor]
        verdict = "met" if ratio <= limit else "NOT met"
        print(f"  {row} / {anchor}: {ratio:.3f}x (target <= {limit}x): {verdict}")


def calibrate(fn: Callable[[], object], round_seconds: float) -> int:
    """How many calls of ``fn`` take about ``round_seconds`` (at least 100)."""
    fn()  # warm up (specialisation, lazy state)
    number, elapsed = timeit.Timer(fn).autorange()
    return max(100, int(number * round_seconds / max(elapsed, 1e-9)))


def success_path(rounds: int, round_seconds: float) -> dict[str, float]:
    """Print the success-path table; return the median ns/call per row."""
    rows = overhead_rows()
    numbers = {name: calibrate(fn, round_seconds) for name, fn in rows}
    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    gc.disable()
    try:
        # Interleave the rounds of all rows, so that machine noise hits every row alike.
        for _ in range(rounds):
            for name, fn in rows:
                elapsed = timeit.Timer(fn).timeit(numbers[name])
                samples[name].append(elapsed / numbers[name] * 1e9)
    finally:
        gc.enable()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    bests = {name: min(values) for name, values in samples.items()}
    print(f"Success path: ns per call, {rounds} rounds of ~{round_seconds:.2f} s per row")
    print(f"{'row':<40} {'median':>8} {'best':>8} {'median/' + ANCHOR:>17} {'best/' + ANCHOR:>15}")
    for name, _ in rows:
        median_ratio = f"{medians[name] / medians[ANCHOR]:.2f}x"
        best_ratio = f"{bests[name] / bests[ANCHOR]:.2f}x"
        print(
            f"{name:<40} {medians[name]:>8.0f} {bests[name]:>8.0f}"
            f" {median_ratio:>17} {best_ratio:>15}"
        )
    return medians


def _run_threads(call: Callable[[], object], threads: int, calls_each: int) -> float:
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(calls_each):
            call()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - start


def threads_part(threads: int = 8, calls_each: int = 5, sleep: float = 0.01) -> None:
    """Print wall time of ``threads`` threads calling a ``sleep``-second function."""

    def slow() -> None:
        time.sleep(sleep)

    serial = threads * calls_each * sleep
    guarded: list[tuple[str, Callable[[], object]]] = [
        ("bare call", slow),
        ("faulttol breaker", CircuitBreaker("bench-threads").decorate(slow)),
        (ANCHOR, pybreaker.CircuitBreaker(name="bench-threads")(slow)),
        ("circuitbreaker", circuitbreaker.circuit(slow)),
    ]
    print(
        f"\nThreads: {threads} threads x {calls_each} calls of a {sleep * 1000:.0f} ms function"
        f" through one breaker (serial would take {serial:.2f} s)"
    )
    print(f"{'row':<34} {'wall s':>9} {'vs serial':>13}")
    for name, fn in guarded:
        wall = _run_threads(fn, threads, calls_each)
        print(f"{name:<34} {wall:>9.3f} {wall / serial:>12.2f}x")


def _structure_size(root: object) -> int:
    """Bytes of ``root`` and every container it reaches: numbers (fixed-size scalars whose
    object identity depends on their value), classes, functions and modules are left out."""
    skip = (int, float, type(None), type, type(sys), type(_structure_size), type(len))
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def memory_part(big: int = 1_000_000) -> None:
    """Print the size of a TIME_BASED window after 10 and after ``big`` recorded calls."""
    config = CircuitBreakerConfig(sliding_window_type=SlidingWindowType.TIME_BASED)
    sizes = []
    for calls in (10, big):
        breaker = CircuitBreaker("bench-memory", config)
        guarded = breaker.decorate(target)
        for _ in range(calls):
            guarded()
        recorded = breaker.metrics.number_of_buffered_calls  # folds queued successes in
        window = breaker._main_window
        sizes.append((calls, recorded, _structure_size(window)))
    print("\nMemory: a TIME_BASED window (100 one-second buckets)")
    for calls, recorded, size in sizes:
        print(f"  after {calls:>9,} calls ({recorded:>9,} in window): {size:,} bytes")
    same = sizes[0][2] == sizes[1][2]
    print(f"  same size: {'yes' if same else 'NO'}")


def _median_table(
    title: str, samples: dict[str, list[float]], anchor: str, bare: str
) -> dict[str, float]:
    """Print median and best ns/call per row, with the ratios to ``bare`` and ``anchor``."""
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(title)
    print(f"{'row':<40} {'median':>9} {'best':>9} {'median/bare':>12} {'median/anchor':>14}")
    for name, values in samples.items():
        print(
            f"{name:<40} {medians[name]:>9.0f} {min(values):>9.0f}"
            f" {medians[name] / medians[bare]:>11.1f}x {medians[name] / medians[anchor]:>13.2f}x"
        )
    print(f"  (anchor: {anchor})")
    return medians


def _hedge_sync_samples(rounds: int, round_seconds: float) -> dict[str, list[float]]:
    from concurrent.futures import ThreadPoolExecutor

    from faulttol.hedge import Hedge

    hedge = Hedge("bench-hedge")  # default config: one hedge after 2 s, never reached here
    executor = ThreadPoolExecutor(max_workers=1)
    rows: list[Row] = [
        ("bare call", target),
        (HEDGE_SYNC_ANCHOR, lambda: executor.submit(target).result()),
        ("faulttol Hedge (sync)", hedge.decorate(target)),
    ]
    numbers = {name: calibrate(fn, round_seconds) for name, fn in rows}
    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    try:
        for _ in range(rounds):
            for name, fn in rows:
                elapsed = timeit.Timer(fn).timeit(numbers[name])
                samples[name].append(elapsed / numbers[name] * 1e9)
    finally:
        executor.shutdown()
        hedge.close()
    return samples


async def _hedge_async_samples(rounds: int, round_seconds: float) -> dict[str, list[float]]:
    import asyncio

    from faulttol.hedge import Hedge

    async def atarget() -> int:
        return 1

    hedge = Hedge("bench-hedge-async")
    hedged = hedge.decorate(atarget)
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("await bare coroutine", atarget),
        ("asyncio task: create_task + await", lambda: asyncio.ensure_future(atarget())),
        ("asyncio.wait_for(coro, 2.0)", lambda: asyncio.wait_for(atarget(), 2.0)),
        ("faulttol Hedge (async)", hedged),
    ]
    try:
        import asynchedging
    except ImportError:  # needs Python >= 3.11
        pass
    else:
        rows.append((ASYNCHEDGING, lambda: asynchedging.hedge(atarget, delays_s=[2.0])))

    async def timed(factory: Callable[[], Any], number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            await factory()
        return time.perf_counter() - start

    numbers: dict[str, int] = {}
    for name, factory in rows:
        number = 100
        while (elapsed := await timed(factory, number)) < 0.2 * round_seconds:
            number *= 2
        numbers[name] = max(100, int(number * round_seconds / max(elapsed, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(rounds):
        for name, factory in rows:
            samples[name].append(await timed(factory, numbers[name]) / numbers[name] * 1e9)
    return samples


HEDGE_SYNC_ANCHOR = "ThreadPoolExecutor submit+result"
ASYNCHEDGING = "asynchedging.hedge(delays_s=[2.0])"


def hedge_part(rounds: int, round_seconds: float) -> None:
    """Print the success path of a hedged call, sync then asyncio (median of interleaved
    rounds; garbage collection stays on: the async rows allocate tasks and futures)."""
    import asyncio

    sync = _hedge_sync_samples(rounds, round_seconds)
    _median_table(
        f"\nHedge, sync: ns per call that succeeds before the delay, {rounds} rounds",
        sync,
        HEDGE_SYNC_ANCHOR,
        "bare call",
    )
    samples = asyncio.run(_hedge_async_samples(rounds, round_seconds))
    anchor = ASYNCHEDGING if ASYNCHEDGING in samples else "asyncio task: create_task + await"
    _median_table(
        f"\nHedge, asyncio: ns per awaited call that succeeds before the delay, {rounds} rounds",
        samples,
        anchor,
        "await bare coroutine",
    )


BOUNDED_SEMAPHORE = "threading.BoundedSemaphore decorator"
ASYNCIO_SEMAPHORE = "asyncio.Semaphore decorator"
BULKHEAD_SYNC = "faulttol Bulkhead (sync)"
BULKHEAD_TARGET_NS = 500.0


def _bulkhead_sync_samples(rounds: int, round_seconds: float) -> dict[str, list[float]]:
    import functools
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as FuturesTimeout

    from faulttol import Bulkhead, TimeLimiter, TimeLimiterConfig

    semaphore = threading.BoundedSemaphore(25)

    def with_semaphore(fn: Callable[[], int]) -> Callable[[], int]:
        @functools.wraps(fn)
        def guarded() -> int:
            with semaphore:
                return fn()

        return guarded

    executor = ThreadPoolExecutor(max_workers=1)

    def executor_with_timeout() -> int:
        try:
            return executor.submit(target).result(timeout=1.0)
        except FuturesTimeout:  # pragma: no cover - never within 1 s here
            raise

    limiter = TimeLimiter("bench-time-limiter", TimeLimiterConfig(timeout_duration=1.0))
    rows: list[Row] = [
        ("bare call", target),
        (BOUNDED_SEMAPHORE, with_semaphore(target)),
        (BULKHEAD_SYNC, Bulkhead("bench-bulkhead").decorate(target)),
        ("ThreadPoolExecutor submit+result(1.0)", executor_with_timeout),
        ("faulttol TimeLimiter (sync, default pool)", limiter.decorate(target)),
    ]
    numbers = {name: calibrate(fn, round_seconds) for name, fn in rows}
    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in rows:
                elapsed = timeit.Timer(fn).timeit(numbers[name])
                samples[name].append(elapsed / numbers[name] * 1e9)
    finally:
        gc.enable()
        executor.shutdown()
    return samples


async def _bulkhead_async_samples(rounds: int, round_seconds: float) -> dict[str, list[float]]:
    import asyncio

    from faulttol import Bulkhead, TimeLimiter, TimeLimiterConfig

    async def atarget() -> int:
        return 1

    semaphore = asyncio.Semaphore(25)

    async def with_semaphore() -> int:
        async with semaphore:
            return await atarget()

    limiter = TimeLimiter("bench-time-limiter-async", TimeLimiterConfig(timeout_duration=1.0))
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("await bare coroutine", atarget),
        (ASYNCIO_SEMAPHORE, with_semaphore),
        ("faulttol Bulkhead (async)", Bulkhead("bench-bulkhead-async").decorate(atarget)),
        ("asyncio.wait_for(coro, 1.0)", lambda: asyncio.wait_for(atarget(), 1.0)),
        ("faulttol TimeLimiter (async)", limiter.decorate(atarget)),
    ]

    async def timed(factory: Callable[[], Any], number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            await factory()
        return time.perf_counter() - start

    numbers: dict[str, int] = {}
    for name, factory in rows:
        number = 100
        while (elapsed := await timed(factory, number)) < 0.2 * round_seconds:
            number *= 2
        numbers[name] = max(100, int(number * round_seconds / max(elapsed, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(rounds):
        for name, factory in rows:
            samples[name].append(await timed(factory, numbers[name]) / numbers[name] * 1e9)
    return samples


async def _loop_lag(
    work: Callable[[], Any] | None, tasks: int, batch: int
) -> tuple[list[float], float]:
    """The lags of a 1 ms heartbeat task, and the wall time, while ``tasks`` tasks each run
    ``work()`` (a guarded coroutine function that sleeps 1 ms in its slot). The tasks are
    created ``batch`` at a time, the creator yielding to the loop between batches
    (``batch=tasks``: all at once). With ``work=None``, the heartbeat alone (the machine's own
    noise) for ``batch`` milliseconds."""
    import asyncio

    lags: list[float] = []
    running = True

    async def beat() -> None:
        loop = asyncio.get_running_loop()
        while running:
            due = loop.time() + 0.001
            await asyncio.sleep(0.001)
            lags.append(loop.time() - due)

    beater = asyncio.create_task(beat())
    await asyncio.sleep(0.01)  # the heartbeat is running
    lags.clear()
    start = time.perf_counter()
    if work is None:
        await asyncio.sleep(batch / 1000)
    else:
        # Completion is counted by a done callback per task (no gather over 10,000 tasks at
        # the end: its one O(n) step would show up as lag of the benchmark's own).
        finished = asyncio.Event()
        left = tasks

        def done(task: asyncio.Future[None]) -> None:
            nonlocal left
            task.result()
            left -= 1
            if not left:
                finished.set()

        for _ in range(0, tasks, batch):
            for _ in range(batch):
                asyncio.ensure_future(work()).add_done_callback(done)
            await asyncio.sleep(0)
        await finished.wait()
    wall = time.perf_counter() - start
    running = False
    await beater
    return lags, wall


def bulkhead_lag(tasks: int = 10_000, limit: int = 100, runs: int = 5) -> dict[str, float]:
    """Print the event loop's lag while ``tasks`` tasks go through a bulkhead of ``limit``
    slots (and an ``asyncio.Semaphore``), created all at once and in batches of ``limit``;
    return the median (over runs) of the worst lag per row."""
    import asyncio

    from faulttol import Bulkhead, BulkheadConfig

    def bulkhead_guard() -> Callable[[], Any]:
        bulkhead = Bulkhead(
            "bench-lag", BulkheadConfig(max_concurrent_calls=limit, max_wait_duration=60.0)
        )

        @bulkhead
        async def work() -> None:
            await asyncio.sleep(0.001)

        return work

    def semaphore_guard() -> Callable[[], Any]:
        semaphore = asyncio.Semaphore(limit)

        async def work() -> None:
            async with semaphore:
                await asyncio.sleep(0.001)

        return work

    guards: list[tuple[str, Callable[[], Any] | None]] = [
        ("heartbeat alone (machine noise)", None),
        (f"asyncio.Semaphore({limit})", semaphore_guard),
        (f"faulttol Bulkhead({limit})", bulkhead_guard),
    ]
    print(
        f"\nEvent loop lag: {tasks:,} tasks, each sleeping 1 ms in its slot, through {limit}"
        f" slots; a 1 ms heartbeat task; {runs} interleaved runs per row (GC on)"
    )
    print(
        f"{'tasks created':<16} {'row':<32} {'worst lag median':>17} {'worst max':>10}"
        f" {'p99 median':>11} {'wall median':>12}"
    )
    worst_medians: dict[str, float] = {}
    for batch, label in ((tasks, "all at once"), (limit, f"{limit} per tick")):
        results: dict[str, list[tuple[list[float], float]]] = {name: [] for name, _ in guards}
        last_wall = 0.5
        for _ in range(runs):
            for name, make in guards:
                gc.collect()
                if make is None:
                    # The heartbeat alone, as long as the guarded runs take (in ms of batch).
                    outcome = asyncio.run(_loop_lag(None, tasks, int(last_wall * 1000)))
                else:
                    outcome = asyncio.run(_loop_lag(make(), tasks, batch))
                    last_wall = outcome[1]
                results[name].append(outcome)
        for name, _ in guards:
            worsts = [max(lags) for lags, _ in results[name]]
            p99s = [sorted(lags)[int(len(lags) * 0.99)] for lags, _ in results[name]]
            walls = [wall for _, wall in results[name]]
            worst_medians[f"{label}: {name}"] = statistics.median(worsts)
            print(
                f"{label:<16} {name:<32} {statistics.median(worsts) * 1000:>14.2f} ms"
                f" {max(worsts) * 1000:>7.2f} ms {statistics.median(p99s) * 1000:>8.2f} ms"
                f" {statistics.median(walls):>10.3f} s"
            )
    return worst_medians


def bulkhead_part(rounds: int, round_seconds: float, tasks: int = 10_000) -> None:
    """Print the bulkhead and time limiter success paths and the event loop lag, then the
    issue's targets."""
    import asyncio

    sync = _bulkhead_sync_samples(rounds, round_seconds)
    sync_medians = _median_table(
        f"\nBulkhead and TimeLimiter, sync: ns per call (a slot free), {rounds} rounds",
        sync,
        BOUNDED_SEMAPHORE,
        "bare call",
    )
    samples = asyncio.run(_bulkhead_async_samples(rounds, round_seconds))
    _median_table(
        f"\nBulkhead and TimeLimiter, asyncio: ns per awaited call (a slot free), {rounds} rounds",
        samples,
        ASYNCIO_SEMAPHORE,
        "await bare coroutine",
    )
    lag = bulkhead_lag(tasks)
    bulkhead_lag_row = next(n for n in lag if "per tick" in n and "faulttol Bulkhead" in n)
    print("\nTargets")
    cost = sync_medians[BULKHEAD_SYNC] - sync_medians["bare call"]
    verdict = "met" if sync_medians[BULKHEAD_SYNC] <= BULKHEAD_TARGET_NS else "NOT met"
    print(
        f"  {BULKHEAD_SYNC}: {sync_medians[BULKHEAD_SYNC]:.0f} ns per call ({cost:.0f} ns over a"
        f" bare call; target <= {BULKHEAD_TARGET_NS:.0f} ns): {verdict}"
    )
    worst = lag[bulkhead_lag_row]
    print(
        f"  event loop worst lag, {bulkhead_lag_row} (median of runs): {worst * 1000:.2f} ms"
        f" (target <= 5 ms): {'met' if worst <= 0.005 else 'NOT met'}"
    )


# --- rate limiter and chaos ---------------------------------------------------------------

RL_SYNC_ANCHOR = "limits MovingWindowRateLimiter.hit"
RL_ASYNC_ANCHOR = "aiolimiter: async with AsyncLimiter"
RL_ACQUIRE = "faulttol RateLimiter.acquire_permission()"
RL_TARGET_NS = 500.0
CHAOS_RATE_ZERO = "faulttol ChaosFault(rate 0) decorator"
CHAOS_TARGET_NS = 200.0


def _interleaved(rows: list[Row], rounds: int, round_seconds: float) -> dict[str, list[float]]:
    """ns/call of each row, rounds interleaved so that machine noise hits every row alike."""
    numbers = {name: calibrate(fn, round_seconds) for name, fn in rows}
    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in rows:
                elapsed = timeit.Timer(fn).timeit(numbers[name])
                samples[name].append(elapsed / numbers[name] * 1e9)
    finally:
        gc.enable()
    return samples


def _rate_limiter_sync_samples(rounds: int, round_seconds: float) -> dict[str, list[float]]:
    """A permission always available: faulttol (one long cycle with a huge limit; and the
    default config, whose 500 ns cycles make nearly every call start a new one) against
    limits (in-memory moving and fixed windows) and pyrate-limiter (in-memory, non-blocking),
    all with limits no bench run reaches."""
    import pyrate_limiter
    from limits import parse, storage, strategies

    from faulttol import RateLimiter, RateLimiterConfig

    roomy = RateLimiterConfig(limit_for_period=10**12, limit_refresh_period=3600.0,
                              timeout_duration=0.0)
    limiter = RateLimiter("bench-rate", roomy)
    moving = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    fixed = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
    per_second = parse("1000000000/second")
    bucket = pyrate_limiter.Limiter(pyrate_limiter.Rate(10**9, pyrate_limiter.Duration.SECOND))
    rows: list[Row] = [
        ("bare call", target),
        (RL_ACQUIRE, limiter.acquire_permission),
        ("faulttol RateLimiter decorator", RateLimiter("bench-rate-d", roomy).decorate(target)),
        ("faulttol RateLimiter decorator, default config",
         RateLimiter("bench-rate-default").decorate(target)),
        (RL_SYNC_ANCHOR, lambda: moving.hit(per_second, "bench")),
        ("limits FixedWindowRateLimiter.hit", lambda: fixed.hit(per_second, "bench")),
        ("pyrate-limiter try_acquire(blocking=False)",
         lambda: bucket.try_acquire("bench", blocking=False)),
    ]
    return _interleaved(rows, rounds, round_seconds)


async def _rate_limiter_async_samples(
    rounds: int, round_seconds: float
) -> dict[str, list[float]]:
    import aiolimiter

    from faulttol import RateLimiter, RateLimiterConfig

    async def atarget() -> int:
        return 1

    roomy = RateLimiterConfig(limit_for_period=10**12, limit_refresh_period=3600.0)
    limiter = RateLimiter("bench-rate-async", roomy)
    leaky = aiolimiter.AsyncLimiter(10**12, 3600)

    async def with_aiolimiter() -> int:
        async with leaky:
            return await atarget()

    rows: list[tuple[str, Callable[[], Any]]] = [
        ("await bare coroutine", atarget),
        ("faulttol RateLimiter (async decorator)", limiter.decorate(atarget)),
        ("await acquire_permission_async()", limiter.acquire_permission_async),
        (RL_ASYNC_ANCHOR, with_aiolimiter),
    ]

    async def timed(factory: Callable[[], Any], number: int) -> float:
        start = time.perf_counter()
        for _ in range(number):
            await factory()
        return time.perf_counter() - start

    numbers: dict[str, int] = {}
    for name, factory in rows:
        number = 100
        while (elapsed := await timed(factory, number)) < 0.2 * round_seconds:
            number *= 2
        numbers[name] = max(100, int(number * round_seconds / max(elapsed, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(rounds):
        for name, factory in rows:
            samples[name].append(await timed(factory, numbers[name]) / numbers[name] * 1e9)
    return samples


def _chaos_samples(rounds: int, round_seconds: float) -> dict[str, list[float]]:
    from faulttol.chaos import ChaosFault, ChaosLatency, ChaosOutcome

    rows: list[Row] = [
        ("bare call", target),
        (CHAOS_RATE_ZERO, ChaosFault(0.0, ValueError).decorate(target)),
        ("faulttol ChaosLatency(rate 0) decorator", ChaosLatency(0.0, 1.0).decorate(target)),
        ("faulttol ChaosOutcome(rate 0.5, enabled=False)",
         ChaosOutcome(0.5, 0, enabled=False).decorate(target)),
        ("faulttol ChaosOutcome(rate 0.5, enabled=lambda)",
         ChaosOutcome(0.5, 0, enabled=lambda: False).decorate(target)),
    ]
    return _interleaved(rows, rounds, round_seconds)


def rate_limiter_accuracy(
    threads: int = 10, seconds: float = 2.0, limit: int = 100, period: float = 0.1
) -> tuple[int, int]:
    """``threads`` threads calling through one limiter of ``limit`` per ``period`` for
    ``seconds``, each waiting for its reserved permission: ``(admitted, expected)``, counting
    the calls admitted before ``seconds`` had passed since the limiter was created."""
    from faulttol import RateLimiter, RateLimiterConfig

    limiter = RateLimiter("bench-accuracy", RateLimiterConfig(
        limit_for_period=limit, limit_refresh_period=period, timeout_duration=1.0))
    start = time.monotonic()  # the limiter's first cycle started just before
    admitted = [0] * threads

    def worker(i: int) -> None:
        while True:
            acquired = limiter.acquire_permission()
            if time.monotonic() - start >= seconds:
                return
            admitted[i] += acquired

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(admitted), round(seconds / period) * limit


def rate_limiter_part(rounds: int, round_seconds: float) -> None:
    """Print the rate limiter's and the chaos strategies' cost per call, and the accuracy
    scenario (10 threads, 2 s, 100 permits per 0.1 s)."""
    import asyncio

    anchors = ", ".join(
        f"{d} {metadata.version(d)}" for d in ("limits", "pyrate-limiter", "aiolimiter")
    )
    print(f"\nRate limiter anchors: {anchors}")
    sync = _median_table(
        f"\nRate limiter, sync: ns per call with a permission available, {rounds} rounds",
        _rate_limiter_sync_samples(rounds, round_seconds),
        RL_SYNC_ANCHOR,
        "bare call",
    )
    asyncio.run(_rate_limiter_async_report(rounds, round_seconds))
    chaos = _median_table(
        f"\nChaos: ns per call of a strategy that injects nothing, {rounds} rounds",
        _chaos_samples(rounds, round_seconds),
        "bare call",
        "bare call",
    )
    admitted, expected = rate_limiter_accuracy()
    error = (admitted - expected) / expected * 100
    print(
        f"\nRate limiter accuracy: 10 threads for 2 s, 100 permits per 0.1 s:"
        f" {admitted} admitted, expected {expected} ({error:+.2f}%)"
    )
    print("\nTargets")
    checks = [
        (f"{RL_ACQUIRE} <= {RL_TARGET_NS:.0f} ns", sync[RL_ACQUIRE] <= RL_TARGET_NS,
         f"{sync[RL_ACQUIRE]:.0f} ns"),
        (f"chaos at rate 0 overhead <= {CHAOS_TARGET_NS:.0f} ns",
         chaos[CHAOS_RATE_ZERO] - chaos["bare call"] <= CHAOS_TARGET_NS,
         f"{chaos[CHAOS_RATE_ZERO] - chaos['bare call']:.0f} ns over a bare call"),
        ("accuracy within 1 %", abs(error) <= 1.0, f"{error:+.2f}%"),
    ]
    for label, met, value in checks:
        print(f"  {label}: {value}: {'met' if met else 'NOT met'}")


async def _rate_limiter_async_report(rounds: int, round_seconds: float) -> None:
    _median_table(
        f"\nRate limiter, asyncio: ns per awaited call with a permission available, "
        f"{rounds} rounds",
        await _rate_limiter_async_samples(rounds, round_seconds),
        RL_ASYNC_ANCHOR,
        "await bare coroutine",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--only", choices=("success", "threads", "memory", "hedge", "bulkhead", "ratelimiter")
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--round-seconds", type=float, default=0.04, help="per row and round")
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 15)
    versions = ", ".join(f"{d} {metadata.version(d)}" for d in ("pybreaker", "circuitbreaker"))
    print(f"python {sys.version.split()[0]}, {versions}\n")
    if args.only in (None, "success"):
        print_targets(success_path(rounds, args.round_seconds))
    if args.only in (None, "threads"):
        threads_part(calls_each=3 if args.quick else 5)
    if args.only in (None, "memory"):
        memory_part(100_000 if args.quick else 1_000_000)
    if args.only in (None, "hedge"):
        hedge_part(rounds, args.round_seconds)
    if args.only in (None, "bulkhead"):
        bulkhead_part(rounds, args.round_seconds)
    if args.only in (None, "ratelimiter"):
        rate_limiter_part(rounds, args.round_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
