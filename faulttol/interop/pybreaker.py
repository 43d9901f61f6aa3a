"""Interop with pybreaker: adapt a ``pybreaker.CircuitBreaker``, forward events to its listeners.

:class:`PyBreakerAdapter` puts an existing pybreaker breaker behind faulttol's low-level breaker
API, so it plugs into :class:`~faulttol.Decorators` (and anything else that takes a faulttol
breaker). The decisions stay pybreaker's: its state storage, ``fail_max``, ``reset_timeout``,
``success_threshold``, exclude list and listeners. What changes is that pybreaker's lock is
held for bookkeeping only, never across the protected call, so the adapter also guards
``async def`` functions (pybreaker itself only knows Tornado coroutines, and its ``call`` holds
its lock for the whole call). Because calls are no longer serialized by that lock, HALF_OPEN
admits one trial call at a time (pybreaker's "the next call is the trial call"); concurrent
calls are rejected until the trial finishes.

Differences from calling pybreaker directly, on purpose:

* a rejected call raises :class:`PyBreakerCallNotPermittedError`, which is both faulttol's
  :class:`~faulttol.CallNotPermittedError` and ``pybreaker.CircuitBreakerError``;
* the call that trips the breaker raises its own exception (not pybreaker's "Failures
  threshold reached" error), like every faulttol breaker; later calls are rejected;
* only :class:`Exception` subclasses are recorded; a ``KeyboardInterrupt`` or a cancellation
  gives back the permit and counts nothing.

:func:`forward_events` goes the other way: it forwards a faulttol breaker's state transitions,
failures and successes to ``pybreaker.CircuitBreakerListener`` objects.

:func:`adapt_breaker` is declared as faulttol's ``faulttol.breaker_adapters`` entry point: the
core finds it when it is given a ``pybreaker.CircuitBreaker`` where a breaker goes
(``Decorators.with_circuit_breaker``, a provider's ``circuit_breaker=[...]``) and adapts it,
without ever importing this module itself.

This is the only faulttol module that imports pybreaker.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, ParamSpec, TypeVar

import pybreaker

from .._clock import Clock, resolve_clock
from .._component import Named
from .._decorating import wrap_calls
from ..breaker import CallNotPermittedError, CircuitBreaker, State
from ..events import (
    CircuitBreakerOnErrorEvent,
    CircuitBreakerOnStateTransitionEvent,
    CircuitBreakerOnSuccessEvent,
)

__all__ = [
    "EventForwarding",
    "PyBreakerAdapter",
    "PyBreakerCallNotPermittedError",
    "RecordedResultError",
    "as_faulttol_breaker",
    "forward_events",
    "pybreaker_state_name",
]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_ADAPTER_NAME = "pybreaker"
"""Name of an adapter whose pybreaker breaker has no name."""

_STATE_FROM_PYBREAKER: dict[str, State] = {
    pybreaker.STATE_CLOSED: State.CLOSED,
    pybreaker.STATE_OPEN: State.OPEN,
    pybreaker.STATE_HALF_OPEN: State.HALF_OPEN,
}


class PyBreakerCallNotPermittedError(CallNotPermittedError, pybreaker.CircuitBreakerError):
    """A call rejected by an adapted pybreaker breaker.

    Catchable as faulttol's ``CallNotPermittedError`` and as ``pybreaker.CircuitBreakerError``.
    """


class PyBreakerAdapter(Named):
    """faulttol's low-level breaker API on top of a ``pybreaker.CircuitBreaker``.

    ``name`` is the pybreaker breaker's name (``"pybreaker"`` when it has none); ``state`` maps
    pybreaker's ``closed``/``open``/``half-open`` to :class:`~faulttol.State`. ``clock`` only
    measures call durations: pybreaker times its open state with its own wall clock.
    """

    __slots__ = ("_breaker", "_clock", "_name", "_trial")

    def __init__(self, breaker: pybreaker.CircuitBreaker, *, clock: Clock | None = None) -> None:
        if not isinstance(breaker, pybreaker.CircuitBreaker):
            raise TypeError(f"breaker must be a pybreaker.CircuitBreaker, got {breaker!r}")
        self._breaker = breaker
        self._clock: Clock = resolve_clock(clock)
        name = breaker.name
        self._name: str = DEFAULT_ADAPTER_NAME if name is None else str(name)
        # The half-open state object whose single trial call is in flight, if any.
        self._trial: object | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def breaker(self) -> pybreaker.CircuitBreaker:
        """The adapted pybreaker breaker."""
        return self._breaker

    @property
    def state(self) -> State:
        """pybreaker's current state as a :class:`~faulttol.State`."""
        return _STATE_FROM_PYBREAKER[self._breaker.current_state]

    def __repr__(self) -> str:
        return f"PyBreakerAdapter(name={self._name!r}, state={self.state.name})"

    # -- permission ----------------------------------------------------------------------------

    def try_acquire_permission(self) -> bool:
        """True when a call may run now; in half-open this takes the single trial permit."""
        breaker = self._breaker
        with breaker._lock:
            state = breaker.state
            if state.name == pybreaker.STATE_CLOSED:
                return True
            if state.name == pybreaker.STATE_OPEN:
                if not self._open_timeout_elapsed():
                    return False
                breaker.half_open()  # notifies pybreaker's listeners, like its own call path
                state = breaker.state
            if self._trial is state:
                return False
            self._trial = state
            return True

    def _open_timeout_elapsed(self) -> bool:
        """pybreaker's own rule (CircuitOpenState.before_call) for leaving the open state."""
        breaker = self._breaker
        opened_at = breaker._state_storage.opened_at
        if not opened_at:
            return True
        timeout = timedelta(seconds=breaker.reset_timeout)
        return bool(datetime.now(timezone.utc) >= opened_at + timeout)

    def acquire_permission(self) -> None:
        """Like :meth:`try_acquire_permission`, raising when refused."""
        if not self.try_acquire_permission():
            raise PyBreakerCallNotPermittedError(self._name)

    def release_permission(self) -> None:
        """Give back a permit taken for a call that did not happen."""
        with self._breaker._lock:
            self._trial = None

    # -- outcomes ------------------------------------------------------------------------------

    def on_success(self, duration: float) -> None:
        """Record a permitted call that returned (pybreaker's ``_handle_success``)."""
        breaker = self._breaker
        with breaker._lock:
            self._trial = None
            breaker.state._handle_success()

    def on_result(self, duration: float, result: object) -> None:
        """pybreaker has no result predicate: every result is a success."""
        self.on_success(duration)

    def on_error(self, duration: float, exc: BaseException) -> None:
        """Record a call that raised: pybreaker's exclude list makes it a success, else a failure.

        A failure that trips the breaker makes pybreaker raise from inside its state machine
        (its "threshold reached" error, or ``exc`` itself); the state change has happened by
        then, so that raise is absorbed here and the caller re-raises ``exc``.
        """
        breaker = self._breaker
        with breaker._lock:
            self._trial = None
            try:
                breaker.state._handle_error(exc, reraise=False)
            except pybreaker.CircuitBreakerError:
                pass
            except BaseException as raised:
                if raised is not exc:
                    raise

    # -- calling -------------------------------------------------------------------------------

    def _before_call(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.acquire_permission()
        breaker = self._breaker
        for listener in breaker.listeners:
            listener.before_call(breaker, fn, *args, **kwargs)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` if permitted and record the outcome."""
        self._before_call(fn, args, kwargs)
        start = self._clock.monotonic()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._raised(start, exc)
            raise
        self.on_success(self._clock.monotonic() - start)
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn`` if permitted and record the outcome; the lock is never held across it."""
        self._before_call(fn, args, kwargs)
        start = self._clock.monotonic()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._raised(start, exc)
            raise
        self.on_success(self._clock.monotonic() - start)
        return result

    def _raised(self, start: float, exc: BaseException) -> None:
        """A call started at ``start`` raised ``exc``: an ``Exception`` is recorded as an
        error; anything else (``KeyboardInterrupt``, a cancellation) only gives the
        permission back."""
        if isinstance(exc, Exception):
            self.on_error(self._clock.monotonic() - start, exc)
        else:
            self.release_permission()

    def decorate(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Wrap ``fn`` (a plain or ``async def`` function) with this breaker."""
        if not callable(fn):
            raise TypeError(f"PyBreakerAdapter.decorate expects a callable, got {fn!r}")
        return wrap_calls(fn, self.call, self.call_async)

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorator form of :meth:`decorate`."""
        return self.decorate(fn)

    # -- manual transitions ----------------------------------------------------------------------

    def transition_to_open_state(self) -> None:
        """Open the pybreaker breaker now."""
        self._breaker.open()

    def transition_to_half_open_state(self) -> None:
        """Half-open the pybreaker breaker now."""
        self._breaker.half_open()

    def transition_to_closed_state(self) -> None:
        """Close the pybreaker breaker now."""
        self._breaker.close()


def adapt_breaker(obj: object) -> PyBreakerAdapter | None:
    """A ``PyBreakerAdapter`` for a ``pybreaker.CircuitBreaker``, ``None`` for anything else:
    the adapter faulttol's core finds through the ``faulttol.breaker_adapters`` entry point, so
    a bare pybreaker breaker is accepted wherever faulttol takes a breaker."""
    return PyBreakerAdapter(obj) if isinstance(obj, pybreaker.CircuitBreaker) else None


def as_faulttol_breaker(obj: object) -> CircuitBreaker | PyBreakerAdapter:
    """Return ``obj`` as something with faulttol's breaker API.

    faulttol breakers and adapters are returned unchanged, a ``pybreaker.CircuitBreaker`` is
    wrapped in a :class:`PyBreakerAdapter`; anything else is a ``TypeError``.
    """
    if isinstance(obj, (CircuitBreaker, PyBreakerAdapter)):
        return obj
    if isinstance(obj, pybreaker.CircuitBreaker):
        return PyBreakerAdapter(obj)
    raise TypeError(
        "expected a faulttol CircuitBreaker, a PyBreakerAdapter or a pybreaker.CircuitBreaker, "
        f"got {obj!r}"
    )


# --- forwarding faulttol events to pybreaker listeners ---------------------------------------

_PYBREAKER_NAME: dict[State, str] = {
    State.CLOSED: pybreaker.STATE_CLOSED,
    State.OPEN: pybreaker.STATE_OPEN,
    State.HALF_OPEN: pybreaker.STATE_HALF_OPEN,
    # pybreaker knows three states; the others map to the one that behaves alike.
    State.FORCED_OPEN: pybreaker.STATE_OPEN,
    State.DISABLED: pybreaker.STATE_CLOSED,
    State.METRICS_ONLY: pybreaker.STATE_CLOSED,
}


def pybreaker_state_name(state: State) -> str:
    """pybreaker's name for the state that behaves like ``state``.

    ``FORCED_OPEN`` is ``'open'``; ``DISABLED`` and ``METRICS_ONLY`` are ``'closed'``.
    """
    return _PYBREAKER_NAME[state]


class RecordedResultError(Exception):
    """Passed to ``listener.failure`` when a result (not an exception) was recorded as failure."""

    def __init__(self, result: object) -> None:
        super().__init__(f"result recorded as a failure: {result!r}")
        self.result = result


class _StateView:
    """What a pybreaker listener's ``state_change`` gets as old/new state: ``.name``."""

    __slots__ = ("name", "state")

    def __init__(self, state: State) -> None:
        self.name = pybreaker_state_name(state)
        self.state = state

    def __repr__(self) -> str:
        return f"<state {self.name} ({self.state.name})>"


class _BreakerView:
    """What a pybreaker listener gets as ``cb``: ``name``, ``current_state`` and ``breaker``."""

    __slots__ = ("breaker",)

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    @property
    def name(self) -> str:
        return self.breaker.name

    @property
    def current_state(self) -> str:
        return pybreaker_state_name(self.breaker.state)

    def __repr__(self) -> str:
        return f"<faulttol breaker {self.name!r} ({self.current_state})>"


class EventForwarding:
    """Handle returned by :func:`forward_events`; :meth:`stop` ends the forwarding.

    The consumers stay registered on the breaker's publisher (it has no removal) but do
    nothing once stopped.
    """

    __slots__ = ("_active", "_lock", "_view", "listeners")

    def __init__(self, breaker: CircuitBreaker, listeners: tuple[Any, ...]) -> None:
        self.listeners = listeners
        self._view = _BreakerView(breaker)
        self._active = True
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether events are still forwarded."""
        return self._active

    def stop(self) -> None:
        """Stop forwarding (idempotent)."""
        with self._lock:
            self._active = False

    def __enter__(self) -> EventForwarding:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _on_transition(self, event: CircuitBreakerOnStateTransitionEvent) -> None:
        if not self._active or event.from_state is None or event.to_state is None:
            return
        old, new = _StateView(event.from_state), _StateView(event.to_state)
        if old.name == new.name:  # e.g. CLOSED -> METRICS_ONLY: nothing a listener can see
            return
        for listener in self.listeners:
            listener.state_change(self._view, old, new)

    def _on_error(self, event: CircuitBreakerOnErrorEvent) -> None:
        if not self._active:
            return
        exc = event.exception
        if exc is None:
            exc = RecordedResultError(event.result)
        for listener in self.listeners:
            listener.failure(self._view, exc)

    def _on_success(self, event: CircuitBreakerOnSuccessEvent) -> None:
        if not self._active:
            return
        for listener in self.listeners:
            listener.success(self._view)


def forward_events(breaker: CircuitBreaker, *listeners: Any) -> EventForwarding:
    """Forward ``breaker``'s events to ``pybreaker.CircuitBreakerListener``-like objects.

    Each listener gets ``state_change(cb, old_state, new_state)`` (states carry pybreaker's
    names ``'closed'``/``'open'``/``'half-open'`` in ``.name``; a transition between two
    faulttol states with the same pybreaker name is not forwarded), ``failure(cb, exc)``
    (``exc`` is a :class:`RecordedResultError` for a result recorded as failure) and
    ``success(cb)``. ``cb`` is a small view with ``name``, ``current_state`` (pybreaker's name)
    and ``breaker``. Listener exceptions are logged by the event publisher, never raised.
    Returns an :class:`EventForwarding`; call its ``stop()`` to end forwarding.
    """
    if not isinstance(breaker, CircuitBreaker):
        raise TypeError(f"breaker must be a faulttol CircuitBreaker, got {breaker!r}")
    for listener in listeners:
        for method in ("state_change", "failure", "success"):
            if not callable(getattr(listener, method, None)):
                raise TypeError(f"listener {listener!r} has no callable {method}()")
    forwarding = EventForwarding(breaker, listeners)
    events = breaker.events
    events.on_state_transition(forwarding._on_transition)
    events.on_error(forwarding._on_error)
    events.on_success(forwarding._on_success)
    return forwarding
