"""Tests for faulttol.fallback: exception matching, handler arguments, sync and async."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from faulttol.fallback import Fallback


def raiser(exc: BaseException) -> Callable[..., Any]:
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return fn


def test_success_passes_through_without_calling_handler() -> None:
    calls: list[object] = []
    fb = Fallback(ConnectionError, lambda exc, *a, **k: calls.append(exc))
    assert fb.call(lambda x: x + 1, 1) == 2
    assert calls == []


def test_handler_answers_listed_exception_with_call_arguments() -> None:
    seen: list[tuple[BaseException, tuple[Any, ...], dict[str, Any]]] = []

    def handler(exc: BaseException, *args: Any, **kwargs: Any) -> str:
        seen.append((exc, args, kwargs))
        return "cached"

    fb = Fallback((ConnectionError, TimeoutError), handler)
    err = TimeoutError("slow")
    assert fb.call(raiser(err), "key", ttl=3) == "cached"
    assert seen == [(err, ("key",), {"ttl": 3})]


def test_subclass_of_listed_exception_is_answered() -> None:
    fb = Fallback(OSError, lambda exc, *a, **k: type(exc).__name__)
    assert fb.call(raiser(ConnectionRefusedError())) == "ConnectionRefusedError"


def test_other_exceptions_propagate_unchanged() -> None:
    fb = Fallback(ConnectionError, lambda exc, *a, **k: "no")
    err = ValueError("bad")
    with pytest.raises(ValueError) as info:
        fb.call(raiser(err))
    assert info.value is err


def test_handler_exception_propagates() -> None:
    def handler(exc: BaseException, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("handler failed") from exc

    fb = Fallback(KeyError, handler)
    with pytest.raises(RuntimeError, match="handler failed") as info:
        fb.call(raiser(KeyError("k")))
    assert isinstance(info.value.__cause__, KeyError)


def test_base_exception_types_may_be_listed() -> None:
    fb = Fallback(KeyboardInterrupt, lambda exc, *a, **k: "interrupted")
    assert fb.call(raiser(KeyboardInterrupt())) == "interrupted"


def test_properties_and_repr() -> None:
    def handler(exc: BaseException) -> None:
        return None

    fb = Fallback((KeyError, OSError), handler)
    assert fb.exceptions == (KeyError, OSError)
    assert fb.handler is handler
    assert "KeyError" in repr(fb) and "OSError" in repr(fb)
    assert Fallback(KeyError, handler).exceptions == (KeyError,)


@pytest.mark.parametrize("exceptions", [int, (ValueError, str), "ValueError", [ValueError], None])
def test_rejects_non_exception_types(exceptions: object) -> None:
    with pytest.raises(TypeError, match="exception"):
        Fallback(exceptions, lambda exc: None)  # type: ignore[arg-type]


def test_rejects_empty_tuple() -> None:
    with pytest.raises(ValueError, match="exceptions"):
        Fallback((), lambda exc: None)


def test_rejects_non_callable_handler() -> None:
    with pytest.raises(TypeError, match="handler"):
        Fallback(KeyError, "handler")  # type: ignore[arg-type]


def test_decorator_sync() -> None:
    fb = Fallback(ConnectionError, lambda exc, key: f"default-{key}")

    @fb
    def get(key: str) -> str:
        """Get a key."""
        if key == "down":
            raise ConnectionError
        return key.upper()

    assert get("a") == "A"
    assert get("down") == "default-down"
    assert get.__name__ == "get" and get.__doc__ == "Get a key."
    assert not inspect.iscoroutinefunction(get)
    with pytest.raises(TypeError, match="callable"):
        fb.decorate(3)  # type: ignore[arg-type]


async def test_call_async_with_plain_handler() -> None:
    fb = Fallback(ConnectionError, lambda exc, x: -x)

    async def ok(x: int) -> int:
        return x

    async def down(x: int) -> int:
        raise ConnectionError

    assert await fb.call_async(ok, 4) == 4
    assert await fb.call_async(down, 4) == -4


async def test_call_async_with_coroutine_handler() -> None:
    seen: list[BaseException] = []

    async def handler(exc: BaseException, *args: Any, **kwargs: Any) -> str:
        seen.append(exc)
        return f"async-{args[0]}-{kwargs['b']}"

    fb = Fallback(TimeoutError, handler)
    err = TimeoutError()

    async def down(a: int, *, b: int) -> str:
        raise err

    assert await fb.call_async(down, 1, b=2) == "async-1-2"
    assert seen == [err]


async def test_async_other_exceptions_propagate() -> None:
    fb = Fallback(TimeoutError, lambda exc: "x")

    async def bad() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        await fb.call_async(bad)
    with pytest.raises(KeyError):
        await fb.decorate(bad)()


async def test_async_decorator_with_both_handler_kinds() -> None:
    async def async_handler(exc: BaseException, n: int) -> int:
        return n * 10

    def sync_handler(exc: BaseException, n: int) -> int:
        return n * 100

    async def work(n: int) -> int:
        """Work."""
        if n < 0:
            raise ConnectionError
        return n

    for handler, factor in ((async_handler, 10), (sync_handler, 100)):
        decorated = Fallback(ConnectionError, handler)(work)
        assert inspect.iscoroutinefunction(decorated)
        assert decorated.__name__ == "work"
        assert await decorated(3) == 3
        assert await decorated(-2) == -2 * factor


def _typed_use() -> None:
    """Compile-time check (mypy --strict) that decorate keeps the signature."""
    fb = Fallback(KeyError, lambda exc, *a: 0)

    def f(a: int, b: str = "") -> int:
        return a

    g: Callable[[int, str], int] = fb.decorate(f)
    h: int = fb.call(f, 1, b="x")
    del g, h
