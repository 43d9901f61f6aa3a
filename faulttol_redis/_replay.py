"""Which failed Redis commands may run again without risking a double effect.

A command that failed before any byte of it reached the server (connection refused, a connect
or handshake timeout, a pooled connection found dead before sending) is always safe to run
again. A write error proves that nothing ran only for a single command (it never arrived
whole) or a MULTI/EXEC transaction (EXEC comes last: the server discards the queued commands
when the connection drops); a non-transactional pipeline may have run its first commands.
After the command was written, its outcome is ambiguous: it is replayed only when running it
twice has the same effect and answer as running it once.

That last rule is a table owned by this project (not redis-py's list of read commands, which
changes between versions): every command is read-only, a replay-safe write, or never
replayed; a command the table does not know (a module's, a newer server's) is never
replayed. Commands with subcommands (``OBJECT ENCODING``, ``CLIENT KILL``, ``XINFO
STREAM``...) are classified by subcommand, and a few commands by their arguments (``SET ...
NX``, ``SORT ... STORE``), which only ever make a command less replayable. The table is
documented in docs/failover-client.md ("Which commands are replayed").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from faulttol.breaker import CallNotPermittedError

__all__ = [
    "ARGUMENT_RULES",
    "NEVER_REPLAYED",
    "OPTION_RULES",
    "READ_ONLY",
    "REPLAY_SAFE_WRITES",
    "SUBCOMMAND_CONTAINERS",
    "Replay",
    "classify",
    "command_key",
    "command_may_replay",
    "is_replay_safe_command",
    "never_sent",
    "pipeline_may_replay",
    "table_class",
]


class Replay(enum.Enum):
    """How a command is treated after an ambiguous failure."""

    READ_ONLY = "read-only"
    """No effect: replayed."""
    SAFE_WRITE = "replay-safe write"
    """The same effect and answer when applied twice: replayed."""
    NEVER = "never replayed"
    """Could be applied twice, or answer differently the second time: the error is raised."""


# --- the table --------------------------------------------------------------------------------
# Keys are upper case: the command name, or "COMMAND SUBCOMMAND" for the commands listed in
# SUBCOMMAND_CONTAINERS. Module commands keep their dotted names ("JSON.GET").

SUBCOMMAND_CONTAINERS = frozenset({
    "ACL", "BACKUP", "BLESS", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION",
    "HIMPORT",
    "HOTKEYS", "LATENCY", "MEMORY", "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SENTINEL",
    "SLOWLOG", "XGROUP", "XINFO", "FT.CONFIG", "FT.CURSOR",
})
"""Commands classified by their first argument (a ``COMMAND`` alone is a read)."""

READ_ONLY = frozenset({
    # strings and keys
    "GET", "MGET", "GETRANGE", "SUBSTR", "STRLEN", "GETBIT", "BITCOUNT", "BITPOS",
    "BITFIELD_RO", "LCS", "STRALGO", "DIGEST", "EXISTS", "TYPE", "TTL", "PTTL", "EXPIRETIME",
    "PEXPIRETIME", "DUMP", "KEYS", "SCAN", "RANDOMKEY", "DBSIZE", "TOUCH", "BITRANGEINTARRAY",
    "BLESS GET", "BLESS SCAN",
    # hashes
    "HGET", "HMGET", "HGETALL", "HKEYS", "HVALS", "HLEN", "HEXISTS", "HSTRLEN", "HRANDFIELD",
    "HSCAN", "HTTL", "HPTTL", "HEXPIRETIME", "HPEXPIRETIME",
    # lists, sets, sorted sets
    "LINDEX", "LLEN", "LRANGE", "LPOS",
    "SCARD", "SISMEMBER", "SMISMEMBER", "SMEMBERS", "SRANDMEMBER", "SSCAN", "SINTER",
    "SINTERCARD", "SUNION", "SUNIONCARD", "SDIFF", "SDIFFCARD",
    "STTL", "SPTTL", "SEXPIRETIME", "SPEXPIRETIME",
    "ZCARD", "ZCOUNT", "ZLEXCOUNT", "ZRANGE", "ZRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGE",
    "ZREVRANGEBYSCORE", "ZREVRANGEBYLEX", "ZRANK", "ZREVRANK", "ZSCORE", "ZMSCORE",
    "ZRANDMEMBER", "ZSCAN", "ZINTER", "ZUNION", "ZDIFF", "ZINTERCARD",
    # arrays (Redis 8)
    "ARCOUNT", "ARGET", "ARGETRANGE", "ARGREP", "ARINFO", "ARLASTITEMS", "ARLEN", "ARMGET",
    "ARNEXT", "AROP", "ARSCAN",
    # geo, hyperloglog, streams
    "GEODIST", "GEOHASH", "GEOPOS", "GEOSEARCH", "GEORADIUS_RO", "GEORADIUSBYMEMBER_RO",
    "GEORADIUS", "GEORADIUSBYMEMBER",  # unless STORE / STOREDIST (ARGUMENT_RULES)
    "PFCOUNT",
    "XLEN", "XRANGE", "XREVRANGE", "XREAD", "XPENDING",
    "XINFO STREAM", "XINFO GROUPS", "XINFO CONSUMERS", "XINFO HELP",
    "SORT",  # unless STORE (ARGUMENT_RULES)
    "SORT_RO",
    # scripts and functions
    "EVAL_RO", "EVALSHA_RO", "FCALL_RO", "SCRIPT EXISTS", "FUNCTION LIST", "FUNCTION DUMP",
    "FUNCTION STATS",
    # server and connection introspection
    "PING", "ECHO", "INFO", "TIME", "LASTSAVE", "ROLE", "LOLWUT",
    "COMMAND", "COMMAND COUNT", "COMMAND DOCS", "COMMAND GETKEYS", "COMMAND GETKEYSANDFLAGS",
    "COMMAND INFO", "COMMAND LIST", "COMMAND HELP",
    "CONFIG GET", "CONFIG HELP",
    "CLIENT GETNAME", "CLIENT GETREDIR", "CLIENT ID", "CLIENT INFO", "CLIENT LIST",
    "CLIENT TRACKINGINFO", "CLIENT HELP",
    "OBJECT ENCODING", "OBJECT FREQ", "OBJECT IDLETIME", "OBJECT REFCOUNT", "OBJECT HELP",
    "MEMORY USAGE", "MEMORY STATS", "MEMORY DOCTOR", "MEMORY MALLOC-STATS", "MEMORY HELP",
    "PUBSUB CHANNELS", "PUBSUB NUMSUB", "PUBSUB NUMPAT", "PUBSUB SHARDCHANNELS",
    "PUBSUB SHARDNUMSUB", "PUBSUB HELP",
    "SLOWLOG GET", "SLOWLOG LEN", "SLOWLOG HELP",
    "LATENCY LATEST", "LATENCY HISTORY", "LATENCY DOCTOR", "LATENCY GRAPH",
    "LATENCY HISTOGRAM", "LATENCY HELP",
    "ACL CAT", "ACL DRYRUN", "ACL GENPASS", "ACL GETUSER", "ACL HELP", "ACL LIST",
    "ACL LOG",  # unless RESET (ARGUMENT_RULES)
    "ACL USERS", "ACL WHOAMI",
    "MODULE LIST", "MODULE HELP", "DEBUG OBJECT", "HOTKEYS GET",
    "BACKUP STATUS", "BACKUP LIST",
    "CLUSTER COUNT-FAILURE-REPORTS", "CLUSTER COUNTKEYSINSLOT", "CLUSTER GETKEYSINSLOT",
    "CLUSTER HELP", "CLUSTER INFO", "CLUSTER KEYSLOT", "CLUSTER LINKS", "CLUSTER MYID",
    "CLUSTER MYSHARDID", "CLUSTER NODES", "CLUSTER REPLICAS", "CLUSTER SHARDS",
    "CLUSTER SLAVES", "CLUSTER SLOTS",
    "SENTINEL CKQUORUM", "SENTINEL GET-MASTER-ADDR-BY-NAME", "SENTINEL INFO-CACHE",
    "SENTINEL MASTER", "SENTINEL MASTERS", "SENTINEL MYID", "SENTINEL REPLICAS",
    "SENTINEL SENTINELS", "SENTINEL SLAVES",
    # RedisJSON
    "JSON.GET", "JSON.MGET", "JSON.TYPE", "JSON.STRLEN", "JSON.OBJKEYS", "JSON.OBJLEN",
    "JSON.ARRLEN", "JSON.ARRINDEX", "JSON.RESP", "JSON.DEBUG",
    # RediSearch
    "FT.SEARCH", "FT.INFO", "FT._LIST", "FT.EXPLAIN", "FT.EXPLAINCLI", "FT.TAGVALS",
    "FT.SPELLCHECK", "FT.DICTDUMP", "FT.SYNDUMP", "FT.SUGGET", "FT.SUGLEN", "FT.PROFILE",
    "FT.CONFIG GET", "FT.GET", "FT.MGET", "FT.ALIASLIST",
    "FT.AGGREGATE", "FT.HYBRID",  # unless WITHCURSOR (ARGUMENT_RULES)
    # time series
    "TS.GET", "TS.MGET", "TS.RANGE", "TS.REVRANGE", "TS.MRANGE", "TS.MREVRANGE", "TS.INFO",
    "TS.QUERYINDEX", "TS.NRANGE", "TS.NREVRANGE", "TS.QUERYLABELS", "TS.READ",
    # probabilistic structures
    "BF.EXISTS", "BF.MEXISTS", "BF.INFO", "BF.CARD", "BF.SCANDUMP",
    "CF.EXISTS", "CF.MEXISTS", "CF.COUNT", "CF.INFO", "CF.SCANDUMP",
    "CMS.QUERY", "CMS.INFO",
    "TOPK.QUERY", "TOPK.COUNT", "TOPK.LIST", "TOPK.INFO",
    "TDIGEST.QUANTILE", "TDIGEST.CDF", "TDIGEST.MIN", "TDIGEST.MAX", "TDIGEST.INFO",
    "TDIGEST.RANK", "TDIGEST.REVRANK", "TDIGEST.BYRANK", "TDIGEST.BYREVRANK",
    "TDIGEST.TRIMMED_MEAN",
    # vector sets
    "VSIM", "VDIM", "VCARD", "VEMB", "VLINKS", "VINFO", "VGETATTR", "VRANDMEMBER", "VISMEMBER",
    "VRANGE",
})
"""Commands with no effect: replayed after any failure."""

REPLAY_SAFE_WRITES = frozenset({
    "SET",  # unless NX, XX, GET, IFEQ, IFNE, IFDEQ, IFDNE (ARGUMENT_RULES, OPTION_RULES)
    "SETEX", "PSETEX", "MSET", "SETRANGE",
    "MSETEX",  # unless NX / XX
    "GETEX",  # reads the value and sets its expiry, like SET ... EX
    "HSET", "HMSET",  # HSET answers how many fields it created: 0 after a replay
    "HSETEX",  # unless FNX / FXX
    "HGETEX",
    "LSET",
    "SCRIPT LOAD",
})
"""Writes whose effect and answer are the same when applied twice: replayed."""

NEVER_REPLAYED = frozenset({
    # strings and keys
    "APPEND", "INCR", "INCRBY", "INCRBYFLOAT", "INCREX", "DECR", "DECRBY", "GETSET",
    "GETDEL", "SETNX", "MSETNX", "SETBIT", "BITFIELD", "BITOP", "DELEX", "DEL", "UNLINK",
    "COPY", "MOVE", "RENAME", "RENAMENX", "RESTORE", "MIGRATE", "EXPIRE", "PEXPIRE",
    "EXPIREAT", "PEXPIREAT", "PERSIST", "BLESS SET", "BLESS CLEAR",
    # hashes
    "HDEL", "HGETDEL", "HINCRBY", "HINCRBYFLOAT", "HSETNX", "HEXPIRE", "HPEXPIRE",
    "HEXPIREAT", "HPEXPIREAT", "HPERSIST", "HIMPORT SET", "HIMPORT PREPARE",
    "HIMPORT DISCARD", "HIMPORT DISCARDALL",
    # lists (blocking pops included)
    "LPUSH", "RPUSH", "LPUSHX", "RPUSHX", "LINSERT", "LREM", "LTRIM", "LPOP", "RPOP",
    "RPOPLPUSH", "LMOVE", "LMOVEM", "LMPOP", "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE",
    "BLMOVEM", "BLMPOP",
    # sets, sorted sets (blocking pops included)
    "SADD", "SREM", "SPOP", "SMOVE", "SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE",
    "SADDEX", "SEXPIRE", "SPEXPIRE", "SEXPIREAT", "SPEXPIREAT", "SPERSIST",
    "ZADD", "ZINCRBY", "ZREM", "ZREMRANGEBYLEX", "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE",
    "ZPOPMIN", "ZPOPMAX", "ZMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "ZRANGESTORE",
    "ZINTERSTORE", "ZUNIONSTORE", "ZDIFFSTORE", "ZMOVE", "BZMOVE", "ZMOVEMEMBER",
    # arrays (Redis 8)
    "ARDEL", "ARDELRANGE", "ARINSERT", "ARMSET", "ARRING", "ARSEEK", "ARSET",
    # geo, hyperloglog, streams
    "GEOADD", "GEOSEARCHSTORE", "PFADD", "PFMERGE",
    "XADD", "XDEL", "XDELEX", "XTRIM", "XACK", "XACKDEL", "XNACK", "XCLAIM", "XAUTOCLAIM",
    "XREADGROUP", "XCFGSET", "XSETID",
    "XGROUP CREATE", "XGROUP CREATECONSUMER", "XGROUP DELCONSUMER", "XGROUP DESTROY",
    "XGROUP SETID",
    # scripts and functions (they may write)
    "EVAL", "EVALSHA", "FCALL", "SCRIPT FLUSH", "SCRIPT KILL",
    "FUNCTION DELETE", "FUNCTION FLUSH", "FUNCTION KILL", "FUNCTION LOAD", "FUNCTION RESTORE",
    # messages, connection state, the server
    "PUBLISH", "SPUBLISH", "WAIT", "WAITAOF",
    "AUTH", "SELECT", "QUIT", "RESET", "READONLY", "READWRITE", "SWAPDB",
    "CLIENT KILL", "CLIENT NO-EVICT", "CLIENT NO-TOUCH", "CLIENT PAUSE", "CLIENT UNPAUSE",
    "CLIENT REPLY", "CLIENT SETINFO", "CLIENT SETNAME", "CLIENT TRACKING", "CLIENT CACHING",
    "CLIENT UNBLOCK",
    "CONFIG RESETSTAT", "CONFIG REWRITE", "CONFIG SET",
    "ACL DELUSER", "ACL LOAD", "ACL SAVE", "ACL SETUSER",
    "MEMORY PURGE", "SLOWLOG RESET", "LATENCY RESET",
    "MODULE LOAD", "MODULE LOADEX", "MODULE UNLOAD",
    "BACKUP START", "BACKUP SEAL", "BACKUP ABORT", "BACKUP CLEANUP",
    "HOTKEYS START", "HOTKEYS STOP", "HOTKEYS RESET",
    "FLUSHALL", "FLUSHDB", "SAVE", "BGSAVE", "BGREWRITEAOF", "SHUTDOWN", "REPLICAOF",
    "SLAVEOF", "FAILOVER", "PSYNC", "SYNC",
    "CLUSTER ADDSLOTS", "CLUSTER ADDSLOTSRANGE", "CLUSTER BUMPEPOCH", "CLUSTER DELSLOTS",
    "CLUSTER DELSLOTSRANGE", "CLUSTER FAILOVER", "CLUSTER FLUSHSLOTS", "CLUSTER FORGET",
    "CLUSTER MEET", "CLUSTER REPLICATE", "CLUSTER RESET", "CLUSTER SAVECONFIG",
    "CLUSTER SET-CONFIG-EPOCH", "CLUSTER SETSLOT",
    "SENTINEL FAILOVER", "SENTINEL FLUSHCONFIG", "SENTINEL MONITOR", "SENTINEL REMOVE",
    "SENTINEL RESET", "SENTINEL SET",
    # RedisJSON
    "JSON.SET", "JSON.MSET", "JSON.MERGE", "JSON.DEL", "JSON.FORGET", "JSON.CLEAR",
    "JSON.TOGGLE", "JSON.NUMINCRBY", "JSON.NUMMULTBY", "JSON.STRAPPEND", "JSON.ARRAPPEND",
    "JSON.ARRINSERT", "JSON.ARRPOP", "JSON.ARRTRIM",
    # RediSearch
    "FT.CREATE", "FT.ALTER", "FT.DROPINDEX", "FT.ADD", "FT.ADDHASH", "FT.DEL",
    "FT.ALIASADD", "FT.ALIASUPDATE", "FT.ALIASDEL", "FT.DICTADD", "FT.DICTDEL",
    "FT.SYNUPDATE", "FT.SUGADD", "FT.SUGDEL", "FT.CONFIG SET", "FT.CURSOR READ",
    "FT.CURSOR DEL",
    # time series
    "TS.CREATE", "TS.ALTER", "TS.ADD", "TS.MADD", "TS.INCRBY", "TS.DECRBY", "TS.DEL",
    "TS.CREATERULE", "TS.DELETERULE",
    # probabilistic structures
    "BF.RESERVE", "BF.ADD", "BF.MADD", "BF.INSERT", "BF.LOADCHUNK",
    "CF.RESERVE", "CF.ADD", "CF.ADDNX", "CF.INSERT", "CF.INSERTNX", "CF.DEL", "CF.LOADCHUNK",
    "CMS.INITBYDIM", "CMS.INITBYPROB", "CMS.INCRBY", "CMS.MERGE",
    "TOPK.RESERVE", "TOPK.ADD", "TOPK.INCRBY",
    "TDIGEST.CREATE", "TDIGEST.RESET", "TDIGEST.ADD", "TDIGEST.MERGE",
    # vector sets
    "VADD", "VREM", "VSETATTR",
})
"""Commands that are never replayed after an ambiguous failure (also every unknown one)."""

ARGUMENT_RULES: Mapping[str, tuple[int, frozenset[str]]] = {
    "SET": (2, frozenset({"NX", "XX", "GET", "IFEQ", "IFNE", "IFDEQ", "IFDNE"})),
    "MSETEX": (1, frozenset({"NX", "XX"})),
    "HSETEX": (1, frozenset({"FNX", "FXX"})),
    "SORT": (1, frozenset({"STORE"})),
    "GEORADIUS": (1, frozenset({"STORE", "STOREDIST"})),
    "GEORADIUSBYMEMBER": (1, frozenset({"STORE", "STOREDIST"})),
    "ACL LOG": (0, frozenset({"RESET"})),
    "FT.AGGREGATE": (1, frozenset({"WITHCURSOR"})),
    "FT.HYBRID": (1, frozenset({"WITHCURSOR"})),
}
"""``{key: (position, tokens)}``: a command with one of the tokens among its arguments (after
the command and subcommand names) from ``position`` on is never replayed (``SET key value
...``: the options start at position 2, after the value). Conditional writes (``NX``, ``IFEQ``...)
and ``GET`` answer differently the second time; ``STORE`` turns a read into a write;
``WITHCURSOR`` creates a server-side cursor. A
value that happens to spell a token only makes the command less replayable, never more."""

OPTION_RULES: Mapping[str, frozenset[str]] = {
    "SET": frozenset({"get"}),
}
"""redis-py keyword options (passed to ``execute_command``) that make a command never
replayed when true: ``set(..., get=True)``."""

_LONGEST_TOKEN = max(len(token) for _, tokens in ARGUMENT_RULES.values() for token in tokens)
"""Longer arguments (values) are not compared with the tokens at all."""

_CLASSES: dict[str, Replay] = {
    **dict.fromkeys(NEVER_REPLAYED, Replay.NEVER),
    **dict.fromkeys(REPLAY_SAFE_WRITES, Replay.SAFE_WRITE),
    **dict.fromkeys(READ_ONLY, Replay.READ_ONLY),
}


def _name(arg: Any) -> str:
    if isinstance(arg, (bytes, bytearray, memoryview)):
        return bytes(arg).decode("ascii", "replace").upper()
    return str(arg).upper()


def _split(args: tuple[Any, ...]) -> tuple[str, int]:
    """The table key of ``args`` and how many of ``args`` it took (1, or 2 when the
    subcommand was the first argument)."""
    if not args:
        return "", 0
    words = _name(args[0]).split()
    if not words:
        return "", 1
    name = words[0]
    if len(words) > 1:  # "CLIENT LIST" in one argument; "LOLWUT VERSION" is LOLWUT
        return (f"{name} {words[1]}" if name in SUBCOMMAND_CONTAINERS else name), 1
    if name in SUBCOMMAND_CONTAINERS and len(args) > 1 and isinstance(
        args[1], (str, bytes, bytearray, memoryview)
    ):
        return f"{name} {_name(args[1])}", 2
    return name, 1


def command_key(args: tuple[Any, ...]) -> str:
    """The table key of a command: ``"GET"``, ``"OBJECT ENCODING"``, ``"JSON.GET"``.

    redis-py sends some subcommands in the command name (``"CLIENT LIST"``) and others as the
    first argument (``"OBJECT", "ENCODING"``); both give the same key.
    """
    return _split(args)[0]


def table_class(key: str) -> Replay | None:
    """The table's class for ``key`` (from :func:`command_key`), or None when unknown."""
    return _CLASSES.get(key)


def classify(args: tuple[Any, ...], options: Mapping[str, Any]) -> Replay:
    """How the command ``args`` (sent with redis-py ``options``) is treated after an
    ambiguous failure. Unknown commands are :attr:`Replay.NEVER`."""
    key, taken = _split(args)
    found = _CLASSES.get(key)
    if found is None or found is Replay.NEVER:
        return Replay.NEVER
    rule = ARGUMENT_RULES.get(key)
    if rule is not None:
        start, tokens = rule
        for arg in args[taken + start:]:
            if (isinstance(arg, (str, bytes, bytearray, memoryview))
                    and len(arg) <= _LONGEST_TOKEN and _name(arg) in tokens):
                return Replay.NEVER
    flags = OPTION_RULES.get(key)
    if flags is not None and any(options.get(flag) for flag in flags):
        return Replay.NEVER
    return found


def is_replay_safe_command(args: tuple[Any, ...], options: Mapping[str, Any]) -> bool:
    """Whether the command ``args`` may be replayed after an ambiguous failure."""
    return classify(args, options) is not Replay.NEVER


# --- where did the failure happen -------------------------------------------------------------

# Messages redis-py uses for failures before a command is written.
_NOT_SENT_MARKERS = (
    "connecting to",  # "Error 111 connecting to host:port."
    "Connection has data",  # a pooled connection found dirty or dead, then not ready
    "Connection not ready",
)
# A write that failed part-way: the server may have received (and run) a prefix of it.
_WRITE_FAILED_MARKER = "while writing to socket"


def _never_sent_flag(exc: BaseException) -> bool | None:
    """``exc.never_sent`` when set: by faulttol_redis's connections for a failure before
    anything was written (connect, handshake, health check), and by the cluster client."""
    flag = getattr(exc, "never_sent", None)
    return flag if isinstance(flag, bool) else None


def _nothing_written(exc: BaseException) -> bool:
    """Whether ``exc`` proves that not one byte of the call reached a server."""
    if isinstance(exc, CallNotPermittedError):
        return True
    flag = _never_sent_flag(exc)
    if flag is not None:
        return flag
    if isinstance(exc, RedisConnectionError):
        text = str(exc)
        return any(marker in text for marker in _NOT_SENT_MARKERS)
    return False


def _write_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure in the middle of writing the call."""
    return (
        _never_sent_flag(exc) is None
        and isinstance(exc, RedisConnectionError)
        and _WRITE_FAILED_MARKER in str(exc)
    )


def never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` proves that a single command did not run: nothing was written, or
    its write failed (the server never received it whole, so never ran it)."""
    return _nothing_written(exc) or _write_failed(exc)


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
    """``may_replay`` for a pipeline; ``call`` is ``(stack, scripts, transaction,
    shard_hint, raise_on_error)`` with ``stack`` a list of ``(args, options)``.

    A failure before anything was written replays any pipeline. A write failure proves that
    nothing ran only for a MULTI/EXEC transaction or a single command: a non-transactional
    pipeline may have run the commands the server received before the connection dropped.
    Otherwise (and then) the pipeline is replayed only when every command in it is.
    """
    if replay_ambiguous or _nothing_written(exc):
        return True
    stack = call[0]
    transaction = bool(call[2]) if len(call) > 2 else False
    if _write_failed(exc) and (transaction or len(stack) == 1):
        return True
    return all(is_replay_safe_command(args, options) for args, options in stack)
