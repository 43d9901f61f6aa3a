"""The asyncio, cluster, health-check and live-change pages cannot rot: their examples run.

Conventions (those of ``tests/test_docs_examples.py``, plus one for clusters):

* Every fenced ``python`` block of the four pages compiles, and runs unless the line before its
  opening fence is ``<!-- no-run -->``. A block preceded by ``<!-- needs-redis -->`` runs
  against two fresh ``redis-server`` processes: the literal ports ``6379`` and ``6380`` in the
  block are replaced by theirs (skipped when no ``redis-server`` binary is available). Each
  block runs on its own, in a fresh namespace, and must not leave an event loop running.
* A block preceded by the two lines ``<!-- needs-cluster -->`` and ``<!-- no-run -->`` runs
  here against a fresh 3-primary Redis Cluster (``redis-cli --cluster create``) and two
  standalone servers: the literal ports ``7000``, ``7001`` and ``7002`` are replaced by the
  cluster nodes' ports, ``6379`` and ``6380`` by the standalone servers'. (The ``no-run``
  line keeps ``tests/test_docs_examples.py``, which runs every page's blocks but knows no
  cluster, to compiling it.) Skipped without ``redis-server`` and ``redis-cli``. Cluster blocks
  share one cluster, flushed before each block and replaced when a block killed a node.
* Against real servers, blocks run with ``MultiDbConfig``'s ``health_check_probe_delay``
  default lowered from 0.5 s to 0.01 s: a provider's startup runs a full check round (3 probes
  0.5 s apart: 1 s) and would make this file slow. Nothing a block shows depends on that delay,
  and ``tests/test_docs_examples.py`` runs the same blocks with the real default.
* A table preceded by ``<!-- config-table: module.Name -->`` lists exactly the parameters of
  that constructor with their defaults; one preceded by ``<!-- defaults-table: module.Name -->``
  lists some of them: each listed parameter exists and the first code span of its default
  cell evaluates to the real default.
* The asyncio page's table of differences says, for each provider member, whether it is a
  plain method, a coroutine or a property on the sync and on the asyncio provider: checked
  against the classes.
* ``examples/asyncio_failover_demo.py`` runs in a subprocess, exits 0 in under 10 s and prints
  what it promises.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis_helpers import requires_redis_7

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

PAGES = ("asyncio.md", "cluster.md", "health-checks.md", "live-changes.md")

NO_RUN = "<!-- no-run -->"
NEEDS_REDIS = "<!-- needs-redis -->"
NEEDS_CLUSTER = "<!-- needs-cluster -->"
TABLE_MARKER = re.compile(r"^<!-- (config-table|defaults-table): ([\w.]+) -->$")
FENCE = re.compile(r"^```(\w*)\s*$")
CLUSTER_PORTS = ("7000", "7001", "7002")


# --- extracting blocks and tables ------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced ``python`` block of a page, with the comment lines right above its fence."""

    page: str
    line: int  # 1-based line of the opening fence
    code: str
    markers: tuple[str, ...]  # the HTML comment lines right above the fence, nearest first

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def kind(self) -> str:
        """``cluster``, ``redis``, ``no-run`` or ``plain``: how the block is run."""
        nearest = self.markers[0] if self.markers else ""
        if nearest == NO_RUN:
            return "cluster" if NEEDS_CLUSTER in self.markers[1:2] else "no-run"
        if nearest == NEEDS_REDIS:
            return "redis"
        return "plain"


def _markers(lines: list[str], fence: int) -> tuple[str, ...]:
    found = []
    i = fence - 1
    while i >= 0 and lines[i].strip().startswith("<!--"):
        found.append(lines[i].strip())
        i -= 1
    return tuple(found)


def _python_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if opening.group(1) == "python":
            yield Block(path.name, start + 1, "\n".join(body) + "\n", _markers(lines, start))


BLOCKS = [block for page in PAGES if (DOCS / page).exists()
          for block in _python_blocks(DOCS / page)]


@dataclass(frozen=True)
class Table:
    """A reference table of a constructor's parameters and their defaults."""

    page: str
    line: int
    kind: str  # "config-table" (every parameter) or "defaults-table" (some)
    target: str  # "module.Name"
    rows: tuple[tuple[str, str], ...]  # (parameter, default cell)


def _cells(row: str) -> list[str]:
    # Split on pipes outside code spans (a default may contain "|").
    cells, current, in_code = [], "", False
    for ch in row.strip().strip("|"):
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += ch
    cells.append(current.strip())
    return cells


def _table_rows(lines: list[str], after: int) -> list[list[str]]:
    """The body rows (as cells) of the first table starting after line index ``after``."""
    j = after + 1
    while j < len(lines) and not lines[j].startswith("|"):
        j += 1
    j += 2  # header and separator
    rows = []
    while j < len(lines) and lines[j].startswith("|"):
        rows.append(_cells(lines[j]))
        j += 1
    return rows


def _tables() -> list[Table]:
    tables = []
    for page in PAGES:
        path = DOCS / page
        if not path.exists():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, text in enumerate(lines):
            found = TABLE_MARKER.match(text.strip())
            if found is None:
                continue
            rows = tuple((cells[0].strip("`"), cells[1]) for cells in _table_rows(lines, n))
            tables.append(Table(page, n + 1, found.group(1), found.group(2), rows))
    return tables


TABLES = _tables()


# --- the pages ---------------------------------------------------------------------------------


def _text(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES)
def test_page_exists_with_a_title_and_runnable_examples(page: str) -> None:
    assert _text(page).startswith("# "), f"{page} must start with a level-1 title"
    assert any(b.page == page and b.kind != "no-run" for b in BLOCKS), f"{page}: nothing runs"


def test_relative_links_point_to_existing_files() -> None:
    link = re.compile(r"\]\(([^)#:\s]+)(#[^)]*)?\)")
    for page in PAGES:
        for target, _anchor in link.findall(_text(page)):
            assert (DOCS / target).exists(), f"{page} links missing {target}"


def test_markers_are_known() -> None:
    known = {NO_RUN, NEEDS_REDIS, NEEDS_CLUSTER}
    for block in BLOCKS:
        for marker in block.markers[:2]:
            if not marker.startswith(("<!-- config-table", "<!-- defaults-table")):
                assert marker in known, f"{block.id}: unknown marker {marker}"
        if NEEDS_CLUSTER in block.markers:
            assert block.kind == "cluster", f"{block.id}: needs-cluster must precede no-run"


def test_asyncio_page_names_every_asyncio_export() -> None:
    import faulttol_redis.asyncio

    text = _text("asyncio.md")
    missing = [n for n in faulttol_redis.asyncio.__all__ if not re.search(rf"\b{n}\b", text)]
    assert not missing, f"asyncio.md does not mention {missing}"


def test_pages_name_what_they_cover() -> None:
    expected = {
        "asyncio.md": ["initialize", "aclose", "run_health_checks", "check_async",
                       "Differences from the sync client"],
        "cluster.md": ["ClusterConnectionError", "never_sent", "transaction=False",
                       "CrossSlotTransactionError", "ssubscribe", "PingHealthCheck"],
        "health-checks.md": ["PingHealthCheck", "LagAwareHealthCheck", "HealthCheck",
                             "HealthCheckPolicy", "HEALTHY_ALL", "HEALTHY_MAJORITY",
                             "HEALTHY_ANY", "/v1/bdbs?fields=uid,endpoints",
                             "/v1/bdbs/{uid}/availability?extend_check=lag"
                             "&availability_lag_tolerance_ms=",
                             "health_check_timeout", "health_check_probes"],
        "live-changes.md": ["add_database", "remove_database", "set_weight",
                            "add_health_check", "status()", "add_switch_listener",
                            '"ordered"', '"weighted"'],
    }
    for page, words in expected.items():
        text = _text(page)
        missing = [w for w in words if w not in text]
        assert not missing, f"{page} does not mention {missing}"


def test_status_keys_are_documented() -> None:
    text = _text("live-changes.md")
    for key in ("index", "name", "endpoint", "weight", "healthy", "breaker_state",
                "breaker_metrics", "active"):
        assert f"| `{key}` |" in text, f"live-changes.md: status() key {key} not in a table"


def test_lag_aware_parameters_are_documented() -> None:
    from faulttol_redis import LagAwareHealthCheck

    tables = [t for t in TABLES if t.target == "faulttol_redis.LagAwareHealthCheck"]
    assert tables and tables[0].kind == "config-table"
    documented = {name for name, _ in tables[0].rows}
    assert documented == set(inspect.signature(LagAwareHealthCheck).parameters)


# --- the blocks compile and run ---------------------------------------------------------------


# Blocks that show the contract (DESIGN.md) where the code does not follow it yet, keyed by a
# line of the block. Strict: once the code is fixed the test fails until the entry goes.
KNOWN_CODE_MISMATCHES: dict[str, str] = {}


def _params(blocks: list[Block]) -> list[Any]:
    params = []
    for block in blocks:
        reasons = [why for line, why in KNOWN_CODE_MISMATCHES.items() if line in block.code]
        marks = [pytest.mark.xfail(strict=True, reason=reasons[0])] if reasons else []
        params.append(pytest.param(block, marks=marks, id=block.id))
    return params


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block_compiles(block: Block) -> None:
    compile(block.code, block.id, "exec")


def _run_block(block: Block, code: str) -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(code, block.id, "exec"), namespace)
    # A block must not leave an event loop behind for the next one.
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def _have(binary: str) -> bool:
    try:
        if binary == "redis-server":
            from faulttol_redis.testing import find_redis_server

            find_redis_server()
        else:
            from faulttol_redis.testing import find_redis_cli

            find_redis_cli()
    except RuntimeError:
        return False
    return True


FAST_PROBE_DELAY = 0.01


@pytest.fixture
def fast_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lower ``MultiDbConfig``'s default probe delay for one block (see the module docstring)."""
    from faulttol_redis import MultiDbConfig

    defaults = MultiDbConfig.__init__.__kwdefaults__
    assert defaults is not None and "health_check_probe_delay" in defaults
    monkeypatch.setitem(defaults, "health_check_probe_delay", FAST_PROBE_DELAY)


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[Callable[[], Any]]:
    """``get()`` returns a healthy, empty 3-primary cluster: the previous one flushed, or a
    fresh one when a node of the previous one is down."""
    if not (_have("redis-server") and _have("redis-cli")):
        pytest.skip("needs redis-server and redis-cli")
    from faulttol_redis.testing import cluster_factory

    with cluster_factory() as start:
        current: list[Any] = []

        def get() -> Any:
            if current and all(node.is_running for node in current[0].nodes):
                for i in range(len(current[0].nodes)):
                    with current[0].client(i) as node:
                        node.flushall()
                return current[0]
            if current:
                current.pop().stop()
            current.append(start())
            return current[0]

        yield get


@pytest.mark.parametrize("block", _params([b for b in BLOCKS if b.kind == "plain"]))
def test_block_runs(block: Block) -> None:
    _run_block(block, block.code)


@pytest.mark.parametrize("block", _params([b for b in BLOCKS if b.kind == "redis"]))
def test_block_runs_against_redis(block: Block, fast_probes: None) -> None:
    if not _have("redis-server"):
        pytest.skip("no redis-server binary")
    from faulttol_redis.testing import RedisServer

    with RedisServer() as first, RedisServer() as second:
        code = block.code.replace("6379", str(first.port)).replace("6380", str(second.port))
        _run_block(block, code)


@requires_redis_7
@pytest.mark.parametrize("block", _params([b for b in BLOCKS if b.kind == "cluster"]))
def test_block_runs_against_a_cluster(
    block: Block, shared_cluster: Callable[[], Any], fast_probes: None
) -> None:
    from faulttol_redis.testing import RedisServer

    cluster = shared_cluster()
    with RedisServer() as first, RedisServer() as second:
        code = block.code
        for literal, port in zip(CLUSTER_PORTS, cluster.ports, strict=True):
            code = code.replace(literal, str(port))
        code = code.replace("6379", str(first.port)).replace("6380", str(second.port))
        _run_block(block, code)


# --- the reference tables match the code -------------------------------------------------------


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _eval_namespace() -> dict[str, Any]:
    import redis

    import faulttol
    import faulttol_redis
    import faulttol_redis.config
    import faulttol_redis.healthcheck
    from faulttol.health import HealthCheckPolicy

    namespace: dict[str, Any] = {"redis": redis, "HealthCheckPolicy": HealthCheckPolicy}
    for module in (faulttol, faulttol_redis, faulttol_redis.config, faulttol_redis.healthcheck):
        namespace.update({name: getattr(module, name) for name in module.__all__})
    return namespace


def _default_cell(cell: str) -> str | None:
    """The expression of a default cell (its first code span), or None for 'required'."""
    if cell.startswith("required"):
        return None
    found = re.search(r"`([^`]+)`", cell)
    assert found is not None, f"default cell without a code span: {cell!r}"
    return found.group(1)


def test_there_are_reference_tables() -> None:
    pages = {t.page for t in TABLES}
    assert pages == set(PAGES), f"pages without a defaults table: {set(PAGES) - pages}"


@pytest.mark.parametrize("table", TABLES, ids=[f"{t.page}:{t.line}:{t.target}" for t in TABLES])
def test_reference_table_matches_the_code(table: Table) -> None:
    cls = _resolve(table.target)
    params = {
        name: p
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    documented = [name for name, _ in table.rows]
    unknown = sorted(set(documented) - set(params))
    assert not unknown, f"{table.page}:{table.line}: {unknown} are not parameters"
    if table.kind == "config-table":
        missing = sorted(set(params) - set(documented))
        assert not missing, f"{table.page}:{table.line}: {missing} are missing"
    namespace = _eval_namespace()
    effective: Any = None
    if table.target.endswith("MultiDbConfig"):
        effective = cls([namespace["DatabaseConfig"]()])
    for name, cell in table.rows:
        expression = _default_cell(cell)
        default = params[name].default
        if expression is None:
            assert default is inspect.Parameter.empty, f"{name} has a default: {default!r}"
            continue
        value = eval(expression, namespace)
        matches = value == default or (
            effective is not None and default is None and value == getattr(effective, name)
        )
        assert matches, f"{table.target}.{name}: documented {expression}, code has {default!r}"


def _member_kind(cls: type, name: str) -> str:
    attribute = inspect.getattr_static(cls, name)
    if isinstance(attribute, property):
        return "property"
    if inspect.iscoroutinefunction(attribute):
        return "coroutine"
    assert callable(attribute), f"{cls.__name__}.{name} is neither a method nor a property"
    return "method"


def test_differences_table_matches_the_providers() -> None:
    import faulttol_redis
    import faulttol_redis.asyncio

    lines = _text("asyncio.md").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "<!-- provider-members -->")
    rows = _table_rows(lines, start)
    assert len(rows) >= 15
    for cells in rows:
        name = re.match(r"`(\w+)", cells[0])
        assert name is not None, cells
        for cls, cell in ((faulttol_redis.FailoverProvider, cells[1]),
                          (faulttol_redis.asyncio.FailoverProvider, cells[2])):
            documented = cell.split()[0].strip("`")
            if documented == "—":
                assert not hasattr(cls, name.group(1)), f"{cls} has {name.group(1)}"
                continue
            actual = _member_kind(cls, name.group(1))
            assert documented == actual, (
                f"{cls.__module__}.{cls.__name__}.{name.group(1)}: documented {documented}, "
                f"is a {actual}"
            )


# --- the example script -----------------------------------------------------------------------


def test_asyncio_failover_demo() -> None:
    if not _have("redis-server"):
        pytest.skip("no redis-server binary")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "asyncio_failover_demo.py")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in (
        "active database: 1 (east); 10 tasks writing",
        "killed database 1",
        "switch: 1 -> 2 (HEALTH_CHECK)",
        "still on database 2",
        "switch: 2 -> 1 (MANUAL)",
        "batch 5 on database 1: True",
        "tasks left behind: 0",
        "writes: 60; errors seen by the application: 0",
        "done",
    ):
        assert line in out, out
    assert out.index("switch: 1 -> 2") < out.index("next batch took")  # awaited before
    assert elapsed < 10.0, f"the demo took {elapsed:.1f} s"
