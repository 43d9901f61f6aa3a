"""What the collector counts itself, from registration on: breaker transitions (and the baseline
of a breaker's cumulative counters), retries by outcome, provider switches by reason."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from ..breaker import CircuitBreakerCounters, State
from ..events import (
    CircuitBreakerOnStateTransitionEvent,
    RetryOnErrorEvent,
    RetryOnIgnoredErrorEvent,
    RetryOnRetryEvent,
    RetryOnSuccessEvent,
)
from ..hedge import Hedge
from ..provider import SwitchEvent, SwitchReason
from ..retry import Retry

__all__ = ["RETRY_CALL_OUTCOMES", "ProviderLike", "state_label"]

RETRY_CALL_OUTCOMES: Final = ("successful_after_retry", "failed_after_max_attempts", "ignored")
"""``outcome`` values of ``faulttol_retry_calls_total``."""

_AFTER_RETRY, _AFTER_MAX_ATTEMPTS, _RETRY_IGNORED = range(3)
_REASONS: Final = tuple(SwitchReason)

# --- counting ------------------------------------------------------------------------------


def state_label(state: State) -> str:
    """The ``state`` label value of a breaker state: ``"closed"``, ``"half_open"``..."""
    return state.value.lower()


class ProviderLike(Protocol):
    """What :meth:`MetricsCollector.register_provider` needs of a provider.

    :class:`faulttol.OrderedProvider` and ``faulttol_redis.FailoverProvider`` qualify. The
    provider's ``name`` attribute (if any) is the default ``provider`` label, and its
    ``retry`` attribute (if any) is exported too.
    """

    @property
    def active_index(self) -> int: ...

    def add_switch_listener(self, listener: Callable[[SwitchEvent], object]) -> None: ...

    def status(self) -> Sequence[Mapping[str, Any]]: ...

    def breaker(self, index: int) -> Any: ...

    def __len__(self) -> int: ...


class _BreakerCounts:
    """Cumulative counts of one breaker since registration (thread-safe).

    Calls by outcome come from ``breaker.counters`` (when the breaker has them: a pybreaker
    adapter has not) minus their value at registration; they are read, never fed, so the
    breaker's success path stays as fast as an unobserved breaker's. Only the rare state
    transitions are counted from events (when the breaker has events).
    """

    __slots__ = ("_baseline", "_breaker", "_lock", "_transitions")

    def __init__(self, breaker: Any) -> None:
        self._breaker = breaker
        self._lock = threading.Lock()
        self._transitions: dict[tuple[str, str], int] = {}
        events = getattr(breaker, "events", None)
        if events is not None:
            events.on_state_transition(self._on_transition)
        counters = getattr(breaker, "counters", None)
        self._baseline: CircuitBreakerCounters | None = (
            counters if isinstance(counters, CircuitBreakerCounters) else None
        )

    def _on_transition(self, event: CircuitBreakerOnStateTransitionEvent) -> None:
        if event.from_state is None or event.to_state is None:
            return
        key = (state_label(event.from_state), state_label(event.to_state))
        with self._lock:
            self._transitions[key] = self._transitions.get(key, 0) + 1

    def read(
        self,
    ) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None, dict[tuple[str, str], int]]:
        """Calls by outcome, slow calls by outcome (``None`` without counters), transitions."""
        with self._lock:
            transitions = dict(self._transitions)
        if self._baseline is None:
            return None, None, transitions
        c = self._breaker.counters - self._baseline
        calls = (c.successful_calls, c.failed_calls, c.ignored_calls, c.not_permitted_calls)
        return calls, (c.slow_successful_calls, c.slow_failed_calls), transitions


class _RetryCounts:
    """Cumulative counts of one retry's events since registration (thread-safe)."""

    __slots__ = ("_calls", "_lock", "_retries")

    def __init__(self, retry: Retry) -> None:
        self._lock = threading.Lock()
        self._retries = 0
        self._calls = [0, 0, 0]
        events = retry.events
        events.on_retry(self._on_retry)
        events.on_success(self._on_success)
        events.on_error(self._on_error)
        events.on_ignored_error(self._on_ignored)

    def _on_retry(self, event: RetryOnRetryEvent) -> None:
        with self._lock:
            self._retries += 1

    def _on_success(self, event: RetryOnSuccessEvent) -> None:
        with self._lock:
            self._calls[_AFTER_RETRY] += 1

    def _on_error(self, event: RetryOnErrorEvent) -> None:
        with self._lock:
            self._calls[_AFTER_MAX_ATTEMPTS] += 1

    def _on_ignored(self, event: RetryOnIgnoredErrorEvent) -> None:
        with self._lock:
            self._calls[_RETRY_IGNORED] += 1

    def read(self) -> tuple[int, tuple[int, ...]]:
        with self._lock:
            return self._retries, tuple(self._calls)


class _SwitchCounts:
    """Cumulative switches of one provider, fed by a switch listener: by reason, and by
    (index left, index entered, reason)."""

    __slots__ = ("_counts", "_lock", "_pairs")

    def __init__(self, provider: ProviderLike) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_REASONS, 0)
        self._pairs: dict[tuple[int, int, SwitchReason], int] = {}
        provider.add_switch_listener(self._on_switch)

    def _on_switch(self, event: SwitchEvent) -> None:
        key = (event.previous_index, event.index, event.reason)
        with self._lock:
            self._counts[event.reason] = self._counts.get(event.reason, 0) + 1
            self._pairs[key] = self._pairs.get(key, 0) + 1

    def read(self) -> dict[SwitchReason, int]:
        with self._lock:
            return dict(self._counts)

    def read_failovers(self) -> dict[tuple[int, int, SwitchReason], int]:
        """Switches by (index left, index entered, reason)."""
        with self._lock:
            return dict(self._pairs)


class _HedgeCounts:
    """Hedges and wins by attempt of one hedge since registration: its own cumulative
    ``metrics`` minus their value at registration (read at collection, no per-call cost)."""

    __slots__ = ("_baseline", "_hedge")

    def __init__(self, hedge: Hedge) -> None:
        self._hedge = hedge
        self._baseline = hedge.metrics

    def read(self) -> tuple[int, tuple[int, ...]]:
        """Hedges started, wins by attempt (index 0: the original call)."""
        now, base = self._hedge.metrics, self._baseline
        wins = tuple(n - b for n, b in zip(now.wins_by_attempt, base.wins_by_attempt, strict=True))
        return now.number_of_hedges - base.number_of_hedges, wins
