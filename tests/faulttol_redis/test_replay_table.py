"""The replay table: which commands the failover client runs again after an ambiguous failure.

The table is the project's own (``faulttol_redis._replay``), not redis-py's list of read
commands, which changes between versions. These tests walk every command method of redis-py's
command mixins (``redis.Redis`` and its module clients: JSON, search, time series,
probabilistic structures, vector sets), call each one against a recording stub
``execute_command`` to capture the command it sends (with the default arguments, then with each
optional argument set in turn), and check that every command is classified explicitly. A stub
is right here: these tests are about classification, not failure behaviour (that is
``test_redis_data_safety.py``, against real servers). The server's own command flags
(``COMMAND INFO`` of a real ``redis-server``) are the cross-check that nothing the server calls
a write is classified read-only.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.connection import Encoder

from faulttol.breaker import CallNotPermittedError
from faulttol_redis._replay import (
    NEVER_REPLAYED,
    READ_ONLY,
    REPLAY_SAFE_WRITES,
    Replay,
    classify,
    command_key,
    command_may_replay,
    is_replay_safe_command,
    never_sent,
    pipeline_may_replay,
    table_class,
)
from faulttol_redis.errors import ClusterConnectionError
from faulttol_redis.testing import RedisServer

# --- a recording stub -------------------------------------------------------------------------


class _Sent(Exception):
    """Raised by the stub once a command was captured: the method stops there."""


class _StubPool:
    def __init__(self) -> None:
        self.connection_kwargs: dict[str, Any] = {}

    def get_encoder(self) -> Encoder:
        return Encoder("utf-8", "strict", False)

    def get_protocol(self) -> int:
        return 2


class Recorder(redis.Redis):
    """A ``redis.Redis`` whose ``execute_command`` records the command instead of sending it."""

    def __init__(self) -> None:  # no super(): no pool, no I/O
        self.sent: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self._stub_pool = _StubPool()
        self.response_callbacks: dict[str, Any] = {}

    @property
    def connection_pool(self) -> Any:  # type: ignore[override]
        return self._stub_pool

    def get_encoder(self) -> Encoder:
        return Encoder("utf-8", "strict", False)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append((args, options))
        raise _Sent


# Methods of redis.Redis (and module clients) that send no command, or cannot be called
# without a server: they are not commands, or redis-py does not implement them.
NOT_COMMANDS = frozenset({
    # client plumbing
    "close", "from_pool", "from_url", "get_cache", "get_connection_kwargs", "get_encoder",
    "get_retry", "set_retry", "set_response_callback", "parse_response", "execute_command",
    "initialize", "load_external_module", "lock", "monitor", "pipeline", "pubsub",
    "register_script", "transaction", "keyspace_notifications", "digest_local",
    "get_params_args", "batch_indexer", "BatchIndexer", "explain_cli",
    # the module client factories (walked separately)
    "json", "ft", "ts", "bf", "cf", "cms", "topk", "tdigest", "vset",
    # redis-py raises NotImplementedError (not supported through redis-py)
    "command_docs", "debug_segfault", "hello", "latency_doctor", "latency_graph",
    "latency_histogram", "memory_doctor", "memory_help", "script_debug",
    "client", "client_reply", "sentinel",
    # pipeline-only or helpers of WATCH
    "unwatch", "watch",
})


def _guess(name: str) -> Any:
    """A plausible value for a required parameter called ``name``."""
    if name in {"mapping", "items"}:
        return {"f": "v"}
    if name == "streams":
        return {"s": "0"}
    if name in {"keys", "names", "sources", "fields", "members", "values", "elements",
                "labels", "shas", "filters", "channels", "patterns", "args", "ids",
                "metrics", "slots", "indices", "predicates", "ranges", "key_list"}:
        return ["a", "b"]
    if name in {"start", "end", "count", "num", "offset", "timeout", "seconds", "time",
                "amount", "increment", "index", "db", "port", "ttl", "milliseconds", "limit",
                "min", "max", "numkeys", "number", "pos", "bit", "delta", "retries", "cursor",
                "position", "unixtime", "when", "ms", "px", "ex", "size", "capacity",
                "width", "depth", "k", "compression", "error_rate", "min_idle_time",
                "numreplicas", "numlocal", "radius", "longitude", "latitude", "value_int",
                "dim", "first", "last", "step"}:
        return 1
    return "x"


def _strategies(params: list[inspect.Parameter]) -> Iterator[dict[str, Any]]:
    yield {p.name: _guess(p.name) for p in params}
    for value in ("x", 1, ["x"], {"x": 1}, ("x", 1)):
        yield {p.name: value for p in params}


def _sample(param: inspect.Parameter) -> Any:
    """A value that turns an optional parameter on."""
    if param.default is False:
        return True
    if isinstance(param.default, int) and not isinstance(param.default, bool):
        return param.default + 1
    return _guess(param.name)


class _Signature:
    """The parameters of a command method: required ones, ``*args``, optional ones."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        params = list(inspect.signature(fn).parameters.values())
        self.required = [p for p in params if p.default is p.empty
                         and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        self.optional = [p for p in params if p.default is not p.empty]
        self.star = any(p.kind is p.VAR_POSITIONAL for p in params)

    def call(self, recorder: Recorder, fn: Callable[..., Any], values: dict[str, Any],
             extra: dict[str, Any]) -> list[Any]:
        positional = [values[p.name] for p in self.required if p.kind is not p.KEYWORD_ONLY]
        keywords = {p.name: values[p.name] for p in self.required if p.kind is p.KEYWORD_ONLY}
        if self.star:
            positional += ["a", "b"]
        recorder.sent.clear()
        try:
            result = fn(*positional, **keywords, **extra)
            if inspect.isgenerator(result):
                next(result, None)
        except _Sent:
            pass
        except Exception:  # invalid arguments for this method: try other values
            pass
        return list(recorder.sent)


# Calls the generic argument guessing cannot make (arguments checked for type or shape).
MANUAL_CALLS: dict[str, Callable[[Any], Any]] = {
    "argrep": lambda r: r.argrep(
        "a", 0, 9, [(redis.commands.core.ArrayPredicateType.EXACT, "v")]),
    "arop": lambda r: r.arop("a", 0, 9, redis.commands.core.ArrayAggregateOperations.SUM),
    "bitfield": lambda r: r.bitfield("k").get("u8", 0).set("u8", 0, 1).execute(),
    "blmpop": lambda r: r.blmpop(1, 1, "l", direction="LEFT"),
    "bzmpop": lambda r: r.bzmpop(1, 1, ["z"], min=True),
    "client_kill_filter": lambda r: r.client_kill_filter(_id="1"),
    "cluster": lambda r: r.cluster("INFO"),
    "command_info": lambda r: r.execute_command("COMMAND INFO", "get"),
    "failover": lambda r: r.execute_command("FAILOVER"),
    "geoadd": lambda r: r.geoadd("g", (1.0, 2.0, "m")),
    "geosearch": lambda r: r.geosearch("g", member="m", radius=1),
    "geosearchstore": lambda r: r.geosearchstore("d", "g", member="m", radius=1),
    "hgetdel": lambda r: r.hgetdel("h", "f"),
    "hgetex": lambda r: r.hgetex("h", "f", ex=10),
    "himport_discard": lambda r: r.himport_discard_internal("fs"),
    "himport_discard_all": lambda r: r.himport_discard_all_internal(),
    "himport_prepare": lambda r: r.himport_prepare_internal("fs", ["f"]),
    "hotkeys_start": lambda r: r.hotkeys_start([redis.commands.core.HotkeysMetricsTypes.CPU]),
    "hset": lambda r: r.hset("h", "f", "v"),
    "hsetex": lambda r: r.hsetex("h", "f", "v", ex=10),
    "stralgo": lambda r: r.stralgo("LCS", "a", "b"),
    "xackdel": lambda r: r.xackdel("s", "g", "1-0"),
    "xcfgset": lambda r: r.xcfgset("s", idmp_duration=10),
    "xclaim": lambda r: r.xclaim("s", "g", "c", 1, ["1-0"]),
    "xdelex": lambda r: r.xdelex("s", "1-0"),
    "xnack": lambda r: r.xnack("s", "g", "SILENT", "1-0"),
    "xtrim": lambda r: r.xtrim("s", maxlen=1),
    "zmpop": lambda r: r.zmpop(1, ["z"], min=True),
    "zmove": lambda r: r.zmove("z", "y", min=True),
    "bzmove": lambda r: r.bzmove("z", "y", 1, min=True),
    "ardelrange": lambda r: r.ardelrange("a", (0, 1)),
    "object": lambda r: r.object("encoding", "k"),
}


def _is_helper(label: str) -> bool:
    """The probabilistic module clients' argument builders (``bf.append_items``...)."""
    module, _, name = label.rpartition(".")
    return module in {"bf", "cf", "cms", "topk", "tdigest"} and name.startswith("append_")


def _walk(obj: Any, recorder: Recorder, prefix: str,
          sent: dict[str, list[tuple[Any, ...]]], unreached: list[str]) -> None:
    for name in sorted(dir(obj)):
        if name.startswith("_") or name in NOT_COMMANDS:
            continue
        fn = getattr(obj, name, None)
        if not callable(fn) or inspect.isclass(fn):
            continue
        label = f"{prefix}{name}"
        if _is_helper(label):
            continue
        calls: list[Any] = []
        if label in MANUAL_CALLS:
            recorder.sent.clear()
            try:
                MANUAL_CALLS[label](obj)
            except _Sent:
                pass
            except Exception:  # reported below as unreached
                pass
            calls = list(recorder.sent)
        else:
            signature = _Signature(fn)
            for values in _strategies(signature.required):
                calls = signature.call(recorder, fn, values, {})
                if calls:
                    for param in signature.optional:  # each optional argument on, in turn
                        calls += signature.call(recorder, fn, values,
                                                {param.name: _sample(param)})
                    break
        if not calls:
            unreached.append(label)
        for args, options in calls:
            sent.setdefault(label, []).append((args, options))


MODULES = ("json", "ft", "ts", "bf", "cf", "cms", "topk", "tdigest", "vset")

MANUAL_CALLS.update({
    # these read files (set_path walks a directory): never call them with guessed arguments;
    # each file becomes one JSON.SET
    "json.set_file": lambda j: j.set("k", "$", {"a": 1}),
    "json.set_path": lambda j: j.set("k", "$", {"a": 1}),
    "json.debug": lambda j: j.debug("MEMORY", "k"),
    "json.jsonset": lambda j: j.jsonset("k", "$", 1),
    "json.mset": lambda j: j.mset([("k", "$", 1)]),
    "ft.aggregate": lambda ft: ft.aggregate(_search("aggregation").AggregateRequest("*")),
    "ft.alter_schema_add": lambda ft: ft.alter_schema_add([_search("field").TextField("t")]),
    "ft.create_index": lambda ft: ft.create_index([_search("field").TextField("t")]),
    "ft.hybrid_search": lambda ft: ft.hybrid_search(_search("hybrid_query").HybridQuery(
        _search("hybrid_query").HybridSearchQuery("*"),
        _search("hybrid_query").HybridVsimQuery("v", b"1234"))),
    "ft.profile": lambda ft: ft.profile(_search("query").Query("*")),
    # sugadd sends one FT.SUGADD per suggestion, in a pipeline of its own
    "ft.sugadd": lambda ft: ft.execute_command("FT.SUGADD", "k", "s", 1.0),
})


def _search(module: str) -> Any:
    """A submodule of ``redis.commands.search`` (imported when a call needs it: some exist
    only in recent redis-py versions)."""
    return importlib.import_module(f"redis.commands.search.{module}")


def sent_commands() -> tuple[dict[str, list[tuple[Any, ...]]], list[str]]:
    """``{method label: [(args, options), ...]}`` for every command method, and the labels of
    command methods the walk could not call."""
    recorder = Recorder()
    sent: dict[str, list[tuple[Any, ...]]] = {}
    unreached: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # redis-py's "experimental method" warnings
        _walk(recorder, recorder, "", sent, unreached)
        for module in MODULES:
            _walk(getattr(recorder, module)(), recorder, f"{module}.", sent, unreached)
    return sent, unreached


# --- the walk ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def walked() -> tuple[dict[str, list[tuple[Any, ...]]], list[str]]:
    return sent_commands()


def test_the_walk_reaches_every_command_method(walked: Any) -> None:
    sent, unreached = walked
    assert unreached == [], (
        "redis-py command methods the walk could not call (add a MANUAL_CALLS entry, or "
        f"NOT_COMMANDS if it sends nothing): {unreached}"
    )
    assert len(sent) > 300  # the core commands alone are well over 300 methods


def test_every_command_redis_py_can_send_is_classified(walked: Any) -> None:
    sent, _ = walked
    unclassified = sorted({
        f"{command_key(args)} (from {label})"
        for label, calls in sent.items()
        for args, _options in calls
        if table_class(command_key(args)) is None
    })
    assert unclassified == [], f"classify these in faulttol_redis/_replay.py: {unclassified}"
    for calls in sent.values():
        for args, options in calls:
            assert classify(args, options) in set(Replay)


def test_the_three_classes_are_disjoint() -> None:
    assert not READ_ONLY & REPLAY_SAFE_WRITES
    assert not READ_ONLY & NEVER_REPLAYED
    assert not REPLAY_SAFE_WRITES & NEVER_REPLAYED
    for key in READ_ONLY | REPLAY_SAFE_WRITES | NEVER_REPLAYED:
        assert key == key.upper() and key.strip() == key


# --- what redis-py's methods send, and how it is classified ----------------------------------

R, S, N = Replay.READ_ONLY, Replay.SAFE_WRITE, Replay.NEVER


def _core(enum_name: str, member: str) -> Any:
    """A member of an option enum of ``redis.commands.core`` (recent redis-py only)."""
    return getattr(getattr(redis.commands.core, enum_name), member)


CASES: list[tuple[str, Callable[[Any], Any], Replay]] = [
    # SET: plain and with an expiry is replay-safe; conditional or GET never is
    ("set", lambda r: r.set("k", "v"), S),
    ("set ex", lambda r: r.set("k", "v", ex=10), S),
    ("set px", lambda r: r.set("k", "v", px=10_000), S),
    ("set exat", lambda r: r.set("k", "v", exat=datetime.datetime(2100, 1, 1)), S),
    ("set pxat", lambda r: r.set("k", "v", pxat=4_102_444_800_000), S),
    ("set keepttl", lambda r: r.set("k", "v", keepttl=True), S),
    ("set value NX is data", lambda r: r.set("k", "NX"), S),
    ("set nx", lambda r: r.set("k", "v", nx=True), N),
    ("set xx", lambda r: r.set("k", "v", xx=True), N),
    ("set get", lambda r: r.set("k", "v", get=True), N),
    ("set ex get", lambda r: r.set("k", "v", ex=10, get=True), N),
    ("set ifeq", lambda r: r.set("k", "v", ifeq="old"), N),
    ("set ifne", lambda r: r.set("k", "v", ifne="old"), N),
    ("set ifdeq", lambda r: r.set("k", "v", ifdeq="0123456789abcdef"), N),
    ("set ifdne", lambda r: r.set("k", "v", ifdne="0123456789abcdef"), N),
    ("setnx", lambda r: r.setnx("k", "v"), N),
    ("setex", lambda r: r.setex("k", 10, "v"), S),
    ("psetex", lambda r: r.psetex("k", 10_000, "v"), S),
    ("mset", lambda r: r.mset({"a": 1, "b": 2}), S),
    ("msetnx", lambda r: r.msetnx({"a": 1}), N),
    ("hset", lambda r: r.hset("h", "f", "v"), S),
    ("hmset", lambda r: r.hmset("h", {"f": "v"}), S),
    ("hsetnx", lambda r: r.hsetnx("h", "f", "v"), N),
    ("getset", lambda r: r.getset("k", "v"), N),
    ("getdel", lambda r: r.getdel("k"), N),
    ("delex", lambda r: r.delex("k", ifeq="v"), N),
    # counters, lists, sets: never
    ("incr", lambda r: r.incr("k"), N),
    ("incrbyfloat", lambda r: r.incrbyfloat("k", 1.5), N),
    ("lpush", lambda r: r.lpush("l", 1), N),
    ("sadd", lambda r: r.sadd("s", 1), N),
    ("zadd", lambda r: r.zadd("z", {"m": 1}), N),
    ("xadd", lambda r: r.xadd("s", {"f": "v"}), N),
    ("expire", lambda r: r.expire("k", 10), N),
    ("delete", lambda r: r.delete("k"), N),
    ("publish", lambda r: r.publish("c", "m"), N),
    # scripts and functions: only the read-only variants
    ("eval", lambda r: r.eval("return 1", 0), N),
    ("evalsha", lambda r: r.evalsha("0" * 40, 0), N),
    ("fcall", lambda r: r.fcall("f", 0), N),
    ("eval_ro", lambda r: r.eval_ro("return 1", 0), R),
    ("evalsha_ro", lambda r: r.evalsha_ro("0" * 40, 0), R),
    ("fcall_ro", lambda r: r.fcall_ro("f", 0), R),
    ("script load", lambda r: r.script_load("return 1"), S),
    ("script exists", lambda r: r.script_exists("0" * 40), R),
    ("script flush", lambda r: r.script_flush(), N),
    ("function load", lambda r: r.function_load("#!lua name=x"), N),
    ("function list", lambda r: r.function_list(), R),
    # blocking pops: never
    ("blpop", lambda r: r.blpop(["l"], 1), N),
    ("brpop", lambda r: r.brpop(["l"], 1), N),
    ("brpoplpush", lambda r: r.brpoplpush("a", "b", 1), N),
    ("blmove", lambda r: r.blmove("a", "b", 1), N),
    ("blmpop", lambda r: r.blmpop(1, 1, "l", direction="LEFT"), N),
    ("bzpopmin", lambda r: r.bzpopmin(["z"], 1), N),
    ("bzpopmax", lambda r: r.bzpopmax(["z"], 1), N),
    ("bzmpop", lambda r: r.bzmpop(1, 1, ["z"], min=True), N),
    ("lpop", lambda r: r.lpop("l"), N),
    # reads
    ("get", lambda r: r.get("k"), R),
    ("mget", lambda r: r.mget(["a", "b"]), R),
    ("hgetall", lambda r: r.hgetall("h"), R),
    ("scan", lambda r: r.scan(0), R),
    ("xread", lambda r: r.xread({"s": "0"}), R),
    ("xread block", lambda r: r.xread({"s": "0"}, block=100), R),
    ("xreadgroup", lambda r: r.xreadgroup("g", "c", {"s": ">"}), N),
    ("sort", lambda r: r.sort("l"), R),
    ("sort store", lambda r: r.sort("l", store="dst"), N),
    ("sort_ro", lambda r: r.sort_ro("l"), R),
    ("georadius", lambda r: r.georadius("g", 1, 2, 3), R),
    ("georadius store", lambda r: r.georadius("g", 1, 2, 3, store="d"), N),
    ("georadius storedist", lambda r: r.georadius("g", 1, 2, 3, store_dist="d"), N),
    ("georadiusbymember store", lambda r: r.georadiusbymember("g", "m", 3, store="d"), N),
    ("ping", lambda r: r.ping(), R),
    # commands with subcommands are classified by subcommand
    ("object encoding", lambda r: r.object("encoding", "k"), R),
    ("object freq", lambda r: r.object("freq", "k"), R),
    ("object idletime", lambda r: r.object("idletime", "k"), R),
    ("object refcount", lambda r: r.object("refcount", "k"), R),
    ("memory usage", lambda r: r.memory_usage("k"), R),
    ("memory purge", lambda r: r.memory_purge(), N),
    ("client list", lambda r: r.client_list(), R),
    ("client info", lambda r: r.client_info(), R),
    ("client getname", lambda r: r.client_getname(), R),
    ("client id", lambda r: r.client_id(), R),
    ("client kill", lambda r: r.client_kill("127.0.0.1:1"), N),
    ("client pause", lambda r: r.client_pause(10), N),
    ("client setname", lambda r: r.client_setname("n"), N),
    ("xinfo stream", lambda r: r.xinfo_stream("s"), R),
    ("xinfo groups", lambda r: r.xinfo_groups("s"), R),
    ("xinfo consumers", lambda r: r.xinfo_consumers("s", "g"), R),
    ("xgroup create", lambda r: r.xgroup_create("s", "g"), N),
    ("config get", lambda r: r.config_get("maxmemory"), R),
    ("config set", lambda r: r.config_set("maxmemory", "0"), N),
    ("acl log", lambda r: r.acl_log(), R),
    ("acl log reset", lambda r: r.acl_log_reset(), N),
    ("cluster info", lambda r: r.cluster("INFO"), R),
    ("cluster failover", lambda r: r.cluster("FAILOVER"), N),
    ("pubsub channels", lambda r: r.pubsub_channels(), R),
    # Redis 8 commands
    ("getex", lambda r: r.getex("k", ex=10), S),
    ("hgetex", lambda r: r.hgetex("h", "f", ex=10), S),
    ("hgetdel", lambda r: r.hgetdel("h", "f"), N),
    ("hsetex", lambda r: r.hsetex("h", "f", "v", ex=10), S),
    ("hsetex fnx", lambda r: r.hsetex(
        "h", "f", "v", ex=10, data_persist_option=_core("HashDataPersistOptions", "FNX")), N),
    ("hsetex fxx", lambda r: r.hsetex(
        "h", "f", "v", ex=10, data_persist_option=_core("HashDataPersistOptions", "FXX")), N),
    ("msetex", lambda r: r.msetex({"a": 1}, ex=10), S),
    ("msetex nx", lambda r: r.msetex(
        {"a": 1}, data_persist_option=_core("DataPersistOptions", "NX"), ex=10), N),
    ("msetex xx", lambda r: r.msetex(
        {"a": 1}, data_persist_option=_core("DataPersistOptions", "XX"), ex=10), N),
    # module commands: reads, and writes (never)
    ("json.get", lambda r: r.json().get("k"), R),
    ("json.set", lambda r: r.json().set("k", "$", 1), N),
    ("json.numincrby", lambda r: r.json().numincrby("k", "$.a", 1), N),
    ("ft.search", lambda r: r.ft().search("*"), R),
    ("ts.range", lambda r: r.ts().range("k", 0, 1), R),
    ("ts.add", lambda r: r.ts().add("k", 1, 1.0), N),
    ("bf.exists", lambda r: r.bf().exists("b", "a"), R),
    ("bf.add", lambda r: r.bf().add("b", "a"), N),
]


def _sent_by(call: Callable[[Any], Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    recorder = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(_Sent):
            call(recorder)
    assert recorder.sent, "the call sent no command"
    return recorder.sent[0]


@pytest.mark.parametrize(("label", "call", "expected"), CASES, ids=[c[0] for c in CASES])
def test_what_redis_py_sends_is_classified_as_expected(
    label: str, call: Callable[[Any], Any], expected: Replay
) -> None:
    args, options = _sent_by(call)
    assert classify(args, options) is expected, (label, args, options)
    assert is_replay_safe_command(args, options) is (expected is not Replay.NEVER)


@pytest.mark.parametrize(
    "args",
    [
        ("SET", "k", "v", "IFEQ", "old"),
        ("set", "k", "v", "ifne", "old"),
        (b"SET", b"k", b"v", b"IFDEQ", b"0123"),
        ("SET", "k", "v", "EX", 10, "IFDNE", "0123"),
        ("SET", "k", "v", "GET"),
        ("SET", "k", "v", "NX"),
        ("SET", "k", "v", "XX", "EX", 10),
    ],
)
def test_conditional_set_is_never_replayed(args: tuple[Any, ...]) -> None:
    assert classify(args, {}) is Replay.NEVER
    assert not is_replay_safe_command(args, {})


def test_the_get_option_makes_set_never_replayed() -> None:
    assert classify(("SET", "k", "v"), {"get": True}) is Replay.NEVER
    assert classify(("SET", "k", "v"), {"get": False}) is Replay.SAFE_WRITE


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("OBJECT", "ENCODING", "k"), "OBJECT ENCODING"),
        (("object", b"freq", "k"), "OBJECT FREQ"),
        (("CLIENT LIST",), "CLIENT LIST"),
        (("CLIENT", "LIST"), "CLIENT LIST"),
        (("client", "kill", "x"), "CLIENT KILL"),
        (("XINFO STREAM", "s"), "XINFO STREAM"),
        ((b"XINFO", b"groups", b"s"), "XINFO GROUPS"),
        (("COMMAND",), "COMMAND"),
        (("COMMAND", "COUNT"), "COMMAND COUNT"),
        (("GET", "k"), "GET"),
        (("json.get", "k"), "JSON.GET"),
    ],
)
def test_command_key_names_the_subcommand(args: tuple[Any, ...], key: str) -> None:
    assert command_key(args) == key


@pytest.mark.parametrize(
    "args",
    [
        ("NOSUCHCOMMAND", "k"),
        ("MYMODULE.WRITE", "k", "v"),
        ("CLIENT", "NOSUCHSUBCOMMAND"),
        ("OBJECT", "NOSUCHSUBCOMMAND", "k"),
        ("XINFO",),
        ("CONFIG",),
        (),
    ],
)
def test_unknown_commands_are_not_replay_safe(args: tuple[Any, ...]) -> None:
    if args:
        assert table_class(command_key(args)) is None
    assert classify(args, {}) is Replay.NEVER
    assert not is_replay_safe_command(args, {})
    assert not command_may_replay(redis.exceptions.TimeoutError("Timeout reading"), (args, {}))


# --- the table against the server's own command flags ---------------------------------------


def _server_flags(server: RedisServer) -> dict[str, set[str]]:
    """``{"GET": {"readonly", "fast"}, "OBJECT ENCODING": {...}, ...}`` from COMMAND."""

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    flags: dict[str, set[str]] = {}

    def add(entry: list[Any]) -> None:
        name = text(entry[0]).upper().replace("|", " ")
        flags[name] = {text(f) for f in entry[2]}
        if len(entry) > 9:
            for sub in entry[9]:
                add(sub)

    client = server.client()
    client.set_response_callback("COMMAND", lambda response, **options: response)  # raw reply
    for entry in client.execute_command("COMMAND"):
        add(entry)
    return flags


def test_nothing_the_server_calls_a_write_is_classified_read_only(
    redis_server: RedisServer,
) -> None:
    flags = _server_flags(redis_server)
    assert "GET" in flags and "OBJECT ENCODING" in flags  # the server lists subcommands
    writes_called_reads = sorted(
        key for key in READ_ONLY if key in flags and "write" in flags[key]
    )
    # SORT and GEORADIUS[BYMEMBER] are writes only with STORE, which classify() checks
    assert writes_called_reads == ["GEORADIUS", "GEORADIUSBYMEMBER", "SORT"]
    for key in writes_called_reads:
        assert classify((key, "k", "STORE", "dst"), {}) is Replay.NEVER


def test_blocking_writes_are_never_replayed(redis_server: RedisServer) -> None:
    flags = _server_flags(redis_server)
    blocking_writes = {k for k, f in flags.items() if "blocking" in f and "write" in f}
    assert {"BLPOP", "BRPOP", "BLMOVE", "BZPOPMIN", "BLMPOP", "XREADGROUP"} <= blocking_writes
    for key in blocking_writes:
        assert table_class(key) is Replay.NEVER, key


def test_every_read_only_command_of_the_server_that_redis_py_sends_is_a_read(
    redis_server: RedisServer, walked: Any
) -> None:
    flags = _server_flags(redis_server)
    sent, _ = walked
    keys = {command_key(args) for calls in sent.values() for args, _ in calls}
    misfiled = sorted(
        key for key in keys
        if key in flags and "readonly" in flags[key] and "write" not in flags[key]
        and table_class(key) is not Replay.READ_ONLY
    )
    assert misfiled == [], misfiled


# --- the pipeline rule and "never sent" -------------------------------------------------------

WRITE_FAILED = redis.exceptions.ConnectionError(
    "Error 104 while writing to socket. Connection reset by peer."
)
READ_FAILED = redis.exceptions.ConnectionError("Connection closed by server.")
REFUSED = redis.exceptions.ConnectionError(
    "Error 111 connecting to 127.0.0.1:6379. Connection refused."
)

INCRS = [(("INCR", "k"), {}), (("INCR", "k"), {})]
SETS = [(("SET", "a", 1), {}), (("SET", "b", 2), {})]


def _pipeline_call(stack: list[Any], transaction: bool) -> tuple[Any, ...]:
    return (stack, set(), transaction, None, True)


def test_a_write_error_proves_a_single_command_did_not_run() -> None:
    assert never_sent(WRITE_FAILED)
    assert command_may_replay(WRITE_FAILED, (("INCR", "k"), {}))
    assert pipeline_may_replay(WRITE_FAILED, _pipeline_call(INCRS[:1], False))


def test_a_write_error_proves_nothing_ran_only_for_a_transaction() -> None:
    assert pipeline_may_replay(WRITE_FAILED, _pipeline_call(INCRS, True))
    assert not pipeline_may_replay(WRITE_FAILED, _pipeline_call(INCRS, False))
    assert pipeline_may_replay(WRITE_FAILED, _pipeline_call(SETS, False))
    assert pipeline_may_replay(WRITE_FAILED, _pipeline_call(INCRS, False),
                               replay_ambiguous=True)


def test_a_failure_before_sending_replays_any_pipeline() -> None:
    for exc in (REFUSED, CallNotPermittedError("db1"),
                ClusterConnectionError("down", never_sent=True)):
        assert pipeline_may_replay(exc, _pipeline_call(INCRS, False))
        assert pipeline_may_replay(exc, _pipeline_call(INCRS, True))


def test_an_ambiguous_failure_replays_only_replay_safe_pipelines() -> None:
    for transaction in (False, True):
        assert not pipeline_may_replay(READ_FAILED, _pipeline_call(INCRS, transaction))
        assert pipeline_may_replay(READ_FAILED, _pipeline_call(SETS, transaction))
    timeout = redis.exceptions.TimeoutError("Timeout reading from socket")
    assert not never_sent(timeout)
    assert not command_may_replay(timeout, (("INCR", "k"), {}))
    assert command_may_replay(timeout, (("GET", "k"), {}))


def test_an_explicit_never_sent_flag_wins_over_the_message() -> None:
    flagged = redis.exceptions.TimeoutError("Timeout reading from socket")
    flagged.never_sent = True  # type: ignore[attr-defined]
    assert never_sent(flagged)
    assert pipeline_may_replay(flagged, _pipeline_call(INCRS, False))
    ambiguous = ClusterConnectionError("Error 111 connecting to x", never_sent=False)
    assert not never_sent(ambiguous)
