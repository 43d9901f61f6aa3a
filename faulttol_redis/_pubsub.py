"""FailoverPubSub (sync): a redis-py ``PubSub`` that follows switches, re-subscribing on the
new database. The decisions it shares with the asyncio pubsub (when to follow, what a read
error means) are in :class:`faulttol_redis._client_common.PubSubMixin`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from redis.client import PubSub, PubSubWorkerThread
from redis.cluster import RedisCluster

from faulttol import SwitchEvent

from ._client_common import PubSubMixin, ReadError, closed_under_us
from ._cluster import pubsub_node_pool
from .errors import ClientClosedError
from .provider import Database, FailoverProvider

__all__ = ["FailoverPubSub"]

_log = logging.getLogger("faulttol_redis.client")


def _is_cluster(db: Database) -> bool:
    return isinstance(db.client, RedisCluster)


def _pubsub_pool(db: Database) -> Any:
    """The pool a pubsub uses on ``db``: for a cluster, one node's (SUBSCRIBE on any node
    receives what is published on every node)."""
    client: Any = db.client
    if isinstance(client, RedisCluster):
        return pubsub_node_pool(client)  # the first live node
    return client.connection_pool


class FailoverPubSub(PubSubMixin, PubSub):
    """A redis-py ``PubSub`` that moves its subscriptions to the new database after a switch.

    The move happens on the thread that next uses the pubsub (``get_message``, ``listen``,
    ``run_in_thread``'s worker, or a (un)subscribe call); a reader blocked on the old database
    is woken by closing that connection. Subscribe confirmations for the re-subscribed channels
    arrive again, as after a redis-py reconnect.

    ``close()`` (also called by the client's ``close()``) is final: the pubsub unsubscribes
    from everything by dropping its connection, a reader blocked on it gets
    :class:`~faulttol_redis.ClientClosedError`, its ``run_in_thread`` workers stop, and every
    later use raises ``ClientClosedError`` (it never reconnects nor re-subscribes). So does
    a pubsub whose provider was closed. ``reset()`` (and ``with``) keep redis-py's meaning:
    unsubscribe from everything, usable again.
    """

    def __init__(self, provider: FailoverProvider, **kwargs: Any) -> None:
        self._setup_following(provider)
        self._moving = threading.Event()
        self._resubscriber: int | None = None  # the thread in the connect callback
        self._workers: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        super().__init__(_pubsub_pool(self._db), **kwargs)
        self._start_following(self._on_switch)

    def _is_moving(self) -> bool:
        return self._moving.is_set()

    def _on_switch(self, event: SwitchEvent) -> None:
        self._moving.set()
        conn: Any = self.connection
        sock: Any = getattr(conn, "_sock", None)
        if sock is None or self._active_db() is self._db or self.connection is not conn:
            return
        # Wake a reader blocked on the old database by shutting the socket down rather than
        # disconnecting: the reader's thread still uses the connection object (disconnecting
        # under it makes redis-py fail on a missing socket or buffer), and is the one that
        # moves (``_follow`` disconnects and releases the connection).
        self._switches += 1
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _follow(self) -> None:
        """Move to the active database if it changed."""
        target = self._active_db()
        if target is self._db:
            self._moving.clear()
            return
        with self._lock:
            target = self._active_db()
            if target is self._db:
                return
            old: Any = self.connection
            old_pool = self.connection_pool
            # The new database before any I/O: a switch listener leaves alone what is let
            # go, and a switch during the I/O below is seen (the caller moves again).
            self.connection = None
            self._db = target
            self.connection_pool = _pubsub_pool(target)
            self._moving.clear()
            if old is not None:
                old.deregister_connect_callback(self.on_connect)
                try:
                    old.disconnect()
                finally:
                    old_pool.release(old)
            if self._has_subscriptions():
                _log.info("pubsub: re-subscribing on %s", target.config.display_name)
                self.on_connect(None)

    def _has_subscriptions(self) -> bool:
        return bool(self.channels or self.patterns or self.shard_channels)

    def _subscribe_again(self) -> None:
        """Subscribe again on the current database: a re-subscription after a switch that
        failed (the new database refused the connection) left no connection, and reading
        must retry it rather than end in redis-py's "forgot to subscribe" RuntimeError."""
        with self._lock:
            if self.connection is None and self._has_subscriptions():
                self.on_connect(None)

    # ----------------------------------------------------------------------- lifecycle

    def _check_open(self) -> None:
        if self._is_closed():
            if not self._closed:  # the provider was closed: release what is left
                self.close()
            raise self._closed_pubsub_error()

    def _in_stopped_worker(self) -> bool:
        """Whether the caller is one of this pubsub's ``run_in_thread`` workers, which the
        close stops: it ends quietly instead of dying on ``ClientClosedError``."""
        current = threading.current_thread()
        if current in self._workers:
            if isinstance(current, PubSubWorkerThread):
                current.stop()
            return True
        return False

    def close(self) -> None:
        """Close the pubsub for good (see the class docstring). Idempotent."""
        if not self.__dict__.get("_closed", True):
            self._closed = True
            for worker in list(self._workers):
                if isinstance(worker, PubSubWorkerThread):
                    worker.stop()  # ends after its current read, which the close wakes
            self._stop_following()
        super().close()

    def _reconnect(self, conn: Any, *args: Any, **kwargs: Any) -> None:
        """redis-py reconnects a pubsub connection after a read error; a closed one stays
        closed, and one whose database is no longer active is left to the move."""
        if self._is_closed():
            conn.disconnect()
            return
        current: Any = self.connection
        if conn is not current:  # let go by a move (maybe in use elsewhere now)
            raise self._left_behind()
        if self._must_follow():
            conn.disconnect()
            raise self._left_behind()
        super()._reconnect(conn, *args, **kwargs)

    def on_connect(self, connection: Any) -> None:
        """Re-subscribe, as redis-py does: on ``connection`` just connected (the connect
        callback), or on a new connection (``None``). A connection to a database that is no
        longer active is not re-subscribed: the failure sends the reader to ``_follow``."""
        if connection is not None and self._must_follow():
            raise self._left_behind()
        self._resubscriber = threading.get_ident()
        try:
            super().on_connect(connection)
        finally:
            self._resubscriber = None

    # ----------------------------------------------------------------------------- I/O

    def execute_command(self, *args: Any) -> None:
        self._check_open()
        # Not from inside the connect callback: that connection is still in use below us.
        if self._must_follow() and self._resubscriber != threading.get_ident():
            self._follow()
        with self._pubsub_command():
            super().execute_command(*args)  # type: ignore[no-untyped-call]

    def parse_response(self, block: bool = True, timeout: float = 0) -> Any:
        self._check_open()
        if not self._recover(self._move_before_reading):
            return None  # another switch cut the move short: the next read moves again
        conn: Any = self.connection
        switches = self._switches
        try:
            return super().parse_response(block, timeout)  # type: ignore[no-untyped-call]
        except Exception as exc:
            return self._on_read_error(closed_under_us(exc, conn), switches)

    def _move_before_reading(self) -> None:
        while self._must_follow():  # a switch during a move: move again before reading
            self._follow()
        if self.connection is None and self._has_subscriptions():
            self._subscribe_again()

    def _recover(self, step: Callable[[], None]) -> bool:
        """Run a move or reconnect: whether it went through (its failure is handled by
        ``_after_failed_move``, which raises unless another switch caused it)."""
        switches = self._switches
        try:
            step()
        except Exception as exc:
            self._after_failed_move(exc, switches)
            return False
        return True

    def get_message(self, ignore_subscribe_messages: bool = False,
                    timeout: float | None = 0.0) -> Any:
        try:
            self._check_open()
            return super().get_message(ignore_subscribe_messages, timeout)  # type: ignore[arg-type]
        except ClientClosedError:
            if self._in_stopped_worker():
                return None
            raise

    def listen(self) -> Iterator[Any]:
        self._check_open()
        yield from super().listen()  # type: ignore[no-untyped-call]

    def run_in_thread(self, *args: Any, **kwargs: Any) -> PubSubWorkerThread:
        self._check_open()
        worker = super().run_in_thread(*args, **kwargs)
        self._workers.add(worker)
        return worker

    def _on_read_error(self, exc: Exception, switches: int) -> None:
        """Reading failed: follow a switch, or fail over if the database is down.
        ``switches``: the count of connections closed by switches when the read began."""
        action = self._read_error(exc, moved=self._switches != switches)
        if action is ReadError.IGNORE:
            return  # a switch closed the connection and switched back: reconnect later
        if action is ReadError.PROBE:
            ordered = self._provider.ordered_provider
            slot = self._state.slot
            if ordered.probe(slot, exc):
                if self._reconnects_after(exc):
                    self._recover(self._reconnect_same)  # a broken connection, a live database
                return
            ordered.mark_unhealthy(slot, exc)
            if self._stays_after_failed_probe():
                raise exc  # nowhere to go: the caller sees the failure
        self._recover(self._follow)  # a switch closed our connection, or we failed over

    def _reconnect_same(self) -> None:
        with self._lock:
            if self._is_closed():
                return  # closed meanwhile: the next use raises
            conn: Any = self.connection
            if conn is not None and _is_cluster(self._db):
                # a cluster may have moved our node's role: pick a node again
                conn.deregister_connect_callback(self.on_connect)
                conn.disconnect()
                self.connection_pool.release(conn)
                self.connection = None
                self.connection_pool = _pubsub_pool(self._db)
                self.on_connect(None)
            elif conn is not None:
                conn.disconnect()
                conn.connect()  # the connect callback re-subscribes

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
