"""Fallback: answer a call from a handler when it raised one of a listed exception types.

``Fallback((CallNotPermittedError, ConnectionError), handler)`` calls
``handler(exc, *args, **kwargs)`` with the exception and the call's own arguments when the call
raised an instance of one of those types, and returns what the handler returns; any other
exception propagates unchanged. Around an ``async def`` function the handler may be a plain
function or a coroutine function (its result is awaited when it is awaitable).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

__all__ = ["Fallback"]

P = ParamSpec("P")
T = TypeVar("T")


def _exception_tuple(exceptions: object) -> tuple[type[BaseException], ...]:
    """Validate ``exceptions`` (a type or a non-empty tuple of types) and return a tuple."""
    if isinstance(exceptions, type):
        exceptions = (exceptions,)
    if not isinstance(exceptions, tuple):
        raise TypeError(
            f"exceptions must be an exception type or a tuple of them, got {exceptions!r}"
        )
    if not exceptions:
        raise ValueError("exceptions must name at least one exception type, got ()")
    for item in exceptions:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"exceptions must contain only exception types, got {item!r}")
    return exceptions


class Fallback:
    """Answers a failed call from ``handler(exc, *args, **kwargs)`` for listed exceptions.

    Use ``.call(fn, ...)``, ``await .call_async(fn, ...)``, or as a decorator on plain and
    ``async def`` functions.
    """

    __slots__ = ("_exceptions", "_handler")

    def __init__(
        self,
        exceptions: type[BaseException] | tuple[type[BaseException], ...],
        handler: Callable[..., Any],
    ) -> None:
        self._exceptions = _exception_tuple(exceptions)
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        self._handler = handler

    @property
    def exceptions(self) -> tuple[type[BaseException], ...]:
        """The exception types the handler answers."""
        return self._exceptions

    @property
    def handler(self) -> Callable[..., Any]:
        """The handler, called as ``handler(exc, *args, **kwargs)``."""
        return self._handler

    def __repr__(self) -> str:
        names = ", ".join(t.__name__ for t in self._exceptions)
        return f"Fallback(exceptions=({names}), handler={self._handler!r})"

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)``; on a listed exception return the handler's answer."""
        try:
            return fn(*args, **kwargs)
        except self._exceptions as exc:
            return cast(T, self._handler(exc, *args, **kwargs))

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)``; on a listed exception return the handler's answer."""
        try:
            return await fn(*args, **kwargs)
        except self._exceptions as exc:
            answer = self._handler(exc, *args, **kwargs)
            if inspect.isawaitable(answer):
                answer = await answer
            return cast(T, answer)

    def decorate(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Wrap ``fn`` (a plain or ``async def`` function) with this fallback."""
        if not callable(fn):
            raise TypeError(f"Fallback.decorate expects a callable, got {fn!r}")
        exceptions = self._exceptions
        handler = self._handler

        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    return await afn(*args, **kwargs)
                except exceptions as exc:
                    answer = handler(exc, *args, **kwargs)
                    if inspect.isawaitable(answer):
                        answer = await answer
                    return answer

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except exceptions as exc:
                return cast(T, handler(exc, *args, **kwargs))

        return wrapper

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorator form of :meth:`decorate`."""
        return self.decorate(fn)
