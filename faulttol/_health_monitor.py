"""The background health monitors: :class:`HealthMonitor` (a thread) and
:class:`AsyncHealthMonitor` (an asyncio task), public as ``faulttol.health.HealthMonitor`` and
``faulttol.health.AsyncHealthMonitor``.

Both keep their results with one bookkeeping class (:class:`_MonitorBase`: results by 1-based
index, flips, results dropped when computed across a removal or a ``forget``); only the
waiting and calling differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._clock import Clock, SystemClock, resolve_clock

__all__ = ["DEFAULT_HEALTH_CHECK_INTERVAL", "AsyncHealthMonitor", "HealthMonitor"]

_log = logging.getLogger("faulttol.health")

DEFAULT_HEALTH_CHECK_INTERVAL = 5.0
"""Seconds between two check rounds of a health monitor (re-exported by
:mod:`faulttol.health`)."""

_FAKE_CLOCK_POLL = 0.005
"""Real seconds between looks at a non-system clock by a monitor's thread or task."""


_Stamp = tuple[int, int]


class _MonitorBase:
    """What both monitors share: the results by index, flips, and the rules that drop a
    result computed across a :meth:`remove` or a :meth:`forget` (no I/O, no waiting).

    A check of ``index`` is bracketed by :meth:`_begin` (before it runs) and :meth:`_finish`
    (with its result): the result is recorded only if nothing invalidated it meanwhile.
    """

    def __init__(
        self,
        targets: Callable[[], int],
        *,
        interval: float,
        clock: Clock | None,
        name: str,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._targets = targets
        self._interval = float(interval)
        self._clock = resolve_clock(clock)
        self._name = name
        self._lock = threading.Lock()
        self._results: dict[int, bool] = {}
        self._generation = 0  # bumped by remove(): every result in flight is dropped
        self._stamps: dict[int, int] = {}  # bumped by forget(index): its result is dropped
        self._stop = threading.Event()
        self._rounds = 0

    # --- state -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The monitor's name (also its thread's or task's name)."""
        return self._name

    @property
    def interval(self) -> float:
        """Seconds between two rounds."""
        return self._interval

    @property
    def rounds(self) -> int:
        """How many rounds have completed (handy for tests and diagnostics)."""
        return self._rounds

    @property
    def closed(self) -> bool:
        """Whether the monitor was closed."""
        return self._stop.is_set()

    def last_result(self, index: int) -> bool | None:
        """The last recorded health of target ``index``, or ``None`` while unknown."""
        with self._lock:
            return self._results.get(index)

    def is_healthy(self, index: int) -> bool:
        """Whether target ``index`` is healthy; an unknown target counts as healthy."""
        with self._lock:
            return self._results.get(index, True)

    def snapshot(self) -> dict[int, bool | None]:
        """Every current index (1..N) mapped to its last result (``None`` = unknown)."""
        count = self._targets()
        with self._lock:
            return {i: self._results.get(i) for i in range(1, count + 1)}

    # --- recording -----------------------------------------------------------------------

    def mark_nowait(self, index: int, healthy: bool) -> bool:
        """Record a result from outside without calling ``on_change`` (for an owner that acts
        on the flip itself); returns whether it flipped."""
        return self._mark(index, healthy)

    def _mark(self, index: int, healthy: bool) -> bool:
        if index < 1:
            raise ValueError(f"index must be >= 1, got {index}")
        with self._lock:
            return self._record_locked(index, healthy)

    def forget(self, index: int) -> None:
        """Make target ``index`` unknown again (treated as healthy until its next check).

        A check of it already running when this is called has its result dropped: only a
        check started afterwards counts.
        """
        with self._lock:
            self._results.pop(index, None)
            self._stamps[index] = self._stamps.get(index, 0) + 1

    def remove(self, index: int) -> None:
        """Target ``index`` was removed: drop its result and shift later ones down by one."""
        if index < 1:
            raise ValueError(f"index must be >= 1, got {index}")
        with self._lock:
            self._generation += 1
            self._results = _shift_down(self._results, index)
            self._stamps = _shift_down(self._stamps, index)

    def _begin(self, index: int) -> _Stamp:
        """What a result of ``index`` must find unchanged to be recorded."""
        with self._lock:
            return self._stamp_locked(index)

    def _finish(self, index: int, started: _Stamp, healthy: bool) -> bool | None:
        """Record a result of a check begun at ``started``: ``None`` when it is stale
        (indices shifted, or the owner forgot the target meanwhile), else whether the
        target's effective health flipped."""
        with self._lock:
            if started != self._stamp_locked(index):
                return None
            return self._record_locked(index, healthy)

    def _stamp_locked(self, index: int) -> _Stamp:
        return self._generation, self._stamps.get(index, 0)

    def _record_locked(self, index: int, healthy: bool) -> bool:
        previous = self._results.get(index, True)
        self._results[index] = healthy
        return previous != healthy

    def _check_raised(self, index: int) -> bool:
        _log.warning("%s: health check of target %d raised", self._name, index, exc_info=True)
        return False

    def _on_change_raised(self, index: int, healthy: bool) -> None:
        _log.exception("%s: on_change(%d, %s) raised", self._name, index, healthy)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, interval={self._interval!r})"


class HealthMonitor(_MonitorBase):
    """Checks N targets (1-based indices) every ``interval`` seconds on one daemon thread.

    ``targets()`` returns the current number of targets N; each round checks indices 1..N as
    they are at that moment. ``check(index)`` returns whether target ``index`` is healthy (a
    raise counts as unhealthy). Until a target's first result it is *unknown*, which
    :meth:`is_healthy` treats as healthy. ``on_change(index, healthy)`` is called, on the
    thread that recorded the result, whenever a target's effective health flips (unknown
    counts as healthy, so a first failing result is a flip and a first passing one is not);
    its exceptions are logged, never raised. ``on_round_end()``, if given, is called after
    each complete round (a provider checks for failback there).

    Call :meth:`run_once` to run a round synchronously (unit tests with a ``FakeClock`` do),
    :meth:`start` to run rounds in the background (the first one at once), :meth:`close` to
    stop. With the system clock the thread waits on an event, so :meth:`close` is prompt;
    with another clock it polls that clock, so advancing a ``FakeClock`` drives the thread.

    When the owner removes a target, it calls :meth:`remove` so that later results shift down
    with the indices; a result computed for an index before such a removal is dropped. Likewise
    a result of target ``index`` computed across a :meth:`forget` of it is dropped (the owner
    decided its health anew while the check ran).
    """

    def __init__(
        self,
        targets: Callable[[], int],
        check: Callable[[int], bool],
        *,
        interval: float = DEFAULT_HEALTH_CHECK_INTERVAL,
        on_change: Callable[[int, bool], None] | None = None,
        clock: Clock | None = None,
        name: str = "faulttol-health",
        on_round_end: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(targets, interval=interval, clock=clock, name=name)
        self._check = check
        self._on_change = on_change
        self._on_round_end = on_round_end
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def mark(self, index: int, healthy: bool, *, notify: bool = True) -> bool:
        """Record a result from outside (e.g. an on-the-spot probe) for target ``index``.

        Returns whether the effective health flipped. ``on_change`` is called on a flip
        unless ``notify`` is false (for a caller that acts on the flip itself).
        """
        flipped = self._mark(index, healthy)
        if flipped and notify:
            self._notify(index, healthy)
        return flipped

    def check_target(self, index: int, *, notify: bool = True) -> bool:
        """Check target ``index`` now, on the calling thread, and record the result."""
        started = self._begin(index)
        healthy = self._safe_check(index)
        flipped = self._finish(index, started, healthy)
        if flipped and notify:
            self._notify(index, healthy)
        return healthy

    def _safe_check(self, index: int) -> bool:
        try:
            return bool(self._check(index))
        except Exception:
            return self._check_raised(index)

    def _notify(self, index: int, healthy: bool) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(index, healthy)
        except Exception:
            self._on_change_raised(index, healthy)

    # --- rounds ------------------------------------------------------------------------

    def run_once(self) -> dict[int, bool]:
        """Run one round now on the calling thread; returns the results it recorded.

        Targets are checked one after the other, each flip reported as soon as it is seen.
        Stops between targets once :meth:`close` was called.
        """
        recorded: dict[int, bool] = {}
        count = self._targets()
        for index in range(1, count + 1):
            if self._stop.is_set():
                break
            started = self._begin(index)
            healthy = self._safe_check(index)
            flipped = self._finish(index, started, healthy)
            if flipped is None:
                continue
            recorded[index] = healthy
            if flipped:
                self._notify(index, healthy)
        self._rounds += 1
        if self._on_round_end is not None and not self._stop.is_set():
            try:
                self._on_round_end()
            except Exception:
                _log.exception("%s: on_round_end() raised", self._name)
        return recorded

    def start(self) -> None:
        """Start the background thread (first round at once). Idempotent while running."""
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError(f"{self._name}: cannot start a closed monitor")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop the background thread and wait for it (at most ``timeout`` s). Idempotent.

        A check already running is allowed to finish; no new one starts.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        clock = self._clock
        system = isinstance(clock, SystemClock)
        next_due = clock.monotonic()
        while not self._stop.is_set():
            now = clock.monotonic()
            if now >= next_due:
                try:
                    self.run_once()
                except Exception:  # targets() raised: keep monitoring
                    _log.exception("%s: health check round failed", self._name)
                next_due = clock.monotonic() + self._interval
                continue
            self._stop.wait(next_due - now if system else _FAKE_CLOCK_POLL)

    def __enter__(self) -> HealthMonitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncHealthMonitor(_MonitorBase):
    """The asyncio twin of :class:`HealthMonitor`: rounds run in one task of the event loop.

    The same bookkeeping (unknown counts as healthy, flips, :meth:`remove`, :meth:`forget`,
    stale results dropped), but ``check(index)`` may be a coroutine function (awaited) or a
    plain one, and so may ``on_change(index, healthy)`` and ``on_round_end()``. A round checks
    every target *concurrently*, records every result, then reports the flips in index order,
    so an owner that acts on a flip (a provider failing over) knows the whole round's results.
    Nothing here blocks the event loop: the task waits with ``asyncio.sleep`` (with a
    non-system clock such as ``FakeClock`` it polls that clock, so advancing it drives the
    task).

    :meth:`start` needs a running loop (the monitor belongs to it); :meth:`aclose` cancels
    the task and waits for it, so no task is left behind.
    """

    def __init__(
        self,
        targets: Callable[[], int],
        check: Callable[[int], bool | Awaitable[bool]],
        *,
        interval: float = DEFAULT_HEALTH_CHECK_INTERVAL,
        on_change: Callable[[int, bool], object] | None = None,
        clock: Clock | None = None,
        name: str = "faulttol-health",
        on_round_end: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(targets, interval=interval, clock=clock, name=name)
        self._check = check
        self._on_change = on_change
        self._on_round_end = on_round_end
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the monitor's task is running."""
        task = self._task
        return task is not None and not task.done()

    async def mark(self, index: int, healthy: bool, *, notify: bool = True) -> bool:
        """Record a result from outside for target ``index``; returns whether it flipped
        (``on_change`` is awaited on a flip unless ``notify`` is false)."""
        flipped = self._mark(index, healthy)
        if flipped and notify:
            await self._notify(index, healthy)
        return flipped

    async def check_target(self, index: int, *, notify: bool = True) -> bool:
        """Check target ``index`` now, in the calling task, and record the result."""
        started = self._begin(index)
        healthy = await self._safe_check(index)
        flipped = self._finish(index, started, healthy)
        if flipped and notify:
            await self._notify(index, healthy)
        return healthy

    async def _safe_check(self, index: int) -> bool:
        try:
            result = self._check(index)
            if inspect.isawaitable(result):
                result = await result
            return bool(result)
        except Exception:
            return self._check_raised(index)

    async def _notify(self, index: int, healthy: bool) -> None:
        if self._on_change is None:
            return
        try:
            result = self._on_change(index, healthy)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self._on_change_raised(index, healthy)

    # --- rounds ------------------------------------------------------------------------

    async def run_once(self) -> dict[int, bool]:
        """Run one round now, in the calling task; returns the results it recorded."""
        if self._stop.is_set():
            return {}
        indices = range(1, self._targets() + 1)
        started = [self._begin(index) for index in indices]
        # return_exceptions: a cancellation of this task reaches every check, and the
        # gather returns only once all of them have finished.
        results = await asyncio.gather(
            *(self._safe_check(index) for index in indices), return_exceptions=True
        )
        recorded: dict[int, bool] = {}
        flips: list[int] = []
        for index, stamp, result in zip(indices, started, results, strict=True):
            if not isinstance(result, bool):
                continue  # a check cancelled on its own: no result
            flipped = self._finish(index, stamp, result)
            if flipped is None:
                continue
            recorded[index] = result
            if flipped:
                flips.append(index)
        for index in flips:
            await self._notify(index, recorded[index])
        self._rounds += 1
        if self._on_round_end is not None and not self._stop.is_set():
            try:
                ended = self._on_round_end()
                if inspect.isawaitable(ended):
                    await ended
            except Exception:
                _log.exception("%s: on_round_end() raised", self._name)
        return recorded

    def start(self) -> None:
        """Start the task on the running loop (first round at once). Idempotent while
        running; ``RuntimeError`` outside a running loop or once closed."""
        if self._stop.is_set():
            raise RuntimeError(f"{self._name}: cannot start a closed monitor")
        if self._task is not None and not self._task.done():
            return
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=self._name)

    async def aclose(self) -> None:
        """Stop the task and wait until it has finished. Idempotent."""
        self._stop.set()
        task, self._task = self._task, None
        if task is None or task.done() or task is asyncio.current_task():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task])

    def close(self) -> None:
        """Stop the task without waiting for it (from sync code: prefer :meth:`aclose`)."""
        self._stop.set()
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception:  # targets() raised: keep monitoring
                _log.exception("%s: health check round failed", self._name)
            await self._sleep(self._interval)

    async def _sleep(self, seconds: float) -> None:
        clock = self._clock
        if isinstance(clock, SystemClock):
            await asyncio.sleep(seconds)
            return
        due = clock.monotonic() + seconds
        while clock.monotonic() < due and not self._stop.is_set():
            await asyncio.sleep(_FAKE_CLOCK_POLL)

    async def __aenter__(self) -> AsyncHealthMonitor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


V = TypeVar("V")


def _shift_down(values: dict[int, V], removed: int) -> dict[int, V]:
    """``values`` by index after index ``removed`` is gone: later indices move down by one."""
    shifted: dict[int, V] = {}
    for i, value in values.items():
        if i < removed:
            shifted[i] = value
        elif i > removed:
            shifted[i - 1] = value
    return shifted
