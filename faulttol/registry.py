"""Registries: one shared circuit breaker (or retry) per name, and named shared configs.

A registry hands out the same instance for the same name (get-or-create), so independent parts
of an application that talk to the same backend share one breaker. Configurations can be
registered under a name and referred to by that name when an instance is created::

    registry = CircuitBreakerRegistry(configs={"slow-backend": CircuitBreakerConfig(...)})
    registry.circuit_breaker("reports", "slow-backend")
    registry.circuit_breaker("users")          # the registry's default config

Asking for an existing name with a different explicit config is a ``ValueError`` (the caller
would silently get a breaker that does not behave as it asked). All methods are thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from ._clock import Clock, resolve_clock
from .breaker import CircuitBreaker, CircuitBreakerConfig
from .bulkhead import Bulkhead, BulkheadConfig
from .hedge import Hedge, HedgeConfig
from .ratelimiter import RateLimiter, RateLimiterConfig
from .retry import Retry, RetryConfig
from .timelimiter import TimeLimiter, TimeLimiterConfig

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "BulkheadRegistry",
    "CircuitBreakerRegistry",
    "ConfigurationNotFoundError",
    "HedgeRegistry",
    "RateLimiterRegistry",
    "RetryRegistry",
    "TimeLimiterRegistry",
]

DEFAULT_CONFIG_NAME = "default"
"""The name under which a registry's default configuration can also be referred to."""

C = TypeVar(
    "C",
    CircuitBreakerConfig,
    RetryConfig,
    HedgeConfig,
    BulkheadConfig,
    TimeLimiterConfig,
    RateLimiterConfig,
)
I = TypeVar("I", CircuitBreaker, Retry, Hedge, Bulkhead, TimeLimiter, RateLimiter)  # noqa: E741


class ConfigurationNotFoundError(KeyError, ValueError):
    """No configuration is registered under the requested name.

    Both a ``KeyError`` (a lookup by name failed) and a ``ValueError`` (an invalid argument).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _Registry(Generic[C, I]):
    """Shared get-or-create logic; subclasses fix the config and instance types."""

    _kind: str = "entry"
    _config_type: type[C]

    def __init__(
        self,
        default_config: C | None,
        configs: Mapping[str, C] | None,
        clock: Clock | None,
        factory: Callable[[str, C, Clock], I],
        default_factory: Callable[[], C],
    ) -> None:
        if default_config is None:
            default_config = default_factory()
        self._check_config("default_config", default_config)
        self._default: C = default_config
        self._clock: Clock = resolve_clock(clock)
        self._factory: Callable[[str, C, Clock], I] = factory
        self._lock = threading.RLock()
        self._configs: dict[str, C] = {}
        self._entries: dict[str, I] = {}
        for name, config in (configs or {}).items():
            self.add_configuration(name, config)

    def _check_config(self, what: str, config: object) -> None:
        if not isinstance(config, self._config_type):
            raise TypeError(f"{what} must be a {self._config_type.__name__}, got {config!r}")

    @property
    def default_config(self) -> C:
        """The configuration used when none is given."""
        return self._default

    @property
    def clock(self) -> Clock:
        """The clock every instance created by this registry uses."""
        return self._clock

    def add_configuration(self, name: str, config: C) -> None:
        """Register ``config`` under ``name`` for later reference by name.

        Registering the same name again with an equal config is a no-op; with a different
        one it is a ``ValueError``. The name ``"default"`` is reserved for the default config.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"configuration name must be a non-empty str, got {name!r}")
        if name == DEFAULT_CONFIG_NAME:
            raise ValueError(
                f"configuration name {DEFAULT_CONFIG_NAME!r} is reserved for the default config"
            )
        self._check_config("config", config)
        with self._lock:
            existing = self._configs.get(name)
            if existing is not None and existing != config:
                raise ValueError(f"a different configuration is already registered as {name!r}")
            self._configs[name] = config

    def get_configuration(self, name: str) -> C:
        """The configuration registered as ``name`` (``"default"``: the default config)."""
        if name == DEFAULT_CONFIG_NAME:
            return self._default
        with self._lock:
            try:
                return self._configs[name]
            except KeyError:
                known = ", ".join(sorted(self._configs)) or "none"
                raise ConfigurationNotFoundError(
                    f"no {self._kind} configuration named {name!r} (registered: {known})"
                ) from None

    @property
    def configurations(self) -> dict[str, C]:
        """A copy of the named configurations (without the default)."""
        with self._lock:
            return dict(self._configs)

    def _resolve(self, config: C | str | None) -> C:
        if config is None:
            return self._default
        if isinstance(config, str):
            return self.get_configuration(config)
        self._check_config("config", config)
        return config

    def _get_or_create(self, name: str, config: C | str | None) -> I:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        with self._lock:
            wanted = self._resolve(config)
            existing = self._entries.get(name)
            if existing is not None:
                if config is not None and existing.config != wanted:
                    raise ValueError(
                        f"{self._kind} {name!r} already exists with a different configuration"
                    )
                return existing
            created = self._factory(name, wanted, self._clock)
            self._entries[name] = created
            return created

    def find(self, name: str) -> I | None:
        """The instance registered as ``name``, or ``None``."""
        with self._lock:
            return self._entries.get(name)

    def remove(self, name: str) -> I | None:
        """Forget the instance registered as ``name``; return it (``None`` if absent)."""
        with self._lock:
            return self._entries.pop(name, None)

    def all(self) -> tuple[I, ...]:
        """Every registered instance, in creation order."""
        with self._lock:
            return tuple(self._entries.values())

    def names(self) -> tuple[str, ...]:
        """The registered names, in creation order."""
        with self._lock:
            return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[I]:
        return iter(self.all())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.names())!r})"


def _new_breaker(name: str, config: CircuitBreakerConfig, clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(name, config, clock=clock)


def _new_retry(name: str, config: RetryConfig, clock: Clock) -> Retry:
    return Retry(name, config, clock=clock)


class CircuitBreakerRegistry(_Registry[CircuitBreakerConfig, CircuitBreaker]):
    """Get-or-create :class:`~faulttol.CircuitBreaker` instances by name."""

    _kind = "circuit breaker"
    _config_type = CircuitBreakerConfig

    def __init__(
        self,
        default_config: CircuitBreakerConfig | None = None,
        *,
        configs: Mapping[str, CircuitBreakerConfig] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(default_config, configs, clock, _new_breaker, CircuitBreakerConfig)

    def circuit_breaker(
        self, name: str, config: CircuitBreakerConfig | str | None = None
    ) -> CircuitBreaker:
        """The breaker named ``name``, created with ``config`` if it does not exist yet.

        ``config`` is a config object, the name of a registered configuration, or ``None``
        (the default config; for an existing breaker, ``None`` accepts whatever it has).
        """
        return self._get_or_create(name, config)


class RetryRegistry(_Registry[RetryConfig, Retry]):
    """Get-or-create :class:`~faulttol.Retry` instances by name."""

    _kind = "retry"
    _config_type = RetryConfig

    def __init__(
        self,
        default_config: RetryConfig | None = None,
        *,
        configs: Mapping[str, RetryConfig] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(default_config, configs, clock, _new_retry, RetryConfig)

    def retry(self, name: str, config: RetryConfig | str | None = None) -> Retry:
        """The retry named ``name``, created with ``config`` if it does not exist yet.

        ``config`` is a config object, the name of a registered configuration, or ``None``
        (the default config; for an existing retry, ``None`` accepts whatever it has).
        """
        return self._get_or_create(name, config)


def _new_hedge(name: str, config: HedgeConfig, clock: Clock) -> Hedge:
    return Hedge(name, config, clock=clock)


class HedgeRegistry(_Registry[HedgeConfig, Hedge]):
    """Get-or-create :class:`~faulttol.Hedge` instances by name."""

    _kind = "hedge"
    _config_type = HedgeConfig

    def __init__(
        self,
        default_config: HedgeConfig | None = None,
        *,
        configs: Mapping[str, HedgeConfig] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(default_config, configs, clock, _new_hedge, HedgeConfig)

    def hedge(self, name: str, config_or_config_name: HedgeConfig | str | None = None) -> Hedge:
        """The hedge named ``name``, created with ``config_or_config_name`` if it does not
        exist yet.

        ``config_or_config_name`` is a config object, the name of a registered configuration,
        or ``None`` (the default config; for an existing hedge, ``None`` accepts whatever it
        has).
        """
        return self._get_or_create(name, config_or_config_name)


def _new_bulkhead(name: str, config: BulkheadConfig, clock: Clock) -> Bulkhead:
    return Bulkhead(name, config, clock=clock)


class BulkheadRegistry(_Registry[BulkheadConfig, Bulkhead]):
    """Get-or-create :class:`~faulttol.Bulkhead` instances by name (one shared bulkhead per
    dependency, however many call sites use it)."""

    _kind = "bulkhead"
    _config_type = BulkheadConfig

    def __init__(
        self,
        default_config: BulkheadConfig | None = None,
        *,
        configs: Mapping[str, BulkheadConfig] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(default_config, configs, clock, _new_bulkhead, BulkheadConfig)

    def bulkhead(
        self, name: str, config_or_config_name: BulkheadConfig | str | None = None
    ) -> Bulkhead:
        """The bulkhead named ``name``, created with ``config_or_config_name`` if it does not
        exist yet.

        ``config_or_config_name`` is a config object, the name of a registered configuration,
        or ``None`` (the default config; for an existing bulkhead, ``None`` accepts whatever
        it has).
        """
        return self._get_or_create(name, config_or_config_name)


def _new_time_limiter(name: str, config: TimeLimiterConfig, clock: Clock) -> TimeLimiter:
    return TimeLimiter(name, config, clock=clock)


class TimeLimiterRegistry(_Registry[TimeLimiterConfig, TimeLimiter]):
    """Get-or-create :class:`~faulttol.TimeLimiter` instances by name (created with the
    shared default executor for sync calls)."""

    _kind = "time limiter"
    _config_type = TimeLimiterConfig

    def __init__(
        self,
        default_config: TimeLimiterConfig | None = None,
        *,
        configs: Mapping[str, TimeLimiterConfig] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(default_config, configs, clock, _new_time_limiter, TimeLimiterConfig)

    def time_limiter(
        self, name: str, config_or_config_name: TimeLimiterConfig | str | None = None
    ) -> TimeLimiter:
        """The time limiter named ``name``, created with ``config_or_config_name`` if it does
        not exist yet.

        ``config_or_config_name`` is a config object, the name of a registered configuration,
        or ``None`` (the default config; for an existing limiter, ``None`` accepts whatever it
        has).
        """
        return self._get_or_create(name, config_or_config_name)


def _new_rate_limiter(name: str, config: RateLimiterConfig, clock: Clock) -> RateLimiter:
    return RateLimiter(name, config, clock=clock)


class RateLimiterRegistry(_Registry[RateLimiterConfig, RateLimiter]):
    """Get-or-create :class:`~faulttol.RateLimiter` instances by name (one shared limit per
    dependency, however many call sites use it)."""

    _kind = "rate limiter"
    _config_type = RateLimiterConfig

    def __init__(
        self,
        default_config: RateLimiterConfig | None = None,
        *,
        configs: Mapping[str, RateLimiterConfig] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(default_config, configs, clock, _new_rate_limiter, RateLimiterConfig)

    def rate_limiter(
        self, name: str, config_or_config_name: RateLimiterConfig | str | None = None
    ) -> RateLimiter:
        """The rate limiter named ``name``, created with ``config_or_config_name`` if it does
        not exist yet.

        ``config_or_config_name`` is a config object, the name of a registered configuration,
        or ``None`` (the default config; for an existing limiter, ``None`` accepts whatever it
        has).
        """
        return self._get_or_create(name, config_or_config_name)
