"""FailoverProvider: the faulttol OrderedProvider over an ordered list of Redis databases.

It adds what is specific to Redis: one ``redis.Redis`` client per database (its own retries
off), health checks through :class:`~faulttol_redis.healthcheck.HealthCheck` objects on a
separate probe client with ``health_check_timeout``, an on-the-spot probe when a command fails
with a connection error, persistence of the active index across restarts, Redis-flavoured
"unavailable" errors, and ``status()``/live reconfiguration by database config.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from typing import Any

import redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from faulttol.health import run_probes
from faulttol.provider import OrderedProvider, SwitchEvent

from .config import DatabaseConfig, MultiDbConfig
from .errors import NoValidDatabaseError, TemporaryUnavailableError
from .healthcheck import HealthCheck

__all__ = ["TIMEOUT_PROBE_TIMEOUT", "Database", "FailoverProvider"]

_log = logging.getLogger("faulttol_redis.provider")

TIMEOUT_PROBE_TIMEOUT = 0.1
"""Seconds the on-the-spot probe waits after a command *timed out* (the command already
waited its socket timeout; a database that cannot answer PING in 100 ms is left)."""


class Database:
    """One database: its config, the command client, and lazily made probe clients."""

    __slots__ = ("_fast_probe_client", "_lock", "_probe_client", "client", "config",
                 "probe_timeout")

    def __init__(self, config: DatabaseConfig, probe_timeout: float) -> None:
        self.config = config
        self.client: Any = config.create_client()
        self.probe_timeout = probe_timeout
        self._probe_client: Any = None
        self._fast_probe_client: Any = None
        self._lock = threading.Lock()

    def probe_client(self, *, fast: bool = False) -> Any:
        """A client with short timeouts for health checks (not sharing the command pool)."""
        with self._lock:
            if fast:
                if self._fast_probe_client is None:
                    t = min(self.probe_timeout, TIMEOUT_PROBE_TIMEOUT)
                    self._fast_probe_client = self.config.create_client(
                        socket_timeout=t, socket_connect_timeout=t
                    )
                return self._fast_probe_client
            if self._probe_client is None:
                t = self.probe_timeout
                self._probe_client = self.config.create_client(
                    socket_timeout=t, socket_connect_timeout=t
                )
            return self._probe_client

    def retire(self) -> None:
        """The database was removed: close idle connections now, leaving in-flight commands
        to finish on theirs (closed with the provider)."""
        for c in (self._probe_client, self._fast_probe_client):
            if c is not None:
                c.close()
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None:
            pool.disconnect(inuse_connections=False)

    def close(self) -> None:
        """Close every client of this database."""
        for c in (self.client, self._probe_client, self._fast_probe_client):
            if c is not None:
                try:
                    c.close()
                except Exception:  # pragma: no cover - best effort on shutdown
                    _log.debug("closing a client of %s failed", self.config.display_name,
                               exc_info=True)

    def __repr__(self) -> str:
        return f"Database({self.config.display_name!r})"


def _unavailable(permanent: bool, message: str) -> BaseException:
    if permanent:
        return NoValidDatabaseError(message)
    return TemporaryUnavailableError(message)


class FailoverProvider(OrderedProvider[Database]):
    """Fails over between the databases of a :class:`MultiDbConfig` (1-based indices).

    Starts on the first healthy database in strategy order (or the index persisted in
    ``active_index_store`` when that one is healthy), then runs health checks every
    ``health_check_interval`` seconds on one background thread.
    """

    def __init__(self, config: MultiDbConfig, *, clock: Any = None,
                 start_health_checks: bool = True) -> None:
        if not isinstance(config, MultiDbConfig):
            raise TypeError(f"config must be a MultiDbConfig, got {type(config).__name__}")
        self.config = config
        self._checks: tuple[HealthCheck, ...] = tuple(config.health_checks)
        self._checks_lock = threading.Lock()
        self._retired: list[Database] = []
        databases = [Database(c, config.health_check_timeout) for c in config.databases]
        try:
            super().__init__(
                databases,
                circuit_breaker=config.circuit_breaker,
                retry=config.retry,
                fallback_exceptions=tuple(config.fallback_exceptions),
                health_check=self._check_database if self._checks else None,
                health_check_interval=config.health_check_interval,
                auto_failback_interval=config.auto_failback_interval,
                clock=clock,
                names=[c.display_name for c in config.databases],
                weights=[c.weight for c in config.databases],
                strategy=config.failover_strategy,
                probe=self._probe_database if self._checks else None,
                auto_failback_grace_period=config.auto_failback_grace_period,
                failover_attempts=config.failover_attempts,
                failover_delay=config.failover_delay,
                unavailable_error=_unavailable,
                name="faulttol-redis",
                start_health_checks=False,
            )
            self._choose_initial()
        except BaseException:
            for db in databases:
                db.close()
            raise
        if config.active_index_store is not None:
            self.add_switch_listener(self._persist_active_index)
        if start_health_checks and self._monitor is not None:
            self._monitor.start()

    # ------------------------------------------------------------------------------ startup

    def _choose_initial(self) -> None:
        stored = self._read_stored_index()
        if stored is not None and 1 <= stored <= len(self):
            slot = self._slots[stored - 1]
            if self._run_probe(slot, None):
                self._set_health(slot, True)
                self._active = slot
                _log.info("starting on database %d (%s), as stored", stored, slot.name)
                return
        index = self.start_on_first_healthy()
        _log.info("starting on database %d (%s)", index, self._active.name)

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

    def _checks_pass(self, db: Database, *, fast: bool = False) -> bool:
        client = db.probe_client(fast=fast)
        return all(check.check(client, db.config) for check in self._checks)

    def _check_database(self, db: Database) -> bool:
        cfg = self.config
        return run_probes(
            lambda: self._checks_pass(db),
            probes=cfg.health_check_probes,
            policy=cfg.health_check_policy,
            delay=cfg.health_check_probe_delay,
            clock=self.clock,
        )

    def _probe_database(self, db: Database, exc: BaseException) -> bool:
        """One probe right after a failed command; quick when the command timed out."""
        try:
            return self._checks_pass(db, fast=isinstance(exc, RedisTimeoutError))
        except Exception:
            return False

    def add_health_check(self, check: HealthCheck) -> None:
        """Add a health check run for every database from the next round on."""
        if not callable(getattr(check, "check", None)):
            raise TypeError("check must have a check(client, database) method")
        with self._checks_lock:
            self._checks = (*self._checks, check)

    # ------------------------------------------------------------------------------ queries

    @property
    def databases(self) -> tuple[DatabaseConfig, ...]:
        """The database configs, in index order."""
        return tuple(s.target.config for s in self._slots)

    def client(self, index: int | None = None) -> redis.Redis:
        """The ``redis.Redis`` client of database ``index`` (default: the active one)."""
        if index is None:
            return self._active.target.client  # type: ignore[no-any-return]
        self._check_index_range(index)
        return self._slots[index - 1].target.client  # type: ignore[no-any-return]

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
            db = Database(config, self.config.health_check_timeout)
            return self.add_target(db, name=config.display_name, weight=config.weight)

    def remove_database(self, index: int) -> None:
        """Remove database ``index``; the active one is switched away from first."""
        db = self.remove_target(index)
        db.retire()
        with self._lock:
            self._retired.append(db)

    # ------------------------------------------------------------------------------- close

    def close(self) -> None:
        """Stop health checks and close every database's clients. Idempotent."""
        super().close()
        for db in [s.target for s in list(self._slots)] + self._retired:
            db.close()

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self._slots)
        return f"FailoverProvider(databases=[{names}], active_index={self.active_index})"

