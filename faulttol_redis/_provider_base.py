"""What the sync and asyncio failover providers share: the Redis-specific parts that do no I/O.

Both providers are :class:`faulttol.provider.OrderedProvider` subclasses over a list of
databases; the state machine (failover, failback, eligibility) lives there, once. This module
adds, once for both flavours: the database record with its lazily made probe clients, turning a
:class:`MultiDbConfig` into the provider's arguments, Redis-flavoured "unavailable" errors,
health-check registration, the active index persisted across restarts, ``status()`` rows with
endpoints, and ``add_database`` with its duplicate check. What differs (creating sync or asyncio
clients, running checks, closing) is left to the two subclasses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from faulttol._clock import Clock
from faulttol.provider import OrderedProvider, SwitchEvent

from .config import DatabaseConfig, MultiDbConfig
from .errors import NoValidDatabaseError, TemporaryUnavailableError
from .healthcheck import HealthCheck

if TYPE_CHECKING:
    from faulttol.provider import _Slot

__all__ = ["TIMEOUT_PROBE_TIMEOUT"]

_log = logging.getLogger("faulttol_redis.provider")

TIMEOUT_PROBE_TIMEOUT = 0.1
"""Seconds the on-the-spot probe waits after a command *timed out* (the command already
waited its socket timeout; a database that cannot answer PING in 100 ms is left)."""

PROVIDER_NAME = "faulttol-redis"
"""The provider's name in logs, breaker names and metrics."""


class _DatabaseBase:
    """One database: its config, the command client, and lazily made probe clients.

    Probe clients do not share the command client's pool, and have ``probe_timeout`` as
    socket and connect timeout (``TIMEOUT_PROBE_TIMEOUT`` at most for the *fast* one, used
    right after a command timed out). Subclasses say which kind of client to make.
    """

    __slots__ = ("_fast_probe_client", "_lock", "_probe_client", "client", "config",
                 "probe_timeout")

    def __init__(self, config: DatabaseConfig, probe_timeout: float) -> None:
        self.config = config
        self.probe_timeout = probe_timeout
        self._probe_client: Any = None
        self._fast_probe_client: Any = None
        self._lock = threading.Lock()
        self.client: Any = self._new_client()

    def _new_client(self, **overrides: Any) -> Any:
        raise NotImplementedError

    def _get_probe_client(self, fast: bool) -> Any:
        with self._lock:
            if fast:
                if self._fast_probe_client is None:
                    t = min(self.probe_timeout, TIMEOUT_PROBE_TIMEOUT)
                    self._fast_probe_client = self._new_client(
                        socket_timeout=t, socket_connect_timeout=t
                    )
                return self._fast_probe_client
            if self._probe_client is None:
                t = self.probe_timeout
                self._probe_client = self._new_client(socket_timeout=t, socket_connect_timeout=t)
            return self._probe_client

    def _clients(self) -> list[Any]:
        """Every client made so far (command client first)."""
        with self._lock:
            found = (self.client, self._probe_client, self._fast_probe_client)
        return [c for c in found if c is not None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.display_name!r})"


D = TypeVar("D", bound=_DatabaseBase)


def _unavailable(permanent: bool, message: str) -> BaseException:
    if permanent:
        return NoValidDatabaseError(message)
    return TemporaryUnavailableError(message)


class _RedisProviderBase(OrderedProvider[D]):
    """An :class:`OrderedProvider` over the databases of a :class:`MultiDbConfig`.

    ``health_check(db)`` runs one check round of a database and ``probe(db, exc)`` one probe
    after a failed command; both are only handed to the generic provider when the config has
    health checks. Health checks are never started here: each subclass starts them its way.
    """

    config: MultiDbConfig

    def __init__(
        self,
        config: MultiDbConfig,
        *,
        clock: Clock | None,
        health_check: Callable[[D], bool],
        probe: Callable[[D, BaseException], bool],
    ) -> None:
        if not isinstance(config, MultiDbConfig):
            raise TypeError(f"config must be a MultiDbConfig, got {type(config).__name__}")
        self.config = config
        self._checks: tuple[HealthCheck, ...] = tuple(config.health_checks)
        self._checks_lock = threading.Lock()
        self._check_fns = (health_check, probe)
        self._retired: list[D] = []
        databases = [self._new_database(c) for c in config.databases]
        try:
            super().__init__(
                databases,
                circuit_breaker=config.circuit_breaker,
                retry=config.retry,
                fallback_exceptions=tuple(config.fallback_exceptions),
                health_check=health_check if self._checks else None,
                health_check_interval=config.health_check_interval,
                auto_failback_interval=config.auto_failback_interval,
                clock=clock,
                names=[c.display_name for c in config.databases],
                weights=[c.weight for c in config.databases],
                strategy=config.failover_strategy,
                probe=probe if self._checks else None,
                auto_failback_grace_period=config.auto_failback_grace_period,
                failover_attempts=config.failover_attempts,
                failover_delay=config.failover_delay,
                unavailable_error=_unavailable,
                name=PROVIDER_NAME,
                start_health_checks=False,
            )
        except BaseException:
            self._discard_databases(databases)
            raise
        if config.active_index_store is not None:
            self.add_switch_listener(self._persist_active_index)

    def _new_database(self, config: DatabaseConfig) -> D:
        """A database record (with its clients) for ``config``."""
        raise NotImplementedError

    def _discard_databases(self, databases: list[D]) -> None:
        """Release databases made by a constructor that then failed (default: nothing)."""

    # ------------------------------------------------------------------------------ startup

    def _stored_slot(self) -> _Slot[D] | None:
        """The slot of the index persisted in ``active_index_store``, if any and in range."""
        stored = self._read_stored_index()
        if stored is not None and 1 <= stored <= len(self):
            return self._slots[stored - 1]
        return None

    def _start_on_stored(self, slot: _Slot[D]) -> None:
        """Start on ``slot`` (the stored index, which just passed a probe)."""
        self._set_health(slot, True)
        with self._lock:
            self._active = slot
        _log.info("starting on database %d (%s), as stored", self._index_of(slot), slot.name)

    def _log_start(self) -> None:
        _log.info("starting on database %d (%s)", self.active_index, self._active.name)

    def _read_stored_index(self) -> int | None:
        path = self.config.active_index_store
        if path is None:
            return None
        try:
            with open(path, encoding="ascii") as f:
                return int(f.read().strip())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            _log.warning("ignoring an unreadable active_index_store %r", str(path))
            return None

    def _persist_active_index(self, event: SwitchEvent) -> None:
        path = os.fspath(self.config.active_index_store or "")
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".faulttol-index-")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(f"{event.index}\n")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------------------ health checks

    def add_health_check(self, check: HealthCheck) -> None:
        """Add a health check run for every database from the next round on."""
        if not callable(getattr(check, "check", None)) or not callable(
            getattr(check, "check_async", None)
        ):
            raise TypeError("check must have check(client, database) and check_async() methods")
        with self._checks_lock:
            self._checks = (*self._checks, check)
            if self._monitor is None:  # built with health_checks=(): turn checks on now
                self._enable_health_checks(*self._check_fns)
                self._start_monitor()

    # ------------------------------------------------------------------------------ queries

    @property
    def databases(self) -> tuple[DatabaseConfig, ...]:
        """The database configs, in index order."""
        return tuple(s.target.config for s in self._slots)

    def status(self) -> list[dict[str, Any]]:
        """One dict per database: index, name, endpoint, weight, healthy, breaker, active."""
        rows = super().status()
        for row, slot in zip(rows, list(self._slots), strict=False):
            row["endpoint"] = slot.target.config.endpoint
        return rows

    # ------------------------------------------------------------------- live reconfiguration

    def add_database(self, config: DatabaseConfig) -> int:
        """Append a database; returns its 1-based index. ``ValueError`` for a duplicate."""
        if not isinstance(config, DatabaseConfig):
            raise TypeError(f"config must be a DatabaseConfig, got {type(config).__name__}")
        with self._lock:
            for existing in self.databases:
                if existing.endpoint_key == config.endpoint_key:
                    raise ValueError(f"duplicate endpoint {config.endpoint}")
            db = self._new_database(config)
            return self.add_target(db, name=config.display_name, weight=config.weight)

    def _remove_and_keep(self, index: int) -> D:
        """Remove database ``index`` (switching away first) and keep it until close: its
        in-flight commands finish on their connections, which close with the provider."""
        db = self.remove_target(index)
        with self._lock:
            self._retired.append(db)
        return db

    def _all_databases(self) -> list[D]:
        """The current databases, then the removed ones not closed yet."""
        with self._lock:
            return [s.target for s in self._slots] + self._retired

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self._slots)
        return f"{type(self).__name__}(databases=[{names}], active_index={self.active_index})"
