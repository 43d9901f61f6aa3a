"""ProviderConfig: the policies of a failover provider in one immutable record.

Public as ``faulttol.ProviderConfig`` and ``faulttol.FailoverStrategy`` (also from
:mod:`faulttol.provider`). The defaults are named constants, defined once here (the health-check
interval's in :mod:`faulttol.health`) and re-exported by :mod:`faulttol.provider`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from ._breaker_config import CircuitBreakerConfig
from ._health_monitor import DEFAULT_HEALTH_CHECK_INTERVAL
from .breaker import CallNotPermittedError
from .retry import RetryConfig
from .validation import (
    check_choice,
    check_exception_types,
    check_instance,
    check_int,
    check_non_negative,
    check_positive,
)

__all__ = [
    "DEFAULT_AUTO_FAILBACK_GRACE_PERIOD",
    "DEFAULT_AUTO_FAILBACK_INTERVAL",
    "DEFAULT_FAILOVER_ATTEMPTS",
    "DEFAULT_FAILOVER_DELAY",
    "DEFAULT_FAILOVER_STRATEGY",
    "DEFAULT_FALLBACK_EXCEPTIONS",
    "DEFAULT_HEALTH_CHECK_INTERVAL",
    "FailoverStrategy",
    "ProviderConfig",
]


class FailoverStrategy(str, enum.Enum):
    """How a provider ranks the eligible targets when it chooses one.

    A ``str`` enum: the plain strings ``"ordered"`` and ``"weighted"`` are accepted wherever a
    strategy is, and compare equal to the members.
    """

    ORDERED = "ordered"
    """The lowest eligible index first (Jedis)."""

    WEIGHTED = "weighted"
    """The highest weight first, ties by index (redis-py)."""

    def __str__(self) -> str:
        return self.value


DEFAULT_FALLBACK_EXCEPTIONS: tuple[type[BaseException], ...] = (CallNotPermittedError,)
"""Outcomes that make a provider fail over: a call its breaker rejected."""

DEFAULT_AUTO_FAILBACK_INTERVAL: float | None = None
"""Failback is manual unless an interval (seconds between failback attempts) is set."""

DEFAULT_AUTO_FAILBACK_GRACE_PERIOD: float | None = None
"""``None``: a target must have been healthy for one ``health_check_interval`` before
automatic failback returns to it."""

DEFAULT_FAILOVER_STRATEGY = FailoverStrategy.ORDERED
"""Lowest eligible index first (Jedis's rule)."""

DEFAULT_FAILOVER_ATTEMPTS = 10
"""With ``failover_delay``: how long "temporarily unavailable" lasts (redis-py's figures)."""

DEFAULT_FAILOVER_DELAY = 12.0
"""Seconds; ``failover_attempts`` x ``failover_delay`` = 120 s by default."""

_STRATEGIES = tuple(s.value for s in FailoverStrategy)


@dataclass(frozen=True, kw_only=True)
class ProviderConfig:
    """The policies of an :class:`~faulttol.OrderedProvider` or
    :class:`~faulttol.AsyncOrderedProvider`, in one immutable, validated record.

    Every field is keyword-only and optional. A value of the wrong kind raises
    :class:`~faulttol.ConfigTypeError`, one out of range ``ValueError``, both naming the field
    (the checks are :mod:`faulttol.validation`'s). ``dataclasses.replace(config, ...)`` (or
    :meth:`replace`) makes a validated copy.

    Attributes:
        circuit_breaker: the config of the one breaker made per target (``None``: the
            defaults).
        retry: the retry policy shared by all targets (``None``: the defaults).
        fallback_exceptions: outcomes that make the provider fail over (one exception type
            or an iterable of them; kept as a tuple).
        health_check_interval: seconds between two health-check rounds (> 0).
        auto_failback_interval: seconds between automatic failback attempts (> 0), or
            ``None`` for manual failback only.
        auto_failback_grace_period: seconds a target must have been healthy before automatic
            failback returns to it (>= 0; ``None``: one ``health_check_interval``).
        failover_strategy: :class:`FailoverStrategy` (or ``"ordered"`` / ``"weighted"``; kept
            as the enum member).
        failover_attempts: with ``failover_delay``, how long "temporarily unavailable" lasts
            (>= 1).
        failover_delay: seconds (>= 0); ``failover_attempts`` x ``failover_delay`` is
            :attr:`failover_timeout`.
    """

    circuit_breaker: CircuitBreakerConfig | None = None
    retry: RetryConfig | None = None
    fallback_exceptions: tuple[type[BaseException], ...] = DEFAULT_FALLBACK_EXCEPTIONS
    health_check_interval: float = DEFAULT_HEALTH_CHECK_INTERVAL
    auto_failback_interval: float | None = DEFAULT_AUTO_FAILBACK_INTERVAL
    auto_failback_grace_period: float | None = DEFAULT_AUTO_FAILBACK_GRACE_PERIOD
    failover_strategy: FailoverStrategy = DEFAULT_FAILOVER_STRATEGY
    failover_attempts: int = DEFAULT_FAILOVER_ATTEMPTS
    failover_delay: float = DEFAULT_FAILOVER_DELAY

    def __post_init__(self) -> None:
        if self.circuit_breaker is not None:
            check_instance("circuit_breaker", self.circuit_breaker, CircuitBreakerConfig,
                           "a CircuitBreakerConfig or None")
        if self.retry is not None:
            check_instance("retry", self.retry, RetryConfig, "a RetryConfig or None")
        values: dict[str, Any] = {
            "fallback_exceptions": check_exception_types(
                "fallback_exceptions", self.fallback_exceptions
            ),
            "health_check_interval": check_positive(
                "health_check_interval", self.health_check_interval
            ),
            "auto_failback_interval": (
                None
                if self.auto_failback_interval is None
                else check_positive(
                    "auto_failback_interval", self.auto_failback_interval,
                    allowed="> 0 and finite, or None",
                )
            ),
            "auto_failback_grace_period": (
                None
                if self.auto_failback_grace_period is None
                else check_non_negative(
                    "auto_failback_grace_period", self.auto_failback_grace_period,
                    allowed=">= 0 and finite, or None",
                )
            ),
            "failover_strategy": FailoverStrategy(
                check_choice("failover_strategy", self.failover_strategy, _STRATEGIES)
            ),
            "failover_attempts": check_int("failover_attempts", self.failover_attempts,
                                           minimum=1),
            "failover_delay": check_non_negative("failover_delay", self.failover_delay),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def failover_timeout(self) -> float:
        """``failover_attempts`` x ``failover_delay``: how long no eligible target raises
        ``TemporaryUnavailableError`` before ``NoValidTargetError``."""
        return self.failover_attempts * self.failover_delay

    @property
    def effective_grace_period(self) -> float:
        """``auto_failback_grace_period``, or one ``health_check_interval`` when it is None."""
        grace = self.auto_failback_grace_period
        return self.health_check_interval if grace is None else grace

    def replace(self, **changes: Any) -> ProviderConfig:
        """A copy with ``changes`` applied, validated like a fresh config."""
        return dataclasses.replace(self, **changes)
