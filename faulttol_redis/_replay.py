"""Which failed Redis commands may run again without risking a double effect.

A command that failed before any byte of it reached the server (connection refused, connect
timeout, a pooled connection found dead before sending) is always safe to run again. After the
command was written, its outcome is ambiguous: it is replayed only when running it twice has the
same effect and answer as running it once — read-only commands and a few idempotent writes.
"""

from __future__ import annotations

from typing import Any

from redis.commands.cluster import READ_COMMANDS
from redis.exceptions import ConnectionError as RedisConnectionError

from faulttol.breaker import CallNotPermittedError

__all__ = ["command_may_replay", "is_replay_safe_command", "never_sent", "pipeline_may_replay"]

# Messages redis-py uses for failures that happen before a command is sent.
_NOT_SENT_MARKERS = (
    "connecting to",  # "Error 111 connecting to host:port." and "Timeout connecting to server"
    "Connection has data",
    "Connection not ready",
    "while writing to socket",
)

_EXTRA_READS = frozenset(
    {
        "PING", "ECHO", "INFO", "TIME", "LASTSAVE", "ROLE", "COMMAND", "MEMORY USAGE",
        "OBJECT ENCODING", "OBJECT FREQ", "OBJECT IDLETIME", "OBJECT REFCOUNT",
        "SCRIPT EXISTS", "FUNCTION LIST", "CONFIG GET", "CLIENT LIST", "CLIENT INFO",
        "CLIENT GETNAME", "CLIENT ID", "PUBSUB CHANNELS", "PUBSUB NUMSUB", "PUBSUB NUMPAT",
        "PUBSUB SHARDCHANNELS", "PUBSUB SHARDNUMSUB",
    }
)
_SAFE_READS = READ_COMMANDS | _EXTRA_READS

# Writes whose effect and reply are the same when applied twice.
_IDEMPOTENT_WRITES = frozenset({"SETEX", "PSETEX", "MSET", "HMSET", "SCRIPT LOAD"})
_SET_UNSAFE_FLAGS = frozenset({"NX", "XX", "GET"})


def _name(arg: Any) -> str:
    if isinstance(arg, bytes):
        arg = arg.decode("ascii", "replace")
    return str(arg).upper()


def never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` proves the command never reached a server."""
    if isinstance(exc, CallNotPermittedError):
        return True
    flag = getattr(exc, "never_sent", None)  # set by the cluster client's errors
    if isinstance(flag, bool):
        return flag
    if isinstance(exc, RedisConnectionError):
        text = str(exc)
        return any(marker in text for marker in _NOT_SENT_MARKERS)
    return False


def is_replay_safe_command(args: tuple[Any, ...], options: dict[str, Any]) -> bool:
    """Whether the command ``args`` may be replayed after an ambiguous failure."""
    if not args:
        return False
    name = _name(args[0])
    if name in _SAFE_READS:
        return True
    if name == "SET":
        if options.get("get"):
            return False
        return not any(
            isinstance(a, (str, bytes)) and _name(a) in _SET_UNSAFE_FLAGS for a in args[3:]
        )
    return name in _IDEMPOTENT_WRITES


def command_may_replay(
    exc: BaseException, call: tuple[Any, ...], *, replay_ambiguous: bool = False
) -> bool:
    """The failover client's ``may_replay`` for one command; ``call`` is ``(args, options)``."""
    if replay_ambiguous or never_sent(exc):
        return True
    args, options = call
    return is_replay_safe_command(args, options)


def pipeline_may_replay(
    exc: BaseException, call: tuple[Any, ...], *, replay_ambiguous: bool = False
) -> bool:
    """``may_replay`` for a pipeline; ``call[0]`` is its stack of ``(args, options)``."""
    if replay_ambiguous or never_sent(exc):
        return True
    return all(is_replay_safe_command(args, options) for args, options in call[0])
