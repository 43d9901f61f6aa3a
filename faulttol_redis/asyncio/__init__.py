"""faulttol_redis.asyncio: the asyncio failover client.

The same names, config and semantics as :mod:`faulttol_redis`, for ``redis.asyncio``::

    from faulttol_redis import DatabaseConfig, MultiDbConfig
    from faulttol_redis.asyncio import FailoverRedis

    async with FailoverRedis.from_config(MultiDbConfig([DatabaseConfig(port=6379),
                                                        DatabaseConfig(port=6380)])) as r:
        await r.set("k", "v")
        await r.provider.set_active_index(1)  # manual failback

Startup is lazy (on first use, ``async with`` or ``await provider.initialize()``); health
checks run as one asyncio task per provider; switch listeners may be coroutine functions,
awaited in order before the call that made the switch returns. See
:mod:`faulttol_redis.asyncio.provider`.
"""

from faulttol.health import HealthCheckPolicy
from faulttol.provider import SwitchEvent, SwitchReason

from .._provider_base import DatabaseStatus
from ..config import DatabaseConfig, MultiDbConfig
from ..errors import (
    ClientClosedError,
    ClusterConnectionError,
    NoValidDatabaseError,
    TemporaryUnavailableError,
)
from ..healthcheck import HealthCheck, LagAwareHealthCheck, PingHealthCheck
from .client import FailoverPipeline, FailoverPubSub, FailoverRedis
from .provider import FailoverProvider

__all__ = [
    "ClientClosedError",
    "ClusterConnectionError",
    "DatabaseConfig",
    "DatabaseStatus",
    "FailoverPipeline",
    "FailoverProvider",
    "FailoverPubSub",
    "FailoverRedis",
    "HealthCheck",
    "HealthCheckPolicy",
    "LagAwareHealthCheck",
    "MultiDbConfig",
    "NoValidDatabaseError",
    "PingHealthCheck",
    "SwitchEvent",
    "SwitchReason",
    "TemporaryUnavailableError",
]
