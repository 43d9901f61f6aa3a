"""faulttol: resilience4j-style fault tolerance for Python, sync and asyncio.

Circuit breakers with count- and time-based sliding windows, retries with backoff,
fallbacks, a composition builder, and an ordered provider that fails over between targets.
"""

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
from .decorators import Decorators
from .fallback import Fallback
from .provider import OrderedProvider, SwitchEvent, SwitchReason
from .registry import CircuitBreakerRegistry, RetryRegistry
from .retry import MaxRetriesExceededError, Retry, RetryConfig

__all__ = [
    "SYSTEM_CLOCK",
    "CallNotPermittedError",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerCounters",
    "CircuitBreakerMetrics",
    "CircuitBreakerRegistry",
    "Clock",
    "ConfigTypeError",
    "Decorators",
    "Fallback",
    "MaxRetriesExceededError",
    "OrderedProvider",
    "Retry",
    "RetryConfig",
    "RetryRegistry",
    "SlidingWindowType",
    "State",
    "SwitchEvent",
    "SwitchReason",
    "SystemClock",
]
