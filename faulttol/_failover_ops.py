"""What a failover provider does, written once as generators of I/O requests ("sans-I/O").

Each operation — the slow path of a call, a manual switch, startup, one target's health check,
failback, a removal, marking a target down — is a generator over a
:class:`~faulttol._failover.FailoverCore` that makes the decisions itself and *yields* an
:class:`IO` request wherever I/O is needed: call the target, probe it, run its health check,
sleep, run the ``before_reuse`` hook, deliver the queued switch events, raise. The sync
:class:`~faulttol.OrderedProvider` performs each request on the calling thread, the asyncio
:class:`~faulttol.AsyncOrderedProvider` awaits it; the result is sent back into the generator
(an exception is thrown into it), and the generator's return value is the operation's.

So the two providers share every line of logic; only their small ``_perform`` (how a request
is carried out) and the driving loop differ. Nothing here blocks, awaits or calls user code.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator
from dataclasses import KW_ONLY, dataclass
from typing import Any, TypeVar

from ._drive import drive, drive_async
from ._failover import FailoverCore
from ._failover_steps import Attempt, StepKind, next_step, on_recovered
from ._failover_types import Slot

__all__ = [
    "IO",
    "always_replay",
    "Kind",
    "Op",
    "check_target",
    "drive",
    "drive_async",
    "failback",
    "mark_unhealthy",
    "recover",
    "remove",
    "run",
    "set_active_index",
    "start_on_first_healthy",
]

T = TypeVar("T")
R = TypeVar("R")

MayReplay = Callable[[BaseException, tuple[Any, ...]], bool]


def always_replay(_exc: BaseException, _args: tuple[Any, ...]) -> bool:
    """The default ``may_replay``: every failed call may run again."""
    return True


@dataclass(slots=True, eq=False)
class IO:
    """One I/O request of an operation (see :class:`Kind`); only ``kind`` is positional."""

    kind: Kind
    _: KW_ONLY
    slot: Slot[Any] | None = None
    exc: BaseException | None = None
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    seconds: float = 0.0
    error: BaseException | None = None


class Kind(enum.Enum):
    """What an :class:`IO` request asks the provider to do."""

    CALL = "call"
    """Run ``fn(target, *args, **kwargs)`` (awaited on asyncio); send back its result."""
    PROBE = "probe"
    """Run the on-the-spot probe of ``slot`` after ``exc``; send back a bool (never raises)."""
    CHECK = "check"
    """Run the periodic health check of ``slot``; send back a bool (never raises)."""
    SLEEP = "sleep"
    """Wait ``seconds`` on the provider's clock."""
    REUSE = "reuse"
    """Run the ``before_reuse`` hook for ``slot``'s target."""
    DELIVER = "deliver"
    """Deliver the queued switch events to the listeners."""
    RAISE = "raise"
    """Raise ``error`` to the operation's caller (the operation ends)."""


DELIVER = IO(Kind.DELIVER)

Op = Generator[IO, Any, R]
"""An operation: yields requests, receives their results, returns its own."""


def run(core: FailoverCore[T], fn: Callable[..., Any], args: tuple[Any, ...],
        kwargs: dict[str, Any] | None, may_replay: MayReplay) -> Op[Any]:
    """A whole call: the first attempt on the active target, then :func:`recover`."""
    slot = core.state.slot
    exc: BaseException | None = None
    if slot.healthy is not False and slot.breaker.try_acquire_permission():
        ok, value = yield from _attempt(core, fn, slot, args, kwargs)
        if ok:
            return value
        exc = value
    return (yield from recover(core, fn, args, kwargs, may_replay, slot, exc))


def _attempt(core: FailoverCore[T], fn: Callable[..., Any], slot: Slot[T],
             args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> Op[tuple[bool, Any]]:
    """One attempt on ``slot`` (its breaker's permit taken): ``(True, result)`` or
    ``(False, exception)``, recorded on the breaker either way."""
    breaker = slot.breaker
    now = core.monotonic
    start = now()
    try:
        result = yield IO(Kind.CALL, fn=fn, slot=slot, args=args, kwargs=kwargs)
    except BaseException as exc:
        breaker.on_error(now() - start, exc)
        return False, exc
    breaker.on_result(now() - start, result)
    return True, result


def recover(core: FailoverCore[T], fn: Callable[..., Any], args: tuple[Any, ...],
            kwargs: dict[str, Any] | None, may_replay: MayReplay, slot: Slot[T],
            exc: BaseException | None) -> Op[Any]:
    """The slow path of a call whose attempt on ``slot`` failed with ``exc`` (recorded by the
    caller) or could not run (``exc`` None): the core's steps — retry after a wait, probe,
    fail over, raise — until an attempt succeeds. Switch events are delivered as they are
    made, before the call runs on the new target."""
    st = Attempt(slot, exc)
    while True:
        step = next_step(core, st, may_replay, args)
        if core.events:
            yield DELIVER
        kind = step.kind
        if kind is StepKind.PROBE:
            st.probed = True
            core.record_probe(st.slot, st.exc, (yield IO(Kind.PROBE, slot=st.slot, exc=st.exc)))
            continue
        if kind is StepKind.WAIT:
            yield IO(Kind.SLEEP, seconds=step.wait)
        elif kind is StepKind.RAISE:
            yield IO(Kind.RAISE, error=step.error)
        if not st.slot.breaker.try_acquire_permission():
            st.rejected()
            continue
        ok, value = yield from _attempt(core, fn, st.slot, args, kwargs)
        if not ok:
            st.failed(value)
            continue
        core.unavailable_since = None  # a target answered: a "none eligible" spell is over
        on_recovered(core, st)
        return value


def set_active_index(core: FailoverCore[T], index: int, force: bool) -> Op[None]:
    """A manual switch (see :meth:`faulttol.OrderedProvider.set_active_index`)."""
    slot = core.slot_at(index)
    if not force and core.probe_enabled:
        ok = yield IO(Kind.PROBE, slot=slot)
        core.set_health(slot, ok)
        if not ok:
            yield IO(Kind.RAISE, error=core.refuse_unhealthy(slot, index))
    if slot is not core.state.slot:
        yield IO(Kind.REUSE, slot=slot)
        core.close_breaker(slot)  # before it is active: no call meets the old OPEN state
        core.manual_switch(slot, index)
    yield DELIVER


def start_on_first_healthy(core: FailoverCore[T], prefer: int | None) -> Op[int]:
    """Startup: ``prefer`` if its probe passes, else the first target in strategy order that
    passes one (no event: nothing switched from the application's point of view)."""
    if prefer is not None:
        slot = core.slot_at(prefer)
        if (yield IO(Kind.PROBE, slot=slot)):
            core.start_on(slot)
            return prefer
    if core.probe_enabled:
        for slot in core.ranked(core.slots):
            ok = yield IO(Kind.PROBE, slot=slot)  # one probe: a start-up needs no full round
            if ok and slot.healthy is False:
                yield IO(Kind.REUSE, slot=slot)
            core.set_health(slot, ok)
            if ok:
                core.start_on(slot)
                break
    return core.index_of(core.state.slot)


def check_target(core: FailoverCore[T], index: int) -> Op[bool]:
    """A health monitor's check of target ``index``: run it and record it on the slot (a
    target back from unhealthy is made reusable before it is marked healthy, so before any
    call can choose it)."""
    slots = core.slots
    if not 1 <= index <= len(slots):
        return True
    slot = slots[index - 1]
    epoch = slot.health_epoch
    ok = yield IO(Kind.CHECK, slot=slot)
    if ok and slot.healthy is False:
        yield IO(Kind.REUSE, slot=slot)
    core.record_check(slot, ok, epoch)
    return bool(ok)


def health_changed(core: FailoverCore[T], index: int, healthy: bool) -> Op[None]:
    """A monitor saw target ``index``'s health flip: fail over from an unhealthy active one."""
    core.on_health_change(index, healthy)
    yield DELIVER


def failback(core: FailoverCore[T]) -> Op[None]:
    """Automatic failback, when due (at the end of every health-check round)."""
    found = core.failback_candidate()
    if found is not None:
        active, target = found
        # Made usable before it is active (no lock held: the breaker's listeners may use
        # the provider), then switched to if nothing changed meanwhile.
        yield IO(Kind.REUSE, slot=target)
        core.close_breaker(target)
        core.complete_failback(active, target)
    yield DELIVER


def remove(core: FailoverCore[T], index: int) -> Op[Slot[T]]:
    """Remove target ``index`` (the active one is switched away from first)."""
    slot = core.remove(index)
    yield DELIVER
    return slot


def mark_unhealthy(core: FailoverCore[T], slot: Slot[T], exc: BaseException | None) -> Op[None]:
    """``slot`` failed a probe: mark it down, fail over if it is active."""
    core.mark_unhealthy(slot, exc)
    yield DELIVER
