"""The failover decision logic, once, with no I/O.

:class:`FailoverCore` holds the state of a failover provider — the targets' slots (target,
breaker, weight, last known health), the active slot, the provider's lock, the "no target is
eligible since" time and the ordered queue of switch events — and makes every decision:
eligibility and ranking, failover, manual switches, failback, health recording with the epochs
that make forced switches stick, and live changes. The next step of a call whose first attempt
failed is decided by ``faulttol._failover_steps.next_step`` over this core.

It never calls a target, sleeps, probes or runs a switch listener: it returns slots, steps and
events, and the two providers built on it by composition (:class:`faulttol.OrderedProvider`
for threads, :class:`faulttol.AsyncOrderedProvider` for asyncio) do the I/O. It does move
breakers (opening the one of a target left by failover, closing the one of a manual switch's
destination...), always outside its lock: a breaker's state-transition listeners may use the
provider.

The public types it works with (``Slot``, ``ActiveState``, ``SwitchEvent``...) are in
``faulttol._failover_types``; the operations the providers run as I/O requests (the slow path,
a manual switch, a health check...) in ``faulttol._failover_ops``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from ._failover_types import ActiveState, Slot, SwitchEvent, SwitchReason, TargetStatus
from ._provider_config import FailoverStrategy, ProviderConfig
from ._state import State
from .retry import Retry

__all__ = ["EventQueue", "FailoverCore"]

_log = logging.getLogger("faulttol.provider")

T = TypeVar("T")

_ADMITTING_STATES = frozenset({State.CLOSED, State.HALF_OPEN, State.DISABLED, State.METRICS_ONLY})


class _HealthBook(Protocol):
    """What the core tells a health monitor (either kind) about targets' health."""

    def mark_nowait(self, index: int, healthy: bool) -> bool: ...

    def forget(self, index: int) -> None: ...

    def remove(self, index: int) -> None: ...


_BreakerView = dict[int, tuple[bool, Any]]
"""id(slot) -> (its breaker would admit a call, its state), read outside the provider's lock."""


def _admits(breaker: Any) -> bool:
    """Whether ``breaker`` would admit a call now, without taking a permit or counting."""
    check = getattr(breaker, "is_call_permitted", None)
    if check is not None:
        return bool(check())
    return breaker.state in _ADMITTING_STATES


class EventQueue:
    """Switch events in the order the switches happened, and who is delivering them.

    Events are pushed under the provider's lock (so the queue keeps switch order). One caller
    at a time delivers: :meth:`claim` makes it the deliverer if nobody is, :meth:`pop` hands
    it the next event and ends its turn (returning ``None``) once none is left.
    """

    __slots__ = ("_delivering", "_events", "_lock")

    def __init__(self) -> None:
        self._events: deque[SwitchEvent] = deque()
        self._lock = threading.Lock()
        self._delivering = False

    def push(self, event: SwitchEvent) -> None:
        with self._lock:
            self._events.append(event)

    def claim(self) -> bool:
        """Become the deliverer, unless somebody is or nothing is queued."""
        with self._lock:
            if self._delivering or not self._events:
                return False
            self._delivering = True
            return True

    def pop(self) -> SwitchEvent | None:
        """The deliverer's next event; ``None`` (and the turn ends) when none is left."""
        with self._lock:
            if self._events:
                return self._events.popleft()
            self._delivering = False
            return None

    def release(self) -> None:
        """End the deliverer's turn early (it was interrupted)."""
        with self._lock:
            self._delivering = False

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def __bool__(self) -> bool:
        return bool(self._events)


class FailoverCore(Generic[T]):
    """The state and decisions of one failover provider (see the module docstring).

    ``noun`` names a target in messages and logs (``"database"`` for the Redis providers).
    ``health_check_enabled`` / ``probe_enabled`` say whether the provider has a periodic
    health check / an on-the-spot probe (the provider sets them); ``monitor`` is told about
    health results, removals and forced switches.
    """

    def __init__(
        self,
        slots: list[Slot[T]],
        config: ProviderConfig,
        retry: Retry,
        *,
        monotonic: Callable[[], float],
        unavailable_error: Callable[[bool, str], BaseException],
        name: str,
        noun: str,
        initial_index: int | None,
    ) -> None:
        self.slots = slots
        self.config = config
        self.retry = retry
        self.monotonic = monotonic
        self.unavailable_error = unavailable_error
        self.name = name
        self.noun = noun
        self.strategy = config.failover_strategy
        self.fallback_exceptions = config.fallback_exceptions
        self.failover_window = config.failover_timeout
        self.grace = config.effective_grace_period
        self.lock = threading.RLock()
        self.events = EventQueue()
        self.listeners: tuple[Callable[[SwitchEvent], object], ...] = ()
        self.unavailable_since: float | None = None
        self.last_failback_check = monotonic()
        self.health_check_enabled = False
        self.probe_enabled = False
        self.monitor: _HealthBook | None = None
        if initial_index is not None:
            self.check_index(initial_index)
            first = slots[initial_index - 1]
        else:
            first = self.ranked(slots)[0]
        self.state: ActiveState[T] = ActiveState(first)

    # ----------------------------------------------------------------------------- queries

    @property
    def active(self) -> Slot[T]:
        return self.state.slot

    def index_of(self, slot: Slot[T]) -> int:
        """``slot``'s 1-based index; 0 once it was removed."""
        try:
            return self.slots.index(slot) + 1
        except ValueError:
            return 0

    def check_index(self, index: int) -> None:
        n = len(self.slots)
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= n:
            raise ValueError(f"index must be an integer in 1..{n}, got {index!r}")

    def slot_at(self, index: int) -> Slot[T]:
        self.check_index(index)
        return self.slots[index - 1]

    def status(self) -> list[TargetStatus]:
        active = self.state.slot
        return [
            TargetStatus(
                index=i,
                name=s.name,
                weight=s.weight,
                healthy=s.healthy is not False,
                breaker_state=s.breaker.state,
                breaker_metrics=getattr(s.breaker, "metrics", None),
                active=s is active,
            )
            for i, s in enumerate(list(self.slots), start=1)
        ]

    def describe(self, slot: Slot[T]) -> str:
        return f"{self.noun} {self.index_of(slot)} ({slot.name})"

    # ------------------------------------------------------------------------- eligibility

    def breaker_view(self) -> _BreakerView:
        """Every breaker's admission and state, read now, without the provider's lock.

        Reading a breaker applies the transitions time has made due and calls its listeners,
        which must not run under the lock: choices made under it use this view instead.
        """
        return {id(s): (_admits(s.breaker), s.breaker.state) for s in list(self.slots)}

    def eligible(self, slot: Slot[T], view: _BreakerView | None = None) -> bool:
        if slot.healthy is False:
            return False
        seen = view.get(id(slot)) if view is not None else None
        return seen[0] if seen is not None else _admits(slot.breaker)

    def ranked(self, slots: Iterable[Slot[T]]) -> list[Slot[T]]:
        items = list(slots)
        if self.strategy is FailoverStrategy.WEIGHTED:
            order = {id(s): i for i, s in enumerate(self.slots)}
            return sorted(items, key=lambda s: (-s.weight, order.get(id(s), 0)))
        return items  # config order

    def best_eligible(
        self, candidates: Iterable[Slot[T]], view: _BreakerView | None = None
    ) -> Slot[T] | None:
        ranked = self.ranked(candidates)
        for slot in ranked:
            if self.eligible(slot, view):
                return slot
        if self.health_check_enabled:
            # Nothing eligible by the strict rule: a target whose health check passed is used
            # even though its breaker's open wait has not elapsed.
            for slot in ranked:
                if slot.healthy is True and _state(slot, view) is not State.FORCED_OPEN:
                    return slot
        return None

    # -------------------------------------------------------------------------- switching

    def publish_locked(self, event: SwitchEvent) -> None:
        """Queue ``event`` for the listeners (lock held: the queue keeps switch order)."""
        self.events.push(event)

    def switch_locked(self, slot: Slot[T], reason: SwitchReason) -> SwitchEvent:
        """Make ``slot`` active and queue the event (lock held; the provider delivers)."""
        previous = self.state.slot
        self.state.slot = slot
        self.unavailable_since = None
        event = SwitchEvent(self.index_of(previous), self.index_of(slot), reason)
        self.publish_locked(event)
        return event

    def start_on(self, slot: Slot[T]) -> None:
        """Startup: ``slot`` just passed a probe; make it active without an event."""
        self.set_health(slot, True)
        with self.lock:
            self.state.slot = slot

    def failover(self, from_slot: Slot[T], reason: SwitchReason, tried: set[int],
                 *, for_call: bool = True) -> Slot[T]:
        """Switch away from ``from_slot`` to the best eligible target not yet ``tried``.

        Returns the slot to run on next; raises the "unavailable" error when there is none.
        Breaker states are read, and breakers moved, outside the lock (their listeners may
        use the provider): a destination that needs a trial is moved to HALF_OPEN before it
        becomes active, the target left has its breaker opened after the switch. The
        provider delivers the queued event. ``for_call=False`` (a health check or a probe
        outside any call): finding no target does not start the "unavailable" clock.
        """
        prepared: set[int] = set()
        while True:
            view = self.breaker_view()
            with self.lock:
                current = self.state.slot
                if (
                    current is not from_slot
                    and id(current) not in tried
                    and self.eligible(current, view)
                ):
                    return current  # another thread already failed over
                candidates = [s for s in self.slots if id(s) not in tried and s is not from_slot]
                chosen = self.best_eligible(candidates, view)
                if chosen is None:
                    raise self.unavailable_locked(for_call=for_call)
                if id(chosen) in prepared or not _needs_trial(chosen, view):
                    leaving = from_slot is current and chosen is not current
                    if chosen is not current:
                        self.switch_locked(chosen, reason)
                    break
            # The destination's breaker would reject: give it a trial, then choose again
            # (the world may have changed meanwhile).
            _prepare_destination(chosen)
            prepared.add(id(chosen))
        if leaving:
            self._open_left(from_slot)
        return chosen

    def _open_left(self, slot: Slot[T]) -> None:
        """A target left by failover has its breaker opened, whatever the reason: it is a
        destination again only after its open wait (or by failback)."""
        if slot is self.state.slot:
            return  # switched back to meanwhile (e.g. manually): leave it usable
        if slot.breaker.state in (State.CLOSED, State.HALF_OPEN):
            slot.breaker.transition_to_open_state()

    def unavailable_locked(self, *, for_call: bool = True) -> BaseException:
        """The "no target is eligible" error for now.

        The failover window starts at the first *call* that finds none (the contract) and
        lasts until a target is eligible again: a switch, a target turning healthy, or a
        call that succeeds (the providers clear ``unavailable_since``). A health check or a
        probe that finds none outside any call (``for_call=False``) does not start it: else
        a caller's first error after a quiet spell could already be the permanent one.
        """
        now = self.monotonic()
        since = self.unavailable_since
        if since is None:
            since = now
            if for_call:
                self.unavailable_since = now
        waited = now - since
        permanent = waited >= self.failover_window
        if permanent:
            msg = (
                f"{self.name}: no {self.noun} has been eligible for {waited:.1f}s "
                f"(limit {self.failover_window:g}s)"
            )
        else:
            msg = f"{self.name}: no {self.noun} is eligible at the moment; try again later"
        return self.unavailable_error(permanent, msg)

    @staticmethod
    def close_breaker(slot: Slot[T]) -> None:
        """Before a manual switch or failback to ``slot``: no call meets its old state."""
        if slot.breaker.state is not State.CLOSED:
            slot.breaker.transition_to_closed_state()

    def refuse_unhealthy(self, slot: Slot[T], index: int) -> ValueError:
        return ValueError(f"{self.noun} {index} ({slot.name}) is unhealthy; use force=True")

    def manual_switch(self, slot: Slot[T], index: int) -> None:
        """Switch to ``slot`` (reason MANUAL); its breaker was closed by the provider.

        Forgets an unhealthy mark and drops the results of health checks already running
        (the switch sticks until a call fails there or a later check fails).
        """
        with self.lock:
            if self.slots[index - 1] is not slot:
                raise ValueError(f"{self.noun} {index} changed while switching; try again")
            if slot is self.state.slot:
                return
            slot.health_epoch += 1
            if slot.healthy is False:
                slot.healthy = None
                slot.healthy_since = None
            if self.monitor is not None:
                self.monitor.forget(index)
            self.switch_locked(slot, SwitchReason.MANUAL)

    def failback_candidate(self) -> tuple[Slot[T], Slot[T]] | None:
        """At the end of a health-check round: ``(active, target)`` when automatic failback
        is due and a better-ranked target has been healthy for the grace period."""
        interval = self.config.auto_failback_interval
        if interval is None:
            return None
        now = self.monotonic()
        if now - self.last_failback_check < interval:
            return None
        self.last_failback_check = now
        view = self.breaker_view()
        with self.lock:
            active = self.state.slot
            for slot in self.ranked(self.slots):
                if slot is active:
                    return None
                if (
                    slot.healthy is True
                    and slot.healthy_since is not None
                    and now - slot.healthy_since >= self.grace
                    and _state(slot, view) is not State.FORCED_OPEN
                ):
                    return active, slot
        return None

    def complete_failback(self, active: Slot[T], target: Slot[T]) -> None:
        """Switch to ``target`` (reason FAILBACK) if nothing changed since it was chosen; its
        breaker was closed by the provider."""
        with self.lock:
            if self.state.slot is active and target.healthy is True and self.index_of(target):
                self.switch_locked(target, SwitchReason.FAILBACK)

    # ------------------------------------------------------------------- live reconfiguration

    def add(self, target: T, name: str | None, weight: float,
            new_breaker: Callable[[str], Any]) -> int:
        with self.lock:
            index = len(self.slots) + 1
            label = name or f"{self.noun}-{index}"
            slot = Slot(target, new_breaker(label), float(weight), label)
            self.slots = [*self.slots, slot]
        return index

    def remove(self, index: int) -> Slot[T]:
        """Remove target ``index``; the active one is switched away from first (see
        :meth:`faulttol.OrderedProvider.remove_target` for the events). The provider
        delivers them."""
        view = self.breaker_view()
        with self.lock:
            self.check_index(index)
            if len(self.slots) == 1:
                raise ValueError(f"cannot remove the last {self.noun}")
            slot = self.slots[index - 1]
            previous_index = self.index_of(self.state.slot)
            removing_active = slot is self.state.slot
            if removing_active:
                others = [s for s in self.slots if s is not slot]
                self.state.slot = self.best_eligible(others, view) or self.ranked(others)[0]
                self.unavailable_since = None
            self.slots = [s for s in self.slots if s is not slot]
            if self.monitor is not None:
                self.monitor.remove(index)
            new_index = self.index_of(self.state.slot)
            if removing_active or new_index != previous_index:
                self.publish_locked(SwitchEvent(previous_index, new_index, SwitchReason.MANUAL))
        return slot

    def set_weight(self, index: int, weight: float) -> None:
        with self.lock:
            self.check_index(index)
            self.slots[index - 1].weight = float(weight)

    # ------------------------------------------------------------------------------ health

    def set_health(self, slot: Slot[T], ok: bool) -> None:
        if ok and slot.healthy is not True:
            slot.healthy_since = self.monotonic()
            self.unavailable_since = None
        elif not ok:
            slot.healthy_since = None
        slot.healthy = ok

    def record_check(self, slot: Slot[T], ok: bool, epoch: int) -> bool:
        """Record a health-check result unless a manual switch to ``slot`` happened since the
        check started (``epoch``): then it is stale and dropped. Returns whether it was."""
        with self.lock:
            if slot.health_epoch != epoch or not self.index_of(slot):
                return False
            self.set_health(slot, ok)
            return True

    def on_health_change(self, index: int, healthy: bool) -> None:
        """The monitor saw target ``index``'s health flip (already recorded on its slot,
        unless dropped as stale: then the flip is ignored). An unhealthy active target is
        failed over from (reason HEALTH_CHECK); the provider delivers the event."""
        slots = self.slots
        if not 1 <= index <= len(slots):
            return
        slot = slots[index - 1]
        if (slot.healthy is not False) != healthy:
            return  # a stale result (a manual switch happened while it was computed)
        _log.info("%s: %s is %s", self.name, self.describe(slot),
                  "healthy" if healthy else "unhealthy")
        if not healthy and slot is self.state.slot:
            try:
                self.failover(slot, SwitchReason.HEALTH_CHECK, {id(slot)}, for_call=False)
            except Exception as exc:
                _log.warning("%s: %s is unhealthy and no other is eligible: %s",
                             self.name, self.describe(slot), exc)

    def record_probe(self, slot: Slot[T], exc: BaseException | None, ok: bool) -> None:
        """Record the on-the-spot probe of ``slot`` made after a call failed with ``exc``: a
        failed one marks it unhealthy (the monitor too, without a flip notification: the
        caller acts on it)."""
        if not ok:
            index = self.index_of(slot)
            if self.monitor is not None and index:
                self.monitor.mark_nowait(index, False)
            self.set_health(slot, False)
            _log.warning("%s: %s failed a probe after %r", self.name, self.describe(slot), exc)

    def mark_unhealthy(self, slot: Slot[T], exc: BaseException | None) -> None:
        """``slot`` failed a probe: mark it down and fail over if it is active (the provider
        delivers the event)."""
        self.record_probe(slot, exc, False)
        if slot is self.state.slot:
            try:
                self.failover(slot, SwitchReason.HEALTH_CHECK, {id(slot)}, for_call=False)
            except Exception as unavailable:
                _log.warning("%s: no %s to fail over to: %s", self.name, self.noun, unavailable)


def _state(slot: Slot[Any], view: _BreakerView | None) -> Any:
    seen = view.get(id(slot)) if view is not None else None
    return seen[1] if seen is not None else slot.breaker.state


def _needs_trial(slot: Slot[Any], view: _BreakerView) -> bool:
    seen = view.get(id(slot))
    if seen is None:
        return False
    admits, state = seen
    return not admits and state is State.OPEN


def _prepare_destination(slot: Slot[Any]) -> None:
    """A destination whose breaker would reject must get a trial: move it to HALF_OPEN."""
    if slot.breaker.state is State.OPEN and not _admits(slot.breaker):
        slot.breaker.transition_to_half_open_state()
