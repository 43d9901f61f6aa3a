"""The Redis providers are built on the generic ones by composition: what they hold, the
config they pass, the breaker registry, typed status rows, and the 0.1.0 names that only
existed through inheritance (deprecated), against real ``redis-server`` processes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import faulttol
from faulttol import (
    AsyncOrderedProvider,
    CircuitBreakerRegistry,
    FailoverStrategy,
    OrderedProvider,
    ProviderConfig,
)
from faulttol_redis import DatabaseConfig, DatabaseStatus, FailoverProvider, MultiDbConfig
from faulttol_redis.asyncio import FailoverProvider as AsyncFailoverProvider
from faulttol_redis.testing import RedisServer

Servers = Callable[[int], list[RedisServer]]
TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def config_for(servers: list[RedisServer], **kwargs: Any) -> MultiDbConfig:
    kwargs.setdefault("health_check_probe_delay", 0.01)
    dbs = [
        DatabaseConfig("127.0.0.1", s.port, name=f"db{i}", client_kwargs=dict(TIMEOUTS))
        for i, s in enumerate(servers, start=1)
    ]
    return MultiDbConfig(dbs, **kwargs)


def test_multidb_config_composes_one_provider_config() -> None:
    config = MultiDbConfig([DatabaseConfig(port=1), DatabaseConfig(port=2)],
                           failover_strategy="weighted", failover_delay=3.0,
                           auto_failback_interval=30.0)
    provider_config = config.provider_config
    assert isinstance(provider_config, ProviderConfig)
    assert provider_config.failover_strategy is FailoverStrategy.WEIGHTED
    assert provider_config.failover_delay == 3.0
    assert provider_config.auto_failback_interval == 30.0
    assert provider_config.auto_failback_grace_period == config.auto_failback_grace_period
    assert provider_config.circuit_breaker is config.circuit_breaker
    assert provider_config.retry is config.retry
    assert provider_config.fallback_exceptions == config.fallback_exceptions
    # the enum is accepted where the strings are
    assert MultiDbConfig([DatabaseConfig()], failover_strategy=FailoverStrategy.WEIGHTED)


def test_the_sync_provider_holds_an_ordered_provider_it_does_not_subclass(
    redis_servers: Servers,
) -> None:
    assert not issubclass(FailoverProvider, OrderedProvider)
    registry = CircuitBreakerRegistry()
    with FailoverProvider(config_for(redis_servers(2)), start_health_checks=False,
                          breaker_registry=registry) as provider:
        ordered = provider.ordered_provider
        assert isinstance(ordered, OrderedProvider)
        assert ordered.config == provider.config.provider_config
        assert [db.config for db in ordered.targets] == list(provider.databases)
        assert registry.find("faulttol-redis:db1") is provider.breaker(1)
        assert registry.find("faulttol-redis:db2") is provider.breaker(2)
        rows: list[DatabaseStatus] = provider.status()
        assert set(rows[0]) == set(DatabaseStatus.__annotations__) | {"endpoint"}
        assert set(DatabaseStatus.__annotations__) >= set(faulttol.TargetStatus.__annotations__)
        assert rows[0]["endpoint"].startswith("127.0.0.1:")
        with pytest.raises(ValueError, match=r"index must be an integer in 1\.\.2"):
            provider.set_active_index(3)


def test_the_sync_provider_speaks_of_databases_and_the_old_names_warn(
    redis_servers: Servers,
) -> None:
    servers = redis_servers(2)
    with FailoverProvider(config_for(servers), start_health_checks=False) as provider:
        with pytest.warns(DeprecationWarning, match="databases"):
            records = provider.targets
        assert [r.config for r in records] == list(provider.databases)
        with pytest.warns(DeprecationWarning, match="client"):
            assert provider.active is records[0]
        with pytest.warns(DeprecationWarning, match="ordered_provider"):
            assert provider.execute(lambda db: db.client.ping()) is True
        with pytest.warns(DeprecationWarning, match="ordered_provider"):
            assert provider.execute_with(lambda db: db.client.ping()) is True
        with pytest.warns(DeprecationWarning, match="start_on_first_healthy"):
            assert provider.start_on_first_healthy() == 1
        with pytest.warns(DeprecationWarning, match="remove_database"):
            assert provider.remove_target(2) is records[1]
        assert len(provider) == 1
        with pytest.warns(DeprecationWarning, match="add_database"):
            assert provider.add_target(records[1], name="again") == 2
        servers[0].kill()
        with pytest.raises(ValueError, match=r"database 1 .* unhealthy"):
            provider.set_active_index(1)


async def test_the_asyncio_provider_holds_an_async_ordered_provider(
    redis_servers: Servers,
) -> None:
    assert not issubclass(AsyncFailoverProvider, AsyncOrderedProvider)
    assert not issubclass(AsyncFailoverProvider, OrderedProvider)
    registry = CircuitBreakerRegistry()
    provider = AsyncFailoverProvider(config_for(redis_servers(2)), start_health_checks=False,
                                     breaker_registry=registry)
    try:
        await provider.initialize()
        assert isinstance(provider.ordered_provider, AsyncOrderedProvider)
        assert registry.find("faulttol-redis:db2") is provider.breaker(2)
        assert provider.status()[1]["endpoint"].startswith("127.0.0.1:")
        with pytest.warns(DeprecationWarning, match="ordered_provider"):
            assert await provider.execute_with_async(lambda db: db.client.ping()) is True
        with pytest.warns(DeprecationWarning, match="ordered_provider"):
            assert await provider.execute_async(lambda db: db.client.ping()) is True
        with pytest.warns(DeprecationWarning, match="remove_database"):
            await provider.remove_target(2)
        assert len(provider) == 1
    finally:
        await provider.aclose()
    assert provider.closed


def test_the_import_contract_forbids_every_private_faulttol_module() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # tomli, a dependency on 3.10, is what became tomllib
        import tomli as tomllib

    root = Path(__file__).resolve().parents[2]
    settings = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(
        c for c in settings["tool"]["importlinter"]["contracts"]
        if c["name"] == "nothing outside faulttol imports a private faulttol module"
    )
    assert contract["source_modules"] == ["faulttol_redis", "faulttol_redis.*"]
    private = {
        ".".join(path.relative_to(root).with_suffix("").parts)
        for path in (root / "faulttol").rglob("_*.py")
        if path.name != "__init__.py"
    }
    assert set(contract["forbidden_modules"]) == private
