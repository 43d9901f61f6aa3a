"""FailoverProvider: the faulttol OrderedProvider over an ordered list of Redis databases.

It adds what is specific to Redis: one ``redis.Redis`` client per database (its own retries
off), health checks through :class:`~faulttol_redis.healthcheck.HealthCheck` objects on a
separate probe client with ``health_check_timeout``, an on-the-spot probe when a command fails
with a connection error, persistence of the active index across restarts, Redis-flavoured
"unavailable" errors, and ``status()``/live reconfiguration by database config.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from faulttol.health import run_probes

from ._clients import create_client
from ._provider_base import TIMEOUT_PROBE_TIMEOUT, _DatabaseBase, _RedisProviderBase
from .config import DatabaseConfig, MultiDbConfig

if TYPE_CHECKING:
    from faulttol.provider import _Slot

__all__ = ["TIMEOUT_PROBE_TIMEOUT", "Database", "FailoverProvider"]

_log = logging.getLogger("faulttol_redis.provider")


class Database(_DatabaseBase):
    """One database: its config, the ``redis.Redis`` command client, and probe clients."""

    __slots__ = ()

    def _new_client(self, **overrides: Any) -> Any:
        return create_client(self.config, **overrides)

    def probe_client(self, *, fast: bool = False) -> Any:
        """A client with short timeouts for health checks (not sharing the command pool)."""
        return self._get_probe_client(fast)

    def retire(self) -> None:
        """The database was removed: close idle connections now, leaving in-flight commands
        to finish on theirs (closed with the provider)."""
        for c in self._clients()[1:]:
            c.close()
        self.drop_idle_connections()

    def drop_idle_connections(self) -> None:
        """Disconnect the command pool's idle connections (they reconnect on their next use).

        For a database that was away: a connection that died meanwhile must not carry a
        command (redis-py's sync pool also checks a connection on checkout; this makes it
        independent of that). Connections in use are left alone. A cluster client manages
        its nodes' connections itself.
        """
        pool = getattr(self.client, "connection_pool", None)
        if pool is None:
            return
        try:
            pool.disconnect(inuse_connections=False)
        except Exception:
            _log.debug("dropping idle connections of %s failed", self.config.display_name,
                       exc_info=True)

    def close(self) -> None:
        """Close every client of this database."""
        for c in self._clients():
            try:
                c.close()
            except Exception:  # pragma: no cover - best effort on shutdown
                _log.debug("closing a client of %s failed", self.config.display_name,
                           exc_info=True)


class FailoverProvider(_RedisProviderBase[Database]):
    """Fails over between the databases of a :class:`MultiDbConfig` (1-based indices).

    Starts on the first healthy database in strategy order (or the index persisted in
    ``active_index_store`` when that one is healthy), then runs health checks every
    ``health_check_interval`` seconds on one background thread.
    """

    def __init__(self, config: MultiDbConfig, *, clock: Any = None,
                 start_health_checks: bool = True) -> None:
        super().__init__(config, clock=clock, health_check=self._check_database,
                         probe=self._probe_database)
        try:
            self._choose_initial()
        except BaseException:
            self._discard_databases(self._all_databases())
            raise
        self._start_health_checks = start_health_checks
        if start_health_checks:
            self._start_monitor()

    def _start_monitor(self) -> None:
        if self._start_health_checks:
            super()._start_monitor()

    def _new_database(self, config: DatabaseConfig) -> Database:
        return Database(config, self.config.health_check_timeout)

    def _discard_databases(self, databases: list[Database]) -> None:
        for db in databases:
            db.close()

    def _prepare_for_switch_to(self, slot: _Slot[Database]) -> None:
        slot.target.drop_idle_connections()

    def _on_target_recovered(self, slot: _Slot[Database]) -> None:
        slot.target.drop_idle_connections()

    # ------------------------------------------------------------------------------ startup

    def _choose_initial(self) -> None:
        slot = self._stored_slot()
        if slot is not None and self._run_probe(slot, None):
            self._start_on_stored(slot)
            return
        self.start_on_first_healthy()
        self._log_start()

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

    # ------------------------------------------------------------------------------ queries

    def client(self, index: int | None = None) -> redis.Redis:
        """The ``redis.Redis`` client of database ``index`` (default: the active one)."""
        if index is None:
            return self._active.target.client  # type: ignore[no-any-return]
        self._check_index_range(index)
        return self._slots[index - 1].target.client  # type: ignore[no-any-return]

    # ------------------------------------------------------------------- live reconfiguration

    def remove_database(self, index: int) -> None:
        """Remove database ``index``; the active one is switched away from first. Its
        in-flight commands finish; its connections close as they become idle or with the
        provider."""
        self._remove_and_keep(index).retire()

    # ------------------------------------------------------------------------------- close

    def close(self) -> None:
        """Stop health checks and close every database's clients. Idempotent."""
        super().close()
        for db in self._all_databases():
            db.close()
