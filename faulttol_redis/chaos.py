"""Chaos for one database of the failover client: rehearse a real failover in staging.

:func:`chaos_database` returns a copy of a :class:`~faulttol_redis.DatabaseConfig` whose
redis-py connections run :mod:`faulttol.chaos` strategies on every request to that
database: its commands, pipelines and transactions, the failover client's health-check
PINGs (not the connection handshake, which carries no request of the application).
Everything else (the failover client, its provider, the
other databases) is the code that runs in production, untouched::

    from redis.exceptions import ConnectionError
    from faulttol.chaos import ChaosFault
    from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig
    from faulttol_redis.chaos import chaos_database

    east = chaos_database(
        DatabaseConfig("redis-east", 6379),
        ChaosFault(1.0, lambda: ConnectionError("chaos: east is down"),
                   enabled=lambda: flags.get("chaos-east")),
    )
    client = FailoverRedis.from_config(MultiDbConfig([east, DatabaseConfig("redis-west")]))

Where the chaos strikes (``where=``):

* ``"send"`` (default): before the request is written, so the server never sees it. A fault
  there is marked as never sent: the failover client may run any command again, on the same
  or the next database, exactly as after a refused connection.
* ``"reply"``: after the request was written, before its reply is read, so the server has
  run it. A fault there first drops the connection (the reply is lost, as when a network
  fails mid-request) and is an ambiguous failure: the failover client replays only
  replay-safe commands and raises the error for the others (an ``INCR`` is not run twice).
  A :class:`~faulttol.chaos.ChaosOutcome` there replaces the reply (the real one is read
  and dropped); a latency delays it.

The connection classes subclass faulttol_redis's own (which mark failures before a command
was written), so the failover client classifies failures the same way with and without
chaos. Standalone databases only (TCP, TLS and Unix sockets, given as ``host``/``port`` or
as a ``redis://``, ``rediss://`` or ``unix://`` URL); the sync and the asyncio clients need
their own connection classes: pass ``for_asyncio=True`` for a config of the asyncio client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final, cast

import redis.asyncio.connection as async_connection
import redis.connection as sync_connection

from faulttol.chaos import PROCEED, ChaosOutcome, ChaosStrategy
from faulttol.validation import check_bool, check_choice, describe

from ._connection import (
    USER_CONNECTION_KWARGS,
    AsyncFailoverConnection,
    AsyncFailoverSSLConnection,
    AsyncFailoverUnixDomainSocketConnection,
    FailoverConnection,
    FailoverSSLConnection,
    FailoverUnixDomainSocketConnection,
    _mark,
)
from ._database import DatabaseConfig

__all__ = ["WHERE", "chaos_connection_class", "chaos_database"]

WHERE: Final = ("send", "reply")
"""Where a strategy strikes: before a request is written, or before its reply is read."""

_SYNC_BASES: Final[dict[str, type[Any]]] = {
    "redis": FailoverConnection,
    "rediss": FailoverSSLConnection,
    "unix": FailoverUnixDomainSocketConnection,
}
_ASYNC_BASES: Final[dict[str, type[Any]]] = {
    "redis": AsyncFailoverConnection,
    "rediss": AsyncFailoverSSLConnection,
    "unix": AsyncFailoverUnixDomainSocketConnection,
}


class _SyncChaos(sync_connection.AbstractConnection):
    """Runs the class's strategies before each request is written and each reply is read
    (not during the connection handshake: it carries no request of the application)."""

    _ft_chaos_send: tuple[ChaosStrategy, ...] = ()
    _ft_chaos_reply: tuple[ChaosStrategy, ...] = ()
    _ft_handshake = 0

    def on_connect(self) -> None:
        parent: Any = super()  # redis-py's annotations differ between versions
        self._ft_handshake += 1
        try:
            parent.on_connect()
        finally:
            self._ft_handshake -= 1

    def on_connect_check_health(self, *args: Any, **kwargs: Any) -> None:  # redis-py >= 6
        self._ft_handshake += 1
        try:
            super().on_connect_check_health(*args, **kwargs)
        finally:
            self._ft_handshake -= 1

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        for strategy in () if self._ft_handshake else self._ft_chaos_send:
            if strategy.should_inject():
                try:
                    strategy.inject()
                except BaseException as exc:
                    _mark(exc, True)  # nothing was written
                    raise
        parent: Any = super()
        parent.send_packed_command(command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        for strategy in () if self._ft_handshake else self._ft_chaos_reply:
            if strategy.should_inject():
                try:
                    outcome = strategy.inject()
                except BaseException as exc:
                    cast(Any, self).disconnect()  # the reply is lost with the connection
                    _mark(exc, False)  # the server ran the request: ambiguous
                    raise
                if outcome is not PROCEED:
                    super().read_response(*args, **kwargs)
                    return outcome
        return super().read_response(*args, **kwargs)


class _AsyncChaos(async_connection.AbstractConnection):
    """The asyncio twin of :class:`_SyncChaos` (latencies with ``sleep_async``)."""

    _ft_chaos_send: tuple[ChaosStrategy, ...] = ()
    _ft_chaos_reply: tuple[ChaosStrategy, ...] = ()
    _ft_handshake = 0

    async def on_connect(self) -> None:
        self._ft_handshake += 1
        try:
            await super().on_connect()
        finally:
            self._ft_handshake -= 1

    async def on_connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        self._ft_handshake += 1
        try:
            await super().on_connect_check_health(*args, **kwargs)
        finally:
            self._ft_handshake -= 1

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        for strategy in () if self._ft_handshake else self._ft_chaos_send:
            if strategy.should_inject():
                try:
                    await strategy.inject_async()
                except BaseException as exc:
                    _mark(exc, True)
                    raise
        await super().send_packed_command(command, check_health)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        for strategy in () if self._ft_handshake else self._ft_chaos_reply:
            if strategy.should_inject():
                try:
                    outcome = await strategy.inject_async()
                except BaseException as exc:
                    await self.disconnect()
                    _mark(exc, False)
                    raise
                if outcome is not PROCEED:
                    await super().read_response(*args, **kwargs)
                    return outcome
        return await super().read_response(*args, **kwargs)


def _check_strategies(strategies: tuple[object, ...]) -> tuple[ChaosStrategy, ...]:
    if not strategies:
        raise ValueError("give at least one faulttol.chaos strategy")
    for strategy in strategies:
        if not isinstance(strategy, ChaosStrategy):
            raise TypeError(
                f"strategies must be faulttol.chaos strategies (ChaosFault, ChaosLatency, "
                f"ChaosOutcome, ChaosBehavior), got {describe(strategy)}"
            )
    return strategies  # type: ignore[return-value]


def chaos_connection_class(
    *strategies: ChaosStrategy,
    where: str = "send",
    scheme: str = "redis",
    for_asyncio: bool = False,
) -> type[Any]:
    """A redis-py connection class that runs ``strategies`` (in order) on every request.

    ``where`` is ``"send"`` or ``"reply"`` (see the module); ``scheme`` the transport:
    ``"redis"`` (TCP), ``"rediss"`` (TLS) or ``"unix"``; ``for_asyncio`` gives a class for
    ``redis.asyncio``. The class subclasses faulttol_redis's failure-marking connection.
    For your own clients: ``redis.Redis.from_url(url, connection_class=cls)`` or
    ``redis.ConnectionPool(connection_class=cls, ...)``.
    """
    chosen = _check_strategies(strategies)
    check_choice("where", where, WHERE)
    check_choice("scheme", scheme, tuple(_SYNC_BASES))
    check_bool("for_asyncio", for_asyncio)
    if where == "send" and any(isinstance(s, ChaosOutcome) for s in chosen):
        raise ValueError(
            "a ChaosOutcome replaces replies: use where='reply' (a request that is never "
            "sent has no reply to replace)"
        )
    base = (_ASYNC_BASES if for_asyncio else _SYNC_BASES)[scheme]
    mixin = _AsyncChaos if for_asyncio else _SyncChaos
    attributes = {
        "_ft_chaos_send": chosen if where == "send" else (),
        "_ft_chaos_reply": chosen if where == "reply" else (),
        "__doc__": f"{base.__name__} running chaos strategies at {where!r}.",
        "__module__": __name__,
    }
    return type(f"Chaos{base.__name__}", (mixin, base), attributes)


def _scheme(database: DatabaseConfig, kwargs: Mapping[str, Any]) -> str:
    if database.url is not None:
        return database.url.split("://", 1)[0].lower()
    return "rediss" if kwargs.get("ssl") else "redis"


def chaos_database(
    database: DatabaseConfig,
    *strategies: ChaosStrategy,
    where: str = "send",
    for_asyncio: bool = False,
) -> DatabaseConfig:
    """A copy of ``database`` whose connections run ``strategies`` on every request.

    The copy has the same endpoint, name, weight and client options (a ``host``/``port``
    config becomes the equivalent URL, with its ``db`` and TLS scheme; secrets stay in
    ``client_kwargs``), so health checks, metrics and logs see the same database. Put it in
    the ``MultiDbConfig`` in place of the original. ``ValueError`` for a cluster database
    and for a config whose ``client_kwargs`` already choose the connections
    (``connection_class``, ``connection_pool``).
    """
    if not isinstance(database, DatabaseConfig):
        raise TypeError(f"database must be a DatabaseConfig, got {describe(database)}")
    if database.cluster:
        raise ValueError(
            f"chaos_database supports standalone databases; {database.display_name} is a "
            "cluster (inject chaos around your calls with faulttol.chaos instead)"
        )
    kwargs = dict(database.client_kwargs or {})
    chosen = sorted(USER_CONNECTION_KWARGS & kwargs.keys())
    if chosen:
        raise ValueError(
            f"{database.display_name}'s client_kwargs already choose the connections "
            f"({', '.join(chosen)}): build the chaos into them with chaos_connection_class"
        )
    scheme = _scheme(database, kwargs)
    kwargs["connection_class"] = chaos_connection_class(
        *strategies, where=where, scheme=scheme, for_asyncio=for_asyncio
    )
    url = database.url
    if url is None:  # only redis-py's URL constructor takes a connection class
        kwargs.pop("ssl", None)
        kwargs.pop("db", None)
        host = f"[{database.host}]" if ":" in database.host else database.host
        url = f"{scheme}://{host}:{database.port}/{database.db}"
    return dataclasses.replace(database, url=url, client_kwargs=kwargs)
