"""The demo's options and its summary: what ``faulttol-redis demo`` was asked and showed."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

__all__ = [
    "PHASE_FAILED_BACK", "PHASE_PRIMARY_DOWN", "PHASE_PRIMARY_RESTARTED", "PHASE_WARMUP",
    "DemoOptions", "DemoSummary", "PhaseSummary", "SwitchRecord", "summary_lines",
]

PHASE_WARMUP = "warm-up"
PHASE_PRIMARY_DOWN = "primary killed"
PHASE_PRIMARY_RESTARTED = "primary restarted"
PHASE_FAILED_BACK = "manual failback"


# --- options and results -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``faulttol-redis demo`` was asked to do."""

    duration_scale: float = 1.0
    redis_server: str | None = None
    json: bool = False
    live: bool = True

    def __post_init__(self) -> None:
        if not (0 < self.duration_scale < math.inf):
            raise ValueError(f"duration_scale must be > 0 and finite, got {self.duration_scale}")


@dataclass(slots=True)
class PhaseSummary:
    """The traffic of one phase, as the client saw it."""

    name: str
    started_ms: float = 0.0
    seconds: float = 0.0
    ops: int = 0
    errors: int = 0
    ops_by_database: dict[str, int] = field(default_factory=lambda: {"1": 0, "2": 0})
    ops_during_switch: int = 0
    """Writes that succeeded while the active database changed under them."""
    max_latency_ms: float = 0.0
    active_index_at_end: int = 0


@dataclass(frozen=True, slots=True)
class SwitchRecord:
    """One switch event, as the provider's listener received it."""

    t_ms: float
    phase: str
    previous_index: int
    index: int
    reason: str


@dataclass(slots=True)
class DemoSummary:
    """What the demo showed; ``ok`` says whether it showed what it should."""

    ok: bool
    problems: list[str]
    redis_server: str
    redis_version: str
    traffic: str
    ports: dict[str, int]
    failover_ms: float | None
    """From the SIGKILL to the first successful write on database 2."""
    switch_ms: float | None
    """From the SIGKILL to the switch event."""
    primary_healthy_again_ms: float | None
    """From the restart to the health checks seeing database 1 healthy again."""
    errors: int
    error_samples: list[str]
    ops: int
    ops_by_database: dict[str, int]
    ops_during_switch: int
    acknowledged_writes_checked: int
    acknowledged_writes_missing: int
    writes_lost_with_primary: int
    """Acknowledged writes on database 1 before the kill (gone: no persistence)."""
    keys_on_server: dict[str, int]
    final_active_index: int
    phases: list[PhaseSummary]
    events: list[SwitchRecord]
    duration_s: float
    log: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The summary as indented JSON."""
        return json.dumps(asdict(self), indent=2)


# --- recording -----------------------------------------------------------------------------

def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def summary_lines(summary: DemoSummary) -> list[str]:
    by_db = summary.ops_by_database
    lines = [
        f"redis-server {summary.redis_version} ({summary.redis_server}), "
        f"ports {summary.ports['1']} (primary) and {summary.ports['2']} (secondary)",
        f"traffic: {summary.traffic}",
        f"failover time: {_ms(summary.failover_ms)} from SIGKILL to the first successful "
        f"write on database 2 (switch event after {_ms(summary.switch_ms)})",
        f"errors seen by the application: {summary.errors}",
        f"writes: {summary.ops:,} acknowledged (database 1: {by_db['1']:,}, database 2: "
        f"{by_db['2']:,}, during a switch: {summary.ops_during_switch})",
        f"checked on the servers: {summary.acknowledged_writes_checked:,} acknowledged writes, "
        f"{summary.acknowledged_writes_missing} missing; {summary.writes_lost_with_primary:,} "
        "written to the primary before the kill died with it (no persistence)",
        "events:",
    ]
    lines += [f"  {e.t_ms / 1000.0:6.2f}s switch {e.previous_index} -> {e.index} ({e.reason}) "
              f"during '{e.phase}'" for e in summary.events]
    lines.append("phases:")
    lines += [f"  {p.name}: {p.seconds:.2f}s, {p.ops:,} writes (db1 {p.ops_by_database['1']:,}, "
              f"db2 {p.ops_by_database['2']:,}), {p.errors} errors, max latency "
              f"{p.max_latency_ms:.1f} ms, active at end: {p.active_index_at_end}"
              for p in summary.phases]
    lines += [f"  error: {sample}" for sample in summary.error_samples]
    if summary.ok:
        lines.append("demo OK: failover without errors, no automatic failback, manual failback "
                     "worked")
    else:
        lines += [f"demo FAILED: {problem}" for problem in summary.problems]
    return lines

