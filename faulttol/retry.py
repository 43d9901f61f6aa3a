"""Retry: run a failed call again, with exponential backoff and optional jitter.

A :class:`Retry` runs the first attempt as a plain call inside ``try``/``except``, so a call
that succeeds pays almost nothing for being retryable. Only after a first failure that is to
be retried does it hand over to tenacity: tenacity's exponential wait, its stop strategy and
its ``Retrying``/``AsyncRetrying`` loop run the remaining attempts, sleeping through the
injected clock (so :class:`faulttol.testing.FakeClock` drives backoff in tests).

Semantics follow resilience4j: ``max_attempts`` counts the first call; the wait after the n-th
failed attempt is ``wait_duration * backoff_multiplier ** (n - 1)``, capped by
``max_wait_duration``; ``jitter`` is a randomization factor (the wait is multiplied by a
uniform factor in ``[1 - jitter, 1 + jitter]``, then capped again). An exception matching
``ignore_exceptions`` is never retried (ignore wins), ``retry_on_exception`` decides instead of
``retry_exceptions`` when given, and ``retry_on_result(result)`` being true asks for a retry.
When attempts run out the last exception is re-raised unchanged; for a result-based retry the
last result is returned, or :class:`MaxRetriesExceededError` raised when
``fail_after_max_attempts`` is set.

Only :class:`Exception` subclasses are ever caught: ``KeyboardInterrupt``, ``SystemExit`` and
``asyncio.CancelledError`` always propagate at once.
"""

from __future__ import annotations

import functools
import inspect
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar, cast

from tenacity import AsyncRetrying, DoAttempt, DoSleep, RetryCallState, Retrying
from tenacity.retry import retry_base
from tenacity.stop import stop_after_attempt
from tenacity.wait import wait_base, wait_exponential

from ._clock import Clock, resolve_clock
from .events import (
    RetryEvents,
    RetryOnErrorEvent,
    RetryOnIgnoredErrorEvent,
    RetryOnRetryEvent,
    RetryOnSuccessEvent,
)
from .validation import (
    check_bool,
    check_callable,
    check_config,
    check_exception_types,
    check_int,
    check_non_negative,
    check_number,
    check_str,
)

__all__ = [
    "DEFAULT_BACKOFF_MULTIPLIER",
    "DEFAULT_FAIL_AFTER_MAX_ATTEMPTS",
    "DEFAULT_IGNORE_EXCEPTIONS",
    "DEFAULT_JITTER",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_WAIT_DURATION",
    "DEFAULT_RETRY_EXCEPTIONS",
    "DEFAULT_WAIT_DURATION",
    "MaxRetriesExceededError",
    "Retry",
    "RetryConfig",
]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_ATTEMPTS: Final = 3
"""Attempts in all, the first call included."""
DEFAULT_WAIT_DURATION: Final = 0.5
"""Seconds to wait after the first failed attempt."""
DEFAULT_BACKOFF_MULTIPLIER: Final = 2.0
"""Each further wait is this many times the previous one."""
DEFAULT_MAX_WAIT_DURATION: Final[float | None] = None
"""Upper bound of one wait in seconds; ``None`` means no bound."""
DEFAULT_JITTER: Final = 0.0
"""Randomization factor: 0 means fixed waits."""
DEFAULT_RETRY_EXCEPTIONS: Final[tuple[type[BaseException], ...]] = (Exception,)
"""Exception types that are retried (unless ignored)."""
DEFAULT_IGNORE_EXCEPTIONS: Final[tuple[type[BaseException], ...]] = ()
"""Exception types that are never retried."""
DEFAULT_FAIL_AFTER_MAX_ATTEMPTS: Final = False
"""Whether a result-based retry raises when attempts run out (instead of returning)."""


class MaxRetriesExceededError(Exception):
    """A result-based retry ran out of attempts while ``fail_after_max_attempts`` was set.

    ``retry_name`` names the retry, ``attempts`` counts every attempt made and
    ``last_result`` is what the last attempt returned.
    """

    def __init__(self, retry_name: str, attempts: int, last_result: object) -> None:
        # The result itself stays out of the message (it may be large or sensitive).
        super().__init__(
            f"Retry '{retry_name}' exhausted {attempts} attempt(s); the last result "
            f"({type(last_result).__name__}) still asked for a retry"
        )
        self.retry_name = retry_name
        self.attempts = attempts
        self.last_result = last_result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.retry_name, self.attempts, self.last_result))


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How a :class:`Retry` decides whether, how often and how long to wait before retrying.

    Immutable. A value of the wrong kind (a string or a bool for a number, a non-exception
    in an exception list...) raises ``ConfigTypeError`` (a ``TypeError`` and a
    ``ValueError``); a value out of range (negative, NaN, infinite, a multiplier below 1, a
    jitter outside [0, 1]) raises ``ValueError``. Both name the field and what it allows.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Attempts in all, counting the first call (>= 1)."""
    wait_duration: float = DEFAULT_WAIT_DURATION
    """Seconds after the first failed attempt (>= 0)."""
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    """Wait n is ``wait_duration * backoff_multiplier ** (n - 1)`` (>= 1)."""
    max_wait_duration: float | None = DEFAULT_MAX_WAIT_DURATION
    """Cap of one wait in seconds (>= 0 and finite), or ``None`` for no cap."""
    jitter: float = DEFAULT_JITTER
    """Randomization factor in [0, 1]: the wait is scaled by U(1 - jitter, 1 + jitter)."""
    retry_exceptions: tuple[type[BaseException], ...] = DEFAULT_RETRY_EXCEPTIONS
    """Exception types that are retried."""
    ignore_exceptions: tuple[type[BaseException], ...] = DEFAULT_IGNORE_EXCEPTIONS
    """Exception types never retried; wins over everything else."""
    retry_on_exception: Callable[[BaseException], bool] | None = None
    """When given, decides instead of ``retry_exceptions`` (ignore still wins)."""
    retry_on_result: Callable[[Any], bool] | None = None
    """A result for which this returns true is retried."""
    fail_after_max_attempts: bool = DEFAULT_FAIL_AFTER_MAX_ATTEMPTS
    """Raise :class:`MaxRetriesExceededError` when a result-based retry runs out."""

    def __post_init__(self) -> None:
        check_int("max_attempts", self.max_attempts, minimum=1)
        check_non_negative("wait_duration", self.wait_duration, allowed="finite seconds >= 0")
        check_number(
            "backoff_multiplier",
            self.backoff_multiplier,
            minimum=1,
            allowed="a finite number >= 1",
        )
        if self.max_wait_duration is not None:
            check_non_negative(
                "max_wait_duration",
                self.max_wait_duration,
                allowed="finite seconds >= 0, or None for no cap",
            )
        check_number(
            "jitter", self.jitter, minimum=0, maximum=1, allowed="a randomization factor in [0, 1]"
        )
        for name in ("retry_exceptions", "ignore_exceptions"):
            object.__setattr__(self, name, check_exception_types(name, getattr(self, name)))
        for name in ("retry_on_exception", "retry_on_result"):
            check_callable(name, getattr(self, name))
        check_bool("fail_after_max_attempts", self.fail_after_max_attempts)


# --- tenacity strategies --------------------------------------------------------------------


class _BackoffWait(wait_base):
    """tenacity's exponential wait, scaled by a random factor, then capped."""

    def __init__(self, config: RetryConfig) -> None:
        cap = config.max_wait_duration
        if cap is None:
            self._exponential = wait_exponential(
                multiplier=config.wait_duration, exp_base=config.backoff_multiplier
            )
        else:
            self._exponential = wait_exponential(
                multiplier=config.wait_duration, exp_base=config.backoff_multiplier, max=cap
            )
        self._jitter = config.jitter
        self._cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = float(self._exponential(retry_state))
        jitter = self._jitter
        if jitter:
            wait *= random.uniform(1.0 - jitter, 1.0 + jitter)
            if self._cap is not None and wait > self._cap:
                wait = self._cap
        return wait


class _RetryPolicy(retry_base):
    """tenacity retry strategy: asks the owning :class:`Retry` about each outcome."""

    def __init__(self, owner: Retry) -> None:
        self._owner = owner

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None:  # pragma: no cover - tenacity always sets it first
            return False
        exc = outcome.exception()
        if exc is not None:
            return self._owner.is_retryable(exc)
        predicate = self._owner.config.retry_on_result
        return predicate is not None and bool(predicate(outcome.result()))


class _Exhausted:
    """Returned by the tenacity loop (as its retry_error_callback) when attempts ran out."""

    __slots__ = ()


_EXHAUSTED: Final = _Exhausted()


def _exhausted(retry_state: RetryCallState) -> _Exhausted:
    return _EXHAUSTED


# --- the retry ----------------------------------------------------------------------------


class Retry:
    """A named retry policy: ``.call(fn, ...)``, ``await .call_async(fn, ...)`` or a decorator.

    ``.events`` publishes ``on_retry`` (before each wait; ``attempt`` = failed attempts so
    far), ``on_success`` (a call succeeded after at least one retry), ``on_error`` (attempts
    ran out) and ``on_ignored_error`` (an exception that is not retried at all).
    """

    __slots__ = ("_clock", "_config", "_events", "_name", "_policy", "_stop", "_wait")

    def __init__(self, name: str, config: RetryConfig | None = None, *, clock: Clock | None = None):
        check_str("name", name)
        config = check_config("config", config, RetryConfig)
        self._name = name
        self._config = config
        self._clock: Clock = resolve_clock(clock)
        self._events = RetryEvents()
        self._wait = _BackoffWait(config)
        self._stop = stop_after_attempt(config.max_attempts)
        self._policy = _RetryPolicy(self)

    # -- properties ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The retry's name (used in events and errors)."""
        return self._name

    @property
    def config(self) -> RetryConfig:
        """The immutable configuration."""
        return self._config

    @property
    def clock(self) -> Clock:
        """The clock used for waits and event timestamps."""
        return self._clock

    @property
    def events(self) -> RetryEvents:
        """The event publisher (``on_retry``, ``on_success``, ``on_error``, ...)."""
        return self._events

    def __repr__(self) -> str:
        return f"Retry(name={self._name!r}, config={self._config!r})"

    # -- building blocks (also used by OrderedProvider's failover-aware loop) ---------------

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether an attempt that raised ``exc`` should be retried (ignore wins)."""
        config = self._config
        if config.ignore_exceptions and isinstance(exc, config.ignore_exceptions):
            return False
        if config.retry_on_exception is not None:
            return bool(config.retry_on_exception(exc))
        return isinstance(exc, config.retry_exceptions)

    def wait_for(self, attempt: int) -> float:
        """Seconds to wait after ``attempt`` failed attempts (tenacity's backoff plus jitter)."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt!r}")
        state = RetryCallState(cast(Any, None), None, (), {})
        state.attempt_number = attempt
        return self._wait(state)

    def record_retry(
        self,
        attempt: int,
        wait: float,
        exception: BaseException | None = None,
        result: object = None,
    ) -> None:
        """Publish ``on_retry``: ``attempt`` attempts failed, the next follows after ``wait``."""
        if self._events.wants(RetryOnRetryEvent):
            self._events.publish(
                RetryOnRetryEvent(
                    self._name,
                    created_at=self._clock.monotonic(),
                    attempt=attempt,
                    wait=wait,
                    exception=exception,
                    result=result,
                )
            )

    def record_success(self, attempts: int) -> None:
        """Publish ``on_success`` for a call that succeeded on attempt ``attempts`` (> 1)."""
        if self._events.wants(RetryOnSuccessEvent):
            self._events.publish(
                RetryOnSuccessEvent(
                    self._name, created_at=self._clock.monotonic(), attempts=attempts
                )
            )

    def record_error(
        self, attempts: int, exception: BaseException | None = None, result: object = None
    ) -> None:
        """Publish ``on_error``: attempts ran out after ``attempts`` attempts."""
        if self._events.wants(RetryOnErrorEvent):
            self._events.publish(
                RetryOnErrorEvent(
                    self._name,
                    created_at=self._clock.monotonic(),
                    attempts=attempts,
                    exception=exception,
                    result=result,
                )
            )

    def record_ignored(self, exception: BaseException) -> None:
        """Publish ``on_ignored_error``: ``exception`` is not retried."""
        if self._events.wants(RetryOnIgnoredErrorEvent):
            self._events.publish(
                RetryOnIgnoredErrorEvent(
                    self._name, created_at=self._clock.monotonic(), exception=exception
                )
            )

    # -- calling ---------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)``, retrying as configured."""
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            if not self.is_retryable(exc):
                self.record_ignored(exc)
                raise
            return self._retry_sync(fn, args, kwargs, exc, None)
        predicate = self._config.retry_on_result
        if predicate is not None and predicate(result):
            return self._retry_sync(fn, args, kwargs, None, result)
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)``, retrying as configured (waits use ``sleep_async``)."""
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            if not self.is_retryable(exc):
                self.record_ignored(exc)
                raise
            return await self._retry_async(fn, args, kwargs, exc, None)
        predicate = self._config.retry_on_result
        if predicate is not None and predicate(result):
            return await self._retry_async(fn, args, kwargs, None, result)
        return result

    def decorate(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Wrap ``fn`` (a plain or ``async def`` function) so every call is retried."""
        if not callable(fn):
            raise TypeError(f"Retry.decorate expects a callable, got {fn!r}")
        is_retryable = self.is_retryable
        record_ignored = self.record_ignored
        predicate = self._config.retry_on_result

        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)
            retry_async = self._retry_async

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    result = await afn(*args, **kwargs)
                except Exception as exc:
                    if not is_retryable(exc):
                        record_ignored(exc)
                        raise
                    return await retry_async(afn, args, kwargs, exc, None)
                if predicate is not None and predicate(result):
                    return await retry_async(afn, args, kwargs, None, result)
                return result

            return cast(Callable[P, T], async_wrapper)

        retry_sync = self._retry_sync

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not is_retryable(exc):
                    record_ignored(exc)
                    raise
                return retry_sync(fn, args, kwargs, exc, None)
            if predicate is not None and predicate(result):
                return retry_sync(fn, args, kwargs, None, result)
            return result

        return wrapper

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorator form of :meth:`decorate`."""
        return self.decorate(fn)

    # -- after the first failure: tenacity's loop --------------------------------------------

    def _on_before_sleep(self, retry_state: RetryCallState) -> None:
        if not self._events.wants(RetryOnRetryEvent):
            return
        outcome = retry_state.outcome
        action = retry_state.next_action
        wait = action.sleep if action is not None else 0.0
        if outcome is not None and outcome.failed:
            self.record_retry(retry_state.attempt_number, wait, exception=outcome.exception())
        else:
            result = outcome.result() if outcome is not None else None
            self.record_retry(retry_state.attempt_number, wait, result=result)

    def _start_state(
        self,
        retrying: Retrying | AsyncRetrying,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None,
        result: object,
    ) -> RetryCallState:
        """tenacity call state holding the outcome of the first attempt (already made)."""
        retrying.begin()
        state = RetryCallState(retrying, fn, args, kwargs)
        if exc is not None:
            state.set_exception((type(exc), exc, exc.__traceback__))
        else:
            state.set_result(result)
        return state

    def _finish(self, state: RetryCallState, outcome_value: object) -> Any:
        """Turn the tenacity loop's final value into our result, publishing events."""
        attempts = state.attempt_number
        if outcome_value is _EXHAUSTED:
            outcome = state.outcome
            assert outcome is not None
            last_exc = outcome.exception()
            if last_exc is not None:
                self.record_error(attempts, exception=last_exc)
                raise last_exc
            last_result = outcome.result()
            self.record_error(attempts, result=last_result)
            if self._config.fail_after_max_attempts:
                raise MaxRetriesExceededError(self._name, attempts, last_result)
            return last_result
        self.record_success(attempts)
        return outcome_value

    def _not_retried(self, state: RetryCallState, exc: BaseException) -> None:
        """The loop raised ``exc``: publish on_ignored_error if the attempt raised it."""
        outcome = state.outcome
        if outcome is not None and outcome.failed and outcome.exception() is exc:
            self.record_ignored(exc)

    def _retry_sync(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None,
        result: object,
    ) -> T:
        retrying = Retrying(
            sleep=self._clock.sleep,
            stop=self._stop,
            wait=self._wait,
            retry=self._policy,
            before_sleep=self._on_before_sleep,
            retry_error_callback=_exhausted,
        )
        state = self._start_state(retrying, fn, args, kwargs, exc, result)
        del exc, result
        while True:
            try:
                do = retrying.iter(state)
            except Exception as raised:
                self._not_retried(state, raised)
                raise
            if isinstance(do, DoAttempt):
                try:
                    value = fn(*args, **kwargs)
                except Exception:
                    state.set_exception(cast(Any, sys.exc_info()))
                else:
                    state.set_result(value)
            elif isinstance(do, DoSleep):
                state.prepare_for_next_attempt()
                self._clock.sleep(float(do))
            else:
                return cast(T, self._finish(state, do))

    async def _retry_async(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None,
        result: object,
    ) -> T:
        retrying = AsyncRetrying(
            sleep=self._clock.sleep_async,
            stop=self._stop,
            wait=self._wait,
            retry=self._policy,
            before_sleep=self._on_before_sleep,
            retry_error_callback=_exhausted,
        )
        state = self._start_state(retrying, fn, args, kwargs, exc, result)
        del exc, result
        while True:
            try:
                do: Any = retrying.iter(state)
                if inspect.isawaitable(do):  # tenacity >= 8.3: AsyncRetrying.iter is async
                    do = await do
            except Exception as raised:
                self._not_retried(state, raised)
                raise
            if isinstance(do, DoAttempt):
                try:
                    value = await fn(*args, **kwargs)
                except Exception:
                    state.set_exception(cast(Any, sys.exc_info()))
                else:
                    state.set_result(value)
            elif isinstance(do, DoSleep):
                state.prepare_for_next_attempt()
                await self._clock.sleep_async(float(do))
            else:
                return cast(T, self._finish(state, do))
