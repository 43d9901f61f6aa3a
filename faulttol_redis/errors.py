"""Exceptions raised by the failover client when no database can take a command.

Both are :class:`redis.exceptions.ConnectionError` subclasses, so code that already handles
redis-py connection errors keeps working; they are siblings (neither subclasses the other) so
that callers can tell "wait and retry" from "give up".
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["ClusterConnectionError", "NoValidDatabaseError", "TemporaryUnavailableError"]


class TemporaryUnavailableError(RedisConnectionError):
    """No database is eligible right now, but the failover grace time has not run out.

    Raised from the first call that finds no eligible database (every breaker open or every
    health check failing) until ``failover_attempts`` x ``failover_delay`` seconds have
    passed since then (120 s by default). The application should retry later: a database is
    expected to come back. After that time :class:`NoValidDatabaseError` is raised instead.
    """


class NoValidDatabaseError(RedisConnectionError):
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
