"""What the sync and asyncio failover clients share, with no I/O.

:class:`ClientMixin`, :class:`PipelineMixin` and :class:`PubSubMixin` hold the parts of
``FailoverRedis``, ``FailoverPipeline`` and ``FailoverPubSub`` that are the same for
``redis`` and ``redis.asyncio``: the closed checks and the errors a closed client raises, the
redis-py members answered by the active database, the replay decisions, the WATCH binding
check, and when a pubsub must follow a switch or what it does after a read error. The clients
themselves (``faulttol_redis.client``, ``faulttol_redis.asyncio.client``) differ only where
the I/O differs.

The clients read the generic provider through its public seams only:
``provider.ordered_provider.active_state`` (the gate of the inlined success path),
``recover`` (the slow path), ``probe``/``mark_unhealthy`` (pubsub) and ``execute_with``
(pipelines).
"""

from __future__ import annotations

import contextlib
import enum
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from ._hang import BLOCKING_NAMES
from ._replay import Replay, classify, command_may_replay, pipeline_may_replay
from .errors import ClientClosedError, _ClientClosed, _closed_error, _error_after_close

__all__ = [
    "CLOSED_GATE",
    "NOT_STARTED_GATE",
    "ClientMixin",
    "PipelineMixin",
    "PubSubMixin",
    "ReadError",
    "give_back",
    "is_watch",
]


# --- the gate of the inlined success path ---------------------------------------------------


class _DeadSlot:
    """Stands in for the active slot when the success path must not run: never healthy."""

    __slots__ = ()
    healthy = False
    breaker = None
    target = None


class _Gate:
    """Looks like the provider's ``active_state`` (``.slot``, ``.closed``) to the success path
    of ``execute_command``, which then falls through to the checks of the slow path."""

    __slots__ = ("closed", "slot")

    def __init__(self, closed: bool) -> None:
        self.slot = _DeadSlot()
        self.closed = closed


CLOSED_GATE: Any = _Gate(closed=True)
"""What a closed client's success path reads."""

NOT_STARTED_GATE: Any = _Gate(closed=False)
"""What an asyncio client reads until its provider has started up."""


def give_back(breaker: Any) -> None:
    """Return a permit taken for a call that the close broke (nothing is counted)."""
    release = getattr(breaker, "release_permission", None)
    if release is not None:
        release()


def is_watch(arg: Any) -> bool:
    """Whether a command name (str or bytes) is WATCH."""
    if isinstance(arg, bytes):
        arg = arg.decode("ascii", "replace")
    return isinstance(arg, str) and arg.upper() == "WATCH"


def _weak_listener(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A switch listener that does not keep ``method``'s object alive (it returns what the
    method returns: a coroutine for an asyncio pubsub, awaited by the provider)."""
    ref = weakref.WeakMethod(method)

    def listener(event: Any) -> Any:
        bound = ref()
        return None if bound is None else bound(event)

    return listener


# --- FailoverRedis -----------------------------------------------------------------------------

C = TypeVar("C", bound="ClientMixin")


class ClientMixin:
    """The parts of both ``FailoverRedis`` classes that do no I/O."""

    _provider: Any
    _closed: bool
    _owns_provider: bool
    _gate: Any

    connection: None
    """Always None: the client holds no connection of its own (redis-py: the connection of
    a single-connection client)."""

    single_connection_client: bool
    """Always False: commands run on pooled connections of the active database."""

    auto_close_connection_pool: bool
    """False: the client has no pool; the provider owns the databases' pools (and closes
    them when the client that owns the provider closes)."""

    def _setup(self, provider: Any, started: bool) -> None:
        """The fields both clients set in ``__init__`` (they call no ``super().__init__``:
        no pool of their own). ``started``: the provider's startup has run (the asyncio
        provider starts lazily; until then the success path reads ``NOT_STARTED_GATE``)."""
        self._provider = provider
        self._ordered = provider.ordered_provider
        # What the success path reads: the provider's active state, CLOSED_GATE once closed.
        self._gate = self._ordered.active_state if started else NOT_STARTED_GATE
        self._now = provider.clock.monotonic
        self._replay_ambiguous = provider.config.retry_ambiguous_writes
        self._hedge_after: float | None = provider.config.hedge_reads_after
        self._closed = False
        self._owns_provider = True
        self._pubsubs: weakref.WeakSet[Any] = weakref.WeakSet()
        self._watching: weakref.WeakSet[Any] = weakref.WeakSet()
        # Read by redis-py code that expects a redis.Redis: this client holds no connection.
        self.connection = None
        self.single_connection_client = False
        self.auto_close_connection_pool = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> NoReturn:
        """Not supported: a failover client needs several databases and a failover config."""
        raise NotImplementedError(
            "FailoverRedis.from_url() is not supported: a failover client is built from "
            "several databases, e.g. FailoverRedis.from_config(MultiDbConfig("
            "[DatabaseConfig(url=...), DatabaseConfig(url=...)]))"
        )

    @classmethod
    def from_pool(cls, connection_pool: Any) -> NoReturn:
        """Not supported: each database's client owns its pool, made from its config."""
        raise NotImplementedError(
            "FailoverRedis.from_pool() is not supported: each database's client makes its "
            "own pool from its DatabaseConfig (pool options go in client_kwargs); build the "
            "client with FailoverRedis.from_config(MultiDbConfig([...]))"
        )

    def _may_replay(self, exc: BaseException, call: tuple[Any, ...]) -> bool:
        return command_may_replay(exc, call, replay_ambiguous=self._replay_ambiguous)

    # --- hedged reads -----------------------------------------------------------------------

    @staticmethod
    def _hedgeable(args: tuple[Any, ...], options: dict[str, Any]) -> bool:
        """Whether a command may be hedged: read-only per the replay table, not blocking."""
        return (bool(args) and args[0] not in BLOCKING_NAMES
                and classify(args, options) is Replay.READ_ONLY)

    def _hedge_slot(self, sent_to: int) -> Any:
        """Where a hedge goes: the first eligible database, in index order, other than
        ``sent_to``, the one active when the read was issued (None: no hedge is sent). Not
        "other than the active one": a switch while the read waited (a health check failing
        its database) makes the new active database the hedge's target, not the old one.
        ``sent_to`` 0: the provider had not started then; the active database now."""
        ordered = self._ordered
        sent_to = sent_to or ordered.active_index
        for index in range(1, len(ordered) + 1):
            if index != sent_to and ordered.is_eligible(index):
                return ordered.slot(index)
        return None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the client, or its provider, is closed (every call then raises
        :class:`~faulttol_redis.ClientClosedError`)."""
        return self._is_closed()

    def _is_closed(self) -> bool:
        return self._closed or self._provider.closed

    def _closed_error(self, cause: BaseException | None = None) -> ClientClosedError:
        if not self._closed and self._provider.closed:
            return _closed_error("client (its FailoverProvider was closed)", cause)
        return _closed_error("client", cause)

    def _after_close(self, exc: BaseException) -> BaseException:
        """What a call broken by the close raises (see ``errors._error_after_close``)."""
        error = _error_after_close(exc, "client")
        if error is exc or not isinstance(error, ClientClosedError):
            return error
        return self._closed_error(exc)

    def _check_open(self) -> None:
        if self._is_closed():
            raise self._closed_error()

    @contextlib.contextmanager
    def _closing_errors(self) -> Iterator[None]:
        """Around a call that may reach a database: if it fails because the client closed
        meanwhile, raise what :meth:`_after_close` says instead."""
        try:
            yield
        except BaseException as exc:
            if self._is_closed():
                raise self._after_close(exc)  # noqa: B904 - the cause is set
            raise

    def _check_attempt(self) -> None:
        """One attempt of the slow path: stop it at once if the client closed meanwhile."""
        if self._is_closed():
            raise _ClientClosed

    def client(self: C) -> C:
        """Another client on the same provider (redis-py: a client sharing the pool).

        Closing it (``close()``, or ``aclose()`` for the asyncio client) closes only it
        (and its pubsubs and WATCHing pipelines), not the provider; closing the provider
        (or the client that owns it) closes it too. Unlike redis-py's, it is not pinned to
        one connection: for commands that must share a connection use a pipeline
        (``watch()``/``multi()``/``execute()``), which is bound to one database and one
        connection while it WATCHes.
        """
        self._check_open()
        child = type(self)(self._provider)  # type: ignore[call-arg]
        child._owns_provider = False
        return child

    def monitor(self) -> Any:
        """MONITOR on the active database (does not follow switches)."""
        self._check_open()
        return self._provider.client().monitor()

    # --- what redis-py's helpers read from a client: answered by the active database --------

    @property
    def connection_pool(self) -> Any:
        """The active database's connection pool (read-only; None for a cluster database)."""
        return getattr(self._provider.client(), "connection_pool", None)

    @property
    def response_callbacks(self) -> Any:
        return getattr(self._provider.client(), "response_callbacks", {})

    # --- what redis-py's helpers read from a client: answered by the active database --------

    def get_encoder(self) -> Any:
        """The active database's encoder."""
        return self._provider.client().get_encoder()

    def get_connection_kwargs(self) -> Any:
        """The active database's connection arguments."""
        return self._provider.client().get_connection_kwargs()

    def _database_clients(self) -> list[Any]:
        provider = self._provider
        return [provider.client(i) for i in range(1, len(provider) + 1)]

    def set_response_callback(self, command: str, callback: Any) -> None:
        """Set a response callback on every database's client."""
        for client in self._database_clients():
            client.set_response_callback(command, callback)

    def get_retry(self) -> Any:
        """The active database client's redis-py ``Retry``: no retries unless
        ``client_kwargs`` sets one. The failover retry is ``client.provider.retry``."""
        client: Any = self._provider.client()
        get_retry = getattr(client, "get_retry", None)
        return get_retry() if get_retry is not None else getattr(client, "retry", None)

    def set_retry(self, retry: Any) -> NoReturn:
        """Refused: the failover retry (``MultiDbConfig(retry=...)``) is the only one."""
        raise NotImplementedError(
            "FailoverRedis.set_retry() is not supported: the failover retry is the only one; "
            "configure it with MultiDbConfig(retry=RetryConfig(...)) (a database's own "
            "redis-py retry, if you really want one, goes in DatabaseConfig(client_kwargs="
            "{'retry': ...}))"
        )

    # HIMPORT fieldsets (redis-py 8.1+) live in each client's registry: declared on every
    # database, so that HIMPORT SET keeps working after a switch.

    def _himport_methods(self, name: str) -> list[Callable[..., Any]]:
        methods = []
        for client in self._database_clients():
            method = getattr(client, name, None)
            if method is None:
                raise NotImplementedError(
                    f"{name}() needs a redis-py with HIMPORT support on every database's "
                    f"client ({type(client).__name__} has none)"
                )
            methods.append(method)
        return methods

    @property
    def himport_registry(self) -> Any:
        """The active database client's HIMPORT fieldset registry (every database's client
        has the same fieldsets)."""
        return self._provider.client().himport_registry

    def __repr__(self) -> str:
        provider = getattr(self, "_provider", None)
        return f"FailoverRedis({provider!r})"


# --- FailoverPipeline --------------------------------------------------------------------------


class PipelineMixin:
    """The parts of both ``FailoverPipeline`` classes that do no I/O.

    A failover pipeline buffers its commands and runs them on the database active at
    ``execute()``. After ``watch()`` it is bound to the database the WATCH ran on
    (immediate commands, MULTI, EXEC all go there); if the active database changes before
    ``execute()``, ``execute()`` raises ``WatchError`` instead of committing elsewhere.

    Once its client is closed, what would reach a database (``execute()``, ``watch()``, an
    immediate command while WATCHing) raises :class:`~faulttol_redis.ClientClosedError`;
    buffering a command does no I/O and is not checked. Closing the client releases the
    connection of a WATCHing pipeline.
    """

    _client: Any
    _bound: Any
    _real: Any
    command_stack: list[Any]
    explicit_transaction: bool
    scripts: set[Any]
    shard_hint: Any

    def multi(self) -> None:
        """Start a MULTI block (on the bound database's pipeline while WATCHing)."""
        if self._real is not None:
            self._real.multi()
            self.explicit_transaction = True
            return
        parent: Any = super()
        parent.multi()

    def _check_still_bound(self) -> None:
        """A WATCHed transaction never commits on a database other than its WATCH's."""
        if self._client._ordered.active_state.slot.target is not self._bound:
            raise WatchError("the active database changed after WATCH")

    def _bound_pipeline(self) -> Any:
        """At ``execute()``: the real pipeline of the database WATCH bound this one to (still
        the active one, else ``WatchError``), carrying this pipeline's scripts; None when
        not WATCHing (the buffered commands then run through the provider)."""
        real = self._real
        if real is not None:
            self._check_still_bound()
            real.scripts |= self.scripts
        return real

    def _attempt_args(self, transaction: bool, raise_on_error: bool) -> tuple[Any, ...]:
        """The arguments of one attempt of the buffered commands (after the database)."""
        return (self.command_stack, self.scripts, transaction, self.shard_hint, raise_on_error)

    def _may_replay(self, exc: BaseException, call: tuple[Any, ...]) -> bool:
        return pipeline_may_replay(exc, call, replay_ambiguous=self._client._replay_ambiguous)

    def __repr__(self) -> str:
        return f"FailoverPipeline(commands={len(self.command_stack)}, bound={self._bound!r})"


# --- FailoverPubSub ----------------------------------------------------------------------------


class ReadError(enum.Enum):
    """What a pubsub does after a read failed (see :meth:`PubSubMixin._read_error`)."""

    FOLLOW = "follow"
    """A switch closed the connection under the reader: move to the active database."""
    IGNORE = "ignore"
    """The pubsub moved (or reconnected) meanwhile: nothing to do."""
    PROBE = "probe"
    """A connection failure: probe the active database, then :meth:`_after_probe`."""


def closed_under_us(exc: Exception, conn: Any) -> Exception:
    """A pubsub connection closed under a read or a send by a switch listener (which closes
    the old connection to wake the reader, from another thread or task) can make redis-py fail
    with ``ValueError`` (closed buffer) or ``AttributeError`` (no buffer, no writer), the
    close being half done: that is a closed connection, and is handled as one."""
    if conn is not None and isinstance(exc, (ValueError, AttributeError)):
        error = RedisConnectionError("pubsub connection closed under a read or send")
        error.__cause__ = exc
        return error
    return exc


class PubSubMixin:
    """The parts of both ``FailoverPubSub`` classes that do no I/O: following the active
    database and deciding what a read error means."""

    _provider: Any
    _closed: bool

    def _setup_following(self, provider: Any) -> None:
        """The fields (before redis-py's ``__init__``): on the active database, open."""
        self._provider = provider
        self._state = provider.ordered_provider.active_state
        self._db: Any = self._state.slot.target
        self._closed = False
        self._switches = 0
        """How many times a switch listener closed the connection: a read or a move that
        fails after the count changed failed because of that close."""

    def _start_following(self, on_switch: Callable[[Any], Any]) -> None:
        """Register ``on_switch`` (held weakly) as a switch listener."""
        self._listener = _weak_listener(on_switch)
        self._provider.add_switch_listener(self._listener)

    def _active_db(self) -> Any:
        return self._state.slot.target

    @contextlib.contextmanager
    def _pubsub_command(self) -> Iterator[None]:
        """Around a (un)subscribe command: a failure caused by the close says so, and the
        connection it used is never hang-watched (health checks and keepalive cover
        Pub/Sub)."""
        try:
            yield
        except Exception as exc:
            if self._is_closed():
                raise self._closed_error_after(exc)  # noqa: B904 - the cause is set
            error = closed_under_us(exc, getattr(self, "connection", None))
            if error is not exc:
                raise error from exc
            raise
        finally:
            conn: Any = getattr(self, "connection", None)
            if conn is not None:
                conn._ft_unwatched = True

    def _is_moving(self) -> bool:
        raise NotImplementedError

    def _must_follow(self) -> bool:
        return self._is_moving() or self._state.slot.target is not self._db

    def _is_closed(self) -> bool:
        return self._closed or self._provider.closed

    def _stop_following(self) -> None:
        self._provider.remove_switch_listener(self._listener)

    def _read_error(self, exc: Exception, *, moved: bool) -> ReadError:
        """What a failed read means: raises ``exc`` (or, when closed, ``ClientClosedError``)
        if the reader must see it, else says what to do; ``moved``: the pubsub's connection
        was closed by a switch or changed since the read began."""
        if self._is_closed():
            raise self._closed_error_after(exc)
        if self._must_follow():
            return ReadError.FOLLOW
        if moved:
            return ReadError.IGNORE
        if not isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
            raise exc
        return ReadError.PROBE

    def _after_failed_move(self, exc: Exception, switches: int) -> None:
        """Moving to the active database (or reconnecting to it) failed with ``exc``. If
        another switch closed the connection meanwhile, that is the cause: the next read
        moves again (the caller gets no message). ``switches``: the count before the move."""
        if self._is_closed():
            raise self._closed_error_after(exc)
        if self._must_follow() or self._switches != switches:
            return None
        raise exc

    @staticmethod
    def _left_behind() -> RedisConnectionError:
        """The error that stops redis-py using a connection the pubsub has left (or is
        leaving) for the active database: the reader's error handling then moves."""
        return RedisConnectionError("pubsub connection left for the active database")

    @staticmethod
    def _reconnects_after(exc: BaseException) -> bool:
        """After a passing probe: a broken connection to a live database is reconnected (a
        timeout leaves the connection as it is)."""
        return not isinstance(exc, RedisTimeoutError)

    def _stays_after_failed_probe(self) -> bool:
        """After a failed probe (the provider marked the database down and failed over if it
        could): whether there is nowhere to go (then the caller sees the failure)."""
        return self._state.slot.target is self._db

    @staticmethod
    def _closed_error_after(exc: BaseException) -> BaseException:
        return _error_after_close(exc, "pubsub")

    @staticmethod
    def _closed_pubsub_error() -> ClientClosedError:
        return _closed_error("pubsub")
