"""Config fuzzing (issue 11, item 3): every field of every config class gets values of every
kind; the only outcomes are a config, or a ``ValueError``/``TypeError`` that names the field,
and no secret ever shows in an error or a repr.

Complements the hand-written tables of ``tests/test_config_validation.py``. The classes are
discovered, not listed: every public class named ``*Config`` exported by ``faulttol`` or
``faulttol_redis``, and every ``*HealthCheck`` of ``faulttol_redis.healthcheck``, with the
parameters of its constructor (``inspect.signature``: a dataclass's fields), so a new config
class or field is fuzzed without touching this file.

Values: None, bools, huge and negative ints, floats with NaN, infinities and negative zero,
``Decimal`` (whose NaN refuses comparisons) and ``Fraction``, strings, bytes, lists, dicts,
plain objects, callables, exception types, enum members, other configs — and values that
carry a secret where secrets go (the password of a ``redis://`` URL, ``client_kwargs``'
password, a health check's password).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import math
import os
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faulttol import CircuitBreakerConfig, RetryConfig, SlidingWindowType
from faulttol.health import HealthCheckPolicy
from faulttol_redis import DatabaseConfig
from faulttol_redis.healthcheck import PingHealthCheck

SECRET = "fz-S3cr3t-9d2e"


def _discover() -> list[tuple[str, type]]:
    found: dict[str, type] = {}
    for module_name in ("faulttol", "faulttol_redis"):
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and name.endswith("Config"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    checks = importlib.import_module("faulttol_redis.healthcheck")
    for name in checks.__all__:
        obj = getattr(checks, name)
        if (inspect.isclass(obj) and name.endswith("HealthCheck")
                and not inspect.isabstract(obj) and name != "HealthCheck"):
            found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(found.items())


CLASSES = _discover()

REQUIRED: dict[str, dict[str, Any]] = {
    "MultiDbConfig": {"databases": [DatabaseConfig()]},
}
"""Arguments without a default, per class name (the rest are left to their defaults)."""


def _fields(cls: type) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if f.init]
    return [p.name for p in inspect.signature(cls).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


CASES = [(name, cls, field) for name, cls in CLASSES for field in _fields(cls)]


class _Opaque:
    """An object of no kind any config expects."""


class _Color(enum.Enum):
    RED = "red"


def _one() -> int:
    return 1


_SECRET_VALUES = [
    f"redis://user:{SECRET}@127.0.0.1:6379/0",
    f"rediss://:{SECRET}@127.0.0.1:6380",
    f"redis://default:{SECRET}@127.0.0.1:notaport/0",
    f"http://user:{SECRET}@127.0.0.1:9443",
    {"password": SECRET},
    {"username": "app", "password": SECRET, "db": -1},
    {"password": SECRET, "socket_timeout": math.nan},
    [f"redis://user:{SECRET}@127.0.0.1:6379/0"],
]
"""Values with a secret in a secret's place: it must not be shown, whatever field gets them."""

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 65535, 65536, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e-300, 1e300]),
    st.sampled_from([Decimal("NaN"), Decimal("sNaN"), Decimal("1.5"), Decimal("-1"),
                     Fraction(1, 3), Fraction(-1, 2)]),
    st.text(max_size=12),
    st.sampled_from(["", "ordered", "weighted", "random", "healthy_all", "localhost",
                     "redis://127.0.0.1:6379/0", "h/0", "https://h", "${NOT_SET}"]),
    st.binary(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from([
        _Opaque(), _one, len, lambda *a: None, ValueError, (ValueError,), [KeyError],
        (ValueError, "x"), ValueError("x"), type, _Color.RED, SlidingWindowType.TIME_BASED,
        HealthCheckPolicy.HEALTHY_ANY, DatabaseConfig(), [DatabaseConfig()],
        [DatabaseConfig(), DatabaseConfig()], PingHealthCheck(), [PingHealthCheck()],
        CircuitBreakerConfig(), RetryConfig(), {"sliding_window_size": 1}, frozenset({1}),
        range(3), iter([1]), 1j,
    ]),
    st.sampled_from(_SECRET_VALUES),
)


SECRET_FIELDS = ("url", "password", "client_kwargs", "credential")
"""Fields (by a part of their name) that take secrets or URLs that may carry one. A value
with a secret given to another field (a URL as a ``name``) is not a secret there: it may be
shown, as any name is."""


def _carries_secret(field: str, value: object) -> bool:
    return SECRET in repr(value) and any(part in field for part in SECRET_FIELDS)


def _names_field(field: str, value: object, message: str) -> bool:
    """The message names the field, or, for a mapping (``client_kwargs``), the key at fault."""
    if field in message:
        return True
    return isinstance(value, dict) and any(
        isinstance(key, str) and key and key in message for key in value
    )


def _shown(error: BaseException) -> str:
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(parts) < 20:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return " ".join(parts)


@pytest.mark.parametrize(("name", "cls", "field"), CASES,
                         ids=[f"{name.rsplit('.', 1)[1]}.{field}" for name, _, field in CASES])
@settings(max_examples=int(os.environ.get("FAULTTOL_FUZZ_EXAMPLES", "40")), deadline=None,
          derandomize=os.environ.get("FAULTTOL_FUZZ_RANDOM") is None,
          suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_any_value_builds_or_names_the_field(name: str, cls: type, field: str,
                                             value: object) -> None:
    kwargs = dict(REQUIRED.get(cls.__name__, {}))
    kwargs[field] = value
    build: Callable[..., object] = cls
    try:
        config = build(**kwargs)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert _names_field(field, value, message), (
            f"{cls.__name__}({field}={value!r}): {message!r}"
        )
        if _carries_secret(field, value):
            assert SECRET not in _shown(error), _shown(error)
        return
    # accepted: the config shows no secret and compares with itself
    if _carries_secret(field, value):
        assert SECRET not in repr(config), repr(config)
        assert SECRET not in str(config), str(config)


def test_every_config_class_is_discovered() -> None:
    names = {cls.__name__ for _, cls in CLASSES}
    assert {"CircuitBreakerConfig", "RetryConfig", "ProviderConfig", "BulkheadConfig",
            "ThreadPoolBulkheadConfig", "RateLimiterConfig", "TimeLimiterConfig",
            "HedgeConfig", "MultiDbConfig", "DatabaseConfig", "PingHealthCheck",
            "LagAwareHealthCheck"} <= names, names
