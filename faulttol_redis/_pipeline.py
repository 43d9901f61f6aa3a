"""FailoverPipeline (sync): buffered commands run on the database active at ``execute()``;
a WATCHed transaction is bound to the database its WATCH ran on and never commits anywhere
else. The decisions it shares with the asyncio pipeline are in
:class:`faulttol_redis._client_common.PipelineMixin`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import redis
from redis.client import Pipeline

from ._client_common import PipelineMixin, is_watch
from .provider import Database

if TYPE_CHECKING:
    from .client import FailoverRedis

__all__ = ["FailoverPipeline"]

_log = logging.getLogger("faulttol_redis.client")


def _run_pipeline(db: Database, stack: list[Any], scripts: set[Any], transaction: bool,
                  shard_hint: Any, raise_on_error: bool) -> list[Any]:
    pipe = db.client.pipeline(transaction, shard_hint)
    try:
        for args, options in stack:  # replayed through the public API: standalone or cluster
            pipe.pipeline_execute_command(*args, **options)
        if scripts and hasattr(pipe, "scripts"):
            pipe.scripts = set(scripts)
        return pipe.execute(raise_on_error)  # type: ignore[no-any-return]
    finally:
        pipe.reset()


class FailoverPipeline(PipelineMixin, Pipeline):
    """A redis-py ``Pipeline`` whose buffered commands run on the database active at ``execute()``.

    After ``watch()`` it is bound to the database the WATCH ran on and never commits
    anywhere else (``execute()`` raises ``WatchError`` if the active database changed); once
    its client is closed, whatever would reach a database raises
    :class:`~faulttol_redis.ClientClosedError` (buffering a command is not checked).
    """

    def __init__(self, client: FailoverRedis, transaction: bool, shard_hint: Any) -> None:
        self._client = client
        self._bound: Database | None = None
        self._real: Pipeline | None = None
        active: Any = client.provider.client()
        # commands are buffered here and replayed on db.client.pipeline(): the pool is unused
        pool: Any = getattr(active, "connection_pool", None)
        super().__init__(pool,
                         getattr(active, "response_callbacks", {}), transaction, shard_hint)

    def _check_open(self) -> None:
        if self._client._is_closed():
            self.reset()
            raise self._client._closed_error()

    # While WATCHing, everything goes to the real pipeline on the bound database.

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        real: Any = self._real
        if real is not None:
            self._check_open()
            try:
                result = real.execute_command(*args, **kwargs)
            except BaseException as exc:
                if self._client._is_closed():
                    self.reset()
                    raise self._client._after_close(exc)  # noqa: B904 - the cause is set
                raise
            return self if result is real else result  # a buffered command returns the pipe
        if args and is_watch(args[0]) and not self.explicit_transaction:
            return self._bind_and_watch(*args, **kwargs)
        return self.pipeline_execute_command(*args, **kwargs)

    def _bind_and_watch(self, *args: Any, **kwargs: Any) -> Any:
        if self.command_stack:
            raise redis.RedisError("Cannot issue a WATCH after commands were queued")
        self._check_open()
        client = self._client
        db = client._ordered.active
        real = db.client.pipeline(self.transaction, self.shard_hint)
        with client._lock:
            if client._closed:
                raise client._closed_error()
            client._watching.add(self)
        with client._closing_errors():
            try:
                result = real.execute_command(*args, **kwargs)
            except BaseException:
                client._watching.discard(self)
                real.reset()
                raise
        self._bound, self._real = db, real
        self.watching = True
        return result

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send the buffered commands to the active database (see the class docstring)."""
        self._check_open()
        client = self._client
        try:
            with client._closing_errors():
                real = self._bound_pipeline()
                if real is not None:
                    results: list[Any] = real.execute(raise_on_error)
                    return results
                if not self.command_stack:
                    return []
                # self.transaction: the flag redis-py's Pipeline sets over Redis.transaction()
                transaction: Any = self.transaction
                call = self._attempt_args(transaction, raise_on_error)
                return client._ordered.execute_with(  # type: ignore[no-any-return]
                    self._attempt, call, None, self._may_replay)
        finally:
            self.reset()

    def _attempt(self, db: Database, *call: Any) -> list[Any]:
        """One attempt of the pipeline; stops the provider at once if the client closed."""
        self._client._check_attempt()
        return _run_pipeline(db, *call)

    def reset(self) -> None:  # type: ignore[override]
        real, self._real, self._bound = self._real, None, None
        self._client._watching.discard(self)
        if real is not None:
            if self._client._is_closed():
                real.watching = False  # no UNWATCH: the close ended the connection's WATCH
            real.reset()
        self.command_stack = []
        self.scripts = set()
        self.watching = False
        self.explicit_transaction = False

    def _abandon(self) -> None:
        """The client is closing: disconnect the WATCHing connection (which ends the WATCH).

        Called from the closing thread, so the pipeline's own state is left to its owner:
        its next call finds the client closed and resets it.
        """
        real: Any = self._real
        conn = getattr(real, "connection", None)
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # pragma: no cover - best effort on shutdown
                _log.debug("closing a WATCHing pipeline's connection failed", exc_info=True)

    def unwatch(self) -> Any:
        if self._real is not None:
            self._check_open()
            result = self._real.unwatch()
            self.reset()
            return result
        return True

    def __del__(self) -> None:
        pass
