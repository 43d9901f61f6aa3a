"""What the sync and asyncio failover providers share: the Redis-specific parts that do no I/O.

Each provider is built on a generic faulttol provider by composition: the sync one holds an
:class:`faulttol.OrderedProvider`, the asyncio one an :class:`faulttol.AsyncOrderedProvider`,
over the same kind of targets (database records); the failover decisions live there, once.
This module adds, once for both flavours: the database record with its lazily made probe
clients, turning a :class:`MultiDbConfig` into the generic provider's arguments (one
:class:`~faulttol.ProviderConfig`), Redis-flavoured "unavailable" errors, health-check
registration, the active index persisted across restarts, ``status()`` rows with endpoints,
``add_database`` with its duplicate check, and the queries both providers answer alike. What
differs (sync or asyncio clients, running checks, closing) is in the two providers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from faulttol import (
    AsyncOrderedProvider,
    CircuitBreakerRegistry,
    Clock,
    OrderedProvider,
    Retry,
    SwitchEvent,
    TargetStatus,
)

from ._deprecation import deprecated
from ._hang import HangWatch
from .config import DatabaseConfig, MultiDbConfig
from .errors import NoValidDatabaseError, TemporaryUnavailableError
from .healthcheck import HealthCheck

__all__ = ["PROVIDER_NAME", "TIMEOUT_PROBE_TIMEOUT", "DatabaseStatus"]

_log = logging.getLogger("faulttol_redis.provider")

TIMEOUT_PROBE_TIMEOUT = 0.1
"""Seconds the on-the-spot probe waits after a command *timed out* (the command already
waited its socket timeout; a database that cannot answer PING in 100 ms is left)."""

PROVIDER_NAME = "faulttol-redis"
"""The provider's name in logs, breaker names and metrics."""


class DatabaseStatus(TargetStatus):
    """One row of ``provider.status()``: :class:`faulttol.TargetStatus` plus the database's
    ``endpoint`` (``host:port/db`` or the masked URL: never a secret), how many times hang
    detection found it hung (``hang_detections``), how many hedged reads were sent to it
    (``hedges_sent``) and how many of those answered first (``hedge_wins``)."""

    endpoint: str
    hang_detections: int
    hedges_sent: int
    hedge_wins: int


class _DatabaseBase:
    """One database: its config, the command client, and lazily made probe clients.

    Probe clients do not share the command client's pool, and have ``probe_timeout`` as
    socket and connect timeout (``TIMEOUT_PROBE_TIMEOUT`` at most for the *fast* one, used
    right after a command timed out). Subclasses say which kind of client to make.
    """

    __slots__ = ("_client", "_count_lock", "_fast_probe_client", "_hang_probe_client", "_lock",
                 "_probe_client", "config", "execute", "hang_detections", "hang_probe_timeout",
                 "hang_watch", "hedge_wins", "hedges_sent", "probe_timeout")

    execute: Any
    """Runs one command on :attr:`client` (``execute(*args, **options)``): what the
    clients' command paths call (see :meth:`_runner`)."""

    def __init__(self, config: DatabaseConfig, probe_timeout: float,
                 hang_probe_timeout: float = 0.5, hang_after: float | None = None) -> None:
        self.config = config
        self.probe_timeout = probe_timeout
        self.hang_probe_timeout = hang_probe_timeout
        self.hang_watch = None if hang_after is None else HangWatch(hang_after)
        # Counters, read by status(); written only through the count_* methods below, which
        # several threads may call at once (hedged reads run on caller threads).
        self.hang_detections = 0
        self.hedges_sent = 0
        self.hedge_wins = 0
        self._count_lock = threading.Lock()
        self._probe_client: Any = None
        self._fast_probe_client: Any = None
        self._hang_probe_client: Any = None
        self._lock = threading.Lock()
        self.client = self._new_client()

    @property
    def client(self) -> Any:
        """The command client (setting it also sets :attr:`execute`)."""
        return self._client

    @client.setter
    def client(self, client: Any) -> None:
        self._client = client
        self.execute = self._runner(client)

    @staticmethod
    def _runner(client: Any) -> Any:
        """What runs one command on ``client``: its ``execute_command`` unless a subclass
        knows a shorter way to the same code."""
        return client.execute_command

    def _new_client(self, **overrides: Any) -> Any:
        raise NotImplementedError

    # Exact counts from any thread: a plain ``+=`` on an attribute is a read, an add and a
    # write, and two threads interleaving them lose one. These run only when a hang is
    # detected or a read is hedged, never on a command's success path, so a lock costs
    # nothing there.

    def count_hang_detection(self) -> None:
        """The watchdog found this database hung."""
        with self._count_lock:
            self.hang_detections += 1

    def count_hedge_sent(self) -> None:
        """A hedged read was sent to this database."""
        with self._count_lock:
            self.hedges_sent += 1

    def count_hedge_win(self) -> None:
        """A hedged read sent to this database answered first."""
        with self._count_lock:
            self.hedge_wins += 1

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

    def _get_hang_probe_client(self) -> Any:
        """The client of the hang probe: a connection of its own, ``hang_probe_timeout``."""
        with self._lock:
            if self._hang_probe_client is None:
                t = self.hang_probe_timeout
                self._hang_probe_client = self._new_client(
                    socket_timeout=t, socket_connect_timeout=t
                )
            return self._hang_probe_client

    def clients(self) -> list[Any]:
        """Every client made so far (command client first)."""
        with self._lock:
            found = (self.client, self._probe_client, self._fast_probe_client,
                     self._hang_probe_client)
        return [c for c in found if c is not None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.display_name!r})"


D = TypeVar("D", bound=_DatabaseBase)
P = TypeVar("P", bound="OrderedProvider[Any] | AsyncOrderedProvider[Any]")


def _unavailable(permanent: bool, message: str) -> BaseException:
    if permanent:
        return NoValidDatabaseError(message)
    return TemporaryUnavailableError(message)


class _RedisProviderBase(Generic[D, P]):
    """The databases of a :class:`MultiDbConfig` over a generic provider (``P``) that holds
    their records as targets; the queries both Redis providers answer alike.

    ``health_check(db)`` runs one check round of a database and ``probe(db, exc)`` one probe
    after a failed command; both are only handed to the generic provider when the config has
    health checks. Health checks are never started here: each provider starts them its way.
    """

    config: MultiDbConfig

    def __init__(
        self,
        config: MultiDbConfig,
        provider_class: Callable[..., P],
        *,
        clock: Clock | None,
        breaker_registry: CircuitBreakerRegistry | None,
        health_check: Callable[[D], Any],
        probe: Callable[[D, BaseException], Any],
        before_reuse: Callable[[D], Any],
    ) -> None:
        if not isinstance(config, MultiDbConfig):
            raise TypeError(f"config must be a MultiDbConfig, got {type(config).__name__}")
        self.config = config
        self._checks: tuple[HealthCheck, ...] = tuple(config.health_checks)
        self._lock = threading.Lock()
        self._check_fns = (health_check, probe)
        self._retired: list[D] = []
        databases = [self._new_database(c) for c in config.databases]
        try:
            self._ordered: P = provider_class(
                databases,
                config.provider_config,
                clock=clock,
                names=[c.display_name for c in config.databases],
                weights=[c.weight for c in config.databases],
                health_check=health_check if self._checks else None,
                probe=probe if self._checks else None,
                breaker_registry=breaker_registry,
                unavailable_error=_unavailable,
                name=PROVIDER_NAME,
                noun="database",
                before_reuse=before_reuse,
                start_health_checks=False,
            )
        except BaseException:
            self._discard_databases(databases)
            raise
        if config.active_index_store is not None:
            self._ordered.add_switch_listener(self._persist_active_index)

    def _new_database(self, config: DatabaseConfig) -> D:
        """A database record (with its clients) for ``config``."""
        raise NotImplementedError

    def _discard_databases(self, databases: list[D]) -> None:
        """Release databases made by a constructor that then failed (default: nothing)."""

    # ------------------------------------------------------------------------------ startup

    def _stored_index(self) -> int | None:
        """The index persisted in ``active_index_store``, if any and in range."""
        path = self.config.active_index_store
        if path is None:
            return None
        try:
            with open(path, encoding="ascii") as f:
                stored = int(f.read().strip())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            _log.warning("ignoring an unreadable active_index_store %r", str(path))
            return None
        return stored if 1 <= stored <= len(self) else None

    def _log_start(self, stored: int | None) -> None:
        index = self.active_index
        how = ", as stored" if stored == index else ""
        _log.info("starting on database %d (%s)%s", index,
                  self._ordered.slot(index).name, how)

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
        with self._lock:
            first = not self._checks
            self._checks = (*self._checks, check)
        if first:  # built with health_checks=(): turn checks on now
            self._ordered.set_health_check(*self._check_fns)

    # ------------------------------------------------------------------------------ queries

    @property
    def ordered_provider(self) -> P:
        """The generic faulttol provider this one is built on; its targets are the database
        records (``slot.target.client`` is a database's client). The Redis clients use its
        public seams (``active_state``, ``recover``, ``probe``, ``mark_unhealthy``)."""
        return self._ordered

    @property
    def name(self) -> str:
        """The provider's name in logs, breaker names and metrics (``"faulttol-redis"``)."""
        return self._ordered.name

    @property
    def active_index(self) -> int:
        """The 1-based index of the active database."""
        return self._ordered.active_index

    @property
    def clock(self) -> Clock:
        return self._ordered.clock

    @property
    def retry(self) -> Retry:
        """The retry policy shared by all databases."""
        return self._ordered.retry

    @property
    def closed(self) -> bool:
        """Whether the provider was closed."""
        return self._ordered.closed

    @property
    def databases(self) -> tuple[DatabaseConfig, ...]:
        """The database configs, in index order."""
        return tuple(db.config for db in self._ordered.targets)

    def __len__(self) -> int:
        return len(self._ordered)

    def breaker(self, index: int) -> Any:
        """The circuit breaker of database ``index`` (1-based)."""
        return self._ordered.breaker(index)

    def is_healthy(self, index: int) -> bool:
        """Whether database ``index``'s last health check passed (True before the first)."""
        return self._ordered.is_healthy(index)

    def is_eligible(self, index: int) -> bool:
        """Whether database ``index`` could take commands now (its breaker admits calls and
        its last health check did not fail)."""
        return self._ordered.is_eligible(index)

    def status(self) -> list[DatabaseStatus]:
        """One :class:`DatabaseStatus` per database, in order: index, name, endpoint, weight,
        healthy, breaker state and metrics, active."""
        dbs = self._ordered.targets
        return [
            DatabaseStatus(**row, endpoint=db.config.endpoint,
                           hang_detections=db.hang_detections, hedges_sent=db.hedges_sent,
                           hedge_wins=db.hedge_wins)
            for row, db in zip(self._ordered.status(), dbs, strict=False)
        ]

    def add_switch_listener(self, listener: Callable[[SwitchEvent], object]) -> None:
        """Call ``listener(SwitchEvent)`` after every switch (see the provider's docs)."""
        self._ordered.add_switch_listener(listener)

    def remove_switch_listener(self, listener: Callable[[SwitchEvent], object]) -> None:
        """Stop calling ``listener``."""
        self._ordered.remove_switch_listener(listener)

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
            return self._ordered.add_target(db, name=config.display_name, weight=config.weight)

    def set_weight(self, index: int, weight: float) -> None:
        """Change database ``index``'s weight; affects later choices only."""
        self._ordered.set_weight(index, weight)

    def _removed(self, db: D) -> bool:
        """After a removal: whether ``db`` is gone, then kept until close (its in-flight
        commands finish on their connections, which close with the provider)."""
        if any(t is db for t in self._ordered.targets):
            return False
        with self._lock:
            self._retired.append(db)
        return True

    def _all_databases(self) -> list[D]:
        """The current databases, then the removed ones not closed yet."""
        with self._lock:
            return [*self._ordered.targets, *self._retired]

    # ------------------------------------------------------------------ 0.1.0 names

    @property
    def active(self) -> D:
        """Deprecated: the active database record (use :attr:`active_index`, or
        :meth:`client` for its client)."""
        deprecated("active", "use FailoverProvider.active_index or FailoverProvider.client()")
        record: D = self._ordered.active
        return record

    @property
    def targets(self) -> tuple[D, ...]:
        """Deprecated: the database records (use :attr:`databases` for their configs)."""
        deprecated("targets", "use FailoverProvider.databases (the configs)")
        return self._ordered.targets

    def add_target(self, target: D, *, name: str | None = None, weight: float = 1.0,
                   breaker: Any = None) -> int:
        """Deprecated: use :meth:`add_database`."""
        deprecated("add_target()", "use FailoverProvider.add_database(DatabaseConfig(...))")
        return self._ordered.add_target(target, name=name, weight=weight, breaker=breaker)

    def __repr__(self) -> str:
        names = ", ".join(db.config.display_name for db in self._ordered.targets)
        return f"{type(self).__name__}(databases=[{names}], active_index={self.active_index})"
