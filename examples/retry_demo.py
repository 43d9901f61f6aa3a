"""Retries with exponential backoff, then the whole stack built with ``Decorators``.

Run it with ``python examples/retry_demo.py`` (no Redis needed, well under a second).

1. A flaky call that fails twice and then succeeds: ``Retry`` runs it again after 50 ms,
   then 100 ms (``wait_duration`` x ``backoff_multiplier`` ^ (n - 1)); each retry is printed
   by a listener on ``retry.events``.
2. A call that keeps failing: after ``max_attempts`` the last exception is re-raised as is.
3. ``Decorators.of(fn).with_circuit_breaker(...).with_retry(...).with_fallback(...)``: every
   attempt passes the breaker, and the fallback answers from a cache once retries are
   exhausted, and then, with the breaker open, without touching the service at all.
4. The same stack around an ``async def`` function.

The script checks what it shows and exits 1 if something differs.
"""

from __future__ import annotations

import asyncio

from faulttol import (
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    Decorators,
    Retry,
    RetryConfig,
    State,
)
from faulttol.events import RetryOnErrorEvent, RetryOnRetryEvent, RetryOnSuccessEvent

retry = Retry(
    "prices",
    RetryConfig(
        max_attempts=3,  # the first call and two retries
        wait_duration=0.05,  # 50 ms after the first failure ...
        backoff_multiplier=2.0,  # ... then 100 ms
        retry_exceptions=(ConnectionError, TimeoutError),
    ),
)
log: list[str] = []


@retry.events.on_retry
def show_retry(event: RetryOnRetryEvent) -> None:
    print(f"  retry #{event.attempt} after {event.wait * 1000:.0f} ms: {event.exception!r}")
    log.append("retry")


@retry.events.on_success
def show_success(event: RetryOnSuccessEvent) -> None:
    print(f"  succeeded after {event.attempts} attempts")
    log.append("success")


@retry.events.on_error
def show_error(event: RetryOnErrorEvent) -> None:
    print(f"  gave up after {event.attempts} attempts: {event.exception!r}")
    log.append("error")


class FlakyService:
    """Fails ``failures`` times, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def price(self, item: str) -> float:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"connection reset (call {self.calls})")
        return 1.25 * len(item)


def part_one() -> bool:
    print("1. a call that fails twice, then succeeds")
    service = FlakyService(failures=2)
    price = retry.call(service.price, "tea")
    print(f"  price: {price}")
    return price == 3.75 and service.calls == 3


def part_two() -> bool:
    print("2. a call that keeps failing")
    service = FlakyService(failures=99)
    try:
        retry.call(service.price, "tea")
    except ConnectionError as exc:  # the last exception itself, not a wrapper
        print(f"  the caller sees the last exception: {exc}")
        return service.calls == 3
    return False


def part_three() -> bool:
    print("3. breaker + retry + fallback, built with Decorators")
    breaker = CircuitBreaker(
        "prices-breaker",
        CircuitBreakerConfig(
            sliding_window_size=3,
            minimum_number_of_calls=3,
            record_exceptions=(ConnectionError,),
            wait_duration_in_open_state=30.0,
        ),
    )
    service = FlakyService(failures=99)
    cache = {"tea": 3.0}
    # Each with_* wraps what was built so far: Fallback(Retry(CircuitBreaker(price))).
    price = (
        Decorators.of(service.price)
        .with_circuit_breaker(breaker)
        .with_retry(retry)
        .with_fallback(
            (CallNotPermittedError, ConnectionError),
            lambda exc, item: cache[item],  # handler(exc, *args, **kwargs)
        )
        .decorate()
    )
    answer = price("tea")  # 3 attempts fail, the breaker opens, the fallback answers
    print(f"  fallback answered {answer} (attempts: {service.calls}, breaker: "
          f"{breaker.state.name})")
    calls_before = service.calls
    answer_again = price("tea")  # rejected by the open breaker: no call reaches the service
    print(f"  fallback answered {answer_again} again without calling the service "
          f"(attempts: {service.calls})")
    return (
        answer == answer_again == 3.0
        and calls_before == 3
        and service.calls == 3
        and breaker.state is State.OPEN
    )


async def part_four() -> bool:
    print("4. the same stack around an async def function")
    attempts = 0

    async def fetch(item: str) -> float:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        if attempts < 2:
            raise TimeoutError("slow upstream")
        return 2.5

    fetch_guarded = (
        Decorators.of(fetch)
        .with_circuit_breaker(CircuitBreaker("async-prices"))
        .with_retry(retry)
        .with_fallback(ConnectionError, lambda exc, item: 0.0)
        .decorate()
    )
    value = await fetch_guarded("coffee")
    print(f"  async: {value} after {attempts} attempts")
    return value == 2.5 and attempts == 2


def main() -> int:
    results = [part_one(), part_two(), part_three(), asyncio.run(part_four())]
    ok = all(results) and log.count("success") == 2 and log.count("error") == 2
    print("done" if ok else f"UNEXPECTED: {results} {log}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
