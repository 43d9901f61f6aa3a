"""faulttol.Hedge: Polly's hedging, sync (attempts on the hedge's threads) and asyncio (tasks).

Time is a FakeClock everywhere: a hedge starts when the *clock* says its delay is over, and
the tests (or the attempts themselves) advance it. Where a test must know that the waiting
caller has looked at the clock at a given time, it uses ``ObservedClock``, which lets the test
wait (on a condition, never a sleep) until the clock has been read again. Real-time waits in
these tests are only safety bounds on events that are set deterministically.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import math
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from faulttol import (
    CircuitBreaker,
    ConfigTypeError,
    Decorators,
    Hedge,
    HedgeConfig,
    HedgeMetrics,
    HedgeRegistry,
    RetryConfig,
)
from faulttol.events import HedgeOnHedgeEvent, HedgeOnSuccessEvent
from faulttol.hedge import (
    DEFAULT_DELAY,
    DEFAULT_MAX_HEDGED_ATTEMPTS,
    DEFAULT_SHOULD_HANDLE,
    MAX_HEDGED_ATTEMPTS_LIMIT,
)
from faulttol.registry import ConfigurationNotFoundError
from faulttol.testing import FakeClock, use_clock

SAFETY = 10.0
"""Real seconds after which a wait for something that must happen fails the test."""


class ObservedClock(FakeClock):
    """A FakeClock whose readers a test can wait for: ``wait_for_reads(n)`` returns once
    ``monotonic()`` has been called ``n`` more times (by the hedge's waiting caller)."""

    def __init__(self) -> None:
        super().__init__()
        self._reads = 0
        self._read = threading.Condition()

    def monotonic(self) -> float:
        with self._read:
            self._reads += 1
            self._read.notify_all()
        return super().monotonic()

    def wait_for_reads(self, n: int) -> None:
        with self._read:
            target = self._reads + n
            assert self._read.wait_for(lambda: self._reads >= target, timeout=SAFETY)


def _wait_until(condition: Callable[[], bool]) -> None:
    """Wait (real time, bounded by SAFETY) for another thread to reach a state."""
    deadline = threading.Event()
    for _ in range(int(SAFETY / 0.001)):
        if condition():
            return
        deadline.wait(0.001)
    raise AssertionError("condition not reached")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hedges() -> Iterator[Callable[..., Hedge]]:
    """Make hedges that are closed (their threads ended) when the test ends."""
    made: list[Hedge] = []

    def make(config: HedgeConfig | None = None, *, clock: Any = None, name: str = "h") -> Hedge:
        hedge = Hedge(name, config, clock=clock)
        made.append(hedge)
        return hedge

    yield make
    for hedge in made:
        hedge.close()


class Recorder:
    """Collects a hedge's events."""

    def __init__(self, hedge: Hedge) -> None:
        self.hedges: list[tuple[int, float]] = []
        self.successes: list[int] = []
        hedge.events.on_hedge(self._on_hedge)
        hedge.events.on_success(self._on_success)

    def _on_hedge(self, event: HedgeOnHedgeEvent) -> None:
        self.hedges.append((event.attempt, event.created_at))

    def _on_success(self, event: HedgeOnSuccessEvent) -> None:
        self.successes.append(event.attempt)


# --- configuration ---------------------------------------------------------------------------


def test_config_defaults_are_pollys() -> None:
    config = HedgeConfig()
    assert config.max_hedged_attempts == DEFAULT_MAX_HEDGED_ATTEMPTS == 1
    assert config.delay == DEFAULT_DELAY == 2.0
    assert config.delay_generator is None
    assert config.action_generator is None
    assert config.should_handle == DEFAULT_SHOULD_HANDLE == (Exception,)
    assert MAX_HEDGED_ATTEMPTS_LIMIT == 10


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("max_hedged_attempts", 0, ValueError, "max_hedged_attempts must be in 1..10, got 0"),
        ("max_hedged_attempts", 11, ValueError, "max_hedged_attempts must be in 1..10, got 11"),
        ("max_hedged_attempts", -1, ValueError, "max_hedged_attempts must be in 1..10"),
        ("max_hedged_attempts", 2.0, ConfigTypeError, "max_hedged_attempts must be an int"),
        ("max_hedged_attempts", True, ConfigTypeError, "max_hedged_attempts must be an int"),
        ("max_hedged_attempts", "2", ConfigTypeError, "max_hedged_attempts must be an int"),
        ("delay", -0.5, ValueError, "delay must be finite seconds >= 0, got -0.5"),
        ("delay", math.nan, ValueError, "delay must not be NaN"),
        ("delay", math.inf, ValueError, "delay must be finite seconds >= 0, got inf"),
        ("delay", 10**400, ValueError, "delay must be finite seconds >= 0"),
        ("delay", "2", ConfigTypeError, "delay must be a number"),
        ("delay", True, ConfigTypeError, "delay must be a number"),
        ("delay", None, ConfigTypeError, "delay must be a number"),
        ("delay_generator", 2.0, ConfigTypeError, "delay_generator must be a callable or None"),
        ("action_generator", "f", ConfigTypeError, "action_generator must be a callable or None"),
        ("should_handle", "ValueError", ConfigTypeError, "should_handle must be an exception"),
        ("should_handle", (ValueError, 3), ConfigTypeError, "should_handle must contain only"),
        ("should_handle", (int,), ConfigTypeError, "should_handle must contain only"),
        ("should_handle", None, ConfigTypeError, "should_handle must be an exception"),
    ],
)
def test_invalid_config_values_are_refused_naming_the_field(
    field: str, value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        HedgeConfig(**{field: value})
    assert message in str(raised.value)
    if error is ValueError:
        assert not isinstance(raised.value, TypeError)


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    [
        ("max_hedged_attempts", 1, 1),
        ("max_hedged_attempts", 10, 10),
        ("delay", 0, 0),
        ("delay", 0.25, 0.25),
        ("should_handle", ConnectionError, (ConnectionError,)),
        ("should_handle", [KeyError, TimeoutError], (KeyError, TimeoutError)),
        ("should_handle", (), ()),
    ],
)
def test_valid_config_values_are_kept(field: str, value: object, stored: object) -> None:
    assert getattr(HedgeConfig(**{field: value}), field) == stored


def test_config_is_immutable() -> None:
    config = HedgeConfig()
    with pytest.raises(AttributeError):
        config.delay = 1.0  # type: ignore[misc]


def test_hedge_arguments_are_checked() -> None:
    with pytest.raises(ConfigTypeError, match="name must be a str"):
        Hedge(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigTypeError, match="config must be a HedgeConfig or None"):
        Hedge("h", RetryConfig())  # type: ignore[arg-type]
    hedge = Hedge("h")
    assert hedge.config == HedgeConfig()
    assert hedge.name == "h"
    assert repr(hedge).startswith("Hedge(name='h', config=HedgeConfig(")


def test_the_default_clock_comes_from_use_clock() -> None:
    with use_clock(FakeClock()) as fake:
        hedge = Hedge("h")
    assert hedge.clock is fake


# --- sync semantics --------------------------------------------------------------------------


def test_a_call_that_succeeds_before_the_delay_starts_no_hedge(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    hedge = hedges(HedgeConfig(delay=2.0), clock=clock)
    events = Recorder(hedge)

    def fetch(key: str) -> str:
        clock.advance(1.5)  # slow, but not slow enough to be hedged
        return key.upper()

    assert hedge.call(fetch, "k") == "K"
    assert events.hedges == []
    assert events.successes == [0]
    assert hedge.metrics == HedgeMetrics(number_of_hedges=0, wins_by_attempt=(1, 0))


def test_the_hedge_starts_when_the_delay_has_elapsed_on_the_clock_and_not_before(
    hedges: Callable[..., Hedge],
) -> None:
    clock = ObservedClock()
    hedge = hedges(HedgeConfig(delay=2.0), clock=clock)
    events = Recorder(hedge)
    original_started, release_original = threading.Event(), threading.Event()
    calls = itertools.count()

    def fetch() -> str:
        if next(calls) == 0:
            original_started.set()
            release_original.wait(SAFETY)
            return "original"
        return "hedge"

    with ThreadPoolExecutor(1) as caller:
        result = caller.submit(hedge.call, fetch)
        assert original_started.wait(SAFETY)
        clock.wait_for_reads(2)  # the caller has computed when hedge 1 is due
        clock.advance(1.5)
        clock.wait_for_reads(2)  # ... and has looked at the clock at 1.5: too early
        assert events.hedges == []
        clock.advance(0.5)
        assert result.result(SAFETY) == "hedge"
    assert not release_original.is_set(), "the caller waited for the slow original"
    release_original.set()
    assert events.hedges == [(1, 2.0)]
    assert events.successes == [1]
    assert hedge.metrics == HedgeMetrics(number_of_hedges=1, wins_by_attempt=(0, 1))


def test_the_attempts_may_drive_the_clock_themselves(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    hedge = hedges(HedgeConfig(delay=2.0, max_hedged_attempts=2), clock=clock)
    events = Recorder(hedge)
    release = threading.Event()
    calls = itertools.count()

    def fetch() -> int:
        n = next(calls)
        if n < 2:
            clock.sleep(2.0)  # a FakeClock sleep advances the clock: this attempt is slow
            release.wait(SAFETY)
        return n

    try:
        assert hedge.call(fetch) == 2
    finally:
        release.set()
    assert events.hedges == [(1, 2.0), (2, 4.0)]
    assert events.successes == [2]


def test_a_handled_failure_starts_the_next_hedge_at_once(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    hedge = hedges(HedgeConfig(delay=60.0), clock=clock)
    events = Recorder(hedge)
    started_at: list[float] = []
    calls = itertools.count()

    def fetch() -> str:
        started_at.append(clock.monotonic())
        if next(calls) == 0:
            raise ConnectionError("reset")
        return "ok"

    assert hedge.call(fetch) == "ok"
    assert started_at == [0.0, 0.0]  # no waiting for the 60 s delay
    assert events.hedges == [(1, 0.0)]
    assert hedge.metrics == HedgeMetrics(number_of_hedges=1, wins_by_attempt=(0, 1))


def test_an_exception_not_handled_is_raised_at_once(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    config = HedgeConfig(delay=0, max_hedged_attempts=2, should_handle=(ConnectionError,))
    hedge = hedges(config, clock=clock)
    release = threading.Event()
    calls = itertools.count()

    def fetch() -> str:
        if next(calls) == 0:
            raise KeyError("missing")
        release.wait(SAFETY)  # the other attempts are still running when KeyError is raised
        return "late"

    try:
        with pytest.raises(KeyError, match="missing"):
            hedge.call(fetch)
        assert not release.is_set()
    finally:
        release.set()
    assert hedge.metrics.wins_by_attempt == (0, 0, 0)


def test_when_every_attempt_fails_the_last_failure_is_raised(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    hedge = hedges(HedgeConfig(delay=60.0, max_hedged_attempts=3), clock=clock)
    events = Recorder(hedge)
    calls = itertools.count()

    def fetch() -> None:
        raise ConnectionError(f"attempt {next(calls)}")

    with pytest.raises(ConnectionError, match="attempt 3"):
        hedge.call(fetch)
    assert [attempt for attempt, _ in events.hedges] == [1, 2, 3]
    assert events.successes == []
    assert hedge.metrics == HedgeMetrics(number_of_hedges=3, wins_by_attempt=(0, 0, 0, 0))


def test_a_delay_of_zero_starts_every_attempt_at_once(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    hedge = hedges(HedgeConfig(delay=0, max_hedged_attempts=3), clock=clock)
    events = Recorder(hedge)
    together = threading.Barrier(4, timeout=SAFETY)  # passes only if all 4 run at once
    release = threading.Event()
    calls = itertools.count()

    def fetch() -> int:
        n = next(calls)
        together.wait()
        if n != 2:
            release.wait(SAFETY)
        return n

    try:
        assert hedge.call(fetch) == 2
    finally:
        release.set()
    assert events.hedges == [(1, 0.0), (2, 0.0), (3, 0.0)]
    assert events.successes == [2]


def test_action_generator_is_asked_with_n_when_hedge_n_starts(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    asked: list[tuple[int, float]] = []

    def action(n: int) -> Callable[[str], str]:
        asked.append((n, clock.monotonic()))

        def run(key: str) -> str:
            if n == 1:
                clock.advance(1.0)
                raise TimeoutError("replica 1 timed out")
            return f"replica {n}: {key}"

        return run

    def original(key: str) -> str:
        clock.advance(5.0)
        raise ConnectionError("primary down")

    config = HedgeConfig(delay=60.0, max_hedged_attempts=2, action_generator=action)
    hedge = hedges(config, clock=clock)
    assert hedge.call(original, "k") == "replica 2: k"
    assert asked == [(1, 5.0), (2, 6.0)]


def test_action_generator_returning_none_stops_hedging(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    asked: list[int] = []

    def action(n: int) -> None:
        asked.append(n)
        return None

    def original() -> str:
        raise ConnectionError("primary down")

    config = HedgeConfig(delay=0, max_hedged_attempts=3, action_generator=action)
    hedge = hedges(config, clock=clock)
    with pytest.raises(ConnectionError, match="primary down"):
        hedge.call(original)
    assert asked == [1]
    assert hedge.metrics.number_of_hedges == 0


def test_delay_generator_is_asked_with_n_before_hedge_n(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    asked: list[tuple[int, float]] = []
    delays = {1: 5.0, 2: 1.0}

    def delay(n: int) -> float:
        asked.append((n, clock.monotonic()))
        return delays[n]

    hedge = hedges(HedgeConfig(max_hedged_attempts=2, delay_generator=delay), clock=clock)
    events = Recorder(hedge)
    release = threading.Event()
    calls = itertools.count()

    def fetch() -> int:
        n = next(calls)
        if n == 0:
            clock.advance(5.0)
            release.wait(SAFETY)
        elif n == 1:
            clock.advance(1.0)
            release.wait(SAFETY)
        return n

    try:
        assert hedge.call(fetch) == 2
    finally:
        release.set()
    assert asked == [(1, 0.0), (2, 5.0)]
    assert events.hedges == [(1, 5.0), (2, 6.0)]


def test_an_infinite_generated_delay_hedges_only_after_a_failure(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    actions: list[int] = []

    def action(n: int) -> Callable[[], str]:
        actions.append(n)
        return lambda: "hedge"

    config = HedgeConfig(delay_generator=lambda n: math.inf, action_generator=action)
    hedge = hedges(config, clock=clock)

    def slow() -> str:
        clock.advance(10**6)
        return "original"

    assert hedge.call(slow) == "original"
    assert actions == []

    def failing() -> str:
        clock.advance(10**6)
        raise ConnectionError("down")

    assert hedge.call(failing) == "hedge"
    assert actions == [1]


@pytest.mark.parametrize(
    ("generated", "error", "message"),
    [
        (-1.0, ValueError, "delay_generator(1) must return seconds >= 0 or math.inf, got -1.0"),
        (math.nan, ValueError, "delay_generator(1) must return seconds >= 0 or math.inf"),
        ("2", TypeError, "delay_generator(1) must return seconds"),
        (None, TypeError, "delay_generator(1) must return seconds"),
    ],
)
def test_a_bad_generated_delay_is_an_error_naming_the_generator(
    hedges: Callable[..., Hedge], clock: FakeClock, generated: object, error: type, message: str
) -> None:
    hedge = hedges(HedgeConfig(delay_generator=lambda n: generated), clock=clock)
    with pytest.raises(error) as raised:
        hedge.call(lambda: "x")
    assert message in str(raised.value)


def test_an_action_generator_returning_a_non_callable_is_a_type_error(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    hedge = hedges(HedgeConfig(delay=0, action_generator=lambda n: "nope"), clock=clock)
    release = threading.Event()
    try:
        with pytest.raises(TypeError, match=r"action_generator\(1\) must return a callable"):
            hedge.call(release.wait, SAFETY)
    finally:
        release.set()


def test_arguments_and_context_reach_every_attempt(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("r-1")
    seen: list[tuple[str, str, str]] = []
    calls = itertools.count()

    def fetch(key: str, *, region: str) -> str:
        seen.append((key, region, request_id.get()))
        if next(calls) == 0:
            raise ConnectionError
        return "ok"

    hedge = hedges(HedgeConfig(delay=60.0), clock=clock)
    assert hedge.call(fetch, "k", region="eu") == "ok"
    assert seen == [("k", "eu", "r-1"), ("k", "eu", "r-1")]


def test_attempts_run_on_threads_the_hedge_reuses(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    hedge = hedges(HedgeConfig(delay=60.0), clock=clock)
    assert hedge.threads == 0  # no thread before the first sync call
    caller = threading.get_ident()
    ran_on: set[int] = set()

    def fetch() -> None:
        ran_on.add(threading.get_ident())

    hedge.call(fetch)
    pool = hedge._pool
    assert pool is not None
    for _ in range(20):
        # The thread reports the outcome, then goes back to the idle list: wait for that
        # (a call arriving before it would rightly start a second thread).
        _wait_until(lambda: pool.idle_threads == pool.threads == 1)
        hedge.call(fetch)
    assert caller not in ran_on
    assert len(ran_on) == 1
    assert hedge.threads == 1


def test_close_ends_the_threads_and_refuses_later_calls(clock: FakeClock) -> None:
    with Hedge("closing", HedgeConfig(delay=60.0), clock=clock) as hedge:
        assert hedge.call(lambda: 1) == 1
        names = {t.name for t in threading.enumerate() if t.name.startswith("faulttol-hedge")}
        assert any(name.startswith("faulttol-hedge[closing]") for name in names)
    assert hedge.closed
    for thread in threading.enumerate():
        if thread.name.startswith("faulttol-hedge[closing]"):
            thread.join(SAFETY)
            assert not thread.is_alive()
    assert hedge.threads == 0
    with pytest.raises(RuntimeError, match="closed"):
        hedge.call(lambda: 1)
    hedge.close()  # idempotent


async def test_a_closed_hedge_refuses_async_calls_too(clock: FakeClock) -> None:
    hedge = Hedge("h", clock=clock)
    hedge.close()

    async def fetch() -> int:
        return 1

    with pytest.raises(RuntimeError, match="closed"):
        await hedge.call_async(fetch)


def test_listener_exceptions_are_logged_never_raised(
    hedges: Callable[..., Hedge], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    hedge = hedges(HedgeConfig(delay=0), clock=clock)

    @hedge.events.on_event
    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    release = threading.Event()
    calls = itertools.count()

    def fetch() -> int:
        n = next(calls)
        if n == 0:
            release.wait(SAFETY)
        return n

    with caplog.at_level(logging.ERROR, logger="faulttol.events"):
        try:
            assert hedge.call(fetch) == 1
        finally:
            release.set()
    logged = [r.getMessage() for r in caplog.records if r.name == "faulttol.events"]
    assert any("HedgeOnHedgeEvent" in m for m in logged)
    assert any("HedgeOnSuccessEvent" in m for m in logged)


def test_metrics_count_hedges_and_wins_by_attempt(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    hedge = hedges(HedgeConfig(delay=60.0, max_hedged_attempts=2), clock=clock)
    failures = {0: 0, 1: 1, 2: 2, 3: 1}  # call i: how many attempts fail before one succeeds
    for call in range(4):
        left = itertools.count()

        def fetch(fail: int = failures[call], left: Iterator[int] = left) -> str:
            if next(left) < fail:
                raise ConnectionError
            return "ok"

        hedge.call(fetch)
    metrics = hedge.metrics
    assert metrics.number_of_hedges == 0 + 1 + 2 + 1
    assert metrics.wins_by_attempt == (1, 2, 1)
    assert metrics.number_of_successful_calls == 4


# --- decorators ------------------------------------------------------------------------------


def test_the_decorator_keeps_the_signature_sync_and_async(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    hedge = hedges(HedgeConfig(delay=60.0), clock=clock)

    def fetch(key: str, *, region: str = "eu") -> str:
        """Fetch a key."""
        return f"{key}@{region}"

    async def afetch(key: str) -> str:
        return key

    decorated = hedge(fetch)
    assert inspect.signature(decorated) == inspect.signature(fetch)
    assert decorated.__name__ == "fetch" and decorated.__doc__ == "Fetch a key."
    assert decorated("k", region="us") == "k@us"
    adecorated = hedge.decorate(afetch)
    assert inspect.iscoroutinefunction(adecorated)
    assert inspect.signature(adecorated) == inspect.signature(afetch)
    assert asyncio.run(adecorated("k")) == "k"
    with pytest.raises(TypeError, match="expects a callable"):
        hedge.decorate(3)  # type: ignore[arg-type]


def test_decorators_with_hedge_runs_each_attempt_through_the_inner_layers(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    breaker = CircuitBreaker("inner", clock=clock)
    hedge = hedges(HedgeConfig(delay=60.0), clock=clock)
    calls = itertools.count()

    def fetch(key: str) -> str:
        if next(calls) == 0:
            raise ConnectionError
        return key

    guarded = Decorators.of(fetch).with_circuit_breaker(breaker).with_hedge(hedge).decorate()
    assert guarded("k") == "k"
    assert breaker.metrics.number_of_failed_calls == 1
    assert breaker.metrics.number_of_successful_calls == 1
    with pytest.raises(TypeError, match="with_hedge expects a faulttol Hedge"):
        Decorators.of(fetch).with_hedge(breaker)  # type: ignore[arg-type]


async def test_decorators_with_hedge_on_an_async_function(clock: FakeClock) -> None:
    hedge = Hedge("h", HedgeConfig(delay=60.0), clock=clock)
    calls = itertools.count()

    async def fetch(key: str) -> str:
        if next(calls) == 0:
            raise ConnectionError
        return key

    guarded = Decorators.of(fetch).with_hedge(hedge).decorate()
    assert inspect.iscoroutinefunction(guarded)
    assert await guarded("k") == "k"
    assert hedge.threads == 0  # asyncio attempts need no thread


def test_mypy_sees_the_original_signature(tmp_path: Path) -> None:
    """Hedge.decorate, the decorator and Decorators.with_hedge keep fn's signature."""
    source = textwrap.dedent(
        """
        from faulttol import Decorators, Hedge

        hedge = Hedge("t")

        @hedge
        def fetch(key: str, *, timeout: float = 1.0) -> int:
            return len(key)

        async def afetch(key: str) -> int:
            return len(key)

        ok: int = fetch("k", timeout=2.0)
        bad_arg = fetch(1)  # line 14
        built = Decorators.of(fetch).with_hedge(hedge).decorate()
        also: int = built("k")
        direct: int = hedge.call(fetch, "k")

        async def use() -> None:
            n: int = await hedge.decorate(afetch)("k")
            s: str = await hedge.call_async(afetch, "k")  # line 21
        """
    )
    target = tmp_path / "typed_hedge.py"
    target.write_text(source)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            str(root / "pyproject.toml"),
            str(target),
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        check=False,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert {line.split(":")[1] for line in errors} == {"14", "21"}, proc.stdout
    assert len(errors) == 2, proc.stdout


# --- asyncio ---------------------------------------------------------------------------------


def _other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def test_async_success_before_the_delay_starts_no_hedge(clock: FakeClock) -> None:
    hedge = Hedge("h", HedgeConfig(delay=2.0), clock=clock)
    events = Recorder(hedge)

    async def fetch(key: str) -> str:
        await clock.sleep_async(1.5)
        return key.upper()

    assert await hedge.call_async(fetch, "k") == "K"
    assert events.hedges == [] and events.successes == [0]
    assert _other_tasks() == set()


async def test_async_hedge_starts_after_the_delay_and_the_loser_is_cancelled(
    clock: FakeClock,
) -> None:
    hedge = Hedge("h", HedgeConfig(delay=2.0), clock=clock)
    events = Recorder(hedge)
    cancelled: list[int] = []
    calls = itertools.count()

    async def fetch() -> str:
        n = next(calls)
        if n == 0:
            await clock.sleep_async(2.0)  # slow: the clock reaches the hedge's due time
            try:
                await asyncio.Event().wait()  # never answers
            except asyncio.CancelledError:
                cancelled.append(n)
                raise
        return f"attempt {n}"

    assert await hedge.call_async(fetch) == "attempt 1"
    assert cancelled == [0]  # cancelled and awaited before call_async returned
    assert _other_tasks() == set()
    assert events.hedges == [(1, 2.0)] and events.successes == [1]
    assert hedge.metrics == HedgeMetrics(number_of_hedges=1, wins_by_attempt=(0, 1))


async def test_async_handled_failure_starts_the_next_hedge_at_once(clock: FakeClock) -> None:
    hedge = Hedge("h", HedgeConfig(delay=60.0, max_hedged_attempts=2), clock=clock)
    events = Recorder(hedge)
    calls = itertools.count()

    async def fetch() -> int:
        n = next(calls)
        if n < 2:
            raise ConnectionError(n)
        return n

    assert await hedge.call_async(fetch) == 2
    assert events.hedges == [(1, 0.0), (2, 0.0)]


async def test_async_exception_not_handled_is_raised_at_once_and_the_others_cancelled(
    clock: FakeClock,
) -> None:
    config = HedgeConfig(delay=0, max_hedged_attempts=2, should_handle=(ConnectionError,))
    hedge = Hedge("h", config, clock=clock)
    cancelled: list[int] = []
    calls = itertools.count()

    async def fetch() -> None:
        n = next(calls)
        if n == 1:
            raise KeyError("missing")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    with pytest.raises(KeyError, match="missing"):
        await hedge.call_async(fetch)
    assert sorted(cancelled) == [0, 2]
    assert _other_tasks() == set()


async def test_async_when_every_attempt_fails_the_one_that_failed_last_is_raised(
    clock: FakeClock,
) -> None:
    hedge = Hedge("h", HedgeConfig(delay=0, max_hedged_attempts=1), clock=clock)
    hedge_failed = asyncio.Event()
    calls = itertools.count()

    async def fetch() -> None:
        n = next(calls)
        if n == 0:  # the original call fails after the hedge has failed
            await hedge_failed.wait()
            raise ConnectionError("original")
        hedge_failed.set()
        raise ConnectionError("hedge 1")

    with pytest.raises(ConnectionError, match="original"):
        await hedge.call_async(fetch)
    assert _other_tasks() == set()


async def test_async_delay_zero_starts_every_attempt_at_once(clock: FakeClock) -> None:
    hedge = Hedge("h", HedgeConfig(delay=0, max_hedged_attempts=3), clock=clock)
    events = Recorder(hedge)
    running = 0
    all_running = asyncio.Event()
    calls = itertools.count()

    async def fetch() -> int:
        nonlocal running
        n = next(calls)
        running += 1
        if running == 4:
            all_running.set()
        await all_running.wait()  # returns only if all 4 attempts run at once
        if n != 3:
            await asyncio.Event().wait()
        return n

    assert await hedge.call_async(fetch) == 3
    assert events.hedges == [(1, 0.0), (2, 0.0), (3, 0.0)]
    assert _other_tasks() == set()


async def test_cancelling_the_caller_cancels_every_attempt(clock: FakeClock) -> None:
    hedge = Hedge("h", HedgeConfig(delay=0, max_hedged_attempts=2), clock=clock)
    started = 0
    all_started = asyncio.Event()
    cancelled: list[int] = []
    calls = itertools.count()

    async def fetch() -> None:
        nonlocal started
        n = next(calls)
        started += 1
        if started == 3:
            all_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    caller = asyncio.create_task(hedge.call_async(fetch))
    await asyncio.wait_for(all_started.wait(), SAFETY)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert sorted(cancelled) == [0, 1, 2]
    assert _other_tasks() == set()


async def test_cancelling_the_caller_while_it_waits_for_the_delay(clock: FakeClock) -> None:
    hedge = Hedge("h", HedgeConfig(delay=5.0), clock=clock)
    started = asyncio.Event()
    cancelled: list[int] = []

    async def fetch() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(0)
            raise

    caller = asyncio.create_task(hedge.call_async(fetch))
    await asyncio.wait_for(started.wait(), SAFETY)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert cancelled == [0]
    assert hedge.metrics.number_of_hedges == 0
    assert _other_tasks() == set()


async def test_async_action_generator_and_an_action_that_fails_before_it_runs(
    clock: FakeClock,
) -> None:
    asked: list[int] = []

    def action(n: int) -> Callable[[str], Any]:
        asked.append(n)
        if n == 1:

            def broken(key: str) -> Any:  # raises when called, before any awaitable exists
                raise ConnectionError("no replica 1")

            return broken

        async def replica(key: str) -> str:
            return f"replica {n}: {key}"

        return replica

    async def original(key: str) -> str:
        raise ConnectionError("primary down")

    config = HedgeConfig(delay=60.0, max_hedged_attempts=2, action_generator=action)
    hedge = Hedge("h", config, clock=clock)
    assert await hedge.call_async(original, "k") == "replica 2: k"
    assert asked == [1, 2]
    assert _other_tasks() == set()


async def test_async_attempts_need_no_thread(clock: FakeClock) -> None:
    hedge = Hedge("h", HedgeConfig(delay=0), clock=clock)

    async def fetch() -> int:
        return 1

    assert await hedge.call_async(fetch) == 1
    assert hedge.threads == 0


# --- registry ----------------------------------------------------------------------------------


def test_registry_gets_or_creates_hedges_with_named_configs(clock: FakeClock) -> None:
    fast = HedgeConfig(delay=0.05, max_hedged_attempts=2)
    registry = HedgeRegistry(HedgeConfig(delay=1.0), configs={"fast": fast}, clock=clock)
    first = registry.hedge("users")
    assert registry.hedge("users") is first
    assert first.config == HedgeConfig(delay=1.0)
    assert first.clock is clock
    reads = registry.hedge("reads", "fast")
    assert reads.config is fast
    assert registry.hedge("reads") is reads  # None accepts whatever it has
    assert registry.hedge("reads", fast) is reads
    assert registry.hedge("direct", config_or_config_name=fast).config is fast
    with pytest.raises(ValueError, match="already exists with a different configuration"):
        registry.hedge("users", fast)
    with pytest.raises(ConfigurationNotFoundError, match="no hedge configuration named 'x'"):
        registry.hedge("other", "x")
    with pytest.raises(TypeError):
        HedgeRegistry(RetryConfig())  # type: ignore[arg-type]
    assert registry.names() == ("users", "reads", "direct")
    assert registry.default_config == HedgeConfig(delay=1.0)


def test_registry_default_config_is_the_default_hedge_config() -> None:
    assert HedgeRegistry().hedge("h").config == HedgeConfig()


# --- metrics export ---------------------------------------------------------------------------


def test_prometheus_exports_hedges_and_wins_by_attempt_since_registration(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry

    from faulttol.metrics.prometheus import PrometheusExporter

    hedge = hedges(HedgeConfig(delay=60.0), clock=clock, name="reads")
    hedge.call(lambda: 1)  # before registration: not exported
    registry = CollectorRegistry()
    PrometheusExporter(registry).register_hedge(hedge)
    calls = itertools.count()

    def fails_once() -> int:
        if next(calls) == 0:
            raise ConnectionError
        return 1

    hedge.call(fails_once)
    hedge.call(lambda: 2)
    value = registry.get_sample_value
    assert value("faulttol_hedge_hedges_total", {"name": "reads"}) == 1.0
    assert value("faulttol_hedge_wins_total", {"name": "reads", "attempt": "0"}) == 1.0
    assert value("faulttol_hedge_wins_total", {"name": "reads", "attempt": "1"}) == 1.0


def test_opentelemetry_exports_hedges_and_wins_by_attempt(
    hedges: Callable[..., Hedge], clock: FakeClock
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from faulttol.metrics.opentelemetry import OpenTelemetryExporter

    reader = InMemoryMetricReader()
    exporter = OpenTelemetryExporter(MeterProvider(metric_readers=[reader]))
    hedge = hedges(HedgeConfig(delay=60.0, max_hedged_attempts=2), clock=clock, name="reads")
    exporter.register_hedge(hedge)
    calls = itertools.count()

    def fails_twice() -> int:
        if next(calls) < 2:
            raise ConnectionError
        return 1

    hedge.call(fails_twice)
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points[m.name] = {
                    tuple(sorted(dict(p.attributes or {}).items())): p.value
                    for p in m.data.data_points  # type: ignore[union-attr]
                }
    assert points["faulttol.hedge.hedges"] == {(("name", "reads"),): 2}
    assert points["faulttol.hedge.wins"] == {
        (("attempt", 0), ("name", "reads")): 0,
        (("attempt", 1), ("name", "reads")): 0,
        (("attempt", 2), ("name", "reads")): 1,
    }
