"""Chaos strategies (Polly's): inject faults, latency, fake outcomes or any behaviour into
calls, at a given rate, for tests and game days.

Each strategy decides per call whether to inject: when it is ``enabled`` (a bool, or a
zero-argument callable asked on every call, so chaos can be switched on and off at runtime
from a feature flag) and a random draw falls below ``injection_rate`` (0 never, 1 always).
Then:

* :class:`ChaosFault` raises its ``fault`` instead of running the call;
* :class:`ChaosLatency` sleeps ``latency`` seconds on its clock (``sleep_async`` for an
  asyncio caller, which never blocks the event loop), then runs the call;
* :class:`ChaosOutcome` returns its ``outcome`` instead of running the call;
* :class:`ChaosBehavior` runs its ``behavior`` (awaited when it returns an awaitable and the
  caller is asyncio), then runs the call.

``fault`` and ``outcome`` are a value or a zero-argument factory called on each injection
(an exception class is such a factory: it makes a fresh exception per call). Pass a seeded
``random.Random`` as ``random=`` for reproducible runs. Each strategy is a decorator (plain
and ``async def`` functions), has ``.call``/``.call_async``, an ``.events`` publisher
(``on_fault``, ``on_latency``, ``on_outcome``, ``on_behavior``) and goes into
``Decorators.with_chaos(strategy)``. An injection rate of 0 costs a call one comparison.

:meth:`ChaosStrategy.should_inject` and :meth:`ChaosStrategy.inject` are the two steps on
their own, for integrations that are not function calls (``faulttol_redis.chaos`` injects
chaos into a Redis connection with them).
"""

from __future__ import annotations

import functools
import inspect
import random as _random_module
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeAlias, TypeVar, cast

from ._clock import Clock
from ._component import Named, checked_name_and_clock
from ._decorating import wrap_calls
from ._errors import ConfigTypeError
from .events import Event, EventPublisher
from .validation import check_instance, check_non_negative, check_number, describe

__all__ = [
    "PROCEED",
    "ChaosBehavior",
    "ChaosEvent",
    "ChaosEvents",
    "ChaosFault",
    "ChaosLatency",
    "ChaosOnBehaviorEvent",
    "ChaosOnFaultEvent",
    "ChaosOnLatencyEvent",
    "ChaosOnOutcomeEvent",
    "ChaosOutcome",
    "ChaosStrategy",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
C = TypeVar("C", bound=Callable[..., Any])

_Enabled: TypeAlias = "bool | Callable[[], object]"
"""A switch: a bool, or a zero-argument callable asked on every call."""
_Random: TypeAlias = _random_module.Random
_Fault: TypeAlias = "BaseException | Callable[[], BaseException]"
"""An exception, or a zero-argument factory of one."""


class _Proceed:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PROCEED"


PROCEED: Final = _Proceed()
"""What :meth:`ChaosStrategy.inject` returns when the call should run (no outcome replaces
its result)."""


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChaosEvent(Event):
    """Base of chaos events; ``name`` is the strategy's name."""


@dataclass(frozen=True, slots=True)
class ChaosOnFaultEvent(ChaosEvent):
    """A fault is about to be raised instead of the call."""

    fault: BaseException | None = None


@dataclass(frozen=True, slots=True)
class ChaosOnLatencyEvent(ChaosEvent):
    """The call is delayed by ``latency`` seconds."""

    latency: float = 0.0


@dataclass(frozen=True, slots=True)
class ChaosOnOutcomeEvent(ChaosEvent):
    """``outcome`` is returned instead of running the call."""

    outcome: Any = None


@dataclass(frozen=True, slots=True)
class ChaosOnBehaviorEvent(ChaosEvent):
    """The behavior runs before the call."""


class ChaosEvents(EventPublisher[ChaosEvent]):
    """The ``.events`` of a chaos strategy: ``on_fault``, ``on_latency``, ``on_outcome``,
    ``on_behavior``, ``on_event`` (all). A strategy publishes only its own kind."""

    __slots__ = ()

    def on_fault(self, consumer: C) -> C:
        return self._on(ChaosOnFaultEvent, consumer)

    def on_latency(self, consumer: C) -> C:
        return self._on(ChaosOnLatencyEvent, consumer)

    def on_outcome(self, consumer: C) -> C:
        return self._on(ChaosOnOutcomeEvent, consumer)

    def on_behavior(self, consumer: C) -> C:
        return self._on(ChaosOnBehaviorEvent, consumer)


# --- the strategies ------------------------------------------------------------------------


def _check_enabled(value: object) -> bool | Callable[[], object]:
    if isinstance(value, bool) or callable(value):
        return cast("bool | Callable[[], object]", value)
    raise ConfigTypeError(
        f"enabled must be a bool or a zero-argument callable, got {describe(value)}"
    )


class ChaosStrategy(Named):
    """What every chaos strategy shares: when to inject (``injection_rate``, ``enabled``,
    ``random``), its name, clock and events, and the ways to apply it to calls.

    Every strategy takes ``injection_rate``, then its own argument (``fault``, ``latency``,
    ``outcome``, ``behavior``), then the keyword options ``enabled``, ``random``, ``name``
    and ``clock``.

    Subclasses say what an injection does (:meth:`inject`, :meth:`inject_async`).
    """

    __slots__ = ("_clock", "_enabled", "_events", "_name", "_random", "_rate")

    _default_name: str = "Chaos"

    def __init__(
        self,
        injection_rate: float,
        *,
        enabled: _Enabled = True,
        random: _Random | None = None,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._rate = check_number(
            "injection_rate", injection_rate, minimum=0, maximum=1, allowed="a rate in [0, 1]"
        )
        self._enabled = _check_enabled(enabled)
        if random is not None:
            check_instance("random", random, _random_module.Random, "a random.Random or None")
            self._random: Callable[[], float] = random.random
        else:
            self._random = _random_module.random
        self._name, self._clock = checked_name_and_clock(
            self._default_name if name is None else name, clock
        )
        self._events = ChaosEvents()

    # --- public state ----------------------------------------------------------------------

    @property
    def injection_rate(self) -> float:
        """The probability (0..1) that an enabled call gets the chaos."""
        return self._rate

    @property
    def enabled(self) -> bool | Callable[[], object]:
        """A bool, or the zero-argument callable asked on every call."""
        return self._enabled

    @property
    def events(self) -> ChaosEvents:
        """The event publisher."""
        return self._events

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, injection_rate={self._rate!r})"

    # --- the two steps -------------------------------------------------------------------

    def should_inject(self) -> bool:
        """Whether this call gets the chaos: enabled now, and a random draw below the rate
        (no draw at rate 0 or 1, nor when disabled)."""
        rate = self._rate
        if not rate:
            return False
        enabled = self._enabled
        if enabled is not True and not (callable(enabled) and enabled()):
            return False
        return rate >= 1.0 or self._random() < rate

    def inject(self) -> Any:
        """Apply the chaos now, for a sync caller: raise, sleep, run the behavior, or return
        the outcome that replaces the call's result (:data:`PROCEED`: run the call)."""
        raise NotImplementedError  # pragma: no cover - every strategy overrides it

    async def inject_async(self) -> Any:
        """Like :meth:`inject`, for an asyncio caller (sleeps with ``sleep_async``, awaits
        an awaitable behavior)."""
        return self.inject()

    def _emit(self, kind: type[ChaosEvent], **fields: Any) -> None:
        """Publish a ``kind`` event with ``fields`` when somebody listens for it."""
        if self._events.wants(kind):
            self._events.publish(kind(self._name, created_at=self._clock.monotonic(), **fields))

    # --- applying it to calls --------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` with the chaos."""
        if self.should_inject():
            outcome = self.inject()
            if outcome is not PROCEED:
                return cast(R, outcome)
        return fn(*args, **kwargs)

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` with the chaos."""
        if self.should_inject():
            outcome = await self.inject_async()
            if outcome is not PROCEED:
                return cast(T, outcome)
        return await fn(*args, **kwargs)

    def decorate(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``fn`` (a plain or ``async def`` function) so each call may get the chaos."""
        if not callable(fn):
            raise TypeError(f"{type(self).__name__} can only decorate a callable, got {fn!r}")
        rate = self._rate
        should_inject = self.should_inject
        if not rate or self._enabled is False:  # never injects (both are fixed): pass through
            return self._passthrough(fn)
        if inspect.iscoroutinefunction(fn):
            afn = cast("Callable[P, Awaitable[Any]]", fn)
            inject_async = self.inject_async

            @functools.wraps(fn)
            async def chaotic_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                if rate and should_inject():
                    outcome = await inject_async()
                    if outcome is not PROCEED:
                        return outcome
                return await afn(*args, **kwargs)

            return cast("Callable[P, R]", chaotic_async)

        inject = self.inject

        @functools.wraps(fn)
        def chaotic(*args: P.args, **kwargs: P.kwargs) -> R:
            if rate and should_inject():
                outcome = inject()
                if outcome is not PROCEED:
                    return cast(R, outcome)
            return fn(*args, **kwargs)

        return chaotic

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorator form of :meth:`decorate`."""
        return self.decorate(fn)

    @staticmethod
    def _passthrough(fn: Callable[P, R]) -> Callable[P, R]:
        return wrap_calls(fn, None, None)


class ChaosFault(ChaosStrategy):
    """Raise ``fault`` instead of running the call, at ``injection_rate``.

    ``fault`` is an exception (raised as is every time) or a zero-argument factory of one,
    such as an exception class or ``lambda: ConnectionError("chaos")`` (a fresh exception
    per injection: prefer it when calls run concurrently).
    """

    __slots__ = ("_fault",)
    _default_name = "Chaos.Fault"

    def __init__(
        self, injection_rate: float, fault: _Fault, *, enabled: _Enabled = True,
        random: _Random | None = None, name: str | None = None, clock: Clock | None = None,
    ) -> None:
        super().__init__(injection_rate, enabled=enabled, random=random, name=name, clock=clock)
        if not (isinstance(fault, BaseException) or callable(fault)):
            raise ConfigTypeError(
                f"fault must be an exception or a zero-argument factory of one, got "
                f"{describe(fault)}"
            )
        self._fault = fault

    @property
    def fault(self) -> BaseException | Callable[[], BaseException]:
        """The exception, or its factory."""
        return self._fault

    def make_fault(self) -> BaseException:
        """The exception the next injection raises (the factory's, or the value)."""
        fault = self._fault
        if isinstance(fault, BaseException):
            return fault
        made = fault()
        if not isinstance(made, BaseException):
            raise TypeError(
                f"{self._name}: the fault factory returned {describe(made)}, not an exception"
            )
        return made

    def inject(self) -> Any:
        fault = self.make_fault()
        self._emit(ChaosOnFaultEvent, fault=fault)
        raise fault.with_traceback(None)


class ChaosLatency(ChaosStrategy):
    """Delay the call by ``latency`` seconds (>= 0) on the clock, at ``injection_rate``; an
    asyncio caller waits with ``sleep_async`` and never blocks the event loop."""

    __slots__ = ("_latency",)
    _default_name = "Chaos.Latency"

    def __init__(
        self, injection_rate: float, latency: float, *, enabled: _Enabled = True,
        random: _Random | None = None, name: str | None = None, clock: Clock | None = None,
    ) -> None:
        super().__init__(injection_rate, enabled=enabled, random=random, name=name, clock=clock)
        self._latency = check_non_negative("latency", latency, allowed="finite seconds >= 0")

    @property
    def latency(self) -> float:
        """Seconds each injection waits."""
        return self._latency

    def inject(self) -> Any:
        self._emit(ChaosOnLatencyEvent, latency=self._latency)
        self._clock.sleep(self._latency)
        return PROCEED

    async def inject_async(self) -> Any:
        self._emit(ChaosOnLatencyEvent, latency=self._latency)
        await self._clock.sleep_async(self._latency)
        return PROCEED


class ChaosOutcome(ChaosStrategy):
    """Return ``outcome`` instead of running the call, at ``injection_rate``.

    ``outcome`` is a value, or a zero-argument factory called per injection (a callable is
    always taken for a factory: to return a function, give ``lambda: the_function``).
    """

    __slots__ = ("_outcome",)
    _default_name = "Chaos.Outcome"

    def __init__(
        self, injection_rate: float, outcome: Any, *, enabled: _Enabled = True,
        random: _Random | None = None, name: str | None = None, clock: Clock | None = None,
    ) -> None:
        super().__init__(injection_rate, enabled=enabled, random=random, name=name, clock=clock)
        self._outcome = outcome

    @property
    def outcome(self) -> Any:
        """The value, or its factory."""
        return self._outcome

    def make_outcome(self) -> Any:
        """The value the next injection returns (the factory's, or the value)."""
        outcome = self._outcome
        return outcome() if callable(outcome) else outcome

    def inject(self) -> Any:
        outcome = self.make_outcome()
        self._emit(ChaosOnOutcomeEvent, outcome=outcome)
        return outcome


class ChaosBehavior(ChaosStrategy):
    """Run ``behavior()`` (a zero-argument callable) before the call, at ``injection_rate``:
    e.g. kill a connection, fill a disk, flip a flag. For an asyncio caller an awaitable it
    returns is awaited. Its exceptions propagate (the call does not run then)."""

    __slots__ = ("_behavior",)
    _default_name = "Chaos.Behavior"

    def __init__(
        self, injection_rate: float, behavior: Callable[[], object], *, enabled: _Enabled = True,
        random: _Random | None = None, name: str | None = None, clock: Clock | None = None,
    ) -> None:
        super().__init__(injection_rate, enabled=enabled, random=random, name=name, clock=clock)
        if not callable(behavior):
            raise ConfigTypeError(
                f"behavior must be a zero-argument callable, got {describe(behavior)}"
            )
        self._behavior = behavior

    @property
    def behavior(self) -> Callable[[], object]:
        """The callable run before the call."""
        return self._behavior

    def inject(self) -> Any:
        self._emit(ChaosOnBehaviorEvent)
        self._behavior()
        return PROCEED

    async def inject_async(self) -> Any:
        self._emit(ChaosOnBehaviorEvent)
        result = self._behavior()
        if inspect.isawaitable(result):
            await result
        return PROCEED
