"""Retry: run a failed call again, with exponential backoff and optional jitter.

A :class:`Retry` runs the first attempt as a plain call inside ``try``/``except``, so a call
that succeeds pays almost nothing for being retryable. Only after a first failure that is to
be retried does it hand over to tenacity: tenacity's exponential wait, its stop strategy and
its ``Retrying`` decisions run the remaining attempts. That loop is written once, as a
generator of requests ("attempt", "sleep") run by a thin sync or asyncio driver
(``faulttol._drive``), sleeping through the injected clock (so
:class:`faulttol.testing.FakeClock` drives backoff in tests). The configuration
(:class:`RetryConfig` and its defaults) lives in ``faulttol._retry_config``, re-exported here.

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
from typing import Any, Final, ParamSpec, TypeVar, cast

from tenacity import DoAttempt, DoSleep, RetryCallState, Retrying
from tenacity.retry import retry_base
from tenacity.stop import stop_after_attempt
from tenacity.wait import wait_base, wait_exponential

from . import _retry_config
from ._clock import Clock
from ._component import Component, checked_setup
from ._drive import Op, drive, drive_async
from ._retry_config import *  # noqa: F403 - the configuration's public names, re-exported
from ._retry_config import RetryConfig
from .events import (
    RetryEvents,
    RetryOnErrorEvent,
    RetryOnIgnoredErrorEvent,
    RetryOnRetryEvent,
    RetryOnSuccessEvent,
)

__all__ = ["MaxRetriesExceededError", "Retry"]
__all__ += _retry_config.__all__  # the configuration's names, re-exported

P = ParamSpec("P")
T = TypeVar("T")

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


class Retry(Component[RetryConfig, RetryEvents]):
    """A named retry policy: ``.call(fn, ...)``, ``await .call_async(fn, ...)`` or a decorator.

    ``.events`` publishes ``on_retry`` (before each wait; ``attempt`` = failed attempts so
    far), ``on_success`` (a call succeeded after at least one retry), ``on_error`` (attempts
    ran out) and ``on_ignored_error`` (an exception that is not retried at all).
    """

    __slots__ = ("_clock", "_config", "_events", "_name", "_policy", "_stop", "_wait")

    def __init__(self, name: str, config: RetryConfig | None = None, *, clock: Clock | None = None):
        self._name, self._config, self._clock = checked_setup(name, config, RetryConfig, clock)
        config = self._config
        self._events = RetryEvents()
        self._wait = _BackoffWait(config)
        self._stop = stop_after_attempt(config.max_attempts)
        self._policy = _RetryPolicy(self)

    # -- properties ------------------------------------------------------------------------

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
    # The first attempt is a plain call (a success pays almost nothing for being retryable);
    # everything after a first failure, ignoring an exception included, is the retry loop's.

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)``, retrying as configured."""
        predicate = self._config.retry_on_result
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            return self._retry_sync(fn, args, kwargs, exc, None)
        if predicate is not None and predicate(result):
            return self._retry_sync(fn, args, kwargs, None, result)
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)``, retrying as configured (waits use ``sleep_async``)."""
        predicate = self._config.retry_on_result
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            return await self._retry_async(fn, args, kwargs, exc, None)
        if predicate is not None and predicate(result):
            return await self._retry_async(fn, args, kwargs, None, result)
        return result

    def decorate(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Wrap ``fn`` (a plain or ``async def`` function) so every call is retried."""
        if not callable(fn):
            raise TypeError(f"Retry.decorate expects a callable, got {fn!r}")
        predicate = self._config.retry_on_result
        # Written out for sync and asyncio: going through call() would add a frame per call.
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)
            retry_async = self._retry_async

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    result = await afn(*args, **kwargs)
                except Exception as exc:
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
                return retry_sync(fn, args, kwargs, exc, None)
            if predicate is not None and predicate(result):
                return retry_sync(fn, args, kwargs, None, result)
            return result

        return wrapper

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorator form of :meth:`decorate`."""
        return self.decorate(fn)

    # -- after the first attempt: tenacity's loop, written once --------------------------------

    def _retry_sync(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None,
        result: object,
    ) -> T:
        sleep = self._clock.sleep

        def perform(wait: float | None) -> Any:
            if wait is None:
                return fn(*args, **kwargs)
            return sleep(wait)

        return cast(T, drive(self._loop(fn, args, kwargs, exc, result), perform))

    async def _retry_async(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None,
        result: object,
    ) -> T:
        sleep_async = self._clock.sleep_async

        async def perform(wait: float | None) -> Any:
            if wait is None:
                return await fn(*args, **kwargs)
            return await sleep_async(wait)

        return cast(T, await drive_async(self._loop(fn, args, kwargs, exc, result), perform))

    def _loop(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None,
        result: object,
    ) -> Op[float | None, Any]:
        """The retry loop after the first attempt (whose outcome is ``exc`` or ``result``), as
        an operation for :func:`~faulttol._drive.drive`: it yields ``None`` to have one more
        attempt made (and receives its result, or has its exception thrown in), or the seconds
        to sleep before it. tenacity decides (its strategies are all synchronous, so its sync
        ``Retrying`` serves asyncio callers too); the clock sleeps.
        """
        if exc is not None and not self.is_retryable(exc):
            self.record_ignored(exc)
            raise exc  # never retried: tenacity is not even set up
        retrying = Retrying(
            stop=self._stop,
            wait=self._wait,
            retry=self._policy,
            before_sleep=self._on_before_sleep,
            retry_error_callback=_exhausted,
        )
        retrying.begin()
        state = RetryCallState(retrying, fn, args, kwargs)
        if exc is not None:
            state.set_exception((type(exc), exc, exc.__traceback__))
        else:
            state.set_result(result)
        del exc, result
        while True:
            try:
                do = retrying.iter(state)
            except Exception as raised:
                self._not_retried(state, raised)
                raise
            if isinstance(do, DoAttempt):
                try:
                    state.set_result((yield None))
                except Exception:
                    state.set_exception(cast(Any, sys.exc_info()))
            elif isinstance(do, DoSleep):
                state.prepare_for_next_attempt()
                yield float(do)
            else:
                return self._finish(state, do)

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
