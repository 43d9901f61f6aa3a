"""Stateful property tests of OrderedProvider and AsyncOrderedProvider (issue 11, item 3).

A hypothesis ``RuleBasedStateMachine`` drives one provider over plain Python targets and a
``FakeClock`` (no Redis, no threads, no sleeps) through random interleavings of calls that
succeed or fail, health results and health-check rounds (which are also where automatic
failback is considered), manual switches (forced or not), live changes (add, remove,
set_weight) and clock advances, for both failover strategies. After every step it checks
what the contract promises whatever the interleaving:

* the active index is always a valid 1-based index, and ``status()`` agrees with it, with
  the weights and names the test set and with ``is_healthy``;
* switch events form a chain: each event's ``previous_index`` is the index the previous
  event (or a removal's renumbering) left active, and after every step the last one is
  ``active_index`` — no switch goes untold;
* failover (reasons CIRCUIT_BREAKER and HEALTH_CHECK) never chooses a target whose last health
  result failed; failback only returns to a healthy, better-ranked target;
* when no target is eligible, ``TemporaryUnavailableError`` is raised from the first call that
  finds none until exactly ``failover_attempts x failover_delay`` has passed, then
  ``NoValidTargetError``; the spell ends when a target is eligible again: a call ran on one
  successfully (or with the application's own error), a switch, or a target turning
  healthy. A failed call does not end it, and a health check finding none does not start
  it (only a call does);
* a call's only outcomes are its result from a target that is up and now active, the
  application's own error, or one of the two "unavailable" errors.

The same machine runs against the asyncio provider (each step on one event loop). The example
counts are kept small for CI (a few seconds each); ``FAULTTOL_STATEFUL_EXAMPLES`` raises them
for a longer local run, and ``FAULTTOL_STATEFUL_RANDOM=1`` searches new random cases
instead of CI's fixed ones, e.g. ``FAULTTOL_STATEFUL_RANDOM=1 FAULTTOL_STATEFUL_EXAMPLES=1000
pytest tests/faulttol/test_provider_stateful.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from faulttol import (
    AsyncOrderedProvider,
    CallNotPermittedError,
    CircuitBreakerConfig,
    NoValidTargetError,
    OrderedProvider,
    ProviderConfig,
    RetryConfig,
    State,
    SwitchEvent,
    SwitchReason,
    TemporaryUnavailableError,
)
from faulttol.testing import FakeClock

EXAMPLES = int(os.environ.get("FAULTTOL_STATEFUL_EXAMPLES", "60"))
STEPS = 40
MAX_TARGETS = 5
FAILOVER_ATTEMPTS = 3
OPEN_WAIT = 10.0
HEALTH_INTERVAL = 5.0
FAILBACK_INTERVAL = 5.0


class Down(ConnectionError):
    """What a target that is down raises (retryable, and a fallback exception)."""


class AppError(Exception):
    """The application's own error: neither retried nor failed over, nor a breaker failure."""


class FakeTarget:
    """A target: ``up`` says whether calls succeed, ``healthy`` what its health check says
    (the two may disagree, as a real database's PING and commands can)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.healthy = True

    def __repr__(self) -> str:
        return f"FakeTarget({self.name!r}, up={self.up}, healthy={self.healthy})"


def serve(target: FakeTarget) -> str:
    if not target.up:
        raise Down(f"{target.name} is down")
    return target.name


def fail_in_app(target: FakeTarget) -> str:
    raise AppError(target.name)


def check(target: FakeTarget) -> bool:
    return target.healthy


async def serve_async(target: FakeTarget) -> str:
    return serve(target)


async def fail_in_app_async(target: FakeTarget) -> str:
    return fail_in_app(target)


async def check_async(target: FakeTarget) -> bool:
    await asyncio.sleep(0)
    return target.healthy


class _SyncDriver:
    """Runs the machine's steps on an :class:`OrderedProvider`."""

    kind = OrderedProvider
    serve: Callable[[FakeTarget], Any] = staticmethod(serve)
    fail_in_app: Callable[[FakeTarget], Any] = staticmethod(fail_in_app)
    check: Callable[[FakeTarget], Any] = staticmethod(check)

    def __init__(self) -> None:
        self.provider: Any = None

    def run(self, value: Any) -> Any:
        return value

    def execute(self, fn: Callable[[FakeTarget], Any]) -> Any:
        return self.provider.execute(fn)

    def set_active_index(self, index: int, force: bool) -> None:
        self.provider.set_active_index(index, force=force)

    def remove_target(self, index: int) -> Any:
        return self.provider.remove_target(index)

    def run_health_checks(self) -> None:
        self.provider.run_health_checks()

    def close(self) -> None:
        self.provider.close()


class _AsyncDriver(_SyncDriver):
    """Runs the machine's steps on an :class:`AsyncOrderedProvider`, one event loop for the
    whole example (a provider belongs to one loop)."""

    kind = AsyncOrderedProvider  # type: ignore[assignment]
    serve = staticmethod(serve_async)
    fail_in_app = staticmethod(fail_in_app_async)
    check = staticmethod(check_async)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()

    def run(self, value: Any) -> Any:
        return self.loop.run_until_complete(value) if isinstance(value, Awaitable) else value

    def execute(self, fn: Callable[[FakeTarget], Any]) -> Any:
        return self.run(self.provider.execute(fn))

    def set_active_index(self, index: int, force: bool) -> None:
        self.run(self.provider.set_active_index(index, force=force))

    def remove_target(self, index: int) -> Any:
        return self.run(self.provider.remove_target(index))

    def run_health_checks(self) -> None:
        self.run(self.provider.run_health_checks())

    def close(self) -> None:
        try:
            self.run(self.provider.aclose())
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            assert not pending, f"tasks left after aclose(): {pending}"
        finally:
            self.loop.close()


def _rank_key(strategy: str, weight: float, index: int) -> tuple[float, int]:
    return (-weight, index) if strategy == "weighted" else (0.0, index)


class ProviderMachine(RuleBasedStateMachine):
    """The provider against a small model (see the module docstring)."""

    driver_class: type[_SyncDriver] = _SyncDriver

    def __init__(self) -> None:
        super().__init__()
        self.driver = self.driver_class()
        self.built = False
        self.clock = FakeClock()
        self.targets: list[FakeTarget] = []
        self.weights: list[float] = []
        self.model_active = 0
        self.since: float | None = None
        """When the current "no target is eligible" episode began (None: not in one)."""
        self.violations: list[str] = []
        self.delivered: list[SwitchEvent] = []
        self.counter = 0

    # ------------------------------------------------------------------------ building

    @initialize(
        n=st.integers(1, 4),
        strategy=st.sampled_from(["ordered", "weighted"]),
        weights=st.lists(st.sampled_from([0.0, 1.0, 2.0, 5.0]), min_size=4, max_size=4),
        health=st.booleans(),
        failback=st.booleans(),
        max_attempts=st.integers(1, 2),
        failover_delay=st.sampled_from([0.0, 2.5, 5.0]),
    )
    def build(self, n: int, strategy: str, weights: list[float], health: bool, failback: bool,
              max_attempts: int, failover_delay: float) -> None:
        self.strategy = strategy
        self.health = health
        self.window = FAILOVER_ATTEMPTS * failover_delay
        self.targets = [self._new_target() for _ in range(n)]
        self.weights = list(weights[:n])
        config = ProviderConfig(
            circuit_breaker=CircuitBreakerConfig(
                sliding_window_size=2, minimum_number_of_calls=2, failure_rate_threshold=50.0,
                record_exceptions=(Down,), wait_duration_in_open_state=OPEN_WAIT,
            ),
            retry=RetryConfig(max_attempts=max_attempts, wait_duration=0.5,
                              retry_exceptions=(Down,)),
            fallback_exceptions=(CallNotPermittedError, Down),
            health_check_interval=HEALTH_INTERVAL,
            auto_failback_interval=FAILBACK_INTERVAL if failback else None,
            failover_strategy=strategy,
            failover_attempts=FAILOVER_ATTEMPTS,
            failover_delay=failover_delay,
        )
        self.driver.provider = self.driver.kind(
            list(self.targets), config,
            health_check=self.driver.check if health else None,
            clock=self.clock,
            names=[t.name for t in self.targets],
            weights=self.weights,
            start_health_checks=False,
        )
        self.driver.provider.add_switch_listener(self._on_switch)
        first = min(range(1, n + 1), key=lambda i: _rank_key(strategy, self.weights[i - 1], i))
        self.model_active = first
        assert self.provider.active_index == first
        self.built = True

    def _new_target(self) -> FakeTarget:
        self.counter += 1
        return FakeTarget(f"t{self.counter}")

    @property
    def provider(self) -> Any:
        return self.driver.provider

    def teardown(self) -> None:
        if self.built:
            self.driver.close()
        elif isinstance(self.driver, _AsyncDriver):
            self.driver.loop.close()

    # ------------------------------------------------------------------------ the model

    def _on_switch(self, event: SwitchEvent) -> None:
        """The switch listener: checks what can only be seen at delivery time, records any
        violation (a listener's exception would only be logged) and moves the model on."""
        provider = self.provider
        n = len(provider)
        if event.previous_index != self.model_active:
            self.violations.append(
                f"{event}: previous_index is not the active index {self.model_active}"
            )
        if not 1 <= event.index <= n:
            self.violations.append(f"{event}: index outside 1..{n}")
        elif event.reason in (SwitchReason.CIRCUIT_BREAKER, SwitchReason.HEALTH_CHECK):
            if provider.slot(event.index).healthy is False:
                self.violations.append(f"{event}: failover chose an unhealthy target")
        elif event.reason is SwitchReason.FAILBACK:
            slot = provider.slot(event.index)
            if slot.healthy is not True:
                self.violations.append(f"{event}: failback to a target not known healthy")
            previous = event.previous_index
            if 1 <= previous <= n:
                better = _rank_key(self.strategy, slot.weight, event.index) < _rank_key(
                    self.strategy, provider.slot(previous).weight, previous)
                if not better:
                    self.violations.append(f"{event}: failback to a worse-ranked target")
        self.model_active = event.index
        self.delivered.append(event)
        self.since = None  # a target was chosen: the unavailability episode is over

    def _health_snapshot(self) -> dict[int, bool | None]:
        return {id(self.provider.slot(i)): self.provider.slot(i).healthy
                for i in range(1, len(self.provider) + 1)}

    def _after_health_change(self, before: dict[int, bool | None]) -> None:
        """A target whose last health result turned healthy is eligible again."""
        for i in range(1, len(self.provider) + 1):
            slot = self.provider.slot(i)
            if slot.healthy is True and before.get(id(slot)) is not True:
                self.since = None

    def _unavailable(self, error: BaseException) -> None:
        now = self.clock.monotonic()
        if self.since is None:
            self.since = now
        permanent = now - self.since >= self.window
        expected = NoValidTargetError if permanent else TemporaryUnavailableError
        assert isinstance(error, expected), (
            f"{type(error).__name__} at t={now} in an episode that began at t={self.since} "
            f"(window {self.window}); expected {expected.__name__}"
        )

    # ------------------------------------------------------------------------ rules

    @rule(app_error=st.booleans())
    def call(self, app_error: bool) -> None:
        fn = self.driver.fail_in_app if app_error else self.driver.serve
        try:
            result = self.driver.execute(fn)
        except (TemporaryUnavailableError, NoValidTargetError) as error:
            self._unavailable(error)
            return
        except AppError as error:
            assert app_error, error
            ran_on = str(error)
        else:
            assert not app_error
            ran_on = result
            served = [t for t in self.targets if t.name == result]
            assert served and served[0].up, f"{result!r} answered but is not up"
        assert self.provider.active.name == ran_on, (
            f"the call ran on {ran_on}, but {self.provider.active.name} is active"
        )
        self.since = None  # the call ran on a target: one was eligible

    @rule(data=st.data(), up=st.booleans())
    def set_up(self, data: st.DataObject, up: bool) -> None:
        target = data.draw(st.sampled_from(self.targets))
        target.up = up

    @rule(data=st.data(), healthy=st.booleans())
    def set_healthy(self, data: st.DataObject, healthy: bool) -> None:
        target = data.draw(st.sampled_from(self.targets))
        target.healthy = healthy

    @rule()
    def health_round(self) -> None:
        before = self._health_snapshot()
        self.driver.run_health_checks()
        self._after_health_change(before)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(index=st.integers(0, MAX_TARGETS + 1), force=st.booleans())
    def set_active_index(self, index: int, force: bool) -> None:
        n = len(self.provider)
        before_active = self.provider.active_index
        if not 1 <= index <= n:
            with pytest.raises(ValueError, match="index"):
                self.driver.set_active_index(index, force)
            assert self.provider.active_index == before_active
            return
        target = self.targets[index - 1]
        before = self._health_snapshot()
        if not force and self.health and not target.healthy:
            with pytest.raises(ValueError, match="unhealthy"):
                self.driver.set_active_index(index, force)
            assert self.provider.active_index == before_active
            return
        self.driver.set_active_index(index, force)
        assert self.provider.active_index == index
        if index != before_active:  # switching to the active index is a no-op
            assert self.provider.is_healthy(index)  # a forced switch sticks
            assert self.provider.breaker(index).state is State.CLOSED
        self._after_health_change(before)

    @precondition(lambda self: len(self.targets) < MAX_TARGETS)
    @rule(weight=st.sampled_from([0.0, 1.0, 3.0]))
    def add_target(self, weight: float) -> None:
        target = self._new_target()
        index = self.provider.add_target(target, name=target.name, weight=weight)
        self.targets.append(target)
        self.weights.append(weight)
        assert index == len(self.targets)

    @rule(index=st.integers(0, MAX_TARGETS + 1))
    def remove_target(self, index: int) -> None:
        n = len(self.provider)
        if not 1 <= index <= n or n == 1:
            with pytest.raises(ValueError):
                self.driver.remove_target(index)
            return
        before_active = self.model_active
        removed = self.driver.remove_target(index)
        assert removed is self.targets.pop(index - 1)
        self.weights.pop(index - 1)
        if index > before_active:
            assert self.model_active == before_active  # no renumbering, no event
        elif index < before_active:
            assert self.model_active == before_active - 1  # told of the shift

    @rule(index=st.integers(0, MAX_TARGETS + 1),
          weight=st.sampled_from([0.0, 1.0, 4.0, -1.0, math.nan]))
    def set_weight(self, index: int, weight: float) -> None:
        n = len(self.provider)
        if not 1 <= index <= n or not weight >= 0:
            with pytest.raises(ValueError, match=r"index|weight"):
                self.provider.set_weight(index, weight)
            return
        self.provider.set_weight(index, weight)
        self.weights[index - 1] = weight

    # ------------------------------------------------------------------------ invariants

    @invariant()
    def no_violation_seen_by_the_listener(self) -> None:
        assert not self.violations, self.violations

    @invariant()
    def active_index_is_valid_and_every_switch_was_told(self) -> None:
        if not self.built:
            return
        n = len(self.provider)
        assert n == len(self.targets)
        assert 1 <= self.provider.active_index <= n
        assert self.provider.active_index == self.model_active
        assert self.provider.active is self.targets[self.model_active - 1]

    @invariant()
    def status_is_consistent(self) -> None:
        if not self.built:
            return
        rows = self.provider.status()
        assert [row["index"] for row in rows] == list(range(1, len(self.targets) + 1))
        assert [row["name"] for row in rows] == [t.name for t in self.targets]
        assert [row["weight"] for row in rows] == self.weights
        assert [row["active"] for row in rows].count(True) == 1
        assert rows[self.provider.active_index - 1]["active"]
        for row in rows:
            i = row["index"]
            assert row["healthy"] == self.provider.is_healthy(i)
            assert row["breaker_state"] is self.provider.breaker(i).state


TestOrderedProviderStateful = ProviderMachine.TestCase
TestOrderedProviderStateful.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    derandomize=os.environ.get("FAULTTOL_STATEFUL_RANDOM") is None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class AsyncProviderMachine(ProviderMachine):
    driver_class = _AsyncDriver


TestAsyncOrderedProviderStateful = AsyncProviderMachine.TestCase
TestAsyncOrderedProviderStateful.settings = TestOrderedProviderStateful.settings


# --- regressions found by the machine ------------------------------------------------------


def _one_target(health: bool) -> tuple[OrderedProvider[FakeTarget], FakeTarget, FakeClock]:
    clock = FakeClock()
    target = FakeTarget("t1")
    provider = OrderedProvider(
        [target],
        ProviderConfig(fallback_exceptions=(CallNotPermittedError, Down),
                       failover_attempts=3, failover_delay=5.0,
                       retry=RetryConfig(max_attempts=1, retry_exceptions=(Down,))),
        health_check=check if health else None, clock=clock, start_health_checks=False,
    )
    return provider, target, clock


def test_a_health_check_finding_no_target_does_not_start_the_failover_window() -> None:
    # The window used to start when a health check found no target to fail over to, so the
    # first call after a quiet spell got NoValidTargetError without a temporary error first.
    provider, target, clock = _one_target(health=True)
    target.healthy = target.up = False
    provider.run_health_checks()  # t1 unhealthy, nowhere to go: logged, no caller told
    clock.advance(15.0)
    with pytest.raises(TemporaryUnavailableError):
        provider.execute(serve)  # the first call that finds none
    clock.advance(14.5)
    with pytest.raises(TemporaryUnavailableError):
        provider.execute(serve)
    clock.advance(0.5)
    with pytest.raises(NoValidTargetError):
        provider.execute(serve)  # exactly failover_attempts x failover_delay later


@pytest.mark.parametrize("answer", [serve, fail_in_app])
def test_a_call_a_target_answered_ends_the_unavailable_spell(
    answer: Callable[[FakeTarget], str],
) -> None:
    # A spell used to last until a switch or a health change only: after a call served by
    # the only target (success path, or the application's own error), the next call that
    # found none got NoValidTargetError ("no target has been eligible for 40s") at once.
    provider, target, clock = _one_target(health=False)
    target.up = False
    with pytest.raises(TemporaryUnavailableError):
        provider.execute(serve)
    target.up = True
    clock.advance(20.0)
    with pytest.raises(AppError) if answer is fail_in_app else contextlib.nullcontext():
        provider.execute(answer)
    clock.advance(20.0)
    target.up = False
    with pytest.raises(TemporaryUnavailableError):
        provider.execute(serve)


def test_async_a_success_ends_the_unavailable_spell() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        target = FakeTarget("t1")
        provider = AsyncOrderedProvider(
            [target],
            ProviderConfig(fallback_exceptions=(CallNotPermittedError, Down),
                           failover_attempts=3, failover_delay=5.0,
                           retry=RetryConfig(max_attempts=1, retry_exceptions=(Down,))),
            clock=clock, start_health_checks=False,
        )
        target.up = False
        with pytest.raises(TemporaryUnavailableError):
            await provider.execute(serve_async)
        target.up = True
        clock.advance(20.0)
        assert await provider.execute(serve_async) == "t1"
        clock.advance(20.0)
        target.up = False
        with pytest.raises(TemporaryUnavailableError):
            await provider.execute(serve_async)
        await provider.aclose()

    asyncio.run(scenario())
