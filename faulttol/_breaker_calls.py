"""The guarded calls of a :class:`~faulttol.CircuitBreaker`: ``call``, ``call_async`` and
the wrappers ``decorate`` builds, its hot paths.

In CLOSED (and the other admitting states) a call reads one attribute for permission, runs,
and queues its success in the window without the lock. The body is written out four times
(sync and asyncio, ``call`` and the decorator's closure with everything bound to locals) on
purpose: one shared body would cost a call frame per call. A base class of the breaker,
private: everything it uses is the breaker's (declared below for the type checker).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from ._component import Decorating

__all__ = ["GuardedCalls"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class GuardedCalls(Decorating):
    """Running functions through the breaker (see the module docstring)."""

    _admits_all: bool
    _monotonic: Callable[[], float]
    _queue_success: Callable[[float, float], bool]
    acquire_permission: Callable[[], None]
    _on_error_at: Callable[[float, BaseException, float], None]
    _on_result_at: Callable[[float, object, float], None]

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` through the breaker."""
        if not self._admits_all:
            self.acquire_permission()
        monotonic = self._monotonic
        start = monotonic()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            end = monotonic()
            self._on_error_at(end - start, exc, end)
            raise
        end = monotonic()
        if not self._queue_success(end - start, end):
            self._on_result_at(end - start, result, end)
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` through the breaker."""
        if not self._admits_all:
            self.acquire_permission()
        monotonic = self._monotonic
        start = monotonic()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            end = monotonic()
            self._on_error_at(end - start, exc, end)
            raise
        end = monotonic()
        if not self._queue_success(end - start, end):
            self._on_result_at(end - start, result, end)
        return result

    def _decorate_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        # The hot path: everything the CLOSED success path needs is bound to locals, no method
        # layers. Written out again for asyncio (and in call/call_async): one shared body would
        # cost a call frame per call.
        breaker = self
        monotonic = self._monotonic
        queue_success = self._queue_success
        on_result_at = self._on_result_at

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            if not breaker._admits_all:
                breaker.acquire_permission()
            start = monotonic()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                end = monotonic()
                breaker._on_error_at(end - start, exc, end)
                raise
            end = monotonic()
            if not queue_success(end - start, end):
                on_result_at(end - start, result, end)
            return result

        return guarded

    def _decorate_async(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        breaker = self
        monotonic = self._monotonic
        queue_success = self._queue_success
        on_result_at = self._on_result_at

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            if not breaker._admits_all:
                breaker.acquire_permission()
            start = monotonic()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                end = monotonic()
                breaker._on_error_at(end - start, exc, end)
                raise
            end = monotonic()
            if not queue_success(end - start, end):
                on_result_at(end - start, result, end)
            return result

        return guarded
