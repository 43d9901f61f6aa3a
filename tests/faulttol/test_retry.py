"""Tests for faulttol.retry: config, backoff schedule, predicates, events, sync and async."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import faulttol.retry as retry_module
from faulttol.events import (
    RetryEvent,
    RetryOnErrorEvent,
    RetryOnIgnoredErrorEvent,
    RetryOnRetryEvent,
    RetryOnSuccessEvent,
)
from faulttol.retry import (
    DEFAULT_BACKOFF_MULTIPLIER,
    DEFAULT_FAIL_AFTER_MAX_ATTEMPTS,
    DEFAULT_IGNORE_EXCEPTIONS,
    DEFAULT_JITTER,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_WAIT_DURATION,
    DEFAULT_RETRY_EXCEPTIONS,
    DEFAULT_WAIT_DURATION,
    MaxRetriesExceededError,
    Retry,
    RetryConfig,
)
from faulttol.testing import FakeClock


class Flaky:
    """Raises the given exceptions (or returns the given values) in turn, then ``final``."""

    def __init__(self, *outcomes: object, final: object = "ok") -> None:
        self.outcomes = list(outcomes)
        self.final = final
        self.calls = 0
        self.seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def _next(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
        self.calls += 1
        self.seen.append((args, kwargs))
        if self.outcomes:
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return self.final

    def __call__(self, *args: Any, **kwargs: Any) -> object:
        return self._next(args, kwargs)

    async def run_async(self, *args: Any, **kwargs: Any) -> object:
        await asyncio.sleep(0)
        return self._next(args, kwargs)


def recorder(retry: Retry) -> list[RetryEvent]:
    events: list[RetryEvent] = []
    retry.events.on_event(events.append)
    return events


# --- config ---------------------------------------------------------------------------------


def test_config_defaults_match_contract() -> None:
    config = RetryConfig()
    assert config.max_attempts == DEFAULT_MAX_ATTEMPTS == 3
    assert config.wait_duration == DEFAULT_WAIT_DURATION == 0.5
    assert config.backoff_multiplier == DEFAULT_BACKOFF_MULTIPLIER == 2.0
    assert config.max_wait_duration is DEFAULT_MAX_WAIT_DURATION is None
    assert config.jitter == DEFAULT_JITTER == 0.0
    assert config.retry_exceptions == DEFAULT_RETRY_EXCEPTIONS == (Exception,)
    assert config.ignore_exceptions == DEFAULT_IGNORE_EXCEPTIONS == ()
    assert config.retry_on_exception is None
    assert config.retry_on_result is None
    assert config.fail_after_max_attempts is DEFAULT_FAIL_AFTER_MAX_ATTEMPTS is False


def test_config_is_frozen() -> None:
    config = RetryConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_attempts = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", -3),
        ("wait_duration", -0.1),
        ("wait_duration", float("nan")),
        ("wait_duration", float("inf")),
        ("backoff_multiplier", 0.99),
        ("backoff_multiplier", 0),
        ("max_wait_duration", -1.0),
        ("jitter", -0.01),
        ("jitter", 1.01),
    ],
)
def test_config_out_of_range_raises_value_error_naming_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RetryConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 2.5),
        ("max_attempts", True),
        ("wait_duration", "1"),
        ("jitter", None),
        ("retry_exceptions", (int,)),
        ("retry_exceptions", "ValueError"),
        ("ignore_exceptions", (ValueError, 3)),
        ("retry_on_exception", 42),
        ("retry_on_result", "yes"),
        ("fail_after_max_attempts", 1),
    ],
)
def test_config_wrong_kind_raises_type_error_naming_field(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=field):
        RetryConfig(**{field: value})  # type: ignore[arg-type]


def test_config_boundaries_are_accepted() -> None:
    config = RetryConfig(
        max_attempts=1, wait_duration=0, backoff_multiplier=1, max_wait_duration=0, jitter=1
    )
    assert config.max_attempts == 1
    assert RetryConfig(jitter=0.0).jitter == 0.0


def test_config_normalizes_single_exception_type_and_lists() -> None:
    config = RetryConfig(retry_exceptions=ConnectionError, ignore_exceptions=[KeyError])  # type: ignore[arg-type]
    assert config.retry_exceptions == (ConnectionError,)
    assert config.ignore_exceptions == (KeyError,)


def test_retry_rejects_bad_name_and_config() -> None:
    with pytest.raises(TypeError, match="name"):
        Retry(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config"):
        Retry("r", {"max_attempts": 3})  # type: ignore[arg-type]


def test_retry_properties() -> None:
    clock = FakeClock()
    config = RetryConfig(max_attempts=4)
    retry = Retry("svc", config, clock=clock)
    assert retry.name == "svc"
    assert retry.config is config
    assert retry.clock is clock
    assert "svc" in repr(retry)
    assert Retry("d").config == RetryConfig()


# --- success path -----------------------------------------------------------------------------


def test_success_first_time_no_sleep_no_events() -> None:
    clock = FakeClock()
    retry = Retry("r", clock=clock)
    events = recorder(retry)
    fn = Flaky()
    assert retry.call(fn, 1, key="v") == "ok"
    assert fn.calls == 1
    assert fn.seen == [((1,), {"key": "v"})]
    assert clock.sleeps == []
    assert events == []


def test_success_path_does_not_touch_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("tenacity entered on the success path")

    monkeypatch.setattr(retry_module, "Retrying", boom)  # asyncio callers use it too
    monkeypatch.setattr(retry_module, "RetryCallState", boom)
    retry = Retry("r", RetryConfig(retry_on_result=lambda r: r is None))
    assert retry.call(lambda: 5) == 5
    assert retry.decorate(lambda: 6)() == 6

    async def coro() -> int:
        return 7

    assert asyncio.run(retry.call_async(coro)) == 7
    assert asyncio.run(retry.decorate(coro)()) == 7


def test_non_retryable_first_failure_does_not_touch_tenacity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("tenacity entered for a non-retryable exception")

    monkeypatch.setattr(retry_module, "Retrying", boom)
    retry = Retry("r", RetryConfig(retry_exceptions=(ConnectionError,)))
    with pytest.raises(KeyError):
        retry.call(Flaky(KeyError("k")))


# --- retry on exception -------------------------------------------------------------------------


def test_retry_on_exception_then_success() -> None:
    clock = FakeClock()
    retry = Retry("r", clock=clock)
    events = recorder(retry)
    errors = [ConnectionError("a"), ConnectionError("b")]
    fn = Flaky(*errors)
    assert retry.call(fn, "x") == "ok"
    assert fn.calls == 3
    assert fn.seen == [(("x",), {})] * 3
    assert clock.sleeps == [0.5, 1.0]
    assert [type(e) for e in events] == [RetryOnRetryEvent, RetryOnRetryEvent, RetryOnSuccessEvent]
    first, second, success = events
    assert isinstance(first, RetryOnRetryEvent) and isinstance(second, RetryOnRetryEvent)
    assert (first.attempt, first.wait, first.exception) == (1, 0.5, errors[0])
    assert (second.attempt, second.wait, second.exception) == (2, 1.0, errors[1])
    assert first.name == "r"
    assert first.created_at == 0.0 and second.created_at == 0.5
    assert isinstance(success, RetryOnSuccessEvent)
    assert success.attempts == 3
    assert success.created_at == 1.5


def test_exhausted_reraises_last_exception_unchanged() -> None:
    clock = FakeClock()
    retry = Retry("r", clock=clock)
    events = recorder(retry)
    last = ConnectionError("third")
    fn = Flaky(ConnectionError("1"), ConnectionError("2"), last)
    with pytest.raises(ConnectionError) as info:
        retry.call(fn)
    assert info.value is last
    assert info.value.__cause__ is None
    # the traceback still reaches the frame that raised it
    assert any(frame.name == "_next" for frame in info.traceback), "original raise frame missing"
    assert fn.calls == 3
    assert clock.sleeps == [0.5, 1.0]
    error = events[-1]
    assert isinstance(error, RetryOnErrorEvent)
    assert (error.attempts, error.exception, error.result) == (3, last, None)
    assert [type(e) for e in events].count(RetryOnRetryEvent) == 2


def test_default_backoff_schedule_doubles() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(max_attempts=6), clock=clock)
    with pytest.raises(OSError):
        retry.call(Flaky(*(OSError(i) for i in range(6))))
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_custom_backoff_and_max_wait_cap() -> None:
    clock = FakeClock()
    config = RetryConfig(
        max_attempts=5, wait_duration=1.0, backoff_multiplier=3.0, max_wait_duration=5.0
    )
    retry = Retry("r", config, clock=clock)
    with pytest.raises(OSError):
        retry.call(Flaky(*(OSError() for _ in range(5))))
    assert clock.sleeps == [1.0, 3.0, 5.0, 5.0]


def test_constant_backoff_with_multiplier_one_and_zero_wait() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(max_attempts=4, backoff_multiplier=1.0), clock=clock)
    with pytest.raises(OSError):
        retry.call(Flaky(*(OSError() for _ in range(4))))
    assert clock.sleeps == [0.5, 0.5, 0.5]
    clock2 = FakeClock()
    retry2 = Retry("r", RetryConfig(wait_duration=0), clock=clock2)
    assert retry2.call(Flaky(OSError(), OSError())) == "ok"
    assert clock2.sleeps == [0.0, 0.0]


def test_max_attempts_one_means_no_retry() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(max_attempts=1), clock=clock)
    events = recorder(retry)
    fn = Flaky(OSError("x"))
    with pytest.raises(OSError, match="x"):
        retry.call(fn)
    assert fn.calls == 1
    assert clock.sleeps == []
    assert len(events) == 1 and isinstance(events[0], RetryOnErrorEvent)
    assert events[0].attempts == 1


def test_jitter_stays_within_randomization_bounds() -> None:
    clock = FakeClock()
    config = RetryConfig(max_attempts=5, wait_duration=1.0, backoff_multiplier=2.0, jitter=0.5)
    retry = Retry("r", config, clock=clock)
    for _ in range(50):
        with pytest.raises(OSError):
            retry.call(Flaky(*(OSError() for _ in range(5))))
    assert len(clock.sleeps) == 200
    bases = [1.0, 2.0, 4.0, 8.0] * 50
    for sleep, base in zip(clock.sleeps, bases, strict=True):
        assert 0.5 * base <= sleep <= 1.5 * base
    assert len(set(clock.sleeps)) > 150  # really randomized


def test_jitter_result_is_capped_by_max_wait() -> None:
    config = RetryConfig(wait_duration=4.0, jitter=1.0, max_wait_duration=5.0)
    retry = Retry("r", config)
    waits = [retry.wait_for(1) for _ in range(300)]
    assert all(0.0 <= w <= 5.0 for w in waits)
    assert max(waits) == 5.0  # some draws above the cap were clipped to it
    assert min(waits) < 4.0


def test_wait_for_matches_schedule() -> None:
    retry = Retry("r")
    assert [retry.wait_for(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="attempt"):
        retry.wait_for(0)


@settings(max_examples=200, deadline=None)
@given(
    wait=st.floats(min_value=0, max_value=100),
    multiplier=st.floats(min_value=1, max_value=10),
    cap=st.none() | st.floats(min_value=0, max_value=1000),
    attempt=st.integers(min_value=1, max_value=12),
)
def test_wait_for_is_exponential_and_capped(
    wait: float, multiplier: float, cap: float | None, attempt: int
) -> None:
    retry = Retry(
        "r", RetryConfig(wait_duration=wait, backoff_multiplier=multiplier, max_wait_duration=cap)
    )
    expected = wait * multiplier ** (attempt - 1)
    if cap is not None:
        expected = min(expected, cap)
    assert retry.wait_for(attempt) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    wait=st.floats(min_value=0.001, max_value=100),
    jitter=st.floats(min_value=0, max_value=1),
    cap=st.none() | st.floats(min_value=0, max_value=1000),
    attempt=st.integers(min_value=1, max_value=10),
)
def test_jittered_wait_bounds(wait: float, jitter: float, cap: float | None, attempt: int) -> None:
    retry = Retry("r", RetryConfig(wait_duration=wait, jitter=jitter, max_wait_duration=cap))
    base = wait * 2.0 ** (attempt - 1)
    if cap is not None:
        base = min(base, cap)
    low, high = base * (1 - jitter), base * (1 + jitter)
    if cap is not None:
        high = min(high, cap)
        low = min(low, cap)
    got = retry.wait_for(attempt)
    assert low - 1e-9 <= got <= high + 1e-9


# --- which exceptions are retried -----------------------------------------------------------


def test_ignored_exception_is_not_retried() -> None:
    clock = FakeClock()
    config = RetryConfig(retry_exceptions=(LookupError,), ignore_exceptions=(KeyError,))
    retry = Retry("r", config, clock=clock)
    events = recorder(retry)
    exc = KeyError("k")
    fn = Flaky(exc)
    with pytest.raises(KeyError) as info:
        retry.call(fn)
    assert info.value is exc
    assert fn.calls == 1
    assert clock.sleeps == []
    assert len(events) == 1
    assert isinstance(events[0], RetryOnIgnoredErrorEvent)
    assert events[0].exception is exc
    # a sibling subclass of LookupError is retried
    assert retry.call(Flaky(IndexError())) == "ok"


def test_exception_outside_retry_exceptions_is_not_retried() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(retry_exceptions=(ConnectionError,)), clock=clock)
    events = recorder(retry)
    fn = Flaky(ValueError("v"))
    with pytest.raises(ValueError):
        retry.call(fn)
    assert fn.calls == 1
    assert clock.sleeps == []
    assert [type(e) for e in events] == [RetryOnIgnoredErrorEvent]


def test_non_retryable_exception_on_a_later_attempt_stops_the_loop() -> None:
    clock = FakeClock()
    retry = Retry(
        "r", RetryConfig(max_attempts=5, retry_exceptions=(ConnectionError,)), clock=clock
    )
    events = recorder(retry)
    fatal = ValueError("fatal")
    fn = Flaky(ConnectionError(), fatal)
    with pytest.raises(ValueError) as info:
        retry.call(fn)
    assert info.value is fatal
    assert fn.calls == 2
    assert clock.sleeps == [0.5]
    assert [type(e) for e in events] == [RetryOnRetryEvent, RetryOnIgnoredErrorEvent]
    assert isinstance(events[1], RetryOnIgnoredErrorEvent) and events[1].exception is fatal


def test_retry_on_exception_predicate_decides_instead_of_list() -> None:
    clock = FakeClock()
    config = RetryConfig(
        retry_exceptions=(KeyError,),
        retry_on_exception=lambda e: isinstance(e, ValueError) and "again" in str(e),
    )
    retry = Retry("r", config, clock=clock)
    assert retry.call(Flaky(ValueError("again"))) == "ok"
    assert clock.sleeps == [0.5]
    with pytest.raises(KeyError):  # listed in retry_exceptions, but the predicate decides
        retry.call(Flaky(KeyError()))
    with pytest.raises(ValueError, match="nope"):
        retry.call(Flaky(ValueError("nope")))
    assert clock.sleeps == [0.5]


def test_ignore_wins_over_predicate() -> None:
    retry = Retry(
        "r",
        RetryConfig(retry_on_exception=lambda e: True, ignore_exceptions=(KeyError,)),
        clock=FakeClock(),
    )
    fn = Flaky(KeyError())
    with pytest.raises(KeyError):
        retry.call(fn)
    assert fn.calls == 1
    assert retry.is_retryable(ValueError())
    assert not retry.is_retryable(KeyError())


def test_is_retryable_defaults() -> None:
    retry = Retry("r")
    assert retry.is_retryable(ConnectionError())
    assert retry.is_retryable(ValueError())
    assert not retry.is_retryable(KeyboardInterrupt())


def test_base_exceptions_propagate_immediately() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(retry_exceptions=(BaseException,)), clock=clock)
    events = recorder(retry)
    fn = Flaky(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        retry.call(fn)
    fn2 = Flaky(OSError(), KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        retry.call(fn2)
    assert fn.calls == 1 and fn2.calls == 2
    assert clock.sleeps == [0.5]
    assert [type(e) for e in events] == [RetryOnRetryEvent]


def test_error_in_user_predicate_propagates_without_ignored_event() -> None:
    def predicate(exc: BaseException) -> bool:
        if isinstance(exc, KeyError):
            raise RuntimeError("predicate broke")
        return True

    retry = Retry("r", RetryConfig(retry_on_exception=predicate), clock=FakeClock())
    events = recorder(retry)
    with pytest.raises(RuntimeError, match="predicate broke"):
        retry.call(Flaky(OSError(), KeyError()))
    assert [type(e) for e in events] == [RetryOnRetryEvent]


# --- retry on result ----------------------------------------------------------------------------


def test_result_predicate_retries_until_accepted() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(retry_on_result=lambda r: r is None), clock=clock)
    events = recorder(retry)
    fn = Flaky(None, None, final=42)
    assert retry.call(fn) == 42
    assert fn.calls == 3
    assert clock.sleeps == [0.5, 1.0]
    retries = [e for e in events if isinstance(e, RetryOnRetryEvent)]
    assert [(e.attempt, e.exception, e.result) for e in retries] == [
        (1, None, None),
        (2, None, None),
    ]
    assert isinstance(events[-1], RetryOnSuccessEvent) and events[-1].attempts == 3


def test_result_predicate_exhausted_returns_last_result() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(retry_on_result=lambda r: r < 10), clock=clock)
    events = recorder(retry)
    fn = Flaky(1, 2, 3, final=99)
    assert retry.call(fn) == 3
    assert fn.calls == 3
    error = events[-1]
    assert isinstance(error, RetryOnErrorEvent)
    assert (error.attempts, error.exception, error.result) == (3, None, 3)
    retried = [e.result for e in events if isinstance(e, RetryOnRetryEvent)]
    assert retried == [1, 2]


def test_fail_after_max_attempts_raises() -> None:
    clock = FakeClock()
    config = RetryConfig(
        max_attempts=4, retry_on_result=lambda r: r == "busy", fail_after_max_attempts=True
    )
    retry = Retry("orders", config, clock=clock)
    events = recorder(retry)
    fn = Flaky(final="busy")
    with pytest.raises(MaxRetriesExceededError) as info:
        retry.call(fn)
    err = info.value
    assert (err.retry_name, err.attempts, err.last_result) == ("orders", 4, "busy")
    assert str(err) == (
        "Retry 'orders' exhausted 4 attempt(s); the last result (str) still asked for a retry"
    )
    assert "busy" not in str(err)
    assert fn.calls == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert isinstance(events[-1], RetryOnErrorEvent) and events[-1].result == "busy"
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.retry_name, clone.attempts, clone.last_result) == ("orders", 4, "busy")


def test_fail_after_max_attempts_does_not_change_exception_exhaustion() -> None:
    retry = Retry("r", RetryConfig(fail_after_max_attempts=True), clock=FakeClock())
    last = OSError("last")
    with pytest.raises(OSError) as info:
        retry.call(Flaky(OSError(), OSError(), last))
    assert info.value is last


def test_mixed_exception_and_result_retries() -> None:
    clock = FakeClock()
    retry = Retry(
        "r", RetryConfig(max_attempts=4, retry_on_result=lambda r: r is None), clock=clock
    )
    fn = Flaky(OSError(), None, final="done")
    assert retry.call(fn) == "done"
    assert clock.sleeps == [0.5, 1.0]
    # exhausted on an exception after result retries: the exception is raised
    last = OSError("end")
    with pytest.raises(OSError) as info:
        retry.call(Flaky(None, None, None, last))
    assert info.value is last


# --- events -----------------------------------------------------------------------------------


def test_specific_event_consumers() -> None:
    retry = Retry("r", clock=FakeClock())
    retries: list[RetryOnRetryEvent] = []
    successes: list[RetryOnSuccessEvent] = []
    errors: list[RetryOnErrorEvent] = []
    ignored: list[RetryOnIgnoredErrorEvent] = []
    retry.events.on_retry(retries.append)
    retry.events.on_success(successes.append)
    retry.events.on_error(errors.append)
    retry.events.on_ignored_error(ignored.append)
    retry.call(Flaky(OSError()))
    assert len(retries) == 1 and len(successes) == 1 and not errors and not ignored
    with pytest.raises(OSError):
        retry.call(Flaky(OSError(), OSError(), OSError()))
    assert len(retries) == 3 and len(errors) == 1


def test_record_methods_publish_events() -> None:
    clock = FakeClock(10.0)
    retry = Retry("p", clock=clock)
    events = recorder(retry)
    exc = OSError()
    retry.record_retry(2, 1.5, exception=exc)
    retry.record_success(3)
    retry.record_error(4, result="r")
    retry.record_ignored(exc)
    assert events == [
        RetryOnRetryEvent("p", created_at=10.0, attempt=2, wait=1.5, exception=exc),
        RetryOnSuccessEvent("p", created_at=10.0, attempts=3),
        RetryOnErrorEvent("p", created_at=10.0, attempts=4, result="r"),
        RetryOnIgnoredErrorEvent("p", created_at=10.0, exception=exc),
    ]


def test_record_methods_build_nothing_without_listeners(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []

    class Spy:
        def __init__(self, *args: object, **kwargs: object) -> None:
            built.append(self)

    for name in (
        "RetryOnRetryEvent",
        "RetryOnSuccessEvent",
        "RetryOnErrorEvent",
        "RetryOnIgnoredErrorEvent",
    ):
        monkeypatch.setattr(retry_module, name, Spy)
    retry = Retry("r", clock=FakeClock())
    with pytest.raises(OSError):
        retry.call(Flaky(OSError(), OSError(), OSError()))
    with pytest.raises(KeyboardInterrupt):
        retry.call(Flaky(KeyboardInterrupt()))
    retry.record_ignored(OSError())
    assert built == []


def test_failing_event_consumer_does_not_break_the_call() -> None:
    retry = Retry("r", clock=FakeClock())

    def bad(event: object) -> None:
        raise RuntimeError("consumer")

    retry.events.on_retry(bad)
    assert retry.call(Flaky(OSError())) == "ok"


# --- decorator --------------------------------------------------------------------------------


def test_decorator_sync_keeps_metadata_and_retries() -> None:
    clock = FakeClock()
    retry = Retry("r", clock=clock)
    attempts: list[int] = []

    @retry
    def fetch(key: str, *, default: int = 0) -> str:
        """Fetch something."""
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError
        return f"{key}:{default}"

    assert fetch("a", default=3) == "a:3"
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch something."
    assert fetch.__wrapped__ is not None  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(fetch)
    assert clock.sleeps == [0.5]


def test_decorate_rejects_non_callable() -> None:
    retry = Retry("r")
    with pytest.raises(TypeError, match="callable"):
        retry.decorate(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        retry(None)  # type: ignore[arg-type]


def test_decorated_result_predicate_and_ignored() -> None:
    clock = FakeClock()
    retry = Retry(
        "r",
        RetryConfig(retry_on_result=lambda r: r == 0, ignore_exceptions=(KeyError,)),
        clock=clock,
    )
    fn = Flaky(0, final=5)
    wrapped = retry.decorate(fn)
    assert wrapped() == 5
    assert fn.calls == 2
    failing = retry.decorate(Flaky(KeyError()))
    with pytest.raises(KeyError):
        failing()
    assert clock.sleeps == [0.5]


# --- async ------------------------------------------------------------------------------------


async def test_async_call_retries_with_fake_clock() -> None:
    clock = FakeClock()
    retry = Retry("r", clock=clock)
    events = recorder(retry)
    fn = Flaky(ConnectionError(), ConnectionError())
    assert await retry.call_async(fn.run_async, 1, b=2) == "ok"
    assert fn.calls == 3
    assert fn.seen == [((1,), {"b": 2})] * 3
    assert clock.sleeps == [0.5, 1.0]
    assert [type(e) for e in events] == [RetryOnRetryEvent, RetryOnRetryEvent, RetryOnSuccessEvent]


async def test_async_exhaustion_reraises_same_exception() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(max_attempts=4), clock=clock)
    events = recorder(retry)
    last = TimeoutError("t")
    fn = Flaky(TimeoutError(), TimeoutError(), TimeoutError(), last)
    with pytest.raises(TimeoutError) as info:
        await retry.call_async(fn.run_async)
    assert info.value is last
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert isinstance(events[-1], RetryOnErrorEvent) and events[-1].attempts == 4


async def test_async_ignored_and_result_predicate() -> None:
    clock = FakeClock()
    config = RetryConfig(
        ignore_exceptions=(KeyError,),
        retry_on_result=lambda r: r is None,
        fail_after_max_attempts=True,
    )
    retry = Retry("r", config, clock=clock)
    events = recorder(retry)
    fn = Flaky(KeyError())
    with pytest.raises(KeyError):
        await retry.call_async(fn.run_async)
    assert fn.calls == 1
    assert [type(e) for e in events] == [RetryOnIgnoredErrorEvent]
    with pytest.raises(MaxRetriesExceededError):
        await retry.call_async(Flaky(final=None).run_async)
    assert await retry.call_async(Flaky(None, final=1).run_async) == 1
    assert clock.sleeps == [0.5, 1.0, 0.5]


async def test_async_later_non_retryable_exception() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(retry_exceptions=(OSError,)), clock=clock)
    events = recorder(retry)
    fatal = ValueError()
    with pytest.raises(ValueError) as info:
        await retry.call_async(Flaky(OSError(), fatal).run_async)
    assert info.value is fatal
    assert [type(e) for e in events] == [RetryOnRetryEvent, RetryOnIgnoredErrorEvent]


async def test_async_decorator() -> None:
    clock = FakeClock()
    retry = Retry("r", clock=clock)
    calls: list[int] = []

    @retry
    async def fetch(x: int) -> int:
        """Async fetch."""
        calls.append(x)
        if len(calls) < 3:
            raise OSError
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch" and fetch.__doc__ == "Async fetch."
    assert await fetch(21) == 42
    assert calls == [21, 21, 21]
    assert clock.sleeps == [0.5, 1.0]


async def test_async_cancellation_is_not_retried() -> None:
    retry = Retry("r", RetryConfig(retry_exceptions=(BaseException,)), clock=FakeClock())
    calls: list[int] = []

    async def slow() -> None:
        calls.append(1)
        await asyncio.Event().wait()

    task = asyncio.ensure_future(retry.call_async(slow))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == [1]


async def test_concurrent_async_calls_share_one_retry() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(max_attempts=4), clock=clock)
    flakies = [Flaky(*(OSError() for _ in range(i % 4)), final=i) for i in range(20)]
    results = await asyncio.gather(*(retry.call_async(f.run_async) for f in flakies))
    assert results == list(range(20))
    assert [f.calls for f in flakies] == [i % 4 + 1 for i in range(20)]
    schedule = [0.5, 1.0, 2.0]
    expected = [schedule[j] for i in range(20) for j in range(i % 4)]
    assert sorted(clock.sleeps) == sorted(expected)


def test_concurrent_threads_share_one_retry() -> None:
    clock = FakeClock()
    retry = Retry("r", RetryConfig(max_attempts=3), clock=clock)
    results: list[object] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        value = retry.call(Flaky(OSError(), OSError(), final=i))
        with lock:
            results.append(value)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(16))  # type: ignore[type-var]
    assert sorted(clock.sleeps) == [0.5] * 16 + [1.0] * 16


def _typed_use() -> None:
    """Compile-time check (mypy --strict) that decorate keeps the signature."""
    retry = Retry("r")

    def f(a: int, b: str = "") -> float:
        return 1.0

    g: Callable[[int, str], float] = retry.decorate(f)
    h: float = retry.call(f, 1, b="x")
    del g, h
