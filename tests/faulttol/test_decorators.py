"""Tests for faulttol.decorators: layer order, sync/async, pybreaker breakers, typing."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pybreaker
import pytest

from faulttol.breaker import (
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    State,
)
from faulttol.decorators import Decorators
from faulttol.fallback import Fallback
from faulttol.interop.pybreaker import PyBreakerAdapter
from faulttol.retry import Retry, RetryConfig
from faulttol.testing import FakeClock

WINDOW = CircuitBreakerConfig(
    sliding_window_size=4, minimum_number_of_calls=4, wait_duration_in_open_state=10.0
)


class Backend:
    """A callable that fails ``failures`` times, then answers; counts its calls."""

    def __init__(self, failures: int = 0, exc: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.exc = exc
        self.calls = 0

    def get(self, key: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"down {self.calls}")
        return f"value-{key}"

    async def aget(self, key: str) -> str:
        return self.get(key)


def stack(
    fn: Callable[[str], Any], clock: FakeClock, retry_config: RetryConfig | None = None
) -> tuple[Callable[[str], Any], CircuitBreaker, Retry]:
    breaker = CircuitBreaker("db", WINDOW, clock=clock)
    retry = Retry("db", retry_config, clock=clock)
    decorated = (
        Decorators.of(fn)
        .with_circuit_breaker(breaker)
        .with_retry(retry)
        .with_fallback((CallNotPermittedError, ConnectionError), lambda exc, key: f"cached-{key}")
        .decorate()
    )
    return decorated, breaker, retry


def test_success_passes_through_every_layer() -> None:
    clock = FakeClock()
    backend = Backend()
    get, breaker, _ = stack(backend.get, clock)
    assert get("a") == "value-a"
    assert backend.calls == 1
    assert breaker.metrics.number_of_successful_calls == 1
    assert clock.sleeps == []


def test_order_is_fallback_of_retry_of_breaker() -> None:
    """Every attempt passes the breaker; the fallback answers once retries are exhausted."""
    clock = FakeClock()
    backend = Backend(failures=10)
    get, breaker, retry = stack(backend.get, clock)
    retries: list[object] = []
    retry.events.on_retry(retries.append)
    assert get("k") == "cached-k"
    assert backend.calls == 3
    assert breaker.metrics.number_of_failed_calls == 3  # each attempt recorded
    assert len(retries) == 2
    assert clock.sleeps == [0.5, 1.0]


def test_retry_recovers_before_fallback() -> None:
    clock = FakeClock()
    backend = Backend(failures=2)
    get, breaker, _ = stack(backend.get, clock)
    assert get("k") == "value-k"
    assert breaker.metrics.number_of_failed_calls == 2
    assert breaker.metrics.number_of_successful_calls == 1


def test_open_breaker_rejects_without_calling_and_fallback_answers() -> None:
    clock = FakeClock()
    backend = Backend(failures=100)
    get, breaker, _ = stack(
        backend.get, clock, RetryConfig(ignore_exceptions=(CallNotPermittedError,))
    )
    assert get("a") == "cached-a"  # 3 failures
    assert get("b") == "cached-b"  # 4th failure trips the breaker (window of 4, 100%)
    assert breaker.state is State.OPEN
    calls = backend.calls
    assert calls == 4  # the retry stopped at the rejection of the 5th attempt
    assert get("c") == "cached-c"
    assert backend.calls == calls
    assert breaker.metrics.number_of_not_permitted_calls == 2


def test_reverse_order_puts_retry_inside_breaker() -> None:
    clock = FakeClock()
    backend = Backend(failures=2)
    breaker = CircuitBreaker("db", WINDOW, clock=clock)
    retry = Retry("db", clock=clock)
    get = Decorators.of(backend.get).with_retry(retry).with_circuit_breaker(breaker).decorate()
    assert get("x") == "value-x"
    # the breaker saw one call: the retried whole
    assert breaker.metrics.number_of_buffered_calls == 1
    assert breaker.metrics.number_of_successful_calls == 1


def test_repetition_and_fallback_instance() -> None:
    def fn(kind: str) -> str:
        if kind == "key":
            raise KeyError(kind)
        if kind == "value":
            raise ValueError(kind)
        if kind == "type":
            raise TypeError(kind)
        return kind

    decorated = (
        Decorators.of(fn)
        .with_fallback(KeyError, lambda exc, kind: "inner")
        .with_fallback(Fallback(ValueError, lambda exc, kind: "outer"))
        .decorate()
    )
    assert decorated("ok") == "ok"
    assert decorated("key") == "inner"
    assert decorated("value") == "outer"
    with pytest.raises(TypeError):
        decorated("type")


def test_two_retries_multiply_attempts() -> None:
    clock = FakeClock()
    backend = Backend(failures=100)
    inner = Retry("inner", RetryConfig(max_attempts=2), clock=clock)
    outer = Retry("outer", RetryConfig(max_attempts=3), clock=clock)
    get = Decorators.of(backend.get).with_retry(inner).with_retry(outer).decorate()
    with pytest.raises(ConnectionError):
        get("k")
    assert backend.calls == 6


def test_builder_is_immutable_and_reusable() -> None:
    clock = FakeClock()
    backend = Backend(failures=100)
    base = Decorators.of(backend.get).with_retry(Retry("r", clock=clock))
    with_fb = base.with_fallback(ConnectionError, lambda exc, key: "fb")
    assert with_fb is not base
    assert with_fb.decorate()("k") == "fb"
    with pytest.raises(ConnectionError):
        base.decorate()("k")
    assert "get" in repr(base)


def test_metadata_is_kept() -> None:
    def fetch(key: str) -> str:
        """Fetch a key."""
        return key

    clock = FakeClock()
    decorated, _, _ = stack(fetch, clock)
    assert decorated.__name__ == "fetch"
    assert decorated.__doc__ == "Fetch a key."
    assert inspect.signature(decorated) == inspect.signature(fetch)
    assert not inspect.iscoroutinefunction(decorated)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="callable"):
        Decorators.of(42)  # type: ignore[arg-type]
    builder = Decorators.of(lambda: 1)
    with pytest.raises(TypeError, match="Retry"):
        builder.with_retry(RetryConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pybreaker"):
        builder.with_circuit_breaker(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handler"):
        builder.with_fallback(KeyError)
    with pytest.raises(TypeError, match="no handler"):
        builder.with_fallback(Fallback(KeyError, lambda exc: 0), lambda exc: 1)
    with pytest.raises(ValueError, match="exceptions"):
        builder.with_fallback((), lambda exc: 1)


# --- async --------------------------------------------------------------------------------------


async def test_async_stack() -> None:
    clock = FakeClock()
    backend = Backend(failures=10)
    breaker = CircuitBreaker("db", WINDOW, clock=clock)
    retry = Retry("db", clock=clock)

    async def handler(exc: BaseException, key: str) -> str:
        return f"cached-{key}"

    aget = (
        Decorators.of(backend.aget)
        .with_circuit_breaker(breaker)
        .with_retry(retry)
        .with_fallback((CallNotPermittedError, ConnectionError), handler)
        .decorate()
    )
    assert inspect.iscoroutinefunction(aget)
    assert await aget("k") == "cached-k"
    assert backend.calls == 3
    assert breaker.metrics.number_of_failed_calls == 3
    assert clock.sleeps == [0.5, 1.0]

    ok = Backend(failures=1)
    aget2 = (
        Decorators.of(ok.aget)
        .with_circuit_breaker(CircuitBreaker("b2", WINDOW, clock=clock))
        .with_retry(retry)
        .with_fallback(ConnectionError, lambda exc, key: "sync-handler")
        .decorate()
    )
    assert await aget2("z") == "value-z"


async def test_async_sync_handler_answers() -> None:
    async def down() -> int:
        raise ConnectionError

    decorated = Decorators.of(down).with_fallback(ConnectionError, lambda exc: 7).decorate()
    assert await decorated() == 7


# --- pybreaker breakers ---------------------------------------------------------------------------


def test_with_pybreaker_breaker() -> None:
    clock = FakeClock()
    pb = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, name="legacy")
    backend = Backend(failures=100)
    get = (
        Decorators.of(backend.get)
        .with_circuit_breaker(pb)
        .with_retry(Retry("r", RetryConfig(max_attempts=5), clock=clock))
        .with_fallback(CallNotPermittedError, lambda exc, key: exc.breaker_name)
        .decorate()
    )
    assert get("k") == "legacy"
    assert backend.calls == 2  # the 3rd attempt was rejected by the opened breaker
    assert pb.current_state == pybreaker.STATE_OPEN


async def test_with_pybreaker_adapter_async() -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60)
    adapter = PyBreakerAdapter(pb)
    backend = Backend(failures=1)
    aget = (
        Decorators.of(backend.aget)
        .with_circuit_breaker(adapter)
        .with_fallback(pybreaker.CircuitBreakerError, lambda exc, key: "rejected")
        .decorate()
    )
    with pytest.raises(ConnectionError):
        await aget("k")  # an async failure is recorded (pybreaker alone would not see it)
    assert pb.current_state == pybreaker.STATE_OPEN
    assert await aget("k") == "rejected"
    assert backend.calls == 1


# --- typing ---------------------------------------------------------------------------------------


def _typed_use() -> None:
    """mypy --strict checks this file: decorate() keeps fn's signature, sync and async."""
    breaker = CircuitBreaker("t")
    retry = Retry("t")

    def fetch(key: str, *, timeout: float = 1.0) -> int:
        return len(key)

    async def afetch(key: str) -> int:
        return len(key)

    sync: Callable[[str], int] = (
        Decorators.of(fetch)
        .with_circuit_breaker(breaker)
        .with_retry(retry)
        .with_fallback(KeyError, lambda exc, key: 0)
        .decorate()
    )
    async_: Callable[[str], Coroutine[Any, Any, int]] = (
        Decorators.of(afetch).with_circuit_breaker(breaker).with_retry(retry).decorate()
    )
    n: int = Decorators.of(fetch).with_retry(retry).decorate()("k", timeout=2.0)
    del sync, async_, n


def test_mypy_sees_the_original_signature(tmp_path: Path) -> None:
    """decorate() returns fn's exact signature: mypy accepts right calls and rejects wrong ones."""
    source = textwrap.dedent(
        """
        from faulttol import CircuitBreaker, Decorators, Retry

        def fetch(key: str, *, timeout: float = 1.0) -> int:
            return len(key)

        async def afetch(key: str) -> int:
            return len(key)

        guarded = (
            Decorators.of(fetch)
            .with_circuit_breaker(CircuitBreaker("t"))
            .with_retry(Retry("t"))
            .with_fallback(KeyError, lambda exc, key: 0)
            .decorate()
        )
        ok: int = guarded("k", timeout=2.0)
        bad_arg = guarded(1)  # line 18

        async def use() -> None:
            aguarded = Decorators.of(afetch).with_retry(Retry("t")).decorate()
            n: int = await aguarded("k")
            s: str = await aguarded("k")  # line 23
        """
    )
    target = tmp_path / "typed_use.py"
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
    assert {line.split(":")[1] for line in errors} == {"18", "23"}, proc.stdout
    assert len(errors) == 2, proc.stdout
