"""The restructuring of issue 8 keeps every import path working and leaves no import cycle.

``faulttol/breaker.py`` was split by concept (config, metrics, the ``State`` enum); every name
that could be imported from ``faulttol.breaker`` before still can, without a warning. Client
construction moved out of ``faulttol_redis.config``; ``DatabaseConfig.create_client`` and
``create_async_client`` still work but warn.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import grimp
import pytest

import faulttol
import faulttol.breaker
from faulttol import events, window
from faulttol._clock import Clock, SystemClock, resolve_clock

# Every name (other than stdlib/typing helpers and type variables) importable from
# faulttol.breaker before the split: its __all__ plus the faulttol names it imported.
BREAKER_NAMES = (
    "CallNotPermittedError",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerCounters",
    "CircuitBreakerEvent",
    "CircuitBreakerEvents",
    "CircuitBreakerMetrics",
    "CircuitBreakerOnCallNotPermittedEvent",
    "CircuitBreakerOnErrorEvent",
    "CircuitBreakerOnFailureRateExceededEvent",
    "CircuitBreakerOnIgnoredErrorEvent",
    "CircuitBreakerOnResetEvent",
    "CircuitBreakerOnSlowCallRateExceededEvent",
    "CircuitBreakerOnStateTransitionEvent",
    "CircuitBreakerOnSuccessEvent",
    "Clock",
    "ConfigTypeError",
    "CountWindow",
    "DEFAULT_AUTOMATIC_TRANSITION_FROM_OPEN_TO_HALF_OPEN_ENABLED",
    "DEFAULT_FAILURE_RATE_THRESHOLD",
    "DEFAULT_IGNORE_EXCEPTIONS",
    "DEFAULT_MAX_WAIT_DURATION_IN_HALF_OPEN_STATE",
    "DEFAULT_MINIMUM_NUMBER_OF_CALLS",
    "DEFAULT_MINIMUM_NUMBER_OF_FAILURES",
    "DEFAULT_PERMITTED_NUMBER_OF_CALLS_IN_HALF_OPEN_STATE",
    "DEFAULT_RECORD_EXCEPTIONS",
    "DEFAULT_SLIDING_WINDOW_SIZE",
    "DEFAULT_SLIDING_WINDOW_TYPE",
    "DEFAULT_SLOW_CALL_DURATION_THRESHOLD",
    "DEFAULT_SLOW_CALL_RATE_THRESHOLD",
    "DEFAULT_WAIT_DURATION_IN_OPEN_STATE",
    "Event",
    "SlidingWindowType",
    "Snapshot",
    "State",
    "SystemClock",
    "TimeWindow",
    "rate",
    "resolve_clock",
)


def test_every_name_importable_from_faulttol_breaker_before_still_is_without_warning() -> None:
    # A fresh interpreter with warnings as errors: a deprecation shim or a warning at import
    # time fails the import.
    code = f"from faulttol.breaker import {', '.join(BREAKER_NAMES)}"
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr


def test_faulttol_breaker_reexports_the_same_objects() -> None:
    breaker = faulttol.breaker
    assert breaker.State is faulttol.State
    assert breaker.CircuitBreakerConfig is faulttol.CircuitBreakerConfig
    assert breaker.SlidingWindowType is faulttol.SlidingWindowType
    assert breaker.CircuitBreakerMetrics is faulttol.CircuitBreakerMetrics
    assert breaker.CircuitBreakerCounters is faulttol.CircuitBreakerCounters
    assert breaker.ConfigTypeError is faulttol.ConfigTypeError
    assert breaker.CircuitBreakerOnStateTransitionEvent is (
        events.CircuitBreakerOnStateTransitionEvent
    )
    assert (breaker.CountWindow, breaker.TimeWindow, breaker.Snapshot, breaker.rate) == (
        window.CountWindow, window.TimeWindow, window.Snapshot, window.rate
    )
    assert (breaker.Clock, breaker.SystemClock, breaker.resolve_clock) == (
        Clock, SystemClock, resolve_clock
    )
    assert set(breaker.__all__) <= set(BREAKER_NAMES)
    default = faulttol.CircuitBreakerConfig()
    assert default.sliding_window_size == breaker.DEFAULT_SLIDING_WINDOW_SIZE


def test_config_type_error_is_exported_by_faulttol() -> None:
    from faulttol import ConfigTypeError
    from faulttol.validation import ConfigTypeError as from_validation

    assert ConfigTypeError is from_validation
    assert "ConfigTypeError" in faulttol.__all__
    assert issubclass(ConfigTypeError, TypeError) and issubclass(ConfigTypeError, ValueError)


def _cycles(package: str, *, skip: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Import cycles among ``package``'s modules (module-level, function-level and
    TYPE_CHECKING imports alike), each as importer -> ... -> importer."""
    graph = grimp.build_graph(package, cache_dir=None)
    found: set[tuple[str, ...]] = set()
    for module in sorted(graph.modules):
        if module.startswith(skip):
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith(skip):
                continue
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain is not None:
                found.add((module, *chain))
    return sorted(found)


def test_faulttol_modules_do_not_import_each_other_in_a_cycle() -> None:
    # breaker imported events and events imported breaker (for State) before the split.
    assert _cycles("faulttol") == []


@pytest.mark.parametrize(
    "module",
    ["faulttol_redis.config", "faulttol_redis.healthcheck", "faulttol_redis._cluster",
     "faulttol_redis._connection", "faulttol_redis._clients", "faulttol_redis._database"],
)
def test_faulttol_redis_config_modules_are_in_no_import_cycle(module: str) -> None:
    # config imported _cluster and healthcheck, both of which imported config back.
    assert module in grimp.build_graph("faulttol_redis", cache_dir=None).modules
    cycles = [c for c in _cycles("faulttol_redis") if module in c]
    assert cycles == []


def test_importing_faulttol_and_faulttol_redis_warns_nothing() -> None:
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import faulttol, faulttol_redis"],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 0, run.stderr


# --- client construction out of the config ---------------------------------------------------


def _shape(client: Any) -> tuple[Any, ...]:
    """What makes two standalone clients built for the same database the same."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    plain = sorted(  # the options given; not the per-client helper objects redis-py adds
        (k, v) for k, v in kwargs.items() if v is None or isinstance(v, (bool, int, float, str))
    )
    retry = kwargs.get("retry")
    retries = retry.get_retries() if hasattr(retry, "get_retries") else retry._retries
    return (type(client), pool.connection_class, plain, type(retry), retries)


def test_create_client_builds_what_the_config_method_built() -> None:
    from faulttol_redis import DatabaseConfig, create_client

    config = DatabaseConfig("127.0.0.1", 7001, client_kwargs={"socket_timeout": 0.5})
    with pytest.warns(DeprecationWarning, match=r"faulttol_redis\.create_client"):
        old = config.create_client(socket_connect_timeout=0.25)
    new = create_client(config, socket_connect_timeout=0.25)
    try:
        assert _shape(new) == _shape(old)
        assert new.connection_pool.connection_kwargs["socket_timeout"] == 0.5
        assert new.connection_pool.connection_kwargs["socket_connect_timeout"] == 0.25
    finally:
        old.close()
        new.close()


async def test_create_async_client_builds_what_the_config_method_built() -> None:
    from faulttol_redis import DatabaseConfig, create_async_client

    config = DatabaseConfig(url="redis://127.0.0.1:7002/3")
    with pytest.warns(DeprecationWarning, match=r"faulttol_redis\.create_async_client"):
        old = config.create_async_client()
    new = create_async_client(config)
    try:
        assert _shape(new) == _shape(old)
        assert new.connection_pool.connection_kwargs["db"] == 3
    finally:
        await old.aclose()
        await new.aclose()


def test_create_client_refuses_to_move_the_endpoint() -> None:
    from faulttol_redis import DatabaseConfig, create_client

    with pytest.raises(ValueError, match="cannot override 'host'"):
        create_client(DatabaseConfig(), host="elsewhere")


_LIBRARY_RUN = """
import asyncio, sys
from faulttol_redis import DatabaseConfig, FailoverRedis, MultiDbConfig
from faulttol_redis.asyncio import FailoverRedis as AsyncFailoverRedis

config = MultiDbConfig([DatabaseConfig("127.0.0.1", int(sys.argv[1]))])
with FailoverRedis.from_config(config) as client:
    assert client.ping()

async def main() -> None:
    async with AsyncFailoverRedis.from_config(config) as client:
        assert await client.ping()

asyncio.run(main())
"""


def test_the_failover_clients_use_no_deprecated_client_construction(redis_server: Any) -> None:
    # With DeprecationWarning as an error, the library's own call sites must not go through
    # DatabaseConfig.create_client / create_async_client.
    run = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", _LIBRARY_RUN,
         str(redis_server.port)],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert run.returncode == 0, run.stderr
