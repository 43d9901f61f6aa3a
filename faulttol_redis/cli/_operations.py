"""The operator commands: ``faulttol-redis status`` and ``faulttol-redis check``.

Exit codes (for readiness probes and deploy scripts): ``check`` returns 0 when the configured
health policy accepts at least one database and 1 otherwise; both return 2 for a config file
that cannot be read or is not valid. ``status`` returns 0 after printing (also when ``--watch``
ends with Ctrl-C).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from faulttol import SYSTEM_CLOCK, Clock

from ._status import ConfigFileError, StatusMonitor, check_databases, load_config
from ._status_output import (
    check_lines,
    have_rich,
    plain_lines,
    rich_table,
    status_json,
    write_lines,
)

__all__ = ["DEFAULT_WATCH_INTERVAL", "EXIT_BAD_CONFIG", "EXIT_NOT_READY", "EXIT_OK",
           "StatusOptions", "run_check", "run_status"]

EXIT_OK = 0
EXIT_NOT_READY = 1
EXIT_BAD_CONFIG = 2

DEFAULT_WATCH_INTERVAL = 2.0
"""Seconds between refreshes of ``status --watch`` given without a value."""


@dataclass(frozen=True)
class StatusOptions:
    """What ``faulttol-redis status`` was asked for."""

    config: str | os.PathLike[str]
    json: bool = False
    watch: float | None = None
    """Seconds between refreshes, or None for one snapshot."""
    rich_output: bool = False
    """A rich table (a terminal, and rich installed) rather than plain lines."""
    refreshes: int | None = None
    """Stop after this many snapshots (None: until Ctrl-C); for tests and scripts."""


def _bad_config(command: str, exc: ConfigFileError, err: TextIO) -> int:
    print(f"faulttol-redis {command}: bad config file: {exc}", file=err)
    return EXIT_BAD_CONFIG


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def run_status(options: StatusOptions, *, out: TextIO | None = None, err: TextIO | None = None,
               clock: Clock = SYSTEM_CLOCK) -> int:
    """``faulttol-redis status``; returns the exit code."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        config = load_config(options.config)
    except ConfigFileError as exc:
        return _bad_config("status", exc, err)
    monitor = StatusMonitor(config, clock=clock)
    title = f"faulttol-redis status: {os.fspath(options.config)}"
    render: Callable[[], None]
    try:
        if options.json:
            def render() -> None:
                write_lines([status_json(monitor.snapshot())], out)
        elif options.rich_output and have_rich():
            return _watch_rich(monitor, options, title, out, clock)
        else:
            def render() -> None:
                lines = plain_lines(monitor.snapshot())
                if options.watch is not None:
                    lines = [f"# {_stamp()}", *lines, ""]
                write_lines(lines, out)
        done = 0
        while True:
            render()
            done += 1
            if options.watch is None or (options.refreshes is not None
                                         and done >= options.refreshes):
                return EXIT_OK
            clock.sleep(options.watch)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        monitor.close()


def _watch_rich(monitor: StatusMonitor, options: StatusOptions, title: str, out: TextIO,
                clock: Clock) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out)
    if options.watch is None:
        console.print(rich_table(monitor.snapshot(), title))
        return EXIT_OK
    done = 0
    with Live(console=console, auto_refresh=False, redirect_stdout=False,
              redirect_stderr=False) as live:
        while True:
            live.update(rich_table(monitor.snapshot(), f"{title}  ({_stamp()}, Ctrl-C to stop)"),
                        refresh=True)
            done += 1
            if options.refreshes is not None and done >= options.refreshes:
                return EXIT_OK
            clock.sleep(options.watch)


def run_check(config_path: str | os.PathLike[str], *, out: TextIO | None = None,
              err: TextIO | None = None, clock: Clock = SYSTEM_CLOCK) -> int:
    """``faulttol-redis check``; returns the exit code."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        config = load_config(config_path)
    except ConfigFileError as exc:
        return _bad_config("check", exc, err)
    ready, lines = check_lines(check_databases(config, clock=clock),
                               config.health_check_policy.name, config.health_check_probes)
    write_lines(lines, out)
    return EXIT_OK if ready else EXIT_NOT_READY
