"""FailoverProvider: failover between an ordered list of Redis databases (sync).

Built on :class:`faulttol.OrderedProvider` by composition (:attr:`FailoverProvider.ordered_provider`
holds the database records as targets). It adds what is specific to Redis: one
``redis.Redis`` client per database (its own retries off), health checks through
:class:`~faulttol_redis.healthcheck.HealthCheck` objects on a separate probe client with
``health_check_timeout``, an on-the-spot probe when a command fails with a connection error,
persistence of the active index across restarts, Redis-flavoured "unavailable" errors, and
``status()``/live reconfiguration by database config.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from faulttol import CircuitBreakerRegistry, Clock, OrderedProvider
from faulttol.health import run_probes

from ._clients import command_runner, create_client
from ._connection import release_waiting
from ._deprecation import MayReplayOrNone, call_args, deprecated
from ._hang import due_databases, record_hung, scan_interval
from ._provider_base import TIMEOUT_PROBE_TIMEOUT, _DatabaseBase, _RedisProviderBase
from ._sealing import seal_pools
from .config import DatabaseConfig, MultiDbConfig
from .errors import OutcomeUnknownError

__all__ = ["TIMEOUT_PROBE_TIMEOUT", "Database", "FailoverProvider"]

_log = logging.getLogger("faulttol_redis.provider")

R = TypeVar("R")

_monotonic = time.monotonic


class Database(_DatabaseBase):
    """One database: its config, the ``redis.Redis`` command client, and probe clients."""

    __slots__ = ()

    _runner = staticmethod(command_runner)

    def _new_client(self, **overrides: Any) -> Any:
        return create_client(self.config, **overrides)

    def hang_probe(self) -> bool:
        """The hang probe: one PING on a connection of its own, ``hang_probe_timeout``."""
        try:
            return bool(self._get_hang_probe_client().ping())
        except Exception:
            return False

    def probe_client(self, *, fast: bool = False) -> Any:
        """A client with short timeouts for health checks (not sharing the command pool)."""
        return self._get_probe_client(fast)

    def retire(self) -> None:
        """The database was removed: close idle connections now, leaving in-flight commands
        to finish on theirs (closed with the provider)."""
        for c in self.clients()[1:]:
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
        for c in self.clients():
            try:
                c.close()
            except Exception:  # pragma: no cover - best effort on shutdown
                _log.debug("closing a client of %s failed", self.config.display_name,
                           exc_info=True)


class FailoverProvider(_RedisProviderBase[Database, OrderedProvider[Database]]):
    """Fails over between the databases of a :class:`MultiDbConfig` (1-based indices).

    Starts on the first healthy database in strategy order (or the index persisted in
    ``active_index_store`` when that one is healthy), then runs health checks every
    ``health_check_interval`` seconds on one background thread (unless
    ``start_health_checks=False``: tests drive them with :meth:`run_health_checks`). With a
    ``breaker_registry`` the databases' breakers are made (and found) there, named
    ``faulttol-redis:<database name>``.
    """

    def __init__(self, config: MultiDbConfig, *, clock: Clock | None = None,
                 start_health_checks: bool = True,
                 breaker_registry: CircuitBreakerRegistry | None = None) -> None:
        super().__init__(config, OrderedProvider, clock=clock, breaker_registry=breaker_registry,
                         health_check=self._check_database, probe=self._probe_database,
                         before_reuse=Database.drop_idle_connections)
        try:
            stored = self._stored_index()
            self._ordered.start_on_first_healthy(prefer=stored)
            self._log_start(stored)
        except BaseException:
            self._discard_databases(self._all_databases())
            raise
        if start_health_checks:
            self._ordered.start_health_checks()
        self._watchdog_stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        if config.hang_detection_after is not None:
            self._watchdog = threading.Thread(
                target=self._watch_hangs,
                args=(scan_interval(config.hang_detection_after),),
                name="faulttol-redis-hang-watchdog",
                daemon=True,
            )
            self._watchdog.start()

    def _new_database(self, config: DatabaseConfig) -> Database:
        cfg = self.config
        return Database(config, cfg.health_check_timeout, cfg.hang_probe_timeout,
                        cfg.hang_detection_after)

    # ------------------------------------------------------------------------ hang detection

    def _watch_hangs(self, interval: float) -> None:
        """The watchdog thread: a scan every ``interval`` seconds until the provider closes."""
        stop = self._watchdog_stop
        while not stop.wait(interval):
            try:
                self.scan_hangs()
            except Exception:  # pragma: no cover - a scan must never kill the watchdog
                _log.exception("hang watchdog scan failed")

    def scan_hangs(self) -> int:
        """One scan of the watchdog (it runs every ``hang_detection_after / 4`` seconds):
        probe each database one of whose commands has waited ``hang_detection_after``
        seconds for its reply; a database whose probe fails is marked unhealthy (failing
        over, reason ``HEALTH_CHECK``) and the commands waiting on it are released. Returns
        how many databases were found hung."""
        found = 0
        for index, slot in due_databases(self._ordered, self._watchdog_stop.is_set):
            db = slot.target
            if db.hang_probe():
                db.hang_watch.alive(_monotonic())
                continue
            name = record_hung(index, db)
            found += 1
            self._ordered.mark_unhealthy(slot, OutcomeUnknownError(name))
            release_waiting(db.client, name)
        return found

    def _discard_databases(self, databases: list[Database]) -> None:
        for db in databases:
            db.close()

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
        """One probe right after a failed command; quick when the command timed out (none
        after hang detection released it: the watchdog's probe has just failed)."""
        if isinstance(exc, OutcomeUnknownError):
            return False
        try:
            return self._checks_pass(db, fast=isinstance(exc, RedisTimeoutError))
        except Exception:
            return False

    def run_health_checks(self) -> None:
        """Run one health-check round of every database now, on this thread (then the
        failback check)."""
        self._ordered.run_health_checks()

    # -------------------------------------------------------------------------- switching

    def set_active_index(self, index: int, *, force: bool = False) -> None:
        """Make database ``index`` (1-based) active: manual failover or failback.

        Unless ``force``, the database is probed now and refused with ``ValueError`` if
        unhealthy. Switching to the active index is a no-op. The database's breaker closes,
        its idle connections are dropped (they may have died while it was not used), and an
        unhealthy mark is reset: the switch sticks until a command fails there or a health
        check run after it fails.
        """
        self._ordered.set_active_index(index, force=force)

    # ------------------------------------------------------------------------------ queries

    def client(self, index: int | None = None) -> redis.Redis:
        """The ``redis.Redis`` client of database ``index`` (default: the active one)."""
        ordered = self._ordered
        db = ordered.active if index is None else ordered.slot(index).target
        return db.client  # type: ignore[no-any-return]

    # ------------------------------------------------------------------- live reconfiguration

    def remove_database(self, index: int) -> None:
        """Remove database ``index``; the active one is switched away from first (listeners
        see ``SwitchEvent(old, new, MANUAL)`` when the active database or its index changes,
        also with equal numbers). Its in-flight commands finish; its idle connections close
        now, the rest with the provider."""
        db = self._ordered.slot(index).target
        try:
            self._ordered.remove_target(index)
        finally:
            if self._removed(db):
                db.retire()

    # ------------------------------------------------------------------------------- close

    def close(self) -> None:
        """Stop health checks and close every database's clients; their pools are sealed
        (a command still running reconnects nowhere: it ends with
        :class:`~faulttol_redis.ClientClosedError`). Idempotent."""
        self._watchdog_stop.set()
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join()
        self._ordered.close()
        databases = self._all_databases()
        for db in databases:
            db.close()
        seal_pools(client for db in databases for client in db.clients())

    def __enter__(self) -> FailoverProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ 0.1.0 names

    def remove_target(self, index: int) -> Database:
        """Deprecated: use :meth:`remove_database`."""
        deprecated("remove_target()", "use FailoverProvider.remove_database()")
        db = self._ordered.slot(index).target
        self.remove_database(index)
        return db

    def execute(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Deprecated: run ``fn(database_record, ...)`` through failover; use
        ``provider.ordered_provider.execute`` (or a :class:`FailoverRedis`)."""
        deprecated("execute()", "use FailoverRedis, or provider.ordered_provider.execute()")
        return self._ordered.execute(fn, *args, **kwargs)

    def execute_with(self, fn: Callable[..., R], args: tuple[Any, ...] = (),
                     kwargs: dict[str, Any] | None = None,
                     may_replay: MayReplayOrNone = None,
                     ) -> R:
        """Deprecated: use ``provider.ordered_provider.execute_with``."""
        deprecated("execute_with()", "use provider.ordered_provider.execute_with()")
        return self._ordered.execute_with(fn, *call_args(args, kwargs, may_replay))

    async def execute_async(self, fn: Callable[..., Awaitable[R]], *args: Any,
                            **kwargs: Any) -> R:
        """Deprecated: the sync provider awaiting a coroutine function (its probes block the
        event loop); use the asyncio client (``faulttol_redis.asyncio``)."""
        deprecated("execute_async()", "use faulttol_redis.asyncio")
        return await self._ordered.execute_async(fn, *args, **kwargs)

    async def execute_with_async(self, fn: Callable[..., Awaitable[R]],
                                 args: tuple[Any, ...] = (),
                                 kwargs: dict[str, Any] | None = None,
                                 may_replay: MayReplayOrNone = None) -> R:
        """Deprecated: use the asyncio client (``faulttol_redis.asyncio``)."""
        deprecated("execute_with_async()", "use faulttol_redis.asyncio")
        call = call_args(args, kwargs, may_replay)
        return await self._ordered.execute_with_async(fn, *call)

    def start_on_first_healthy(self) -> int:
        """Deprecated: startup does it; ``provider.ordered_provider.start_on_first_healthy()``
        re-runs it."""
        deprecated("start_on_first_healthy()",
                    "use provider.ordered_provider.start_on_first_healthy()")
        return self._ordered.start_on_first_healthy()
