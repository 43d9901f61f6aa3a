"""Tests for the ``faulttol-redis`` console script and its ``demo`` command (real servers)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest

from faulttol_redis.cli import (
    PHASE_FAILED_BACK,
    PHASE_PRIMARY_DOWN,
    PHASE_PRIMARY_RESTARTED,
    PHASE_WARMUP,
    DemoOptions,
    DemoSummary,
    PhaseSummary,
    SwitchRecord,
    main,
)
from faulttol_redis.cli._demo import _problems

SCALE = "0.5"


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def json_run() -> tuple[int, dict[str, Any], str]:
    """One ``demo --json`` run shared by the assertions below: (exit code, summary, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "faulttol_redis", "demo", "--json", "--duration-scale", SCALE],
        capture_output=True, text=True, timeout=60, check=False,
    )
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not JSON:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.returncode, summary, proc.stderr


def test_demo_json_succeeds(json_run: tuple[int, dict[str, Any], str]) -> None:
    code, summary, stderr = json_run
    assert summary["problems"] == [], summary
    assert summary["ok"] is True
    assert code == 0, stderr


def test_demo_fails_over_to_database_2_without_errors(
    json_run: tuple[int, dict[str, Any], str],
) -> None:
    _, summary, _ = json_run
    first = summary["events"][0]
    assert (first["previous_index"], first["index"]) == (1, 2)
    assert first["phase"] == PHASE_PRIMARY_DOWN
    assert first["reason"] in ("HEALTH_CHECK", "CIRCUIT_BREAKER")
    assert summary["errors"] == 0, summary["error_samples"]
    assert summary["failover_ms"] is not None
    # a SIGKILLed server refuses connections at once: failover is a matter of milliseconds
    assert 0 < summary["failover_ms"] < 1000
    down = next(p for p in summary["phases"] if p["name"] == PHASE_PRIMARY_DOWN)
    assert down["ops_by_database"]["2"] > 0


def test_demo_does_not_fail_back_by_itself(json_run: tuple[int, dict[str, Any], str]) -> None:
    _, summary, _ = json_run
    restarted = next(p for p in summary["phases"] if p["name"] == PHASE_PRIMARY_RESTARTED)
    assert summary["primary_healthy_again_ms"] is not None
    assert restarted["ops_by_database"] == {"1": 0, "2": restarted["ops"]}
    assert restarted["ops"] > 0
    assert restarted["active_index_at_end"] == 2
    assert not [e for e in summary["events"] if e["phase"] == PHASE_PRIMARY_RESTARTED]


def test_demo_returns_to_database_1_after_set_active_index(
    json_run: tuple[int, dict[str, Any], str],
) -> None:
    _, summary, _ = json_run
    reasons = [(e["previous_index"], e["index"], e["reason"]) for e in summary["events"]]
    assert reasons[-1] == (2, 1, "MANUAL")
    assert len(reasons) == 2
    back = next(p for p in summary["phases"] if p["name"] == PHASE_FAILED_BACK)
    # the phase starts just before the call: writes finishing before the switch went to 2
    assert back["ops_by_database"]["1"] > back["ops_by_database"]["2"]
    assert back["active_index_at_end"] == 1
    assert summary["final_active_index"] == 1


def test_demo_figures_match_the_servers(json_run: tuple[int, dict[str, Any], str]) -> None:
    _, summary, _ = json_run
    assert [p["name"] for p in summary["phases"]] == [
        PHASE_WARMUP, PHASE_PRIMARY_DOWN, PHASE_PRIMARY_RESTARTED, PHASE_FAILED_BACK,
    ]
    assert summary["ops"] == sum(p["ops"] for p in summary["phases"])
    assert summary["acknowledged_writes_checked"] > 0
    assert summary["acknowledged_writes_missing"] == 0
    # every write counted on database 2 is a key there (it was never restarted)
    assert summary["keys_on_server"]["2"] >= summary["ops_by_database"]["2"]
    assert summary["writes_lost_with_primary"] > 0


def test_demo_stops_its_servers(json_run: tuple[int, dict[str, Any], str]) -> None:
    _, summary, _ = json_run
    for port in summary["ports"].values():
        assert not _port_open(port)


def test_demo_plain_output_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--duration-scale", SCALE, "--no-live"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{PHASE_PRIMARY_DOWN}: SIGKILL the primary" in out
    assert "switch 1 -> 2" in out
    assert "switch 2 -> 1 (MANUAL)" in out
    assert "no automatic failback" in out
    assert "errors seen by the application: 0" in out
    assert "demo OK" in out


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"]])
def test_help_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 0
    assert "faulttol-redis" in capsys.readouterr().out


def test_help_via_python_m() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "faulttol_redis", "demo", "--help"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 0
    assert "--duration-scale" in proc.stdout
    assert "--redis-server" in proc.stdout


@pytest.mark.parametrize("argv", [[], ["demo", "--duration-scale", "0"],
                                  ["demo", "--duration-scale", "x"]])
def test_bad_usage_exits_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2


def test_missing_redis_server_binary_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--json", "--redis-server", "/nonexistent/redis-server"])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "/nonexistent/redis-server" in captured.err


def test_options_reject_a_non_positive_scale() -> None:
    with pytest.raises(ValueError, match="duration_scale"):
        DemoOptions(duration_scale=0)


# --- the verdict, on made-up summaries ----------------------------------------------------


def _good_summary() -> DemoSummary:
    def phase(name: str, db1: int, db2: int, end: int) -> PhaseSummary:
        return PhaseSummary(name, ops=db1 + db2, ops_by_database={"1": db1, "2": db2},
                            active_index_at_end=end)

    return DemoSummary(
        ok=True, problems=[], redis_server="redis-server", redis_version="7.0.0",
        traffic="SET", ports={"1": 1, "2": 2}, failover_ms=2.0, switch_ms=1.0,
        primary_healthy_again_ms=100.0, errors=0, error_samples=[], ops=40,
        ops_by_database={"1": 20, "2": 20}, ops_during_switch=0,
        acknowledged_writes_checked=30, acknowledged_writes_missing=0,
        writes_lost_with_primary=10, keys_on_server={"1": 10, "2": 20}, final_active_index=1,
        phases=[phase(PHASE_WARMUP, 10, 0, 1), phase(PHASE_PRIMARY_DOWN, 0, 10, 2),
                phase(PHASE_PRIMARY_RESTARTED, 0, 10, 2), phase(PHASE_FAILED_BACK, 10, 0, 1)],
        events=[SwitchRecord(1.0, PHASE_PRIMARY_DOWN, 1, 2, "HEALTH_CHECK"),
                SwitchRecord(5.0, PHASE_FAILED_BACK, 2, 1, "MANUAL")],
        duration_s=5.0,
    )


def test_verdict_accepts_a_good_run() -> None:
    assert _problems(_good_summary()) == []


def test_verdict_flags_an_automatic_failback() -> None:
    summary = _good_summary()
    summary.events.insert(1, SwitchRecord(3.0, PHASE_PRIMARY_RESTARTED, 2, 1, "FAILBACK"))
    assert any("automatic failback" in p for p in _problems(summary))


def test_verdict_flags_errors_missing_failover_and_missing_writes() -> None:
    summary = replace(_good_summary(), errors=1, acknowledged_writes_missing=3,
                      failover_ms=None)
    problems = _problems(summary)
    assert any("1 errors" in p for p in problems)
    assert any("3 acknowledged writes are missing" in p for p in problems)
    assert any("no failover" in p for p in problems)


def test_verdict_flags_traffic_not_returning() -> None:
    summary = replace(_good_summary(), final_active_index=2)
    assert any("did not return to database 1" in p for p in _problems(summary))
