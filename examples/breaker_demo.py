"""A circuit breaker opening on failures, rejecting calls, then closing again.

Run it with ``python examples/breaker_demo.py`` (no Redis needed, about half a second).

A small count-based window (the last 4 calls, 50 % failure rate) guards a pretend inventory
service. The service goes down: two failures out of four calls open the breaker, which then
rejects calls at once with ``CallNotPermittedError`` instead of waiting on a dead service.
After the open wait (0.3 s here) the next call moves the breaker to HALF_OPEN; two trial
calls succeed and the breaker closes. Every state transition is printed by a listener on
``breaker.events``. The script checks what it shows and exits 1 if something differs.
"""

from __future__ import annotations

import time

from faulttol import CallNotPermittedError, CircuitBreaker, CircuitBreakerConfig, State
from faulttol.events import CircuitBreakerOnStateTransitionEvent

OPEN_WAIT = 0.3  # seconds the breaker stays OPEN before it lets trial calls through

config = CircuitBreakerConfig(
    sliding_window_size=4,  # look at the last 4 calls
    minimum_number_of_calls=4,  # ... and only once there are 4 of them
    failure_rate_threshold=50.0,  # open when at least half of them failed
    wait_duration_in_open_state=OPEN_WAIT,
    permitted_number_of_calls_in_half_open_state=2,  # trial calls before deciding
    record_exceptions=(ConnectionError,),  # only these count as failures
)
breaker = CircuitBreaker("inventory", config)
transitions: list[tuple[State, State]] = []


@breaker.events.on_state_transition
def show_transition(event: CircuitBreakerOnStateTransitionEvent) -> None:
    assert event.from_state is not None and event.to_state is not None
    transitions.append((event.from_state, event.to_state))
    print(f"  transition: {event.from_state.name} -> {event.to_state.name}")


service_up = True
calls_reaching_the_service = 0


@breaker
def stock_level(item: str) -> int:
    """The protected call: a pretend remote service."""
    global calls_reaching_the_service
    calls_reaching_the_service += 1
    if not service_up:
        raise ConnectionError("inventory service unreachable")
    return len(item)


def attempt(item: str) -> None:
    try:
        print(f"call {item!r}: {stock_level(item)} in stock   [{breaker.state.name}]")
    except CallNotPermittedError as exc:
        print(f"call {item!r}: rejected: CallNotPermittedError ({exc})")
    except ConnectionError as exc:
        print(f"call {item!r}: failed: {exc}   [{breaker.state.name}]")


def main() -> int:
    global service_up
    print("1. the service works")
    attempt("apples")
    attempt("pears")

    print("2. the service goes down: 2 failures of 4 calls reach the 50 % threshold")
    service_up = False
    attempt("plums")
    attempt("figs")
    metrics = breaker.metrics
    print(
        f"  failure rate {metrics.failure_rate:.0f} %, "
        f"{metrics.number_of_failed_calls} of {metrics.number_of_buffered_calls} calls failed"
    )

    print("3. while OPEN, calls are rejected without reaching the service")
    before = calls_reaching_the_service
    attempt("kiwis")
    attempt("limes")
    rejected_without_calling = calls_reaching_the_service == before
    print(f"  not permitted so far: {breaker.metrics.number_of_not_permitted_calls}")

    print(f"4. the service recovers; wait {OPEN_WAIT} s for the open state to end")
    service_up = True
    time.sleep(OPEN_WAIT + 0.05)
    print(f"  state before the next call: {breaker.state.name} (the move is lazy)")
    attempt("melons")  # OPEN -> HALF_OPEN, first trial call
    attempt("grapes")  # second trial call: both succeeded -> CLOSED

    print("5. back to normal")
    attempt("dates")

    expected = [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]
    ok = transitions == expected and rejected_without_calling and breaker.state is State.CLOSED
    print("done: the breaker opened, rejected, and closed again" if ok else "UNEXPECTED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
