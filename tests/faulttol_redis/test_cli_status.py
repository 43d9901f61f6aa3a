"""``faulttol-redis status`` and ``check`` against real servers (one killed, one paused), in a
subprocess as an operator runs them and in-process for the output modes and the exit codes."""

from __future__ import annotations

import io
import json
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faulttol.testing import FakeClock
from faulttol_redis.cli import StatusOptions, main, run_check, run_status
from faulttol_redis.testing import RedisServer

SECRET = "cli-s3cret"


def _write_config(path: Path, *servers: RedisServer, extra: str = "") -> Path:
    """Fast health checks; database 2 given by URL with a password in it (never shown)."""
    lines = ["health_check_probes = 2", "health_check_probe_delay = 0.01",
             "health_check_timeout = 0.3", extra]
    for position, server in enumerate(servers, start=1):
        lines += ["[[databases]]", f'name = "db {position}"']
        if position == 2:
            lines.append(f'url = "redis://:${{CLI_TEST_PASSWORD}}@127.0.0.1:{server.port}/0"')
        else:
            lines += ['host = "127.0.0.1"', f"port = {server.port}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faulttol_redis", *args], capture_output=True, text=True,
        timeout=60, check=False, env=_env(),
    )


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "CLI_TEST_PASSWORD": SECRET}


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLI_TEST_PASSWORD", SECRET)


@pytest.fixture
def first_killed(tmp_path: Path, redis_servers: Any) -> Iterator[tuple[Path, RedisServer,
                                                                        RedisServer]]:
    """Two servers, database 1 SIGKILLed: the config file and the servers."""
    first, second = redis_servers(2)
    second.client().config_set("requirepass", SECRET)
    first.kill()
    yield _write_config(tmp_path / "ops.toml", first, second), first, second


def _fields(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(line))


# --- status ----------------------------------------------------------------------------------


def test_status_plain_lines_off_a_terminal(first_killed: tuple[Path, RedisServer,
                                                               RedisServer]) -> None:
    path, first, second = first_killed
    proc = _run("status", "--config", str(path))
    assert proc.returncode == 0, proc.stderr
    rows = [_fields(line) for line in proc.stdout.splitlines()]
    assert [row["index"] for row in rows] == ["1", "2"]
    down, up = rows
    assert (down["name"], down["endpoint"]) == ("db 1", f"127.0.0.1:{first.port}/0")
    assert (down["healthy"], down["active"], down["ping_ms"]) == ("no", "no", "-")
    assert "Connection refused" in down["error"]
    assert (up["name"], up["endpoint"]) == ("db 2", f"127.0.0.1:{second.port}/0")
    assert (up["healthy"], up["active"], up["breaker"]) == ("yes", "yes", "CLOSED")
    assert float(up["ping_ms"]) > 0 and "error" not in up
    assert SECRET not in proc.stdout + proc.stderr


def test_status_json(first_killed: tuple[Path, RedisServer, RedisServer]) -> None:
    path, _first, second = first_killed
    proc = _run("status", "--config", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["active_index"] == 2
    down, up = document["databases"]
    assert set(up) == {"index", "name", "endpoint", "healthy", "ping_ms", "breaker_state",
                       "active", "error"}
    assert (down["healthy"], down["ping_ms"], down["active"]) == (False, None, False)
    assert (up["healthy"], up["active"], up["breaker_state"]) == (True, True, "CLOSED")
    assert up["endpoint"] == f"127.0.0.1:{second.port}/0" and up["ping_ms"] > 0
    assert SECRET not in proc.stdout


def test_status_watch_refreshes_until_ctrl_c(
    first_killed: tuple[Path, RedisServer, RedisServer],
) -> None:
    path, _first, _second = first_killed
    proc = subprocess.Popen(
        [sys.executable, "-m", "faulttol_redis", "status", "--config", str(path), "--json",
         "--watch", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    documents = [json.loads(proc.stdout.readline()) for _ in range(2)]
    proc.send_signal(signal.SIGINT)
    _rest, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert [d["active_index"] for d in documents] == [2, 2]
    assert "Traceback" not in stderr


def test_status_in_process_follows_a_failure_between_refreshes(
    tmp_path: Path, redis_servers: Any, password: None,
) -> None:
    first, second = redis_servers(2)
    second.client().config_set("requirepass", SECRET)
    path = _write_config(tmp_path / "ops.toml", first, second)
    clock = FakeClock()
    out = io.StringIO()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the watch interval: kill database 1 meanwhile
        if seconds == 1.5:
            sleeps.append(seconds)
            first.kill()
        FakeClock.sleep(clock, seconds)

    clock.sleep = sleep  # type: ignore[method-assign]
    code = run_status(StatusOptions(config=path, watch=1.5, refreshes=2), out=out, clock=clock)
    assert code == 0 and sleeps == [1.5]
    blocks = [b for b in out.getvalue().split("\n\n") if b.strip()]
    before, after = ([_fields(line) for line in block.splitlines()[1:]] for block in blocks)
    assert [(r["healthy"], r["active"]) for r in before] == [("yes", "yes"), ("yes", "no")]
    assert [(r["healthy"], r["active"]) for r in after] == [("no", "no"), ("yes", "yes")]


def test_status_rich_table(first_killed: tuple[Path, RedisServer, RedisServer],
                           password: None) -> None:
    pytest.importorskip("rich")
    path, first, _second = first_killed
    out = io.StringIO()
    assert run_status(StatusOptions(config=path, rich_output=True), out=out) == 0
    text = out.getvalue()
    for expected in ("PING ms", "breaker", "db 1", "db 2", f"127.0.0.1:{first.port}/0",
                     "CLOSED", "ConnectionError"):
        assert expected in text
    assert SECRET not in text


def test_status_reports_a_paused_database_within_its_timeout(
    tmp_path: Path, redis_servers: Any, password: None,
) -> None:
    first, second = redis_servers(2)
    second.client().config_set("requirepass", SECRET)
    path = _write_config(tmp_path / "ops.toml", first, second,
                         extra="hang_detection_after = false")
    second.pause()
    out = io.StringIO()
    try:
        assert run_status(StatusOptions(config=path, json=True), out=out) == 0
    finally:
        second.resume()
    up, hung = json.loads(out.getvalue())["databases"]
    assert (up["healthy"], up["active"]) == (True, True)
    assert (hung["healthy"], hung["ping_ms"]) == (False, None)
    assert "Timeout" in hung["error"]


# --- check -----------------------------------------------------------------------------------


def test_check_ready_with_one_database_down(
    first_killed: tuple[Path, RedisServer, RedisServer],
) -> None:
    path, first, second = first_killed
    proc = _run("check", "--config", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"database 1 (db 1, 127.0.0.1:{first.port}/0): unhealthy: ")
    assert "Connection refused" in lines[0]
    assert lines[1] == f"database 2 (db 2, 127.0.0.1:{second.port}/0): healthy"
    assert lines[2] == ("ready: 1 of 2 databases pass the health checks "
                        "(policy HEALTHY_ALL, 2 probes)")


def test_check_not_ready_when_every_database_is_down(
    first_killed: tuple[Path, RedisServer, RedisServer], password: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _first, second = first_killed
    second.kill()
    assert main(["check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == ("not ready: no database passes the health checks "
                                    "(policy HEALTHY_ALL, 2 probes)")
    assert out.count("unhealthy: ConnectionError") == 2


def test_check_wrong_password_says_why(tmp_path: Path, redis_servers: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = redis_servers(2)
    second.client().config_set("requirepass", "another-one")
    first.kill()
    monkeypatch.setenv("CLI_TEST_PASSWORD", SECRET)
    out = io.StringIO()
    assert run_check(_write_config(tmp_path / "ops.toml", first, second), out=out) == 1
    assert "AuthenticationError" in out.getvalue() and SECRET not in out.getvalue()


@pytest.mark.parametrize(("content", "expected"), [
    ("[[databases]]\nhost = '127.0.0.1'\npasword = 'x'\n", "databases[0].pasword: unknown key"),
    ("[[databases]\n", "not valid TOML"),
    ("[[databases]]\nport = 0\n", "databases[0]: port must be"),
    ("[[databases]]\nurl = 'redis://:${NOT_SET_HERE}@h'\n",
     "environment variable NOT_SET_HERE is not set"),
])
@pytest.mark.parametrize("command", ["status", "check"])
def test_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 command: str, content: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    assert main([command, "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"faulttol-redis {command}: bad config file: ")
    assert expected in captured.err


def test_missing_config_file_exits_2(tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "nope.toml" in err


def test_status_rich_watch_refreshes(
    first_killed: tuple[Path, RedisServer, RedisServer], password: None,
) -> None:
    pytest.importorskip("rich")
    path, _first, _second = first_killed
    out = io.StringIO()
    clock = FakeClock()
    options = StatusOptions(config=path, rich_output=True, watch=0.5, refreshes=2)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        if seconds == 0.5:
            waits.append(seconds)
        FakeClock.sleep(clock, seconds)

    clock.sleep = sleep  # type: ignore[method-assign]
    assert run_status(options, out=out, clock=clock) == 0
    assert waits == [0.5]                                 # two refreshes, one wait between
    assert "Ctrl-C" in out.getvalue() and "PING ms" in out.getvalue()   # the last frame


def test_check_with_health_checks_off_uses_ping(tmp_path: Path, redis_servers: Any,
                                                password: None) -> None:
    first, second = redis_servers(2)
    second.client().config_set("requirepass", SECRET)
    path = _write_config(tmp_path / "ops.toml", first, second, extra="health_checks = []")
    first.kill()
    second.kill()
    out = io.StringIO()
    assert run_check(path, out=out) == 1                  # not "ready" for want of a check
    assert out.getvalue().count("unhealthy: ConnectionError") == 2


def test_plain_flag_and_watch_default(first_killed: tuple[Path, RedisServer, RedisServer],
                                      password: None, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from faulttol_redis.cli import build_parser

    args = build_parser().parse_args(["status", "--config", "x.toml", "--watch"])
    assert args.watch == 2.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "--config", "x.toml", "--watch", "0"])
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    path, _first, _second = first_killed
    assert main(["status", "--config", str(path), "--plain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [_fields(line)["index"] for line in lines] == ["1", "2"]
