"""Cluster databases: RedisCluster clients shaped for failover.

A cluster database's client is a RedisCluster with two differences that failover needs: it
loads the topology on first use (so a cluster that is down when the provider starts does not
stop the provider from starting, and concurrent first commands wait for one loading), and it
reports the cluster being unavailable as a connection error. redis-py reports a cluster with
no reachable node as RedisClusterException and a cluster in cluster_state:fail as
ClusterDownError (a ResponseError): neither would count against the database or trigger
failover, so an application would see them instead of being moved to another database.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from ._replay import never_sent as _never_sent
from ._secrets import masked_url
from .errors import ClusterConnectionError

__all__ = [
    "AsyncClusterPubSubPool",
    "FailoverAsyncRedisCluster",
    "FailoverRedisCluster",
    "pubsub_node_pool",
]

_TOPOLOGY_FAILURES = (
    "Redis Cluster cannot be connected",  # no startup node answered CLUSTER SLOTS
    "All slots are not covered",  # a node answered, but the slot map has holes
)


def _cluster_failure(exc: BaseException, *, pipeline: bool) -> ClusterConnectionError | None:
    """The connection error that ``exc`` (raised by a cluster client) stands for, if any."""
    if isinstance(exc, ClusterConnectionError):
        return None
    if isinstance(exc, (redis.exceptions.ClusterDownError, redis.exceptions.SlotNotCoveredError)):
        # Refused before running; in a multi-node pipeline other commands may have run.
        return ClusterConnectionError(f"the cluster cannot serve: {exc}", never_sent=not pipeline)
    if isinstance(exc, redis.exceptions.RedisClusterException):
        if not str(exc).startswith(_TOPOLOGY_FAILURES):
            return None  # e.g. keys in different slots: the application's error
        # Raised while refreshing the topology after the command itself failed (then that
        # failure is the context and says whether the command was sent), or before sending.
        failed = exc.__context__
        if isinstance(failed, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            sent = pipeline or not _never_sent(failed)
            return ClusterConnectionError(
                f"{failed}; then no node of the cluster answered: {exc}", never_sent=not sent
            )
        if isinstance(failed, redis.exceptions.ClusterDownError):
            return ClusterConnectionError(
                f"the cluster is down ({failed}) and no node answered: {exc}",
                never_sent=not pipeline,
            )
        return ClusterConnectionError(f"no node of the cluster answered: {exc}", never_sent=True)
    if pipeline and isinstance(
        exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    ):
        # A node failed while the pipeline ran on several nodes: say that it is ambiguous,
        # whatever the node's error message says about that node alone.
        return ClusterConnectionError(
            f"a cluster node failed during a pipeline ({exc!r}); commands routed to other "
            "nodes may have run",
            never_sent=False,
        )
    return None


class FailoverRedisCluster(redis.cluster.RedisCluster):
    """A ``RedisCluster`` that loads the topology on first use and reports cluster-level
    unavailability as :class:`ClusterConnectionError` (see the section comment above).

    Construction does no I/O. The first use (a command, a pipeline, a topology query)
    runs redis-py's own initialization once, under a lock; other threads wait for it. If it
    fails, the next use tries again. Until then, attributes that only an initialized
    ``RedisCluster`` has are missing (``getattr(client, name, default)`` stays cheap and
    safe).
    """

    def __init__(self, **kwargs: Any) -> None:  # no super().__init__(): see _ensure_ready
        self._ft_kwargs = kwargs
        self._ft_lock = threading.RLock()
        self._ft_ready = False
        self._ft_initializing = False

    def _ensure_ready(self) -> None:
        """Initialize once; raise :class:`ClusterConnectionError` if no node answers."""
        if self._ft_ready:
            return
        with self._ft_lock:
            if self._ft_ready or self._ft_initializing:
                return  # done meanwhile, or re-entered by redis-py's own initialization
            self._ft_initializing = True
            try:
                super().__init__(**self._ft_kwargs)
            except Exception as exc:
                failure = _cluster_failure(exc, pipeline=False)
                if failure is None and isinstance(
                    exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
                ):
                    failure = ClusterConnectionError(
                        f"initializing the cluster client failed: {exc}", never_sent=True
                    )
                if failure is None:
                    raise  # a configuration error: let it show as it is
                failure.never_sent = True  # nothing of the caller's ran yet
                raise failure from exc
            finally:
                self._ft_initializing = False
            self._ft_ready = True

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes that do not exist (yet): initialize, then look again.
        state = self.__dict__
        if name.startswith(("__", "_ft_")) or state.get("_ft_ready", True):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        try:
            self._ensure_ready()
        except Exception as exc:
            raise AttributeError(
                f"{name!r}: the cluster client is not initialized ({exc})"
            ) from exc
        return object.__getattribute__(self, name)

    # Entry points: initialize first, so that no caller sees a half-initialized client.

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if not self._ft_ready:
            self._ensure_ready()
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except (redis.exceptions.RedisClusterException, redis.exceptions.ClusterDownError) as exc:
            failure = _cluster_failure(exc, pipeline=False)
            if failure is None:
                raise
            raise failure from exc

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        self._ensure_ready()
        pipe = super().pipeline(transaction, shard_hint)  # type: ignore[no-untyped-call]
        pipe.__class__ = _FailoverClusterPipeline  # adds behaviour, and one attribute:
        pipe.scripts = set()
        return pipe

    def get_primaries(self) -> Any:
        self._ensure_ready()
        return super().get_primaries()  # type: ignore[no-untyped-call]

    def get_nodes(self) -> Any:
        self._ensure_ready()
        return super().get_nodes()  # type: ignore[no-untyped-call]

    def get_redis_connection(self, node: Any) -> redis.Redis:
        self._ensure_ready()
        return super().get_redis_connection(node)

    def get_default_node(self) -> Any:
        self._ensure_ready()
        return super().get_default_node()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Close every node's connections (nothing to do before the first use)."""
        state = self.__dict__
        if state.get("_ft_ready"):
            super().close()
        elif "nodes_manager" in state:  # an initialization that failed half-way
            state["nodes_manager"].close()

    def __repr__(self) -> str:
        kwargs = self.__dict__.get("_ft_kwargs", {})
        where = (
            masked_url(kwargs["url"]) if "url" in kwargs
            else f"{kwargs.get('host')}:{kwargs.get('port')}"
        )
        state = "initialized" if self.__dict__.get("_ft_ready") else "not initialized"
        return f"<{type(self).__name__}({where}, {state})>"


class _FailoverClusterPipeline(redis.cluster.ClusterPipeline):
    """redis-py's sync cluster pipeline, reporting failures as :func:`_cluster_failure`.

    Like a standalone ``Pipeline`` it has ``scripts``: the :class:`redis.commands.core.Script`
    objects whose EVALSHA it carries are loaded on every primary that lacks them before the
    commands are sent (redis-py's cluster pipeline would fail them with NOSCRIPT). When a
    primary cannot be reached for that, nothing of the pipeline ran:
    ``ClusterConnectionError(never_sent=True)``.
    """

    scripts: set[Any]

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with _reported_as(_pipeline_failure):
            if self.scripts:
                with _reported_as(_script_load_failure):
                    self._load_scripts()
            return super().execute(raise_on_error)

    def _load_scripts(self) -> None:
        scripts = list(self.scripts)
        shas = [script.sha for script in scripts]
        for node in self.get_primaries():  # type: ignore[no-untyped-call]
            connection = self.get_redis_connection(node)
            for script, exists in zip(scripts, connection.script_exists(*shas), strict=True):
                if not exists:
                    script.sha = connection.script_load(script.script)


class FailoverAsyncRedisCluster(redis.asyncio.cluster.RedisCluster):
    """redis-py's asyncio ``RedisCluster`` (which already initializes on first use, under a
    lock), reporting cluster-level unavailability as :class:`ClusterConnectionError`."""

    __slots__ = ()

    async def initialize(self, *args: Any, **kwargs: Any) -> FailoverAsyncRedisCluster:
        try:
            await super().initialize(*args, **kwargs)
        except Exception as exc:
            failure = _cluster_failure(exc, pipeline=False)
            if failure is None:
                raise
            failure.never_sent = True
            raise failure from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (redis.exceptions.RedisClusterException, redis.exceptions.ClusterDownError) as exc:
            failure = _cluster_failure(exc, pipeline=False)
            if failure is None:
                raise
            raise failure from exc

    def pipeline(
        self, transaction: Any = None, shard_hint: Any = None
    ) -> redis.asyncio.cluster.ClusterPipeline:
        if shard_hint:
            raise redis.exceptions.RedisClusterException(
                "shard_hint is deprecated in cluster mode"
            )
        return _FailoverAsyncClusterPipeline(self, transaction)  # type: ignore[abstract]


class _FailoverAsyncClusterPipeline(redis.asyncio.cluster.ClusterPipeline):
    """redis-py's asyncio cluster pipeline, reporting failures as :func:`_cluster_failure`.

    Like the sync one (and a standalone ``Pipeline``) it has ``scripts``, loaded on every
    primary that lacks them before the commands are sent.
    """

    __slots__ = ("scripts",)

    def __init__(self, client: redis.asyncio.cluster.RedisCluster,
                 transaction: bool | None = None) -> None:
        super().__init__(client, transaction)
        self.scripts: set[Any] = set()

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            with _reported_as(_pipeline_failure):
                if self.scripts:
                    with _reported_as(_script_load_failure):
                        await self._load_scripts()
                return await super().execute(raise_on_error, allow_redirections)
        finally:
            self.scripts = set()

    async def reset(self) -> None:  # type: ignore[override]
        self.scripts = set()
        await super().reset()  # type: ignore[no-untyped-call]

    async def _load_scripts(self) -> None:
        client = self.cluster_client
        if client._initialize:
            await client.initialize()
        scripts = list(self.scripts)
        shas = [script.sha for script in scripts]
        for node in client.get_primaries():
            exists = await node.execute_command("SCRIPT EXISTS", *shas)
            for script, present in zip(scripts, exists, strict=True):
                if not present:
                    sha = await node.execute_command("SCRIPT LOAD", script.script)
                    script.sha = sha.decode() if isinstance(sha, bytes) else sha


def _script_load_failure(exc: BaseException) -> ClusterConnectionError | None:
    failure = _cluster_failure(exc, pipeline=False)
    if failure is None and isinstance(
        exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    ) and not isinstance(exc, ClusterConnectionError):
        failure = ClusterConnectionError(
            f"loading the pipeline's scripts on the primaries failed: {exc}", never_sent=True
        )
    if failure is not None:
        failure.never_sent = True  # none of the pipeline's commands was sent yet
    return failure


def _pipeline_failure(exc: BaseException) -> ClusterConnectionError | None:
    return _cluster_failure(exc, pipeline=True)


@contextlib.contextmanager
def _reported_as(failure_of: Callable[[BaseException], ClusterConnectionError | None],
                 ) -> Iterator[None]:
    """Around a pipeline's I/O (sync or awaited): a cluster or connection error that
    ``failure_of`` maps to a :class:`ClusterConnectionError` is raised as that one (chained);
    any other exception as it is. For the script loading before a pipeline,
    :func:`_script_load_failure` says that nothing of the pipeline ran (``never_sent``)."""
    try:
        yield
    except (redis.exceptions.RedisClusterException, redis.exceptions.ClusterDownError,
            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        failure = failure_of(exc)
        if failure is None:
            raise
        raise failure from exc


# --- pubsub on a cluster database ------------------------------------------------------------


def _pubsub_candidates(client: Any) -> list[Any]:
    """The nodes a pubsub may use, best first: the default node, the primaries, the rest."""
    default = client.get_default_node()
    ordered = [default] if default is not None else []
    ordered += client.get_primaries()
    ordered += client.get_nodes()
    seen: set[str] = set()
    unique = []
    for node in ordered:
        if node.name not in seen:
            seen.add(node.name)
            unique.append(node)
    return unique


def pubsub_node_pool(client: redis.cluster.RedisCluster) -> Any:
    """The connection pool of the first node of ``client`` that answers PING (the default
    node, then the other primaries, then the other nodes), for a sync pubsub.

    ``SUBSCRIBE`` and ``PSUBSCRIBE`` on any node receive what is published on every node,
    so one live node serves a pubsub, also while another node is down and the cluster is
    still healthy for the health-check policy. Raises :class:`ClusterConnectionError` when
    no node answers.
    """
    last: BaseException | None = None
    for node in _pubsub_candidates(client):
        node_client = client.get_redis_connection(node)
        try:
            node_client.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            last = exc
            continue
        return node_client.connection_pool
    raise ClusterConnectionError(
        f"no node of the cluster answered for a pubsub: {last}", never_sent=True
    ) from last


class AsyncClusterPubSubPool:
    """The connection pool of a ``redis.asyncio`` PubSub on a cluster database: connections
    to one node of the cluster.

    ``SUBSCRIBE`` and ``PSUBSCRIBE`` on any node receive what is published on every node
    (the cluster bus forwards it), so one node serves a pubsub. Each new connection goes to
    the first node that accepts it: the cluster's default node, then the other primaries,
    then the other nodes. So a pubsub that reconnects (after its node died, while the
    cluster is still healthy enough for the health-check policy) lands on a live node. The
    connections belong to the nodes (closed with the cluster client); a connection given
    back is disconnected first, so a subscribed socket never serves commands.
    """

    def __init__(self, cluster: redis.asyncio.cluster.RedisCluster) -> None:
        self._cluster = cluster
        self._owners: dict[int, redis.asyncio.cluster.ClusterNode] = {}
        self.connection_kwargs: dict[str, Any] = {}

    def get_encoder(self) -> Any:
        return self._cluster.get_encoder()

    async def get_connection(self, command_name: Any = None, *keys: Any,
                             **options: Any) -> Any:
        """A connected connection to the first node that accepts one."""
        await self._cluster.initialize()  # a no-op once initialized
        last: BaseException | None = None
        for node in _pubsub_candidates(self._cluster):
            connection = node.acquire_connection()
            try:
                await connection.connect()
            except BaseException as exc:
                await connection.disconnect()
                node.release(connection)
                if not isinstance(
                    exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
                ):
                    raise
                last = exc
                continue
            self.connection_kwargs = node.connection_kwargs
            self._owners[id(connection)] = node
            return connection
        raise ClusterConnectionError(
            f"no node of the cluster accepted a pubsub connection: {last}", never_sent=True
        ) from last

    async def release(self, connection: Any) -> None:
        node = self._owners.pop(id(connection), None)
        if node is None:
            return
        if connection.is_connected:
            await connection.disconnect()
        node.release(connection)

    def get_protocol(self) -> Any:
        return self.connection_kwargs.get("protocol")

    async def re_auth_callback(self, token: Any) -> None:
        """Nothing to do: the node's connections are the cluster client's."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Nothing to do: the node's connections close with the cluster client."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self._cluster!r})>"
