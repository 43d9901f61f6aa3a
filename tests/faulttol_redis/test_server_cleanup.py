"""Nothing a RedisServer starts outlives it: not when the object is dropped without ``stop()``,
not when the interpreter exits, not when the interpreter is killed with SIGKILL.

The servers here are real ``redis-server`` processes; the "parent dies" cases run a separate
Python interpreter that starts a server and then exits (or is killed) without stopping it.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest

from faulttol_redis.testing import RedisServer

LINUX = sys.platform.startswith("linux")


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a zombie holds no port or file)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def leftovers() -> Iterator[list[tuple[int, str]]]:
    """(pid, directory) pairs a test saw; whatever the outcome, they are cleaned up after it
    (so that a failing run against broken code leaves nothing behind either)."""
    seen: list[tuple[int, str]] = []
    yield seen
    for pid, directory in seen:
        if running(pid):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


def server_dir(server: RedisServer) -> str:
    log = server.log_path
    assert log is not None
    return os.path.dirname(log)


def run_child(code: str, *, expect_killed: bool = False) -> tuple[int, str]:
    """Run ``code`` in a fresh interpreter; it prints ``<pid> <dir>`` of the server it made."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60,
    )
    if expect_killed:
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
    pid_text, directory = proc.stdout.split()
    return int(pid_text), directory


def test_a_dropped_server_is_killed_and_its_directory_removed(
    leftovers: list[tuple[int, str]],
) -> None:
    server = RedisServer()
    pid, directory = server.pid, server_dir(server)
    assert pid is not None and running(pid) and os.path.isdir(directory)
    leftovers.append((pid, directory))
    del server
    gc.collect()
    assert wait_until(lambda: not running(pid)), f"redis-server {pid} outlived its RedisServer"
    assert not os.path.exists(directory)


def test_a_dropped_paused_server_is_killed(leftovers: list[tuple[int, str]]) -> None:
    server = RedisServer()
    pid, directory = server.pid, server_dir(server)
    assert pid is not None
    leftovers.append((pid, directory))
    server.pause()
    del server
    gc.collect()
    assert wait_until(lambda: not running(pid)), f"paused redis-server {pid} was left behind"
    assert not os.path.exists(directory)


def test_a_server_in_a_reference_cycle_is_killed_by_the_garbage_collector(
    leftovers: list[tuple[int, str]],
) -> None:
    server = RedisServer()
    pid, directory = server.pid, server_dir(server)
    assert pid is not None
    leftovers.append((pid, directory))
    holder: dict[str, object] = {"server": server}
    holder["self"] = holder  # only the cycle collector frees this
    server.owner = holder  # type: ignore[attr-defined]
    del server, holder
    gc.collect()
    assert wait_until(lambda: not running(pid))
    assert not os.path.exists(directory)


def test_a_restarted_then_dropped_server_leaves_nothing(
    leftovers: list[tuple[int, str]],
) -> None:
    server = RedisServer()
    first = server.pid
    assert first is not None
    leftovers.append((first, server_dir(server)))
    server.restart()  # a new process: the cleanup must follow it
    second, directory = server.pid, server_dir(server)
    assert second is not None and second != first
    leftovers.append((second, directory))
    del server
    gc.collect()
    assert wait_until(lambda: not running(first) and not running(second))
    assert not os.path.exists(directory)


def test_a_stopped_server_is_not_touched_again_when_dropped(
    leftovers: list[tuple[int, str]],
) -> None:
    server = RedisServer()
    pid, directory = server.pid, server_dir(server)
    assert pid is not None
    leftovers.append((pid, directory))
    server.stop()
    assert not running(pid) and not os.path.exists(directory)
    del server
    gc.collect()  # the finalizer has nothing left to do and must not fail


def test_a_server_left_running_at_interpreter_exit_is_killed(
    leftovers: list[tuple[int, str]],
) -> None:
    pid, directory = run_child(
        """
        import os
        from faulttol_redis.testing import RedisServer
        server = RedisServer()  # never stopped: a module global at exit
        print(server.pid, os.path.dirname(server.log_path), flush=True)
        """
    )
    leftovers.append((pid, directory))
    assert wait_until(lambda: not running(pid)), f"redis-server {pid} outlived the interpreter"
    assert not os.path.exists(directory)


def test_a_server_dropped_in_a_child_interpreter_does_not_outlive_it(
    leftovers: list[tuple[int, str]],
) -> None:
    pid, directory = run_child(
        """
        import os
        from faulttol_redis.testing import RedisServer

        def start():
            server = RedisServer()  # dropped when start() returns, never stopped
            print(server.pid, os.path.dirname(server.log_path), flush=True)

        start()
        """
    )
    leftovers.append((pid, directory))
    assert wait_until(lambda: not running(pid)), f"redis-server {pid} outlived the interpreter"
    assert not os.path.exists(directory)


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_server_dies_with_its_interpreter_killed_by_sigkill(
    leftovers: list[tuple[int, str]],
) -> None:
    pid, directory = run_child(
        """
        import os, signal
        from faulttol_redis.testing import RedisServer
        server = RedisServer()
        print(server.pid, os.path.dirname(server.log_path), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no finalizer
        """,
        expect_killed=True,
    )
    leftovers.append((pid, directory))  # the directory stays: nothing ran to remove it
    assert wait_until(lambda: not running(pid)), (
        f"redis-server {pid} outlived its SIGKILLed parent"
    )
