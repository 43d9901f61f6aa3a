"""What :class:`~faulttol.OrderedProvider` and :class:`~faulttol.AsyncOrderedProvider` share:
building a :class:`~faulttol._failover.FailoverCore` from their arguments, and the queries and
plain operations that do no I/O (``active_index``, ``breaker(i)``, ``status()``, listeners,
``add_target``, ``set_weight``...).

The two providers are built on this base by composition of the core (``self._core``); neither
subclasses the other. Everything that calls a target, probes, sleeps or runs a listener is in
the providers themselves.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from ._breaker_config import CircuitBreakerConfig
from ._breaker_protocol import as_breaker
from ._clock import Clock, resolve_clock
from ._failover import FailoverCore
from ._failover_types import (
    ActiveState,
    Slot,
    SwitchEvent,
    TargetStatus,
    default_unavailable_error,
)
from ._provider_config import (
    DEFAULT_AUTO_FAILBACK_INTERVAL,
    DEFAULT_FALLBACK_EXCEPTIONS,
    DEFAULT_HEALTH_CHECK_INTERVAL,
    ProviderConfig,
)
from .breaker import CircuitBreaker
from .registry import CircuitBreakerRegistry
from .retry import Retry, RetryConfig
from .validation import check_config, check_instance, check_non_negative

__all__ = ["DEPRECATED_KEYWORDS", "ProviderBase"]

_log = logging.getLogger("faulttol.provider")

T = TypeVar("T")

DEPRECATED_KEYWORDS = {
    "strategy": "failover_strategy",
    "auto_failback_grace_period": "auto_failback_grace_period",
    "failover_attempts": "failover_attempts",
    "failover_delay": "failover_delay",
}
"""0.1.0 keywords of the providers that became :class:`ProviderConfig` fields (old -> field)."""


def check_weight(weight: object) -> float:
    return check_non_negative("weight", weight)


class ProviderBase(Generic[T]):
    """The construction and the I/O-free API shared by the two providers (see the module
    docstring); the subclasses install the health monitor (:meth:`_install_monitor`)."""

    def __init__(
        self,
        targets: Iterable[T],
        config: ProviderConfig | None = None,
        *,
        circuit_breaker: CircuitBreakerConfig | Sequence[Any] | None = None,
        retry: RetryConfig | Retry | None = None,
        fallback_exceptions: tuple[type[BaseException], ...] = DEFAULT_FALLBACK_EXCEPTIONS,
        health_check: Callable[[T], Any] | None = None,
        health_check_interval: float = DEFAULT_HEALTH_CHECK_INTERVAL,
        auto_failback_interval: float | None = DEFAULT_AUTO_FAILBACK_INTERVAL,
        clock: Clock | None = None,
        names: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        probe: Callable[[T, BaseException], Any] | None = None,
        initial_index: int | None = None,
        breaker_registry: CircuitBreakerRegistry | None = None,
        unavailable_error: Callable[[bool, str], BaseException] = default_unavailable_error,
        name: str = "provider",
        noun: str = "target",
        before_reuse: Callable[[T], Any] | None = None,
        start_health_checks: bool = True,
        **deprecated: Any,
    ) -> None:
        target_list = list(targets)
        if not target_list:
            raise ValueError(f"targets must not be empty (at least one {noun})")
        ready_breakers = (
            None
            if circuit_breaker is None or isinstance(circuit_breaker, CircuitBreakerConfig)
            else list(circuit_breaker)
        )
        cfg = _merged_config(
            type(self).__name__,
            config,
            deprecated,
            circuit_breaker=circuit_breaker if ready_breakers is None else None,
            retry=retry if isinstance(retry, RetryConfig) else None,
            fallback_exceptions=fallback_exceptions,
            health_check_interval=health_check_interval,
            auto_failback_interval=auto_failback_interval,
        )
        given_retry: object = retry
        if given_retry is not None and not isinstance(given_retry, (Retry, RetryConfig)):
            check_instance("retry", given_retry, Retry, "a RetryConfig, a Retry or None")
        n = len(target_list)
        if names is not None and len(names) != n:
            raise ValueError(f"names must have one entry per {noun} ({n}), got {len(names)}")
        if weights is not None and len(weights) != n:
            raise ValueError(f"weights must have one entry per {noun} ({n}), got {len(weights)}")
        weight_list = [1.0] * n if weights is None else [check_weight(w) for w in weights]
        labels = list(names) if names is not None else [f"{noun}-{i + 1}" for i in range(n)]
        self.name = name
        self._config = cfg
        self._clock = resolve_clock(clock)
        self._breaker_registry = breaker_registry
        if ready_breakers is not None:
            if len(ready_breakers) != n:
                raise ValueError(
                    f"circuit_breaker must have one breaker per {noun} ({n}), "
                    f"got {len(ready_breakers)}"
                )
            breakers: list[Any] = [as_breaker(b, "circuit_breaker") for b in ready_breakers]
        else:
            breakers = [self._new_breaker(label) for label in labels]
        self._retry = (
            retry
            if isinstance(retry, Retry)
            else Retry(f"{name}-retry", cfg.retry, clock=self._clock)
        )
        self._health_check = health_check
        self._probe = probe
        self._before_reuse = before_reuse
        self._autostart = start_health_checks
        self._core: FailoverCore[T] = FailoverCore(
            [Slot(t, breakers[i], weight_list[i], labels[i]) for i, t in enumerate(target_list)],
            cfg,
            self._retry,
            monotonic=self._clock.monotonic,
            unavailable_error=unavailable_error,
            name=name,
            noun=noun,
            initial_index=initial_index,
        )
        self._core.health_check_enabled = health_check is not None
        self._core.probe_enabled = health_check is not None or probe is not None
        if health_check is not None:
            self._install_monitor()

    _monitor: Any = None
    _monitor_class: Any = None
    """The provider's health monitor class: a thread or an asyncio task."""

    def _install_monitor(self) -> None:
        """Create the health monitor for ``self._health_check``; start it if health checks
        are on."""
        core = self._core
        self._monitor = self._monitor_class(
            lambda: len(core.slots),
            self._check_index,
            interval=self._config.health_check_interval,
            on_change=self._on_health_change,
            clock=self._clock,
            name=f"{self.name}-health",
            on_round_end=self._failback,
        )
        core.monitor = self._monitor
        if self._autostart:
            self.start_health_checks()

    def start_health_checks(self) -> None:
        raise NotImplementedError

    def _check_index(self, index: int) -> Any:
        raise NotImplementedError

    def _on_health_change(self, index: int, healthy: bool) -> Any:
        raise NotImplementedError

    def _failback(self) -> Any:
        raise NotImplementedError

    def _new_breaker(self, label: str) -> Any:
        full = f"{self.name}:{label}"
        config = self._config.circuit_breaker
        if self._breaker_registry is not None:
            return self._breaker_registry.circuit_breaker(full, config)
        return CircuitBreaker(full, config, clock=self._clock)

    def _set_checks(
        self, health_check: Callable[[T], Any], probe: Callable[[T, BaseException], Any] | None
    ) -> bool:
        """Install a health check (and probe); returns whether a monitor must be made."""
        if not callable(health_check):
            raise TypeError(f"health_check must be callable, got {type(health_check).__name__}")
        if probe is not None and not callable(probe):
            raise TypeError(f"probe must be callable or None, got {type(probe).__name__}")
        first = self._health_check is None
        self._health_check = health_check
        self._probe = probe
        self._core.health_check_enabled = True
        self._core.probe_enabled = True
        return first

    def _call_probe(self, slot: Slot[T], exc: BaseException | None) -> Any:
        """The on-the-spot probe's raw result (a bool, or an awaitable of one)."""
        if self._probe is not None:
            return self._probe(slot.target, exc or Exception())
        if self._health_check is not None:
            return self._health_check(slot.target)
        return True

    # ----------------------------------------------------------------------------- queries

    @property
    def config(self) -> ProviderConfig:
        """The provider's policies (keywords given at construction merged in)."""
        return self._config

    @property
    def active_index(self) -> int:
        """The 1-based index of the active target."""
        return self._core.index_of(self._core.state.slot)

    @property
    def active(self) -> T:
        """The active target."""
        return self._core.state.slot.target

    @property
    def active_state(self) -> ActiveState[T]:
        """The object the success path of a call reads: ``.slot`` (the active
        :class:`~faulttol.provider.Slot`: ``target``, ``breaker``, ``healthy``) and
        ``.closed``, always current. For callers that inline the success path and hand any
        failure to ``recover()`` (the Redis clients do)."""
        return self._core.state

    @property
    def targets(self) -> tuple[T, ...]:
        """All targets in order."""
        return tuple(s.target for s in self._core.slots)

    @property
    def retry(self) -> Retry:
        """The retry policy shared by all targets."""
        return self._retry

    @property
    def clock(self) -> Clock:
        """The clock the provider waits and measures with."""
        return self._clock

    @property
    def closed(self) -> bool:
        """Whether the provider was closed."""
        return self._core.state.closed

    @property
    def listeners(self) -> tuple[Callable[[SwitchEvent], object], ...]:
        """The switch listeners, in the order they are called."""
        return self._core.listeners

    def __len__(self) -> int:
        return len(self._core.slots)

    def slot(self, index: int) -> Slot[T]:
        """The :class:`~faulttol.provider.Slot` of target ``index`` (1-based)."""
        return self._core.slot_at(index)

    def breaker(self, index: int) -> Any:
        """The circuit breaker of target ``index`` (1-based)."""
        return self._core.slot_at(index).breaker

    def is_healthy(self, index: int) -> bool:
        """Whether target ``index``'s last health check passed (True before the first)."""
        return self._core.slot_at(index).healthy is not False

    def is_eligible(self, index: int) -> bool:
        """Whether target ``index`` could take calls now (breaker admits, health not failed)."""
        return self._core.eligible(self._core.slot_at(index))

    def status(self) -> list[TargetStatus]:
        """One :class:`~faulttol.TargetStatus` per target, in order."""
        return self._core.status()

    # ------------------------------------------------------------------------- listeners

    def add_switch_listener(self, listener: Callable[[SwitchEvent], object]) -> None:
        """Call ``listener(SwitchEvent)`` after every switch (see the provider's docs)."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type(listener).__name__}")
        core = self._core
        with core.lock:
            core.listeners = (*core.listeners, listener)

    def remove_switch_listener(self, listener: Callable[[SwitchEvent], object]) -> None:
        """Stop calling ``listener`` (no-op if it is not registered)."""
        core = self._core
        with core.lock:
            core.listeners = tuple(x for x in core.listeners if x is not listener)

    def _log_switch(self, event: SwitchEvent) -> None:
        _log.warning(
            "%s: switched from %s %d to %d (%s)",
            self.name,
            self._core.noun,
            event.previous_index,
            event.index,
            event.reason.value,
        )

    # ------------------------------------------------------------------- live reconfiguration

    def add_target(
        self, target: T, *, name: str | None = None, weight: float = 1.0, breaker: Any = None
    ) -> int:
        """Append a target; returns its 1-based index (its breaker: ``breaker``, else a new
        one with the provider's breaker config, through the registry when it has one)."""
        w = check_weight(weight)
        ready = None if breaker is None else as_breaker(breaker)

        def new_breaker(label: str) -> Any:
            return ready if ready is not None else self._new_breaker(label)

        return self._core.add(target, name, w, new_breaker)

    def set_weight(self, index: int, weight: float) -> None:
        """Change target ``index``'s weight; affects later choices only."""
        self._core.set_weight(index, check_weight(weight))

    def _forget_breaker(self, slot: Slot[T]) -> None:
        """A removed target's breaker leaves the registry (a new target of that name gets a
        fresh one)."""
        registry = self._breaker_registry
        name = getattr(slot.breaker, "name", None)
        if registry is not None and name is not None and registry.find(name) is slot.breaker:
            registry.remove(name)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, targets={len(self._core.slots)}, "
            f"active_index={self.active_index})"
        )


def _merged_config(
    owner: str,
    config: ProviderConfig | None,
    deprecated: dict[str, Any],
    **keywords: Any,
) -> ProviderConfig:
    """``config`` (default: ``ProviderConfig()``) with the keywords that differ from their
    defaults, and the deprecated 0.1.0 keywords (with a ``DeprecationWarning``), applied."""
    base = check_config("config", config, ProviderConfig)
    defaults = {
        "circuit_breaker": None,
        "retry": None,
        "fallback_exceptions": DEFAULT_FALLBACK_EXCEPTIONS,
        "health_check_interval": DEFAULT_HEALTH_CHECK_INTERVAL,
        "auto_failback_interval": DEFAULT_AUTO_FAILBACK_INTERVAL,
    }
    changes = {
        field: value
        for field, value in keywords.items()
        if value is not defaults[field] and value != defaults[field]
    }
    for old, value in deprecated.items():
        field = DEPRECATED_KEYWORDS.get(old)
        if field is None:
            raise TypeError(f"{owner}() got an unexpected keyword argument {old!r}")
        warnings.warn(
            f"{owner}({old}=...) is deprecated: pass config=ProviderConfig({field}=...)",
            DeprecationWarning,
            stacklevel=3,
        )
        changes[field] = value
    return base.replace(**changes) if changes else base
