"""Static proof, checked by mypy (``mypy --strict tests/typing``), that faulttol's decorators
keep the signatures of the functions they wrap (sync and ``async def``) and that the failover
clients' commands keep redis-py's types.

Nothing here runs as a test: every line is an ``assert_type`` (or a call that must not type
check, marked ``type: ignore[...]``, which ``warn_unused_ignores`` in strict mode turns into
an error the day it would type check). ``tests/typing/test_typing_assertions.py`` runs mypy
on this folder.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Coroutine
from typing import Any

import redis
import redis.asyncio

from faulttol import (
    Bulkhead,
    CallNotPermittedError,
    CircuitBreaker,
    Decorators,
    Fallback,
    Hedge,
    RateLimiter,
    Retry,
    ThreadPoolBulkhead,
    TimeLimiter,
)
from faulttol_redis import FailoverPipeline, FailoverRedis
from faulttol_redis.asyncio import FailoverRedis as AsyncFailoverRedis

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type


def fetch(key: str, *, retries: int = 0) -> bytes:
    return key.encode() * (retries + 1)


async def fetch_async(key: str, *, retries: int = 0) -> bytes:
    return key.encode() * (retries + 1)


AsyncResult = Coroutine[Any, Any, bytes]


# --- each component as a decorator -----------------------------------------------------------


def components_keep_sync_signatures(
    breaker: CircuitBreaker, retry: Retry, bulkhead: Bulkhead, pool: ThreadPoolBulkhead,
    limiter: RateLimiter, time_limiter: TimeLimiter, hedge: Hedge, fallback: Fallback,
) -> None:
    for decorated in (breaker.decorate(fetch), breaker(fetch), retry(fetch),
                      retry.decorate(fetch), bulkhead(fetch), pool(fetch), limiter(fetch),
                      time_limiter(fetch), hedge(fetch), fallback(fetch),
                      fallback.decorate(fetch)):
        assert_type(decorated("k"), bytes)
        assert_type(decorated("k", retries=2), bytes)
        decorated(1)  # type: ignore[arg-type]
        decorated("k", tries=2)  # type: ignore[call-arg]


def components_keep_async_signatures(
    breaker: CircuitBreaker, retry: Retry, bulkhead: Bulkhead, limiter: RateLimiter,
    time_limiter: TimeLimiter, hedge: Hedge, fallback: Fallback,
) -> None:
    for decorated in (breaker(fetch_async), retry(fetch_async), bulkhead(fetch_async),
                      limiter(fetch_async), time_limiter(fetch_async), hedge(fetch_async),
                      fallback(fetch_async)):
        assert_type(decorated("k", retries=1), AsyncResult).close()
        decorated(b"k").close()  # type: ignore[arg-type]


async def awaiting_a_decorated_coroutine(breaker: CircuitBreaker, retry: Retry) -> None:
    assert_type(await breaker(fetch_async)("k"), bytes)
    assert_type(await retry(retry(fetch_async))("k", retries=3), bytes)


# --- decorator syntax ------------------------------------------------------------------------

breaker = CircuitBreaker("typing")
retry = Retry("typing")


@breaker
@retry
def get_user(user_id: int, /, verbose: bool = False) -> dict[str, int]:
    return {"id": user_id}


@retry
async def get_user_async(user_id: int) -> list[str]:
    return [str(user_id)]


assert_type(get_user(1), dict[str, int])
assert_type(get_user(1, verbose=True), dict[str, int])
assert_type(get_user_async(1), Coroutine[Any, Any, list[str]]).close()


# --- Decorators.of(...).with_*(...).decorate() -----------------------------------------------


def the_builder_keeps_signatures(
    breaker: CircuitBreaker, retry: Retry, bulkhead: Bulkhead, limiter: RateLimiter,
    time_limiter: TimeLimiter, hedge: Hedge,
) -> None:
    built = (
        Decorators.of(fetch)
        .with_circuit_breaker(breaker)
        .with_retry(retry)
        .with_bulkhead(bulkhead)
        .with_rate_limiter(limiter)
        .with_time_limiter(time_limiter)
        .with_hedge(hedge)
        .with_fallback(CallNotPermittedError, lambda exc, key, **kw: b"")
        .decorate()
    )
    assert_type(built("k", retries=1), bytes)
    built(1)  # type: ignore[arg-type]

    built_async = Decorators.of(fetch_async).with_retry(retry).with_circuit_breaker(
        breaker).decorate()
    assert_type(built_async("k"), AsyncResult).close()


# --- the clients keep redis-py's types -------------------------------------------------------


def sync_client_commands(client: FailoverRedis, plain: redis.Redis) -> None:
    assert_type(client.get("k"), bytes | str | None)
    assert_type(plain.get("k"), bytes | str | None)                # redis-py's own
    assert_type(client.set("k", "v"), bool | str | bytes | None)
    assert_type(client.incr("n"), int)
    assert_type(client.hgetall("h"), dict[bytes | str, bytes | str])
    assert_type(client.pipeline(), FailoverPipeline)
    assert isinstance(client, redis.Redis)


def async_client_commands(client: AsyncFailoverRedis) -> None:
    assert_type(client.get("k"), Awaitable[bytes | str | None])
    assert_type(client.set("k", "v"), Awaitable[bool | str | bytes | None])


async def awaited_async_commands(client: AsyncFailoverRedis) -> None:
    assert_type(await client.get("k"), bytes | str | None)
    assert_type(await client.incr("n"), int)
    assert isinstance(client, redis.asyncio.Redis)
