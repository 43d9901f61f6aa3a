"""What ``faulttol-redis status`` and ``check`` find out about the databases of a config file.

``status`` shows the databases as a failover client started now sees them: a
:class:`~faulttol_redis.FailoverProvider` built from the file (health checks driven by the
command, one round per refresh) gives each database's health by the configured checks and
policy, its breaker state and which one is active; a PING of our own on a separate
connection gives the round-trip time and, when it fails, why.

``check`` answers one question for readiness probes and deploy scripts: does the configured
health policy accept at least one database? Each database gets one health-check round (the
configured checks, ``health_check_probes`` probes ``health_check_probe_delay`` apart, decided by
``health_check_policy``), and the last failure of each unhealthy one is kept to say why.

Both read the file only: the active index store (``active_index_store``) is neither read nor
written, and a file that turns health checks off (``health_checks = []``) is checked with
PING, since a readiness check without any check would answer nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from faulttol import SYSTEM_CLOCK, Clock
from faulttol.health import run_probes

from .._clients import create_client
from ..config import DatabaseConfig, MultiDbConfig
from ..healthcheck import PingHealthCheck
from ..provider import FailoverProvider

__all__ = [
    "ConfigFileError",
    "DatabaseCheck",
    "DatabaseReport",
    "StatusMonitor",
    "check_databases",
    "load_config",
    "ping",
]


class ConfigFileError(Exception):
    """The config file cannot be read or is not a valid configuration (exit code 2)."""


def load_config(path: str | os.PathLike[str]) -> MultiDbConfig:
    """The file's config, made fit for the operator commands (see the module docstring)."""
    try:
        config = MultiDbConfig.from_toml(path)
    except OSError as exc:
        raise ConfigFileError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigFileError(f"{os.fspath(path)}: {exc}") from None
    changes: dict[str, Any] = {"active_index_store": None}
    if not config.health_checks:
        changes["health_checks"] = (PingHealthCheck(),)
    return config.replace(**changes)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def ping(database: DatabaseConfig, timeout: float,
         clock: Clock = SYSTEM_CLOCK) -> tuple[float | None, str | None]:
    """A PING round trip on a connection of our own, timed once the connection is made and
    its handshake done: (milliseconds, None), or (None, why not)."""
    client = create_client(database, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()  # connect and handshake, untimed
        started = clock.monotonic()
        client.ping()
        return round((clock.monotonic() - started) * 1000.0, 3), None
    except Exception as exc:
        return None, _reason(exc)
    finally:
        client.close()


# --- status --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseReport:
    """One row of ``faulttol-redis status``."""

    index: int
    name: str
    endpoint: str
    healthy: bool
    ping_ms: float | None
    breaker_state: str
    active: bool
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StatusMonitor:
    """A provider built from the config, refreshed on demand (``snapshot``)."""

    def __init__(self, config: MultiDbConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self._clock = clock
        self._provider = FailoverProvider(config, clock=clock, start_health_checks=False)

    def snapshot(self) -> list[DatabaseReport]:
        """Run one health-check round of every database, then PING each: one row each."""
        self._provider.run_health_checks()
        reports = []
        for row, database in zip(self._provider.status(), self._provider.databases,
                                 strict=True):
            ping_ms, error = ping(database, self.config.health_check_timeout, self._clock)
            reports.append(DatabaseReport(
                index=row["index"], name=row["name"], endpoint=row["endpoint"],
                healthy=row["healthy"], ping_ms=ping_ms, breaker_state=row["breaker_state"].name,
                active=row["active"], error=error,
            ))
        return reports

    def close(self) -> None:
        self._provider.close()


# --- check ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseCheck:
    """One database's verdict under the configured health policy."""

    index: int
    name: str
    endpoint: str
    healthy: bool
    reason: str | None
    """Why not, when unhealthy: the last probe's failure."""


def _probe(config: MultiDbConfig, database: DatabaseConfig, client: Any,
           failures: list[str]) -> Callable[[], bool]:
    def probe() -> bool:
        for check in config.health_checks:
            try:
                passed = check.check(client, database)
            except Exception as exc:
                failures.append(_reason(exc))
                return False
            if not passed:
                failures.append(f"{type(check).__name__} reported the database unhealthy")
                return False
        return True

    return probe


def check_databases(config: MultiDbConfig, *, clock: Clock = SYSTEM_CLOCK) -> list[DatabaseCheck]:
    """One health-check round of every database, as the providers run it."""
    verdicts = []
    timeout = config.health_check_timeout
    for index, database in enumerate(config.databases, start=1):
        failures: list[str] = []
        client = create_client(database, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            healthy = run_probes(
                _probe(config, database, client, failures),
                probes=config.health_check_probes, policy=config.health_check_policy,
                delay=config.health_check_probe_delay, clock=clock,
            )
        finally:
            client.close()
        verdicts.append(DatabaseCheck(
            index=index, name=database.display_name, endpoint=database.endpoint,
            healthy=healthy,
            reason=None if healthy else (failures[-1] if failures else "not enough probes "
                                         "passed"),
        ))
    return verdicts
