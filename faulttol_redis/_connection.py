"""redis-py connections that say when a failure happened before a command was written.

A command whose connection failed to connect, or failed its handshake (HELLO, AUTH, SELECT,
CLIENT SETNAME/SETINFO, run by redis-py's ``on_connect``), or failed the PING health check that
redis-py runs before writing when ``health_check_interval`` is set, never reached the server:
the failover client may run it again, on the same or the next database. redis-py's own errors
do not say so: a handshake that times out raises ``TimeoutError("Timeout reading from
...")``, exactly what a command that timed out after it was sent raises. So these connection
classes mark every error raised while connecting or checking health with
``never_sent = True`` (an attribute on the exception itself, whose type is unchanged: an
``AuthenticationError`` stays one), which :func:`faulttol_redis._replay.never_sent` honours.

One exception: redis-py reconnects a connection that a maintenance notification marked for
reconnection right after a command ran, and raises that reconnect's failure in place of the
command's outcome. So the first connect after such a mark, whatever triggers it, marks its
failure ``never_sent = False`` (ambiguous) instead.

:func:`use_failover_connections` installs these classes in a client's pool when the pool uses
redis-py's stock TCP, TLS or Unix socket connection, and leaves any other class alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

import redis.asyncio.connection as async_connection
import redis.connection as sync_connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._hang import BLOCKING_NAMES, blocking_wait, in_use_connections
from .errors import OutcomeUnknownError

_monotonic = time.monotonic

__all__ = [
    "AsyncFailoverConnection",
    "AsyncFailoverSSLConnection",
    "AsyncFailoverUnixDomainSocketConnection",
    "FailoverConnection",
    "FailoverSSLConnection",
    "FailoverUnixDomainSocketConnection",
    "use_failover_connections",
]

USER_CONNECTION_KWARGS = frozenset({"connection_class", "connection_pool"})
"""``client_kwargs`` with which the user chose the connections: then they are left alone."""


def _mark(exc: BaseException, never_sent: bool) -> None:
    """Record on ``exc`` whether the command surely was not sent (first mark wins: the
    innermost call knows best)."""
    if isinstance(exc, Exception) and not isinstance(getattr(exc, "never_sent", None), bool):
        exc.never_sent = never_sent  # type: ignore[attr-defined]


class _HangStamps:
    """The per-connection state hang detection reads (see ``faulttol_redis._hang``)."""

    _ft_since = 0.0
    """Monotonic time since which the connection waits for a reply (0.0: it does not)."""
    _ft_hung: str | None = None
    """Set by the watchdog (the hung database's name) before it releases the connection."""
    _ft_unwatched = False
    """A Pub/Sub connection: never watched (set by the failover pubsub)."""

    def _ft_released(self, exc: BaseException) -> BaseException:
        """What a failed read raises: :class:`OutcomeUnknownError` when the watchdog
        released the connection, else ``exc`` itself."""
        hung = self._ft_hung
        if hung is None:
            return exc
        self._ft_hung = None
        error = OutcomeUnknownError(hung)
        error.__cause__ = exc
        return error

    _ft_reconnect_after_use = False
    """Set when redis-py asks for a reconnect after the current command (see the module)."""

    def mark_for_reconnect(self) -> None:  # redis-py >= 7: maintenance notifications
        self._ft_reconnect_after_use = True
        parent: Any = super()
        parent.mark_for_reconnect()

    def _ft_start_connecting(self) -> None:
        """A new connection: its TCP connect and handshake are watched from now."""
        self._ft_unwatched = False
        self._ft_hung = None
        self._ft_since = _monotonic()

    @contextlib.contextmanager
    def _ft_connecting(self) -> Iterator[None]:
        """Around a connect (sync or awaited): its failure is marked never sent (ambiguous
        when it is the reconnect redis-py asked for after a command); the stamp is cleared
        either way."""
        try:
            yield
        except BaseException as exc:
            ambiguous = self._ft_reconnect_after_use
            self._ft_reconnect_after_use = False
            _mark(exc, not ambiguous)
            raise
        finally:
            self._ft_since = 0.0
        self._ft_reconnect_after_use = False

    @contextlib.contextmanager
    def _ft_checking_health(self) -> Iterator[None]:
        """Around redis-py's pre-write health check (a PING): its failure is marked never
        sent (the command was not written yet)."""
        try:
            yield
        except BaseException as exc:
            _mark(exc, True)
            raise

    def _ft_stamp_blocking(self, args: tuple[Any, ...]) -> None:
        """A blocking command is watched once its own timeout has passed (never for 0)."""
        if args and args[0] in BLOCKING_NAMES:
            wait = blocking_wait(args)
            if wait is not None:
                self._ft_since = _monotonic() + wait


_PACK_THEN_SEND = sync_connection.AbstractConnection.send_command.__code__.co_names == (
    "send_packed_command", "_command_packer", "pack", "get")
"""redis-py's sync ``send_command`` is ``send_packed_command(_command_packer.pack(*args),
check_health=...)`` and nothing else (checked on its code): the marking connection then
does the same itself (see ``_SyncMarking.send_command``)."""


def release_hung(conn: Any, database: str) -> bool:
    """From the watchdog: make ``conn``'s blocked read return and its command fail with
    :class:`OutcomeUnknownError` naming ``database``. A sync connection's socket is shut
    down both ways (the blocked ``recv`` returns); an asyncio connection's transport is
    aborted (the awaiting read ends with a connection error)."""
    writer = getattr(conn, "_writer", None)
    if writer is not None:  # asyncio
        conn._ft_hung = database
        writer.transport.abort()
        return True
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return False
    conn._ft_hung = database
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    return True


def release_waiting(client: Any, database: str) -> None:
    """After a failed hang probe: release (:func:`release_hung`) every connection of
    ``client`` that waits for a reply and is watched; a blocking command still within its
    own timeout is left waiting."""
    now = _monotonic()
    for conn in in_use_connections(client):
        since = conn._ft_since
        if since and since <= now and not conn._ft_unwatched:
            release_hung(conn, database)


class _SyncMarking(_HangStamps, sync_connection.AbstractConnection):
    """Marks failures of ``connect`` and of the pre-write health check as never sent, and
    keeps the hang-detection stamp."""

    _ft_pack_then_send = False
    """Whether :meth:`send_command` packs and sends itself (see ``__init_subclass__``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only when redis-py's send_command is the plain pack-then-send and no class in
        # front of this one (a chaos connection, a user's subclass) overrides
        # send_packed_command, which the shortcut would skip.
        cls._ft_pack_then_send = (_PACK_THEN_SEND and cls.send_packed_command
                                  is _SyncMarking.send_packed_command)

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        if args and args[0] in BLOCKING_NAMES:
            self._ft_stamp_blocking(args)
        elif not self._ft_since:
            self._ft_since = _monotonic()
        if self._ft_pack_then_send:
            # redis-py's send_command, whose whole body this is: one frame less per
            # command (redis-py's own send_packed_command, past this class's stamping).
            super().send_packed_command(  # type: ignore[no-untyped-call]
                self._command_packer.pack(*args), check_health=kwargs.get("check_health", True)
            )
        else:
            super().send_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._ft_since:  # a pipeline's commands (send_command stamps its own)
            self._ft_since = _monotonic()
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if not self._ft_since and not self._ft_unwatched:
            self._ft_since = _monotonic()  # the next reply of a pipeline
        try:
            return super().read_response(*args, **kwargs)
        except BaseException as exc:
            raise self._ft_released(exc)  # noqa: B904 - exc itself, or with exc as cause
        finally:
            self._ft_since = 0.0

    def connect(self) -> None:
        sock: Any = self._sock  # None until connected (redis-py types it as a socket)
        if sock is not None:
            # Connected: redis-py's connect() would do nothing, through its retry wrapper
            # (the pool calls it before every command: this saves that call its cost).
            return
        self._ft_start_connecting()
        with self._ft_connecting():
            super().connect()  # type: ignore[no-untyped-call]

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:  # redis-py >= 6
        if self._sock is None:
            self._ft_since = self._ft_since or _monotonic()
        with self._ft_connecting():
            super().connect_check_health(*args, **kwargs)

    def check_health(self) -> None:
        if not self.health_check_interval:
            return  # redis-py's check would do nothing: spare every command the wrapper
        with self._ft_checking_health():
            super().check_health()  # type: ignore[no-untyped-call]


class FailoverConnection(_SyncMarking, sync_connection.Connection):
    """redis-py's TCP ``Connection``, marking failures before a command was written."""


class FailoverSSLConnection(_SyncMarking, sync_connection.SSLConnection):
    """redis-py's TLS ``SSLConnection``, marking failures before a command was written."""


class FailoverUnixDomainSocketConnection(
    _SyncMarking, sync_connection.UnixDomainSocketConnection
):
    """redis-py's ``UnixDomainSocketConnection``, marking failures before a command was
    written."""


class _AsyncMarking(_HangStamps, async_connection.AbstractConnection):
    """The asyncio twin of :class:`_SyncMarking`."""

    def pack_command(self, *args: Any) -> Any:
        # redis.asyncio packs every command it sends here, right before sending it (a
        # pipeline's too, through pack_commands): the stamp is set here, which spares each
        # command an awaited send_packed_command wrapper.
        if args and args[0] in BLOCKING_NAMES:
            self._ft_stamp_blocking(args)
        elif not self._ft_since:
            self._ft_since = _monotonic()
        return super().pack_command(*args)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if not self._ft_since and not self._ft_unwatched:
            self._ft_since = _monotonic()  # the next reply of a pipeline
        try:
            writer = self._writer
            if writer is not None and writer.transport.get_write_buffer_size():
                await self._ft_finish_write(writer)
            return await super().read_response(*args, **kwargs)
        except BaseException as exc:
            raise self._ft_released(exc)  # noqa: B904 - exc itself, or with exc as cause
        finally:
            self._ft_since = 0.0

    async def _ft_finish_write(self, writer: asyncio.StreamWriter) -> None:
        """Wait until the command's bytes have all left the transport, and fail the way a
        failed write fails in redis-py ("... while writing to socket") when they cannot.

        redis.asyncio sends with ``writelines`` then ``drain``; on Python 3.12 and 3.13
        asyncio's ``writelines`` never pauses the protocol, so ``drain`` returns with
        megabytes still buffered, and a connection cut in the middle of that write surfaced
        as a read error: a transaction whose EXEC never left the client looked as if it
        might have run, and was not replayed. (On older Pythons ``drain`` still returns
        with up to 16 KiB unsent.) A zero high-water mark pauses the protocol until the
        buffer is empty, so this ``drain`` waits for the whole write, as the sync client's
        ``sendall`` does; the transport keeps that mark (later drains wait the same way).
        """
        try:
            writer.transport.set_write_buffer_limits(high=0)
            if self.socket_timeout:
                await asyncio.wait_for(writer.drain(), self.socket_timeout)
            else:
                await writer.drain()
        except asyncio.TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            errno, text = ("UNKNOWN", exc.args[0]) if len(exc.args) == 1 else exc.args[:2]
            raise RedisConnectionError(
                f"Error {errno} while writing to socket. {text}."
            ) from exc

    async def connect(self) -> None:
        if self._reader is not None and self._writer is not None:
            return  # connected: redis-py's connect() would do nothing (see the sync twin)
        self._ft_start_connecting()
        with self._ft_connecting():
            await super().connect()  # type: ignore[no-untyped-call]

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:  # redis-py >= 6
        if not self.is_connected:
            self._ft_since = self._ft_since or _monotonic()
        with self._ft_connecting():
            await super().connect_check_health(*args, **kwargs)

    async def check_health(self) -> None:
        if not self.health_check_interval:
            return  # as for the sync connection
        with self._ft_checking_health():
            await super().check_health()  # type: ignore[no-untyped-call]


class AsyncFailoverConnection(_AsyncMarking, async_connection.Connection):
    """redis-py's asyncio TCP ``Connection``, marking failures before a command was
    written."""


class AsyncFailoverSSLConnection(_AsyncMarking, async_connection.SSLConnection):
    """redis-py's asyncio ``SSLConnection``, marking failures before a command was
    written."""


class AsyncFailoverUnixDomainSocketConnection(
    _AsyncMarking, async_connection.UnixDomainSocketConnection
):
    """redis-py's asyncio ``UnixDomainSocketConnection``, marking failures before a command
    was written."""


_REPLACEMENTS: dict[type[Any], type[Any]] = {
    sync_connection.Connection: FailoverConnection,
    sync_connection.SSLConnection: FailoverSSLConnection,
    sync_connection.UnixDomainSocketConnection: FailoverUnixDomainSocketConnection,
    async_connection.Connection: AsyncFailoverConnection,
    async_connection.SSLConnection: AsyncFailoverSSLConnection,
    async_connection.UnixDomainSocketConnection: AsyncFailoverUnixDomainSocketConnection,
}


def use_failover_connections(client: Any, client_kwargs: Mapping[str, Any]) -> None:
    """Make ``client`` (a ``redis.Redis`` or ``redis.asyncio.Redis`` just built from
    ``client_kwargs``) use the marking twin of the connection class redis-py chose for it:
    TCP, TLS (``ssl=True`` or ``rediss://``) or Unix socket (``unix://``).

    Nothing changes when the user chose the connections (``connection_class`` or
    ``connection_pool`` in ``client_kwargs``) or the class is not one of redis-py's own.
    """
    if USER_CONNECTION_KWARGS & client_kwargs.keys():
        return
    pool = getattr(client, "connection_pool", None)
    replacement = _REPLACEMENTS.get(getattr(pool, "connection_class", None))  # type: ignore[arg-type]
    if pool is None or replacement is None:
        return
    pool.connection_class = replacement
    # single_connection_client: the sync client made its connection at construction; the
    # marking class adds behaviour only, no state, so the object can take it over as is.
    connection = getattr(client, "connection", None)
    if connection is not None and _REPLACEMENTS.get(type(connection)) is replacement:
        connection.__class__ = replacement
