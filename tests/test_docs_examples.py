"""The documentation cannot rot: its examples run and its reference tables match the code.

* Every script in ``examples/`` runs (a subprocess with this interpreter) and prints what it
  promises.
* Every fenced ``python`` block in ``docs/*.md`` compiles, and runs unless the line before its
  opening fence is ``<!-- no-run -->``. A block preceded by ``<!-- needs-redis -->`` runs
  against two fresh ``redis-server`` processes: the literal ports ``6379`` and ``6380`` in the
  block are replaced by theirs (skipped when no ``redis-server`` binary is available).
  Each block runs on its own, in a fresh namespace.
* Every table preceded by ``<!-- config-table: module.Name -->`` lists exactly the parameters
  of ``module.Name``'s constructor, and the first code span of each row's default column is a
  Python expression equal to the real default (``required`` for a parameter without one).

The conventions are described for contributors in docs/testing.md.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

NO_RUN = "<!-- no-run -->"
NEEDS_REDIS = "<!-- needs-redis -->"
CONFIG_TABLE = re.compile(r"^<!-- config-table: ([\w.]+) -->$")
FENCE = re.compile(r"^```(\w*)\s*$")

DOC_PAGES = (
    "index.md",
    "concepts.md",
    "circuit-breaker.md",
    "retry.md",
    "fallback-and-decorators.md",
    "hedge.md",
    "bulkhead.md",
    "timelimiter.md",
    "ratelimiter.md",
    "chaos.md",
    "registry.md",
    "provider.md",
    "failover-client.md",
    "migrating.md",
    "testing.md",
)


# --- extracting blocks and tables ------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced ``python`` block of a docs page."""

    page: str
    line: int  # 1-based line of the opening fence
    code: str
    marker: str  # the line before the opening fence, stripped

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _python_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        lang = opening.group(1)
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if lang == "python":
            marker = lines[start - 1].strip() if start > 0 else ""
            yield Block(path.name, start + 1, "\n".join(body) + "\n", marker)


def _all_blocks() -> list[Block]:
    return [block for page in sorted(DOCS.glob("*.md")) for block in _python_blocks(page)]


BLOCKS = _all_blocks()


@dataclass(frozen=True)
class ConfigTable:
    """A reference table of a constructor's parameters and their defaults."""

    page: str
    line: int
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


def _config_tables() -> list[ConfigTable]:
    tables = []
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for n, text in enumerate(lines):
            found = CONFIG_TABLE.match(text.strip())
            if found is None:
                continue
            j = n + 1
            while j < len(lines) and not lines[j].startswith("|"):
                j += 1
            rows = []
            j += 2  # header and separator
            while j < len(lines) and lines[j].startswith("|"):
                cells = _cells(lines[j])
                name = cells[0].strip("`")
                rows.append((name, cells[1]))
                j += 1
            tables.append(ConfigTable(page.name, n + 1, found.group(1), tuple(rows)))
    return tables


TABLES = _config_tables()


# --- the pages exist --------------------------------------------------------------------------


@pytest.mark.parametrize("page", DOC_PAGES)
def test_page_exists_with_a_title(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    assert text.startswith("# "), f"{page} must start with a level-1 title"


def test_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in DOC_PAGES:
        if page != "index.md":
            assert f"({page}" in index, f"index.md does not link {page}"


def test_relative_links_point_to_existing_files() -> None:
    link = re.compile(r"\]\(([^)#:\s]+)(#[^)]*)?\)")
    for page in sorted(DOCS.glob("*.md")):
        for target, _anchor in link.findall(page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links missing {target}"


def test_concepts_has_both_state_diagrams() -> None:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    assert "```mermaid\nstateDiagram-v2" in text
    for state in ("CLOSED", "OPEN", "HALF_OPEN", "DISABLED", "FORCED_OPEN", "METRICS_ONLY"):
        assert state in text
    assert "+--------" in text, "the plain-text diagram is missing"


@pytest.mark.parametrize(
    "module_name",
    [
        "faulttol",
        "faulttol_redis",
        "faulttol.events",
        "faulttol.ratelimiter",
        "faulttol.bulkhead",
        "faulttol.timelimiter",
        "faulttol.chaos",
        "faulttol_redis.chaos",
    ],
)
def test_every_public_name_is_documented(module_name: str) -> None:
    text = "".join((DOCS / page).read_text(encoding="utf-8") for page in DOC_PAGES)
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"{module_name} names missing from the docs: {missing}"


def test_docs_have_runnable_blocks() -> None:
    runnable = [b for b in BLOCKS if b.marker != NO_RUN]
    assert len(runnable) >= 20
    assert any(b.marker == NEEDS_REDIS for b in BLOCKS)


# --- the blocks compile and run ---------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block_compiles(block: Block) -> None:
    compile(block.code, block.id, "exec")


def _run_block(block: Block, code: str) -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(code, block.id, "exec"), namespace)


def _redis_server_available() -> bool:
    from faulttol_redis.testing import find_redis_server

    try:
        find_redis_server()
    except RuntimeError:
        return False
    return True


# Blocks that document the contract (DESIGN.md) where the code does not follow it yet, keyed
# by a line of the block. Strict: once the code is fixed the test fails until the entry goes.
KNOWN_CODE_MISMATCHES: dict[str, str] = {}


def _params(blocks: list[Block]) -> list[Any]:
    params = []
    for block in blocks:
        reasons = [why for line, why in KNOWN_CODE_MISMATCHES.items() if line in block.code]
        marks = [pytest.mark.xfail(strict=True, reason=reasons[0])] if reasons else []
        params.append(pytest.param(block, marks=marks, id=block.id))
    return params


RUNNABLE = [b for b in BLOCKS if b.marker not in (NO_RUN, NEEDS_REDIS)]
NEEDING_REDIS = [b for b in BLOCKS if b.marker == NEEDS_REDIS]


@pytest.mark.parametrize("block", _params(RUNNABLE))
def test_block_runs(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    _run_block(block, block.code)
    # A block must not leave an event loop behind for the next one.
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


@pytest.mark.parametrize("block", _params(NEEDING_REDIS))
def test_block_runs_against_redis(block: Block) -> None:
    if not _redis_server_available():
        pytest.skip("no redis-server binary")
    from faulttol_redis.testing import RedisServer

    with RedisServer() as first, RedisServer() as second:
        code = block.code.replace("6379", str(first.port)).replace("6380", str(second.port))
        _run_block(block, code)


# --- the reference tables match the code -------------------------------------------------------


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _eval_namespace() -> dict[str, Any]:
    import redis

    import faulttol
    import faulttol_redis
    from faulttol.health import HealthCheckPolicy

    namespace: dict[str, Any] = {"redis": redis, "HealthCheckPolicy": HealthCheckPolicy}
    for module in (faulttol, faulttol_redis):
        namespace.update({name: getattr(module, name) for name in module.__all__})
    return namespace


def _default_cell(cell: str) -> str | None:
    """The expression of a default cell (its first code span), or None for 'required'.

    A cell starting with "built-in" describes a private default in words: not evaluated.
    """
    if cell.startswith(("required", "built-in")):
        return None
    found = re.search(r"`([^`]+)`", cell)
    assert found is not None, f"default cell without a code span: {cell!r}"
    return found.group(1)


def test_there_are_config_tables() -> None:
    targets = {t.target for t in TABLES}
    for expected in (
        "faulttol.CircuitBreakerConfig",
        "faulttol.RetryConfig",
        "faulttol.OrderedProvider",
        "faulttol_redis.DatabaseConfig",
        "faulttol_redis.MultiDbConfig",
    ):
        assert expected in targets


@pytest.mark.parametrize("table", TABLES, ids=[f"{t.page}:{t.line}:{t.target}" for t in TABLES])
def test_config_table_matches_the_code(table: ConfigTable) -> None:
    cls = _resolve(table.target)
    params = {
        name: p
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    documented = [name for name, _ in table.rows]
    assert sorted(documented) == sorted(params), (
        f"{table.page}:{table.line}: documented {sorted(set(documented) - set(params))} "
        f"do not exist, {sorted(set(params) - set(documented))} are missing"
    )
    namespace = _eval_namespace()
    effective: Any = None
    if table.target == "faulttol_redis.MultiDbConfig":
        effective = cls([namespace["DatabaseConfig"]()])
    for name, cell in table.rows:
        expression = _default_cell(cell)
        default = params[name].default
        if cell.startswith("built-in"):
            assert default is not inspect.Parameter.empty, f"{name} has no default"
            continue
        if expression is None:
            assert default is inspect.Parameter.empty, f"{name} has a default: {default!r}"
            continue
        value = eval(expression, namespace)
        matches = value == default or (
            effective is not None and default is None and value == getattr(effective, name)
        )
        assert matches, f"{table.target}.{name}: documented {expression}, code has {default!r}"


# --- the example scripts ---------------------------------------------------------------------


def _run_example(name: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_breaker_demo() -> None:
    done = _run_example("breaker_demo.py", timeout=30)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in (
        "transition: CLOSED -> OPEN",
        "rejected: CallNotPermittedError",
        "transition: OPEN -> HALF_OPEN",
        "transition: HALF_OPEN -> CLOSED",
    ):
        assert line in out, out
    assert out.index("CLOSED -> OPEN") < out.index("OPEN -> HALF_OPEN") < out.index(
        "HALF_OPEN -> CLOSED"
    )


def test_retry_demo() -> None:
    done = _run_example("retry_demo.py", timeout=30)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in (
        "retry #1 after",
        "succeeded after 3 attempts",
        "gave up after 3 attempts",
        "fallback answered",
        "async:",
    ):
        assert line in out, out


def test_failover_demo() -> None:
    if not _redis_server_available():
        pytest.skip("no redis-server binary")
    done = _run_example("failover_demo.py", timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in (
        "active database: 1",
        "killed database 1",
        "switch: 1 -> 2 (HEALTH_CHECK)",
        "still on database 2",
        "switch: 2 -> 1 (MANUAL)",
        "errors seen by the application: 0",
    ):
        assert line in out, out
