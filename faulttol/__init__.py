"""faulttol: resilience4j-style fault tolerance for Python, sync and asyncio.

Circuit breakers with count- and time-based sliding windows, retries with backoff,
fallbacks, a composition builder, and an ordered provider that fails over between targets.
"""

# The distribution's version, in this one place (pyproject.toml reads it at build time).
__version__ = "0.1.0"

from ._breaker_protocol import Breaker
from ._clock import SYSTEM_CLOCK, Clock, SystemClock
from ._errors import ConfigTypeError
from .breaker import (
    CallNotPermittedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerCounters,
    CircuitBreakerMetrics,
    SlidingWindowType,
    State,
)
from .bulkhead import (
    Bulkhead,
    BulkheadConfig,
    BulkheadFullError,
    BulkheadMetrics,
    ThreadPoolBulkhead,
    ThreadPoolBulkheadConfig,
    ThreadPoolBulkheadMetrics,
)
from .decorators import Decorators
from .fallback import Fallback
from .hedge import Hedge, HedgeConfig, HedgeMetrics
from .provider import (
    ActiveState,
    AsyncOrderedProvider,
    FailoverStrategy,
    NoValidTargetError,
    OrderedProvider,
    ProviderConfig,
    Slot,
    SwitchEvent,
    SwitchReason,
    TargetStatus,
    TemporaryUnavailableError,
)
from .ratelimiter import (
    RateLimiter,
    RateLimiterConfig,
    RateLimiterMetrics,
    RequestNotPermittedError,
)
from .registry import (
    BulkheadRegistry,
    CircuitBreakerRegistry,
    HedgeRegistry,
    RateLimiterRegistry,
    RetryRegistry,
    TimeLimiterRegistry,
)
from .retry import MaxRetriesExceededError, Retry, RetryConfig
from .timelimiter import (
    TimeLimiter,
    TimeLimiterConfig,
    TimeLimiterMetrics,
    TimeLimitExceededError,
)

__all__ = [
    "SYSTEM_CLOCK",
    "ActiveState",
    "AsyncOrderedProvider",
    "Breaker",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadFullError",
    "BulkheadMetrics",
    "BulkheadRegistry",
    "CallNotPermittedError",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerCounters",
    "CircuitBreakerMetrics",
    "CircuitBreakerRegistry",
    "Clock",
    "ConfigTypeError",
    "Decorators",
    "FailoverStrategy",
    "Fallback",
    "Hedge",
    "HedgeConfig",
    "HedgeMetrics",
    "HedgeRegistry",
    "MaxRetriesExceededError",
    "NoValidTargetError",
    "OrderedProvider",
    "ProviderConfig",
    "RateLimiter",
    "RateLimiterConfig",
    "RateLimiterMetrics",
    "RateLimiterRegistry",
    "RequestNotPermittedError",
    "Retry",
    "RetryConfig",
    "RetryRegistry",
    "SlidingWindowType",
    "Slot",
    "State",
    "SwitchEvent",
    "SwitchReason",
    "SystemClock",
    "TargetStatus",
    "TemporaryUnavailableError",
    "ThreadPoolBulkhead",
    "ThreadPoolBulkheadConfig",
    "ThreadPoolBulkheadMetrics",
    "TimeLimitExceededError",
    "TimeLimiter",
    "TimeLimiterConfig",
    "TimeLimiterMetrics",
    "TimeLimiterRegistry",
]
