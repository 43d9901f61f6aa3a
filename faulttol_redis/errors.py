"""Exceptions raised by the failover client when no database can take a command.

All are :class:`redis.exceptions.ConnectionError` subclasses, so code that already handles
redis-py connection errors keeps working. :class:`TemporaryUnavailableError` and
:class:`NoValidDatabaseError` are siblings (neither subclasses the other) so that callers can
tell "wait and retry" from "give up"; they also subclass faulttol's pair
(:class:`faulttol.TemporaryUnavailableError`, :class:`faulttol.NoValidTargetError`), so
``except faulttol.TemporaryUnavailableError`` catches what any faulttol provider raises.
:class:`ClientClosedError` says "never again".
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

import faulttol

__all__ = [
    "ClientClosedError",
    "ClusterConnectionError",
    "NoValidDatabaseError",
    "OutcomeUnknownError",
    "TemporaryUnavailableError",
]


class TemporaryUnavailableError(RedisConnectionError, faulttol.TemporaryUnavailableError):
    """No database is eligible right now, but the failover grace time has not run out.

    Raised from the first call that finds no eligible database (every breaker open or every
    health check failing) until ``failover_attempts`` x ``failover_delay`` seconds have
    passed since then (120 s by default). The application should retry later: a database is
    expected to come back. After that time :class:`NoValidDatabaseError` is raised instead.
    """


class NoValidDatabaseError(RedisConnectionError, faulttol.NoValidTargetError):
    """No database has been eligible for longer than ``failover_attempts`` x ``failover_delay``.

    Raised on every call from then on until some database is eligible again (its breaker
    admits calls and its health check passes), at which point commands resume on it.
    """


class ClusterConnectionError(RedisConnectionError):
    """A cluster database cannot serve a command: no node answered a topology refresh, the
    cluster answered CLUSTERDOWN/MASTERDOWN, a slot has no node, or a node failed in the
    middle of a pipeline that spans several nodes.

    A connection error, so that it counts against the database and makes the failover
    client move on. The redis-py error is the ``__cause__``. ``never_sent`` is True when the
    command surely did not run (it may then be replayed on another database); it is False
    when commands may have run (e.g. on the other nodes of a multi-node pipeline).
    """

    def __init__(self, message: str, *, never_sent: bool) -> None:
        super().__init__(message)
        self.never_sent = never_sent


class ClientClosedError(RedisConnectionError):
    """The failover client (or its provider, or the pubsub) was closed: nothing runs any more.

    Raised by every call made after ``close()`` / ``aclose()``, without any network I/O, and
    by commands that were running while the client closed (the redis-py or socket error that
    the close caused is the ``__cause__``). A connection error, so code that handles redis-py
    connection errors keeps working; unlike :class:`TemporaryUnavailableError` retrying is
    pointless: build a new client.
    """


class OutcomeUnknownError(RedisTimeoutError):
    """A command was waiting on a database found hung: it was released, and whether it ran
    there is unknown.

    Raised when hang detection (``MultiDbConfig(hang_detection_after=...)``) found that a
    database stopped answering (its probe PING got no answer within ``hang_probe_timeout``)
    while the command waited for its reply, and the command is not replay-safe (a replay-safe
    one runs again on the next database instead). A ``redis.exceptions.TimeoutError``, so code
    that handles redis-py timeouts keeps working; ``database`` is the hung database's name.
    """

    def __init__(self, database: str) -> None:
        super().__init__(
            f"the outcome is unknown: database {database} stopped answering (hung) while "
            "the command waited for its reply; it may or may not have run there"
        )
        self.database = database

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.database,))


class _ClientClosed(BaseException):
    """Internal: an attempt found its client closed (never reaches callers).

    Raised by a command attempt inside the provider's slow path. A ``BaseException`` and
    neither a retryable nor a fallback exception, so the provider stops at once: no retry, no
    probe, no failover, and the breaker counts nothing (it gives the permit back). The
    client turns it into :class:`ClientClosedError`.
    """


def _closed_error(what: str, cause: BaseException | None = None) -> ClientClosedError:
    """The :class:`ClientClosedError` for ``what`` (e.g. ``"client"``), caused by ``cause``."""
    error = ClientClosedError(f"{what} is closed")
    if cause is None or isinstance(cause, _ClientClosed):
        error.__suppress_context__ = True  # nothing worth showing (or internal)
    else:
        error.__cause__ = cause
    return error


def _error_after_close(exc: BaseException, what: str) -> BaseException:
    """What a call that failed with ``exc`` raises when it finds its client closed.

    The close broke the call (a socket closed under it, a connection gone: redis-py then
    raises connection errors, but also ``ValueError``, ``AttributeError`` or ``OSError``):
    :class:`ClientClosedError`, with ``exc`` as the cause. A server's answer (a
    :class:`~redis.exceptions.RedisError` that is not a connection or timeout error, e.g. a
    ``ResponseError``) and a ``BaseException`` that is not an ``Exception`` (a
    ``KeyboardInterrupt``, a cancellation) are raised unchanged.
    """
    if isinstance(exc, ClientClosedError):
        return exc
    if isinstance(exc, _ClientClosed):
        return _closed_error(what)
    if not isinstance(exc, Exception):
        return exc
    if isinstance(exc, RedisError) and not isinstance(
        exc, (RedisConnectionError, RedisTimeoutError)
    ):
        return exc
    return _closed_error(what, exc)
