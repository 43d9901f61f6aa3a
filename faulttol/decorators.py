"""Decorators: compose a circuit breaker, retries and fallbacks around one function.

::

    guarded = (
        Decorators.of(fetch)
        .with_circuit_breaker(breaker)
        .with_retry(retry)
        .with_fallback((CallNotPermittedError, ConnectionError), lambda exc, key: None)
        .decorate()
    )

Each ``with_*`` wraps what was built so far (resilience4j's order), so the example is
``Fallback(Retry(CircuitBreaker(fetch)))``: every attempt passes the breaker, and the fallback
answers only once retries are exhausted. Any order and repetition is allowed. The builder is
immutable (each ``with_*`` returns a new one), works for plain and ``async def`` functions, and
keeps the function's signature for type checkers.

Each layer is applied as soon as it is added, by that component's own ``decorate``: no builder
frame remains between the layers at call time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

from ._breaker_protocol import as_breaker
from .breaker import CircuitBreaker
from .bulkhead import Bulkhead, ThreadPoolBulkhead
from .chaos import ChaosStrategy
from .fallback import Fallback
from .hedge import Hedge
from .ratelimiter import RateLimiter
from .retry import Retry
from .timelimiter import TimeLimiter

__all__ = ["Decorators"]

P = ParamSpec("P")
R = TypeVar("R")
P2 = ParamSpec("P2")
R2 = TypeVar("R2")


class Decorators(Generic[P, R]):
    """An immutable builder that stacks resilience layers around ``fn``.

    Start with :meth:`of`, add layers with the ``with_*`` methods, finish with
    :meth:`decorate`.
    """

    __slots__ = ("_fn", "_original")

    def __init__(self, fn: Callable[P, R], original: Callable[..., Any] | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"Decorators needs a callable, got {fn!r}")
        self._fn = fn
        self._original = fn if original is None else original

    @staticmethod
    def of(fn: Callable[P2, R2]) -> Decorators[P2, R2]:
        """Start building around ``fn`` (a plain or ``async def`` function)."""
        return Decorators(fn)

    def with_circuit_breaker(self, breaker: object) -> Decorators[P, R]:
        """Guard what was built so far with ``breaker``.

        Takes a faulttol :class:`~faulttol.CircuitBreaker` or any object with its breaker API
        (:class:`faulttol.Breaker`, e.g. a ``PyBreakerAdapter``). Adapting another library's
        breaker is its adapter's job, found through the ``faulttol.breaker_adapters`` entry
        points: a ``pybreaker.CircuitBreaker`` is wrapped in a ``PyBreakerAdapter`` by
        :mod:`faulttol.interop.pybreaker` (which this module never imports). Anything else is
        a ``TypeError``.
        """
        if isinstance(breaker, CircuitBreaker):
            return Decorators(breaker.decorate(self._fn), self._original)
        adapted = as_breaker(breaker, "with_circuit_breaker's breaker")
        return Decorators(adapted.decorate(self._fn), self._original)

    def with_retry(self, retry: Retry) -> Decorators[P, R]:
        """Retry what was built so far with ``retry``."""
        if not isinstance(retry, Retry):
            raise TypeError(f"with_retry expects a faulttol Retry, got {retry!r}")
        return Decorators(retry.decorate(self._fn), self._original)

    def with_fallback(
        self,
        exceptions: type[BaseException] | tuple[type[BaseException], ...] | Fallback,
        handler: Callable[..., Any] | None = None,
    ) -> Decorators[P, R]:
        """Answer listed exceptions of what was built so far from ``handler(exc, *args, **kw)``.

        Also accepts a ready :class:`~faulttol.Fallback` as the only argument.
        """
        if isinstance(exceptions, Fallback):
            if handler is not None:
                raise TypeError("with_fallback(Fallback) takes no handler")
            fallback = exceptions
        else:
            if handler is None:
                raise TypeError("with_fallback needs a handler")
            fallback = Fallback(exceptions, handler)
        return Decorators(fallback.decorate(self._fn), self._original)

    def with_hedge(self, hedge: Hedge) -> Decorators[P, R]:
        """Hedge what was built so far with ``hedge``: each attempt (the original call and
        every hedge) runs through the layers added before, on its own thread or task."""
        if not isinstance(hedge, Hedge):
            raise TypeError(f"with_hedge expects a faulttol Hedge, got {hedge!r}")
        return Decorators(hedge.decorate(self._fn), self._original)

    def with_bulkhead(self, bulkhead: Bulkhead | ThreadPoolBulkhead) -> Decorators[P, R]:
        """Run what was built so far in a slot of ``bulkhead``: a :class:`~faulttol.Bulkhead`
        (in the caller's thread or task) or a :class:`~faulttol.ThreadPoolBulkhead` (on its
        threads)."""
        if not isinstance(bulkhead, (Bulkhead, ThreadPoolBulkhead)):
            raise TypeError(
                f"with_bulkhead expects a faulttol Bulkhead or ThreadPoolBulkhead, got {bulkhead!r}"
            )
        return Decorators(bulkhead.decorate(self._fn), self._original)

    def with_time_limiter(self, time_limiter: TimeLimiter) -> Decorators[P, R]:
        """Give what was built so far a deadline with ``time_limiter`` (a sync function then
        runs on the limiter's executor)."""
        if not isinstance(time_limiter, TimeLimiter):
            raise TypeError(
                f"with_time_limiter expects a faulttol TimeLimiter, got {time_limiter!r}"
            )
        return Decorators(time_limiter.decorate(self._fn), self._original)

    def with_rate_limiter(self, rate_limiter: RateLimiter) -> Decorators[P, R]:
        """Take a permission of ``rate_limiter`` before each call of what was built so far
        (waiting for a reserved one up to its timeout, else ``RequestNotPermittedError``)."""
        if not isinstance(rate_limiter, RateLimiter):
            raise TypeError(
                f"with_rate_limiter expects a faulttol RateLimiter, got {rate_limiter!r}"
            )
        return Decorators(rate_limiter.decorate(self._fn), self._original)

    def with_chaos(self, strategy: ChaosStrategy) -> Decorators[P, R]:
        """Inject ``strategy``'s chaos (a :class:`~faulttol.chaos.ChaosFault`,
        ``ChaosLatency``, ``ChaosOutcome`` or ``ChaosBehavior``) around what was built so
        far. Added first, it plays a failing dependency that the layers added after it must
        handle (rehearse breaker, retry and fallback); added last, it hits the caller."""
        if not isinstance(strategy, ChaosStrategy):
            raise TypeError(f"with_chaos expects a faulttol.chaos strategy, got {strategy!r}")
        return Decorators(strategy.decorate(self._fn), self._original)

    def decorate(self) -> Callable[P, R]:
        """The composed callable, with ``fn``'s signature."""
        return self._fn

    def __repr__(self) -> str:
        name = getattr(self._original, "__qualname__", repr(self._original))
        return f"Decorators.of({name})"
