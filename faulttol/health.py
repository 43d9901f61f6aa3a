"""Generic health checking: probe policies and background monitors of N indexed targets.

A *check round* of one target runs up to ``probes`` probes and decides with a
:class:`HealthCheckPolicy` (all / a strict majority / any must pass). :func:`run_probes` and
:func:`run_probes_async` run one round; they share the decision logic (:class:`ProbeTally`,
public for checks that run their probes their own way), only the waiting and calling differ.

:class:`HealthMonitor` owns one daemon thread that, every ``interval`` seconds of its clock,
checks every target and reports flips of a target's health to ``on_change``;
:class:`AsyncHealthMonitor` does the same as one asyncio task, with checks that may be
coroutine functions, so it never blocks the event loop. Both keep their results the same way
(one shared bookkeeping class); only the waiting and calling differ. Targets are addressed by
their **1-based** index (the convention of :class:`faulttol.OrderedProvider`); the set of
targets is read afresh at every round, so targets may be added or removed while it runs.
Nothing here knows what a target is: the caller's ``check(index)`` does the real work.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ._clock import Clock, resolve_clock
from ._drive import Op, drive, drive_async
from ._health_monitor import DEFAULT_HEALTH_CHECK_INTERVAL, AsyncHealthMonitor, HealthMonitor

__all__ = [
    "DEFAULT_HEALTH_CHECK_INTERVAL",
    "DEFAULT_HEALTH_CHECK_POLICY",
    "DEFAULT_HEALTH_CHECK_PROBES",
    "DEFAULT_HEALTH_CHECK_PROBE_DELAY",
    "AsyncHealthMonitor",
    "HealthCheckPolicy",
    "HealthMonitor",
    "ProbeTally",
    "run_probes",
    "run_probes_async",
]

_log = logging.getLogger("faulttol.health")

DEFAULT_HEALTH_CHECK_PROBES = 3
"""Probes in one check round (redis-py's default)."""

DEFAULT_HEALTH_CHECK_PROBE_DELAY = 0.5
"""Seconds between two probes of one round (redis-py's default)."""


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


class ProbeTally:
    """Counts the probes of one check round and says when the round is decided.

    The decision logic of :func:`run_probes` and :func:`run_probes_async`, public for checks
    that run their probes their own way (e.g. one probe per node of a cluster)::

        tally = ProbeTally(HealthCheckPolicy.HEALTHY_MAJORITY, probes=3)
        tally.record(True)   # None: not decided yet
        tally.record(True)   # True: 2 of 3 passed, whatever the third says
    """

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

    def perform(wait: float | None) -> Any:
        return probe() if wait is None else waits_on.sleep(wait)

    return drive(_round(probes, policy, delay), perform)


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

    async def perform(wait: float | None) -> Any:
        return await (probe() if wait is None else waits_on.sleep_async(wait))

    return await drive_async(_round(probes, policy, delay), perform)


def _round(probes: int, policy: HealthCheckPolicy, delay: float) -> Op[float | None, bool]:
    """One check round, written once for :func:`run_probes` and :func:`run_probes_async`
    (see ``faulttol._drive``): yields ``None`` to have the probe run (and receives its
    result, or has its exception thrown in: a failed probe, logged), or the seconds to wait
    before the next probe; returns the round's verdict."""
    tally = ProbeTally(policy, probes)
    for attempt in range(probes):
        if attempt and delay:
            yield delay
        try:
            passed = bool((yield None))
        except Exception as exc:
            _log.debug("health probe raised %r", exc)
            passed = False
        outcome = tally.record(passed)
        if outcome is not None:
            return outcome
    raise AssertionError("unreachable: a round is always decided after its last probe")


