"""Generic health checking: probe policies and a background monitor of N indexed targets.

A *check round* of one target runs up to ``probes`` probes and decides with a
:class:`HealthCheckPolicy` (all / a strict majority / any must pass). :func:`run_probes` and
:func:`run_probes_async` run one round; they share the decision logic, only the waiting and
calling differ.

:class:`HealthMonitor` owns one daemon thread that, every ``interval`` seconds of its clock,
checks every target and reports flips of a target's health to ``on_change``. Targets are
addressed by their **1-based** index (the convention of :class:`faulttol.OrderedProvider`);
the set of targets is read afresh at every round, so targets may be added or removed while it
runs. Nothing here knows what a target is: the caller's ``check(index)`` does the real work.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._clock import Clock, SystemClock, resolve_clock

__all__ = [
    "DEFAULT_HEALTH_CHECK_INTERVAL",
    "DEFAULT_HEALTH_CHECK_POLICY",
    "DEFAULT_HEALTH_CHECK_PROBES",
    "DEFAULT_HEALTH_CHECK_PROBE_DELAY",
    "HealthCheckPolicy",
    "HealthMonitor",
    "run_probes",
    "run_probes_async",
]

_log = logging.getLogger("faulttol.health")

DEFAULT_HEALTH_CHECK_INTERVAL = 5.0
"""Seconds between two check rounds of a :class:`HealthMonitor`."""

DEFAULT_HEALTH_CHECK_PROBES = 3
"""Probes in one check round (redis-py's default)."""

DEFAULT_HEALTH_CHECK_PROBE_DELAY = 0.5
"""Seconds between two probes of one round (redis-py's default)."""

_FAKE_CLOCK_POLL = 0.005
"""Real seconds between looks at a non-system clock by the monitor thread."""


class HealthCheckPolicy(enum.Enum):
    """How the probes of one check round decide a target's health.

    Every policy stops probing as soon as the outcome is decided (ALL at the first failure,
    ANY at the first success, MAJORITY once a strict majority either way is out of reach).
    """

    HEALTHY_ALL = "healthy_all"
    """Every probe must pass."""

    HEALTHY_MAJORITY = "healthy_majority"
    """More than half of the probes must pass (2 of 3, 3 of 4: a tie is unhealthy)."""

    HEALTHY_ANY = "healthy_any"
    """At least one probe must pass."""

    def required_passes(self, probes: int) -> int:
        """How many of ``probes`` probes must pass for the target to be healthy."""
        if probes < 1:
            raise ValueError(f"probes must be >= 1, got {probes}")
        if self is HealthCheckPolicy.HEALTHY_ALL:
            return probes
        if self is HealthCheckPolicy.HEALTHY_MAJORITY:
            return probes // 2 + 1
        return 1


DEFAULT_HEALTH_CHECK_POLICY = HealthCheckPolicy.HEALTHY_ALL
"""The default policy: all probes of a round must pass (redis-py's default)."""


class _Tally:
    """The decision logic shared by the sync and async probe loops."""

    __slots__ = ("_failures", "_max_failures", "_passes", "_required")

    def __init__(self, policy: HealthCheckPolicy, probes: int) -> None:
        self._required = policy.required_passes(probes)
        self._max_failures = probes - self._required
        self._passes = 0
        self._failures = 0

    def record(self, passed: bool) -> bool | None:
        """Count one probe; the round's outcome once it is decided, else ``None``."""
        if passed:
            self._passes += 1
            if self._passes >= self._required:
                return True
        else:
            self._failures += 1
            if self._failures > self._max_failures:
                return False
        return None


def _validate(probes: int, delay: float) -> None:
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    if delay < 0:
        raise ValueError(f"delay must be >= 0, got {delay}")


def run_probes(
    probe: Callable[[], bool],
    *,
    probes: int = DEFAULT_HEALTH_CHECK_PROBES,
    policy: HealthCheckPolicy = DEFAULT_HEALTH_CHECK_POLICY,
    delay: float = DEFAULT_HEALTH_CHECK_PROBE_DELAY,
    clock: Clock | None = None,
) -> bool:
    """Run one check round: call ``probe`` up to ``probes`` times and decide by ``policy``.

    A probe passes when it returns a true value; one that raises counts as failed (the
    exception is logged at debug level). ``delay`` seconds pass between two probes (via
    ``clock.sleep``; ``None``: the default clock, read when called), never before the first
    or after the deciding one.
    """
    _validate(probes, delay)
    waits_on = resolve_clock(clock)
    tally = _Tally(policy, probes)
    for attempt in range(probes):
        if attempt and delay:
            waits_on.sleep(delay)
        try:
            passed = bool(probe())
        except Exception as exc:
            _log.debug("health probe raised %r", exc)
            passed = False
        outcome = tally.record(passed)
        if outcome is not None:
            return outcome
    raise AssertionError("unreachable: a round is always decided after its last probe")


async def run_probes_async(
    probe: Callable[[], Awaitable[bool]],
    *,
    probes: int = DEFAULT_HEALTH_CHECK_PROBES,
    policy: HealthCheckPolicy = DEFAULT_HEALTH_CHECK_POLICY,
    delay: float = DEFAULT_HEALTH_CHECK_PROBE_DELAY,
    clock: Clock | None = None,
) -> bool:
    """The asyncio twin of :func:`run_probes`: awaits ``probe()`` and ``clock.sleep_async``.

    Cancellation is not a failed probe: it propagates.
    """
    _validate(probes, delay)
    waits_on = resolve_clock(clock)
    tally = _Tally(policy, probes)
    for attempt in range(probes):
        if attempt and delay:
            await waits_on.sleep_async(delay)
        try:
            passed = bool(await probe())
        except Exception as exc:
            _log.debug("health probe raised %r", exc)
            passed = False
        outcome = tally.record(passed)
        if outcome is not None:
            return outcome
    raise AssertionError("unreachable: a round is always decided after its last probe")


class HealthMonitor:
    """Checks N targets (1-based indices) every ``interval`` seconds on one daemon thread.

    ``targets()`` returns the current number of targets N; each round checks indices 1..N as
    they are at that moment. ``check(index)`` returns whether target ``index`` is healthy (a
    raise counts as unhealthy). Until a target's first result it is *unknown*, which
    :meth:`is_healthy` treats as healthy. ``on_change(index, healthy)`` is called, on the
    thread that recorded the result, whenever a target's effective health flips (unknown
    counts as healthy, so a first failing result is a flip and a first passing one is not);
    its exceptions are logged, never raised.

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
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._targets = targets
        self._check = check
        self._interval = float(interval)
        self._on_change = on_change
        self._clock = resolve_clock(clock)
        self._name = name
        self._lock = threading.Lock()
        self._results: dict[int, bool] = {}
        self._generation = 0  # bumped by remove(): every result in flight is dropped
        self._stamps: dict[int, int] = {}  # bumped by forget(index): its result is dropped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rounds = 0

    # --- state -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The monitor's name (also its thread's name)."""
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
    def running(self) -> bool:
        """Whether the background thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

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

    def mark(self, index: int, healthy: bool, *, notify: bool = True) -> bool:
        """Record a result from outside (e.g. an on-the-spot probe) for target ``index``.

        Returns whether the effective health flipped. ``on_change`` is called on a flip
        unless ``notify`` is false (for a caller that acts on the flip itself).
        """
        if index < 1:
            raise ValueError(f"index must be >= 1, got {index}")
        with self._lock:
            flipped = self._record_locked(index, healthy)
        if flipped and notify:
            self._notify(index, healthy)
        return flipped

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

    def check_target(self, index: int, *, notify: bool = True) -> bool:
        """Check target ``index`` now, on the calling thread, and record the result."""
        with self._lock:
            started = self._stamp_locked(index)
        healthy = self._safe_check(index)
        with self._lock:
            if started != self._stamp_locked(index):
                return healthy  # indices shifted, or the owner forgot it: the result is stale
            flipped = self._record_locked(index, healthy)
        if flipped and notify:
            self._notify(index, healthy)
        return healthy

    def _stamp_locked(self, index: int) -> tuple[int, int]:
        """What a result of ``index`` must find unchanged to be recorded (lock held)."""
        return self._generation, self._stamps.get(index, 0)

    def _record_locked(self, index: int, healthy: bool) -> bool:
        previous = self._results.get(index, True)
        self._results[index] = healthy
        return previous != healthy

    def _safe_check(self, index: int) -> bool:
        try:
            return bool(self._check(index))
        except Exception:
            _log.warning("%s: health check of target %d raised", self._name, index, exc_info=True)
            return False

    def _notify(self, index: int, healthy: bool) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(index, healthy)
        except Exception:
            _log.exception("%s: on_change(%d, %s) raised", self._name, index, healthy)

    # --- rounds ------------------------------------------------------------------------

    def run_once(self) -> dict[int, bool]:
        """Run one round now on the calling thread; returns the results it recorded.

        Stops between targets once :meth:`close` was called.
        """
        recorded: dict[int, bool] = {}
        count = self._targets()
        for index in range(1, count + 1):
            if self._stop.is_set():
                break
            with self._lock:
                started = self._stamp_locked(index)
            healthy = self._safe_check(index)
            with self._lock:
                if started != self._stamp_locked(index):
                    continue
                flipped = self._record_locked(index, healthy)
            recorded[index] = healthy
            if flipped:
                self._notify(index, healthy)
        self._rounds += 1
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

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._stop.is_set()

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

    def __repr__(self) -> str:
        return f"HealthMonitor(name={self._name!r}, interval={self._interval!r})"


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
