"""How ``faulttol-redis status`` and ``check`` print: a ``rich`` table on a terminal, plain
``key=value`` lines elsewhere (logs, pipes, ``grep``/``awk``), one JSON document per refresh
with ``--json``."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any, TextIO

from ._status import DatabaseCheck, DatabaseReport

__all__ = ["check_lines", "have_rich", "plain_lines", "rich_table", "status_json",
           "write_lines"]


def have_rich() -> bool:
    """Whether ``rich`` (the ``demo`` extra) is installed."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def plain_lines(reports: Sequence[DatabaseReport]) -> list[str]:
    """One ``key=value`` line per database (values quoted for the shell when needed)."""
    lines = []
    for r in reports:
        fields = [f"index={r.index}", f"name={shlex.quote(r.name)}",
                  f"endpoint={shlex.quote(r.endpoint)}", f"healthy={_yes(r.healthy)}",
                  f"ping_ms={_ms(r.ping_ms)}", f"breaker={r.breaker_state}",
                  f"active={_yes(r.active)}"]
        if r.error is not None:
            fields.append(f"error={shlex.quote(r.error)}")
        lines.append(" ".join(fields))
    return lines


def status_json(reports: Sequence[DatabaseReport]) -> str:
    """One line of JSON: ``{"databases": [...], "active_index": n | null}``."""
    active = next((r.index for r in reports if r.active), None)
    return json.dumps({"databases": [r.to_dict() for r in reports], "active_index": active})


def rich_table(reports: Sequence[DatabaseReport], title: str) -> Any:
    """A ``rich`` table of the databases, each failed PING's reason below it."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=escape(title), title_justify="left")
    for column, justify in (("#", "right"), ("name", "left"), ("endpoint", "left"),
                            ("healthy", "center"), ("PING ms", "right"),
                            ("breaker", "left"), ("active", "center")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in reports:
        table.add_row(
            str(r.index), escape(r.name), escape(r.endpoint),
            "[green]yes[/]" if r.healthy else "[bold red]no[/]", _ms(r.ping_ms),
            r.breaker_state if r.breaker_state == "CLOSED" else f"[yellow]{r.breaker_state}[/]",
            "[bold]*[/]" if r.active else "",
        )
    errors = [Text.from_markup(f"[red]database {r.index}[/]: {escape(r.error)}")
              for r in reports if r.error]
    return Group(table, *errors)


def check_lines(verdicts: Sequence[DatabaseCheck], policy: str,
                probes: int) -> tuple[bool, list[str]]:
    """(ready, the lines saying why) for ``faulttol-redis check``."""
    healthy = [v for v in verdicts if v.healthy]
    rule = f"policy {policy}, {probes} probe{'s' if probes != 1 else ''}"
    lines = []
    for v in verdicts:
        verdict = "healthy" if v.healthy else f"unhealthy: {v.reason}"
        lines.append(f"database {v.index} ({v.name}, {v.endpoint}): {verdict}")
    if healthy:
        lines.append(f"ready: {len(healthy)} of {len(verdicts)} databases pass the health "
                     f"checks ({rule})")
    else:
        lines.append(f"not ready: no database passes the health checks ({rule})")
    return bool(healthy), lines


def write_lines(lines: Sequence[str], out: TextIO) -> None:
    for line in lines:
        print(line, file=out)
    out.flush()
