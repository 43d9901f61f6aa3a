"""Hang detection: what the watchdog decides, with no I/O, and how it reads the connections.

A database that stops answering without closing its connections (a SIGSTOPped process, a
partition, a lost route) would keep a command waiting for as long as ``socket_timeout`` says
(forever by default). So every marking connection (``faulttol_redis._connection``) keeps one
stamp, ``_ft_since``: the monotonic time since which it waits for a reply (set when a command
is sent or the connection starts to connect, cleared when a reply is read; 0.0 when idle;
later than now for a blocking command whose own timeout has not passed, ``inf`` for a
blocking command without timeout). Nothing else happens per command.

One watchdog per provider (a thread for the sync provider, a task for the asyncio one) scans
the in-use connections of every database every ``hang_detection_after / 4`` seconds; when one
of them has waited ``hang_detection_after`` seconds, :class:`HangWatch` says "probe": one PING
on a connection of its own with ``hang_probe_timeout``. A passing probe means "alive but busy"
(the command keeps waiting, and the next probe of that database is ``hang_detection_after``
later); a failing one means "hung": the provider marks the database unhealthy (failing over,
reason ``HEALTH_CHECK``) and releases every connection waiting on it, which makes its command
fail with :class:`~faulttol_redis.OutcomeUnknownError` (a replay-safe command then runs again
on the new database).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = [
    "HangWatch",
    "blocking_wait",
    "due_databases",
    "in_use_connections",
    "record_hung",
    "scan_interval",
    "waiting_since",
]

_log = logging.getLogger("faulttol_redis.provider")


def scan_interval(after: float) -> float:
    """How often the watchdog scans the connections for a detection window of ``after``."""
    return after / 4


class HangWatch:
    """The watchdog's decision for one database (no I/O; times are monotonic seconds)."""

    __slots__ = ("after", "alive_at")

    def __init__(self, after: float) -> None:
        self.after = after
        self.alive_at: float | None = None

    def due(self, now: float, oldest: float) -> bool:
        """Whether to probe now, ``oldest`` being the earliest stamp of the database's
        waiting connections (0.0: none waits): a command has waited ``after`` seconds and
        no probe found the database alive in the last ``after`` seconds."""
        if not oldest or now - oldest < self.after:
            return False
        alive_at = self.alive_at
        return alive_at is None or now - alive_at >= self.after

    def alive(self, now: float) -> None:
        """The probe answered at ``now``: the database is busy, not hung."""
        self.alive_at = now

    def hung(self) -> None:
        """The probe failed: the waiting commands are released; start afresh."""
        self.alive_at = None


def waiting_since(connections: Iterable[Any]) -> float:
    """The earliest stamp among ``connections`` that wait for a reply and are watched (0.0
    when none waits)."""
    oldest = 0.0
    for conn in connections:
        since = conn._ft_since
        if since and not conn._ft_unwatched and (not oldest or since < oldest):
            oldest = since
    return oldest


_THREAD_LOCKS = (type(threading.Lock()), type(threading.RLock()))


def in_use_connections(client: Any) -> list[Any]:
    """The connections ``client``'s pool has handed out (none for a cluster client or a
    pool of an unknown kind)."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return []
    in_use = getattr(pool, "_in_use_connections", None)
    if in_use is None:
        return []
    lock = getattr(pool, "_lock", None)
    for _ in range(3):
        try:
            if isinstance(lock, _THREAD_LOCKS):
                with lock:
                    return [c for c in list(in_use) if hasattr(c, "_ft_since")]
            return [c for c in list(in_use) if hasattr(c, "_ft_since")]
        except RuntimeError:  # changed size while copied (asyncio pools have no thread lock)
            continue
    return []


def due_databases(ordered: Any, stopping: Callable[[], bool]) -> Iterator[tuple[int, Any]]:
    """One scan of the watchdog over ``ordered`` (the generic provider, sync or asyncio):
    ``(index, slot)`` of each database to probe now (see :meth:`HangWatch.due`), until
    ``stopping()`` says the provider is closing. The caller probes the database (sync or
    awaited), then calls ``watch.alive(now)`` or :func:`record_hung`."""
    for index in range(1, len(ordered) + 1):
        try:
            slot = ordered.slot(index)
        except (IndexError, ValueError):  # removed meanwhile
            return
        watch = slot.target.hang_watch
        if watch is None or stopping():
            continue
        if watch.due(time.monotonic(), waiting_since(in_use_connections(slot.target.client))):
            yield index, slot


def record_hung(index: int, db: Any) -> str:
    """Database ``db`` (at ``index``) did not answer its hang probe: start its watch afresh,
    count and log the detection. Returns its display name (for the error and the release)."""
    db.hang_watch.hung()
    db.count_hang_detection()
    name: str = db.config.display_name
    _log.warning("database %d (%s) is hung: no answer to a PING within %.3gs",
                 index, name, db.hang_probe_timeout)
    return name


# Blocking commands: where their timeout is (seconds unless noted) -------------------------


def _number(arg: Any) -> float | None:
    try:
        return float(arg.decode() if isinstance(arg, (bytes, bytearray)) else arg)
    except (TypeError, ValueError, AttributeError):
        return None


def _seconds(value: float | None, scale: float = 1.0) -> float:
    """A blocking command's own wait: ``inf`` for 0 (forever) or an unreadable value."""
    if value is None or value <= 0 or math.isnan(value):
        return math.inf
    return value * scale


def _last(args: tuple[Any, ...]) -> float:
    return _seconds(_number(args[-1]))


def _second(args: tuple[Any, ...]) -> float:
    return _seconds(_number(args[1]) if len(args) > 1 else None)


def _fourth(args: tuple[Any, ...]) -> float:  # BZMOVE source destination MIN|MAX timeout ...
    return _seconds(_number(args[4]) if len(args) > 4 else None)


def _fifth(args: tuple[Any, ...]) -> float:  # BLMOVEM list list LEFT|RIGHT LEFT|RIGHT timeout
    return _seconds(_number(args[5]) if len(args) > 5 else None)


def _wait(args: tuple[Any, ...]) -> float:  # WAIT numreplicas timeout-ms
    return _seconds(_number(args[2]) if len(args) > 2 else None, 0.001)


def _waitaof(args: tuple[Any, ...]) -> float:  # WAITAOF numlocal numreplicas timeout-ms
    return _seconds(_number(args[3]) if len(args) > 3 else None, 0.001)


def _xread(args: tuple[Any, ...]) -> float | None:  # ... BLOCK ms ...
    for i, arg in enumerate(args[:-1]):
        if isinstance(arg, (str, bytes)) and len(arg) == 5:
            word = arg.decode("ascii", "replace") if isinstance(arg, bytes) else arg
            if word.upper() == "BLOCK":
                return _seconds(_number(args[i + 1]), 0.001)
    return None


_BLOCKING: dict[str, Any] = {
    "BLPOP": _last, "BRPOP": _last, "BRPOPLPUSH": _last, "BLMOVE": _last,
    "BZPOPMIN": _last, "BZPOPMAX": _last, "BLMPOP": _second, "BZMPOP": _second,
    "BZMOVE": _fourth, "BLMOVEM": _fifth,
    "WAIT": _wait, "WAITAOF": _waitaof, "XREAD": _xread, "XREADGROUP": _xread,
}
BLOCKING_NAMES = frozenset(
    [*_BLOCKING, *(n.lower() for n in _BLOCKING), *(n.encode() for n in _BLOCKING),
     *(n.lower().encode() for n in _BLOCKING)]
)
"""The names (str or bytes, upper or lower case) of the commands that block by design."""


def blocking_wait(args: tuple[Any, ...]) -> float | None:
    """For a blocking command (see :data:`BLOCKING_NAMES`): how long it may wait by design
    (``inf`` for no timeout); None when it does not block (XREAD without BLOCK)."""
    name = args[0]
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    rule = _BLOCKING.get(str(name).upper())
    return None if rule is None else rule(args)
