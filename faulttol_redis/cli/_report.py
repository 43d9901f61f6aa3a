"""How the demo shows its progress: nothing (``--json``), plain lines, or a live table."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ._summary import DemoSummary, _ms, summary_lines

if TYPE_CHECKING:
    from ._demo import _Demo, _Recorder

__all__ = ["LiveReporter", "PlainReporter", "QuietReporter", "Reporter", "print_summary"]

_RECENT_EVENTS = 8
_LIVE_REFRESH_PER_SECOND = 8


class Reporter(Protocol):
    def phase(self, name: str, message: str) -> None: ...

    def event(self, message: str) -> None: ...


class QuietReporter:
    """``--json``: nothing but the summary on stdout."""

    def phase(self, name: str, message: str) -> None:
        pass

    def event(self, message: str) -> None:
        pass


class PlainReporter:
    """One line per phase and per event: for logs, pipes and CI."""

    def __init__(self, recorder: _Recorder, stream: TextIO) -> None:
        self._recorder = recorder
        self._stream = stream
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            print(f"[{self._recorder.elapsed_ms() / 1000.0:6.2f}s] {text}", file=self._stream,
                  flush=True)

    def phase(self, name: str, message: str) -> None:
        self._line(f"{name}: {message}")

    def event(self, message: str) -> None:
        self._line(f"  {message}")


class LiveReporter:
    """A ``rich`` live table redrawn a few times per second from the recorder."""

    def __init__(self, recorder: _Recorder, demo: _Demo, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self._recorder = recorder
        self._demo = demo
        self._messages: deque[str] = deque(maxlen=_RECENT_EVENTS)
        self._rates: deque[tuple[float, int]] = deque(maxlen=64)
        self._lock = threading.Lock()
        self.console = Console(file=stream)
        self._live = Live(
            get_renderable=self._render, console=self.console,
            refresh_per_second=_LIVE_REFRESH_PER_SECOND, redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveReporter:
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.stop()

    def phase(self, name: str, message: str) -> None:
        self.event(f"[bold]{name}[/]: {message}")

    def event(self, message: str) -> None:
        with self._lock:
            self._messages.append(f"{self._recorder.elapsed_ms() / 1000.0:6.2f}s  {message}")

    def _ops_per_second(self, ops: int) -> float:
        now = self._recorder.elapsed_ms() / 1000.0
        with self._lock:
            self._rates.append((now, ops))
            while len(self._rates) > 2 and now - self._rates[0][0] > 1.0:
                self._rates.popleft()
            t0, ops0 = self._rates[0]
        return (ops - ops0) / (now - t0) if now > t0 else 0.0

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        recorder = self._recorder
        ops, errors, _events = recorder.snapshot()
        phase = recorder.phases[-1].name if recorder.phases else "starting"
        overview = Table.grid(padding=(0, 2))
        overview.add_column(style="bold")
        overview.add_column()
        overview.add_row("phase", phase)
        overview.add_row("active database", self._demo.active_label())
        overview.add_row("writes/s", f"{self._ops_per_second(ops):,.0f}")
        overview.add_row("writes", f"{ops:,}")
        overview.add_row("errors", f"[{'red' if errors else 'green'}]{errors}[/]")
        overview.add_row("failover time", _ms(self._demo.failover_ms()))
        databases = Table(title="databases", title_justify="left")
        for column in ("#", "name", "endpoint", "server", "healthy", "breaker", "writes"):
            databases.add_column(column)
        for row in self._demo.database_rows():
            databases.add_row(*row)
        with self._lock:
            messages = "\n".join(self._messages) or "-"
        return Group(overview, databases, "[bold]events[/]", messages)


def print_summary(summary: DemoSummary, stream: TextIO, *, rich_output: bool) -> None:
    lines = summary_lines(summary)
    if rich_output:
        from rich.console import Console
        from rich.markup import escape

        console = Console(file=stream)
        console.rule("summary")
        for line in lines:
            style = "bold green" if line.startswith("demo OK") else (
                "bold red" if line.startswith("demo FAILED") else "")
            console.print(escape(line), style=style, highlight=False)
        return
    print("summary:", file=stream)
    for line in lines:
        print(f"  {line}", file=stream)
