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

Run: ``python bench/overhead.py`` (all parts; ``--quick`` for a shorter run,
``--only success|threads|memory|hedge`` for one part). Add rows by appending ``(name, callable)``
pairs in :func:`overhead_rows`.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=("success", "threads", "memory", "hedge"))
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
