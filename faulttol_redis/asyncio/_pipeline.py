"""FailoverPipeline (asyncio): the sync pipeline's twin over ``redis.asyncio`` (the decisions
they share are in :class:`faulttol_redis._client_common.PipelineMixin`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import redis.asyncio.cluster
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from .._client_common import PipelineMixin, is_watch
from .provider import AsyncDatabase

if TYPE_CHECKING:
    from .client import FailoverRedis

__all__ = ["FailoverPipeline"]

_log = logging.getLogger("faulttol_redis.asyncio")


def _is_cluster(db: AsyncDatabase) -> bool:
    return isinstance(db.client, redis.asyncio.cluster.RedisCluster)


async def _run_pipeline(db: AsyncDatabase, stack: list[Any], scripts: set[Any],
                        transaction: bool, shard_hint: Any, raise_on_error: bool) -> list[Any]:
    pipe = db.client.pipeline(transaction, shard_hint)
    try:
        if _is_cluster(db):
            # redis-py runs a cluster transaction's execute_command on a worker thread's own
            # event loop: the cluster must be initialized on ours first.
            await pipe.initialize()
        # Replayed through the public API; an asyncio cluster pipeline buffers on
        # execute_command (it has no pipeline_execute_command).
        add = getattr(pipe, "pipeline_execute_command", None) or pipe.execute_command
        for args, options in stack:
            add(*args, **options)
        if scripts and hasattr(pipe, "scripts"):
            pipe.scripts = set(scripts)
        return await pipe.execute(raise_on_error)  # type: ignore[no-any-return]
    finally:
        await pipe.reset()


class FailoverPipeline(PipelineMixin, Pipeline):  # type: ignore[misc]
    """A ``redis.asyncio`` Pipeline whose buffered commands run on the database active at
    ``execute()``, bound by ``watch()`` and refused by a closed client as the sync
    :class:`faulttol_redis.FailoverPipeline` is.
    """

    def __init__(self, client: FailoverRedis, transaction: bool, shard_hint: Any) -> None:
        self._client = client
        self._bound: AsyncDatabase | None = None
        self._real: Any = None
        active = client.provider.client()
        super().__init__(getattr(active, "connection_pool", None),  # type: ignore[arg-type]
                         getattr(active, "response_callbacks", {}), transaction, shard_hint)

    async def _check_open(self) -> None:
        if self._client._is_closed():
            await self.reset()
            raise self._client._closed_error()

    # While WATCHing, everything goes to the real pipeline on the bound database.

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        real = self._real
        if real is not None:
            result = real.execute_command(*args, **kwargs)
            # buffered (after MULTI): the real pipeline; else an immediate command, not run yet
            return self if result is real else self._immediate(result)
        if args and is_watch(args[0]) and not self.explicit_transaction:
            return self._bind_and_watch(*args, **kwargs)
        return self.pipeline_execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def _immediate(self, command: Awaitable[Any]) -> Any:
        """Await an immediate command of the bound pipeline, unless the client closed."""
        client = self._client
        if client._is_closed():
            close = getattr(command, "close", None)
            if close is not None:
                close()  # never started: no I/O, no "never awaited" warning
            await self._check_open()
        try:
            return await command
        except BaseException as exc:
            if client._is_closed():
                await self.reset()
                raise client._after_close(exc)  # noqa: B904 - the cause is set
            raise

    async def _bind_and_watch(self, *args: Any, **kwargs: Any) -> Any:
        if self.command_stack:
            raise RedisError("Cannot issue a WATCH after commands were queued")
        await self._check_open()
        client = self._client
        await client.initialize()
        db = client._ordered.active
        real = db.client.pipeline(self.is_transaction, self.shard_hint)
        with client._closing_errors():
            try:
                if _is_cluster(db):
                    await real.initialize()  # on this loop (see _run_pipeline)
                result = await real.execute_command(*args, **kwargs)
            except BaseException:
                await real.reset()
                raise
        self._bound, self._real = db, real
        self.watching = True
        client._watching.add(self)
        if client._is_closed():  # closed while the WATCH ran
            await self._check_open()
        return result

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send the buffered commands to the active database (see the class docstring)."""
        await self._check_open()
        client = self._client
        try:
            with client._closing_errors():
                bound = self._bound_pipeline()
                if bound is not None:
                    return await bound.execute(raise_on_error)  # type: ignore[no-any-return]
                if not self.command_stack:
                    return []
                if not client.provider.initialized:
                    await client.initialize()
                return await client._ordered.execute_with(  # type: ignore[no-any-return]
                    self._attempt, self._attempt_args(self.is_transaction, raise_on_error),
                    None, self._may_replay)
        finally:
            await self.reset()

    def _attempt(self, db: AsyncDatabase, *call: Any) -> Awaitable[list[Any]]:
        """One attempt of the pipeline; stops the provider at once if the client closed."""
        self._client._check_attempt()
        return _run_pipeline(db, *call)

    async def reset(self) -> None:  # type: ignore[override]
        real, self._real, self._bound = self._real, None, None
        self._client._watching.discard(self)
        try:
            if real is not None:
                if self._client._is_closed():
                    real.watching = False  # no UNWATCH: the close ended the connection's WATCH
                await real.reset()
        finally:
            await super().reset()  # type: ignore[no-untyped-call]  # holds no connection: clears the buffer and flags

    async def _abandon(self) -> None:
        """The client is closing: disconnect the WATCHing connection (which ends the WATCH);
        the pipeline's next call finds the client closed and resets it."""
        conn = getattr(self._real, "connection", None)
        if conn is not None:
            try:
                await conn.disconnect(nowait=True)
            except Exception:  # pragma: no cover - best effort on shutdown
                _log.debug("closing a WATCHing pipeline's connection failed", exc_info=True)

    async def unwatch(self) -> Any:  # type: ignore[override]
        real = self._real
        if real is None:
            return True
        await self._check_open()
        try:
            return await real.unwatch()
        finally:
            await self.reset()
