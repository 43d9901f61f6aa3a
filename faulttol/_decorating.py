"""One builder for the sync-or-async decorators of the components that are not on a hot path.

Most components decorate a function the same way: a plain function is wrapped so that each
call goes through the component's ``call(fn, *args, **kwargs)``, an ``async def`` function so
that each call awaits ``call_async(fn, *args, **kwargs)``; the wrapper keeps ``fn``'s name,
docstring and signature (``functools.wraps``). :func:`wrap_calls` builds that wrapper once for
all of them. The breaker, the bulkhead and the rate limiter keep their own written-out
wrappers: going through ``call`` would add a call frame to their hot paths.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["wrap_calls"]


def wrap_calls(
    fn: Callable[P, R],
    call: Callable[..., Any] | None,
    call_async: Callable[..., Awaitable[Any]] | None,
) -> Callable[P, R]:
    """Wrap ``fn`` so each call runs as ``call(fn, *args, **kwargs)``, or, when ``fn`` is an
    ``async def`` function, as ``await call_async(fn, *args, **kwargs)``.

    ``None`` for both means a plain pass-through wrapper (``fn(*args, **kwargs)`` with no
    extra frame), for a component that is switched off for good. The caller checks that
    ``fn`` is callable first, so that its ``TypeError`` names the component.
    """
    if inspect.iscoroutinefunction(fn):
        afn = cast("Callable[P, Awaitable[Any]]", fn)
        if call_async is None:

            @functools.wraps(fn)
            async def passthrough_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await afn(*args, **kwargs)

            return cast("Callable[P, R]", passthrough_async)
        run_async = call_async

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await run_async(afn, *args, **kwargs)

        return cast("Callable[P, R]", async_wrapper)

    if call is None:

        @functools.wraps(fn)
        def passthrough(*args: P.args, **kwargs: P.kwargs) -> R:
            return fn(*args, **kwargs)

        return passthrough
    run = call

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        return run(fn, *args, **kwargs)

    return cast("Callable[P, R]", wrapper)
