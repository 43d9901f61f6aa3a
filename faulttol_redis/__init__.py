"""faulttol_redis: a failover Redis client built on faulttol.

An ordered list of databases, one active at a time; every redis-py command runs through retry,
a circuit breaker per database and failover to the next eligible database. Manual failback with
``client.provider.set_active_index(1)``; automatic failback only when configured.
"""

from importlib.metadata import version as _distribution_version

from faulttol.health import HealthCheckPolicy
from faulttol.provider import SwitchEvent, SwitchReason

from ._clients import create_async_client, create_client
from ._provider_base import DatabaseStatus
from .client import FailoverPipeline, FailoverPubSub, FailoverRedis
from .config import DatabaseConfig, MultiDbConfig
from .errors import (
    ClientClosedError,
    ClusterConnectionError,
    NoValidDatabaseError,
    OutcomeUnknownError,
    TemporaryUnavailableError,
)
from .healthcheck import HealthCheck, LagAwareHealthCheck, PingHealthCheck
from .provider import FailoverProvider

__version__ = _distribution_version("faulttol")
"""The installed distribution's version: faulttol_redis ships in the faulttol distribution,
whose one version lives in ``faulttol/__init__.py``."""

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
    "OutcomeUnknownError",
    "PingHealthCheck",
    "SwitchEvent",
    "SwitchReason",
    "TemporaryUnavailableError",
    "create_async_client",
    "create_client",
]
