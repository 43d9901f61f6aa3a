"""The slow path's small state machine: where one call stands (:class:`Attempt`) and what it
does next (:func:`next_step` returns a :class:`Step`: run, wait, probe or raise), decided over a
:class:`~faulttol._failover.FailoverCore` with no I/O. The operation that carries the steps out
is ``faulttol._failover_ops.recover``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._failover_types import Slot, SwitchReason
from .breaker import CallNotPermittedError

if TYPE_CHECKING:
    from ._failover import FailoverCore

__all__ = ["PROBE", "RUN", "Attempt", "Step", "StepKind", "next_step", "on_recovered"]

T = TypeVar("T")


def next_step(
    core: FailoverCore[T],
    st: Attempt[T],
    may_replay: Callable[[BaseException, tuple[Any, ...]], bool],
    args: tuple[Any, ...],
) -> Step:
    """Decide what a call whose attempt failed (or could not run) does next."""
    exc = st.exc
    if exc is None:
        # Not run yet on st.slot: it is unhealthy or its breaker rejected the call.
        active = core.state.slot
        if st.slot is not active and core.eligible(active):
            st.move_to(active)
            return RUN
        reason = (
            SwitchReason.HEALTH_CHECK
            if st.slot.healthy is False
            else SwitchReason.CIRCUIT_BREAKER
        )
        return _failover_step(core, st, reason)
    retry = core.retry
    max_attempts = retry.config.max_attempts
    if st.total_failures > max_attempts * len(core.slots):
        return _raise(exc)  # a bound on one call's work, whatever other threads do
    if isinstance(exc, CallNotPermittedError):
        return _failover_step(core, st, SwitchReason.CIRCUIT_BREAKER)
    retryable = retry.is_retryable(exc)
    fallback = isinstance(exc, core.fallback_exceptions)
    if not (retryable or fallback):
        core.unavailable_since = None  # the target answered (the caller's own error)
        return _raise(exc)
    replay = may_replay(exc, args)
    if not st.probed and core.probe_enabled:
        return PROBE
    if st.slot.healthy is False:
        # The probe failed: the target is down. Switch (for everybody), then replay here
        # only when that is safe.
        try:
            core.failover(st.slot, SwitchReason.HEALTH_CHECK, st.tried)
        except Exception as unavailable:
            return _raise(unavailable if replay else exc, cause=exc)
        if not replay:
            return _raise(exc)
        st.move_to(core.state.slot)
        return RUN
    if not replay:
        return _raise(exc)
    if retryable and st.failures < max_attempts:
        wait = retry.wait_for(st.failures)
        retry.record_retry(st.total_failures, wait, exception=exc)
        st.retries += 1
        active = core.state.slot
        if active is not st.slot and core.eligible(active):
            st.move_to(active)  # another thread switched: no need to wait
            return RUN
        return Step(StepKind.WAIT, wait=wait) if wait > 0 else RUN
    if retryable:
        retry.record_error(st.failures, exception=exc)
    if fallback:
        return _failover_step(core, st, SwitchReason.CIRCUIT_BREAKER)
    return _raise(exc)

def _failover_step(core: FailoverCore[T], st: Attempt[T], reason: SwitchReason) -> Step:
    try:
        slot = core.failover(st.slot, reason, st.tried)
    except Exception as unavailable:
        return _raise(unavailable, cause=st.exc)
    st.move_to(slot)
    return RUN

def on_recovered(core: FailoverCore[T], st: Attempt[T]) -> None:
    """The call succeeded after failures."""
    if st.retries:
        core.retry.record_success(st.retries + 1)


class StepKind(enum.Enum):
    RUN = "run"
    """Take a permit on ``Attempt.slot``'s breaker and run the call there."""
    WAIT = "wait"
    """Sleep ``Step.wait`` seconds, then run."""
    PROBE = "probe"
    """Probe ``Attempt.slot`` and record the outcome with :meth:`FailoverCore.record_probe`."""
    RAISE = "raise"
    """Raise ``Step.error``."""


class Step:
    __slots__ = ("error", "kind", "wait")

    def __init__(self, kind: StepKind, wait: float = 0.0,
                 error: BaseException | None = None) -> None:
        self.kind = kind
        self.wait = wait
        self.error: BaseException = error if error is not None else RuntimeError("no error")


RUN = Step(StepKind.RUN)
PROBE = Step(StepKind.PROBE)


def _raise(error: BaseException, cause: BaseException | None = None) -> Step:
    if cause is not None and error is not cause and error.__cause__ is None:
        error.__cause__ = cause
    return Step(StepKind.RAISE, error=error)


class Attempt(Generic[T]):
    """Where one call stands: the slot it runs on, its last failure, what was tried."""

    __slots__ = ("exc", "failures", "probed", "retries", "slot", "total_failures", "tried")

    def __init__(self, slot: Slot[T], exc: BaseException | None) -> None:
        self.slot = slot
        self.exc = exc
        self.tried: set[int] = {id(slot)}
        self.failures = 0 if exc is None else 1  # failed attempts on the current slot
        self.total_failures = self.failures
        self.retries = 0
        self.probed = False

    def failed(self, exc: BaseException) -> None:
        self.exc = exc
        self.failures += 1
        self.total_failures += 1

    def rejected(self) -> None:
        self.exc = None

    def move_to(self, slot: Slot[T]) -> None:
        if slot is not self.slot:
            self.slot = slot
            self.failures = 0
            self.probed = False
        self.exc = None
        self.tried.add(id(slot))
