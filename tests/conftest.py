"""The suite's real ``redis-server`` fixtures come from faulttol_redis's own pytest plugin.

``redis_server`` (one fresh server per test), ``redis_servers(n)`` (a factory) and
``redis_cluster`` are defined in :mod:`faulttol_redis.testing.pytest_plugin`, which the
package registers as the ``pytest11`` entry point ``faulttol_redis``: the suite uses them the
way a user's project does. Every server a test started is stopped at teardown, whatever the
test's outcome, including paused (SIGSTOPped) ones.
"""

from __future__ import annotations

import pytest

PLUGIN = "faulttol_redis"


def pytest_configure(config: pytest.Config) -> None:
    """Fail fast, and say why, when the plugin is not registered (an install that predates
    the entry point) or was disabled with ``-p no:faulttol_redis``."""
    if not config.pluginmanager.has_plugin(PLUGIN):
        raise pytest.UsageError(
            f"the {PLUGIN} pytest plugin (faulttol_redis.testing.pytest_plugin) is not loaded: "
            "reinstall the package (pip install -e '.[dev]') so that its pytest11 entry point "
            "is registered, and do not run with -p no:faulttol_redis"
        )
