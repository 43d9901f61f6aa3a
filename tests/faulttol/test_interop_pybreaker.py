"""Tests for faulttol.interop.pybreaker: the adapter, as_faulttol_breaker, forward_events."""

from __future__ import annotations

import asyncio
import inspect
import logging
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import pybreaker
import pytest

from faulttol.breaker import (
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    State,
)
from faulttol.interop.pybreaker import (
    PyBreakerAdapter,
    PyBreakerCallNotPermittedError,
    RecordedResultError,
    as_faulttol_breaker,
    forward_events,
    pybreaker_state_name,
)
from faulttol.testing import FakeClock


def state_of(adapter: PyBreakerAdapter) -> State:
    """The adapter's state (a call, so mypy does not narrow it across state changes)."""
    return adapter.state


def fail(exc: BaseException) -> Any:
    raise exc


def expire_open_timeout(pb: pybreaker.CircuitBreaker) -> None:
    """Pretend pybreaker's reset_timeout has passed (it uses its own wall clock)."""
    pb._state_storage.opened_at = datetime.now(timezone.utc) - timedelta(
        seconds=pb.reset_timeout + 1
    )


class Recorder(pybreaker.CircuitBreakerListener):
    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        self.log.append(("before_call", args, kwargs))

    def failure(self, cb: Any, exc: BaseException) -> None:
        self.log.append(("failure", cb.name, cb.current_state, exc))

    def success(self, cb: Any) -> None:
        self.log.append(("success", cb.name, cb.current_state))

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else None
        self.log.append(("state_change", cb.name, old, new_state.name))

    def kinds(self) -> list[str]:
        return [entry[0] for entry in self.log]


# --- adapter ---------------------------------------------------------------------------------


def test_adapter_basics() -> None:
    pb = pybreaker.CircuitBreaker(name="legacy")
    clock = FakeClock()
    adapter = PyBreakerAdapter(pb, clock=clock)
    assert adapter.breaker is pb
    assert adapter.name == "legacy"
    assert adapter.clock is clock
    assert state_of(adapter) is State.CLOSED
    assert "legacy" in repr(adapter)
    assert PyBreakerAdapter(pybreaker.CircuitBreaker()).name == "pybreaker"
    with pytest.raises(TypeError, match="pybreaker"):
        PyBreakerAdapter(CircuitBreaker("x"))  # type: ignore[arg-type]


def test_failures_trip_and_rejections_raise_both_error_kinds() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, name="legacy")
    adapter = PyBreakerAdapter(pb)
    first, second = ConnectionError("1"), ConnectionError("2")
    with pytest.raises(ConnectionError) as info:
        adapter.call(fail, first)
    assert info.value is first
    assert pb.fail_counter == 1
    with pytest.raises(ConnectionError) as info:
        adapter.call(fail, second)  # the tripping call raises its own exception
    assert info.value is second
    assert state_of(adapter) is State.OPEN
    calls: list[int] = []
    with pytest.raises(CallNotPermittedError) as rejected:
        adapter.call(calls.append, 1)
    assert calls == []
    assert isinstance(rejected.value, PyBreakerCallNotPermittedError)
    assert issubclass(PyBreakerCallNotPermittedError, pybreaker.CircuitBreakerError)
    assert rejected.value.breaker_name == "legacy"
    assert not adapter.try_acquire_permission()


def test_success_resets_pybreaker_failure_counter() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=3)
    adapter = PyBreakerAdapter(pb)
    for _ in range(2):
        with pytest.raises(OSError):
            adapter.call(fail, OSError())
    assert pb.fail_counter == 2
    assert adapter.call(lambda: 5) == 5
    assert pb.fail_counter == 0
    adapter.on_result(0.1, "anything")  # no result predicate in pybreaker: a success
    assert pb.fail_counter == 0


def test_exclude_list_is_respected() -> None:
    pb = pybreaker.CircuitBreaker(
        fail_max=1,
        exclude=cast(Any, [KeyError, lambda e: isinstance(e, ValueError) and "biz" in str(e)]),
    )
    adapter = PyBreakerAdapter(pb)
    with pytest.raises(KeyError):
        adapter.call(fail, KeyError())
    with pytest.raises(ValueError):
        adapter.call(fail, ValueError("biz rule"))
    assert state_of(adapter) is State.CLOSED
    assert pb.fail_counter == 0
    with pytest.raises(ValueError):
        adapter.call(fail, ValueError("system"))
    assert state_of(adapter) is State.OPEN


def test_half_open_trial_success_closes() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60)
    adapter = PyBreakerAdapter(pb)
    with pytest.raises(OSError):
        adapter.call(fail, OSError())
    assert state_of(adapter) is State.OPEN
    assert not adapter.try_acquire_permission()
    expire_open_timeout(pb)
    assert adapter.call(lambda: "trial") == "trial"
    assert state_of(adapter) is State.CLOSED


def test_half_open_trial_failure_reopens() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60)
    adapter = PyBreakerAdapter(pb)
    with pytest.raises(OSError):
        adapter.call(fail, OSError())
    expire_open_timeout(pb)
    with pytest.raises(OSError):
        adapter.call(fail, OSError("trial"))
    assert state_of(adapter) is State.OPEN
    with pytest.raises(CallNotPermittedError):
        adapter.acquire_permission()


def test_half_open_admits_one_trial_at_a_time_and_success_threshold() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60, success_threshold=2)
    adapter = PyBreakerAdapter(pb)
    adapter.transition_to_open_state()
    expire_open_timeout(pb)
    assert adapter.try_acquire_permission()
    assert state_of(adapter) is State.HALF_OPEN
    assert not adapter.try_acquire_permission()  # the trial is in flight
    adapter.on_success(0.01)
    assert state_of(adapter) is State.HALF_OPEN  # one of two required successes
    assert adapter.try_acquire_permission()
    adapter.on_success(0.01)
    assert state_of(adapter) is State.CLOSED
    assert adapter.try_acquire_permission() and adapter.try_acquire_permission()


def test_release_permission_gives_the_trial_back() -> None:
    pb = pybreaker.CircuitBreaker(reset_timeout=60)
    adapter = PyBreakerAdapter(pb)
    adapter.transition_to_half_open_state()
    assert adapter.try_acquire_permission()
    assert not adapter.try_acquire_permission()
    adapter.release_permission()
    assert adapter.try_acquire_permission()
    adapter.transition_to_closed_state()
    assert state_of(adapter) is State.CLOSED


def test_base_exceptions_count_nothing_and_release_the_trial() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60)
    adapter = PyBreakerAdapter(pb)
    with pytest.raises(KeyboardInterrupt):
        adapter.call(fail, KeyboardInterrupt())
    assert pb.fail_counter == 0 and state_of(adapter) is State.CLOSED
    adapter.transition_to_half_open_state()
    with pytest.raises(KeyboardInterrupt):
        adapter.call(fail, KeyboardInterrupt())
    assert state_of(adapter) is State.HALF_OPEN
    assert adapter.try_acquire_permission()  # the trial permit came back


def test_pybreaker_listeners_are_notified() -> None:
    recorder = Recorder()
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60, listeners=[recorder], name="n")
    adapter = PyBreakerAdapter(pb)
    adapter.call(lambda a, b: a + b, 1, b=2)
    with pytest.raises(OSError):
        adapter.call(fail, OSError())
    assert recorder.kinds() == ["before_call", "success", "before_call", "failure", "state_change"]
    assert recorder.log[0] == ("before_call", (1,), {"b": 2})
    assert recorder.log[-1] == ("state_change", "n", "closed", "open")


def test_lock_is_not_held_across_the_call() -> None:
    pb = pybreaker.CircuitBreaker()
    adapter = PyBreakerAdapter(pb)
    acquired: list[bool] = []

    def probe() -> None:
        def other_thread() -> None:
            ok = pb._lock.acquire(timeout=2)
            acquired.append(ok)
            if ok:
                pb._lock.release()

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()

    adapter.call(probe)
    assert acquired == [True]


def test_decorate_sync() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1)
    adapter = PyBreakerAdapter(pb)

    @adapter
    def work(x: int) -> int:
        """Work."""
        if x < 0:
            raise ValueError
        return x

    assert work(3) == 3
    assert work.__name__ == "work" and work.__doc__ == "Work."
    assert not inspect.iscoroutinefunction(work)
    with pytest.raises(ValueError):
        work(-1)
    with pytest.raises(CallNotPermittedError):
        work(1)
    with pytest.raises(TypeError, match="callable"):
        adapter.decorate(5)  # type: ignore[arg-type]


async def test_async_failures_are_recorded() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60)
    adapter = PyBreakerAdapter(pb)

    @adapter
    async def work(x: int) -> int:
        await asyncio.sleep(0)
        if x < 0:
            raise ConnectionError
        return x

    assert inspect.iscoroutinefunction(work)
    assert await work(1) == 1
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await work(-1)
    assert state_of(adapter) is State.OPEN
    with pytest.raises(CallNotPermittedError):
        await work(1)


async def test_async_call_and_concurrent_trial() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60)
    adapter = PyBreakerAdapter(pb)
    adapter.transition_to_open_state()
    expire_open_timeout(pb)
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "done"

    trial = asyncio.ensure_future(adapter.call_async(slow))
    await asyncio.sleep(0)
    assert state_of(adapter) is State.HALF_OPEN
    with pytest.raises(CallNotPermittedError):
        await adapter.call_async(slow)  # a second concurrent call is rejected
    gate.set()
    assert await trial == "done"
    assert state_of(adapter) is State.CLOSED


async def test_async_cancellation_counts_nothing() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60)
    adapter = PyBreakerAdapter(pb)
    adapter.transition_to_half_open_state()

    async def hang() -> None:
        await asyncio.Event().wait()

    task = asyncio.ensure_future(adapter.call_async(hang))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pb.fail_counter == 0
    assert state_of(adapter) is State.HALF_OPEN
    assert adapter.try_acquire_permission()


def test_tripping_without_new_error_flag() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1, throw_new_error_on_trip=False)
    adapter = PyBreakerAdapter(pb)
    err = OSError()
    with pytest.raises(OSError) as info:
        adapter.call(fail, err)
    assert info.value is err
    assert state_of(adapter) is State.OPEN


# --- as_faulttol_breaker ------------------------------------------------------------------------


def test_as_faulttol_breaker() -> None:
    breaker = CircuitBreaker("x")
    assert as_faulttol_breaker(breaker) is breaker
    adapter = PyBreakerAdapter(pybreaker.CircuitBreaker())
    assert as_faulttol_breaker(adapter) is adapter
    pb = pybreaker.CircuitBreaker(name="p")
    wrapped = as_faulttol_breaker(pb)
    assert isinstance(wrapped, PyBreakerAdapter) and wrapped.breaker is pb
    with pytest.raises(TypeError, match=r"pybreaker\.CircuitBreaker"):
        as_faulttol_breaker("breaker")


def test_core_modules_do_not_import_pybreaker() -> None:
    code = (
        "import sys, faulttol\n"
        "from faulttol import CircuitBreaker, Decorators, Retry, Fallback\n"
        "from faulttol.registry import CircuitBreakerRegistry\n"
        "d = Decorators.of(lambda: 1).with_circuit_breaker(CircuitBreaker('a'))"
        ".with_retry(Retry('r')).decorate()\n"
        "assert d() == 1\n"
        "assert 'pybreaker' not in sys.modules, 'pybreaker imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr


# --- forward_events ---------------------------------------------------------------------------


def small_breaker(clock: FakeClock, **kwargs: Any) -> CircuitBreaker:
    config = CircuitBreakerConfig(
        sliding_window_size=2,
        minimum_number_of_calls=2,
        wait_duration_in_open_state=10.0,
        permitted_number_of_calls_in_half_open_state=1,
        **kwargs,
    )
    return CircuitBreaker("fw", config, clock=clock)


def test_forward_events_to_pybreaker_listeners() -> None:
    clock = FakeClock()
    breaker = small_breaker(clock)
    recorder = Recorder()
    forwarding = forward_events(breaker, recorder)
    assert forwarding.active and forwarding.listeners == (recorder,)
    breaker.call(lambda: 1)
    err = OSError("x")
    with pytest.raises(OSError):
        breaker.call(fail, err)  # 2 calls, 50% -> OPEN
    # events are delivered after the breaker's bookkeeping: the view reads the new state
    assert recorder.log == [
        ("success", "fw", "closed"),
        ("failure", "fw", "open", err),
        ("state_change", "fw", "closed", "open"),
    ]
    recorder.log.clear()
    clock.advance(10.0)
    breaker.call(lambda: 2)  # OPEN -> HALF_OPEN -> CLOSED
    assert recorder.log == [
        ("state_change", "fw", "open", "half-open"),
        ("success", "fw", "closed"),
        ("state_change", "fw", "half-open", "closed"),
    ]


def test_forward_events_state_views_and_mapping() -> None:
    clock = FakeClock()
    breaker = small_breaker(clock)
    seen: list[tuple[Any, Any, Any]] = []

    class L(pybreaker.CircuitBreakerListener):
        def state_change(self, cb: Any, old: Any, new: Any) -> None:
            seen.append((cb, old, new))

    forward_events(breaker, L())
    breaker.transition_to_forced_open_state()
    breaker.transition_to_open_state()  # 'open' -> 'open': not forwarded
    breaker.transition_to_metrics_only_state()
    breaker.transition_to_disabled_state()  # 'closed' -> 'closed': not forwarded
    assert [(old.name, new.name) for _, old, new in seen] == [
        ("closed", "open"),
        ("open", "closed"),
    ]
    cb, old, new = seen[0]
    assert cb.breaker is breaker and cb.name == "fw"
    assert cb.current_state == "closed"  # DISABLED behaves as closed
    assert (old.state, new.state) == (State.CLOSED, State.FORCED_OPEN)
    assert pybreaker_state_name(State.HALF_OPEN) == pybreaker.STATE_HALF_OPEN
    assert pybreaker_state_name(State.METRICS_ONLY) == pybreaker.STATE_CLOSED


def test_forward_result_failures_and_stop() -> None:
    clock = FakeClock()
    breaker = small_breaker(clock, record_result=lambda r: r is None)
    recorder = Recorder()
    with forward_events(breaker, recorder) as forwarding:
        breaker.call(lambda: None)
        failure = recorder.log[0]
        assert failure[0] == "failure"
        assert isinstance(failure[3], RecordedResultError) and failure[3].result is None
    assert not forwarding.active
    recorder.log.clear()
    breaker.call(lambda: 1)
    breaker.transition_to_forced_open_state()
    assert recorder.log == []
    forwarding.stop()  # idempotent


def test_listener_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(pybreaker.CircuitBreakerListener):
        def success(self, cb: Any) -> None:
            raise RuntimeError("listener broke")

    breaker = small_breaker(FakeClock())
    forward_events(breaker, Broken())
    with caplog.at_level(logging.ERROR, logger="faulttol.events"):
        assert breaker.call(lambda: 3) == 3
    assert "listener broke" in caplog.text


def test_forward_events_validates_arguments() -> None:
    breaker = small_breaker(FakeClock())
    with pytest.raises(TypeError, match="faulttol CircuitBreaker"):
        forward_events(pybreaker.CircuitBreaker(), Recorder())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="state_change"):
        forward_events(breaker, object())
