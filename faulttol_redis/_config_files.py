"""Building a :class:`~faulttol_redis.MultiDbConfig` from plain data: a mapping or a TOML file.

Why: operators configure services with files, not Python. The data uses the constructors'
own parameter names, so the Python reference is also the file reference:

* top-level keys are ``MultiDbConfig``'s parameters; ``databases`` is a list of tables of
  ``DatabaseConfig`` parameters (``client_kwargs`` a table passed to redis-py as is);
* ``circuit_breaker`` and ``retry`` are tables of ``CircuitBreakerConfig`` / ``RetryConfig``
  fields applied over the client's defaults (so a table that sets only
  ``failure_rate_threshold`` still records only connection errors); durations are seconds;
  exception lists (and the predicate fields) are dotted names resolved by import;
* ``health_checks`` is a list of tables whose ``type`` is ``"ping"``, ``"lag_aware"`` or the
  dotted name of a health-check class, the other keys its constructor's parameters (a bare
  string is a type with its defaults: ``health_checks = ["ping"]``);
* enums (``health_check_policy``, ``sliding_window_type``, ``cluster_policy``) are given by
  name, in any case;
* a setting that takes ``None`` to mean "off" (``hang_detection_after``, ...) takes ``false``
  in TOML, which has no null;
* ``${NAME}`` inside any string is replaced by the environment variable ``NAME`` (``$${``
  writes a literal ``${``), so secrets stay out of the file.

Every error is a ``ValueError`` (``ConfigTypeError`` for a value of the wrong kind) that starts
with the path of the offending key (``databases[1].pasword``); a value read from the
environment never appears in one.
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from faulttol import CircuitBreakerConfig, ConfigTypeError, RetryConfig, SlidingWindowType
from faulttol.health import HealthCheckPolicy
from faulttol.validation import describe

from ._database import DatabaseConfig
from .healthcheck import LagAwareHealthCheck, PingHealthCheck

if sys.version_info >= (3, 11):
    import tomllib as _toml
else:  # pragma: no cover - exercised on Python 3.10 only
    _toml = importlib.import_module("tomli")

__all__ = [
    "ENV_REFERENCE", "HEALTH_CHECK_TYPES", "expand_environment", "load_multidb",
    "load_multidb_toml", "read_toml", "resolve_name",
]

ENV_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")
"""``${NAME}`` (an environment variable) or ``$${...}`` (a literal ``${...}``)."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

HEALTH_CHECK_TYPES: dict[str, type[Any]] = {
    "ping": PingHealthCheck,
    "lag_aware": LagAwareHealthCheck,
}
"""The short names a ``health_checks`` table's ``type`` may use."""

_OPTIONAL_SECONDS = frozenset({"auto_failback_interval", "hang_detection_after",
                               "hedge_reads_after"})
"""MultiDbConfig settings where ``None`` (``false`` in TOML) means off."""

_EXCEPTION_LISTS = frozenset({"record_exceptions", "ignore_exceptions", "retry_exceptions"})
_CALLABLES = frozenset({"wait_interval_function_in_open_state", "record_exception",
                        "ignore_exception", "record_result", "retry_on_exception",
                        "retry_on_result"})

E = TypeVar("E", bound=Enum)
T = TypeVar("T")


# --- paths and errors ----------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _located(path: str, exc: ValueError) -> ValueError:
    """``exc`` again, its message prefixed with ``path`` (same class when it is ours)."""
    message = f"{path}: {exc}" if path else str(exc)
    if type(exc) is ConfigTypeError:
        return ConfigTypeError(message)
    return ValueError(message)


def _table(path: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigTypeError(f"{path} must be a table (a mapping), got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigTypeError(f"{path} keys must be str, got {describe(key)}")
    return value


def _check_keys(path: str, table: Mapping[str, Any], allowed: set[str] | frozenset[str],
                otherwise: str = "") -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else otherwise
            raise ValueError(
                f"{_join(path, key)}: unknown key{hint} (allowed: {', '.join(sorted(allowed))})"
            )


def _parameters(target: Callable[..., Any]) -> set[str]:
    """The keyword-usable parameter names of a constructor."""
    return {
        name for name, p in inspect.signature(target).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


# --- environment variables -----------------------------------------------------------------


def expand_environment(path: str, value: Any, environ: Mapping[str, str]) -> Any:
    """``value`` with every ``${NAME}`` in its strings replaced, recursively."""
    if isinstance(value, str):
        return _expand_string(path, value, environ)
    if isinstance(value, Mapping):
        return {k: expand_environment(_join(path, str(k)), v, environ) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [expand_environment(f"{path}[{i}]", v, environ) for i, v in enumerate(value)]
    return value


def _expand_string(path: str, text: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped, name = match.group(1), match.group(2)
        if escaped:
            return "${" + name + "}"
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(
                f"{path}: ${{{name}}} is not a valid environment variable reference "
                "(letters, digits and _, not starting with a digit; write $${ for a literal ${)"
            )
        if name not in environ:
            raise ValueError(f"{path}: environment variable {name} is not set")
        return environ[name]

    return ENV_REFERENCE.sub(replace, text)


# --- value conversions ---------------------------------------------------------------------


def _enum(path: str, value: object, kind: type[E]) -> E:
    if isinstance(value, kind):
        return value
    names = ", ".join(member.name for member in kind)
    if isinstance(value, str):
        for member in kind:
            if value.upper() in (member.name, str(member.value).upper()):
                return member
        raise ValueError(f"{path} must be one of {names}, got {value!r}")
    raise ConfigTypeError(f"{path} must be one of {names} (a string), got {describe(value)}")


def resolve_name(path: str, name: object) -> Any:
    """The object a dotted name (``package.module.Name`` or ``package.module:Name``; a bare
    name is a builtin) refers to, imported on the way."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigTypeError(f"{path} must be a dotted name (a non-empty str), got "
                              f"{describe(name)}")
    module_name, colon, attribute = name.partition(":")
    if colon:
        candidates = [(module_name, attribute)]
    else:
        parts = name.split(".")
        if len(parts) == 1:
            if hasattr(builtins, name):
                return getattr(builtins, name)
            raise ValueError(f"{path}: {name!r} is not importable (no builtin of that name; "
                             "give a dotted name such as redis.exceptions.ConnectionError)")
        candidates = [(".".join(parts[:i]), ".".join(parts[i:]))
                      for i in range(len(parts) - 1, 0, -1)]
    reason = ""
    for module_path, attribute_path in candidates:
        try:
            target: Any = importlib.import_module(module_path)
        except ImportError as exc:
            reason = reason or str(exc)
            continue
        try:
            for part in attribute_path.split("."):
                target = getattr(target, part)
        except AttributeError:
            reason = reason or f"module {module_path!r} has no attribute {attribute_path!r}"
            continue
        return target
    raise ValueError(f"{path}: {name!r} is not importable ({reason})")


def _exception_type(path: str, item: object) -> type[BaseException]:
    target = item if isinstance(item, type) else resolve_name(path, item)
    if not (isinstance(target, type) and issubclass(target, BaseException)):
        raise ValueError(f"{path}: {item!r} is not an exception class")
    return target


def _exception_types(path: str, value: object) -> tuple[type[BaseException], ...]:
    if isinstance(value, (str, type)):
        return (_exception_type(path, value),)
    if not isinstance(value, (list, tuple)):
        raise ConfigTypeError(f"{path} must be a list of exception class names, got "
                              f"{describe(value)}")
    return tuple(_exception_type(f"{path}[{i}]", item) for i, item in enumerate(value))


def _callable(path: str, value: object) -> Callable[..., Any]:
    target = value if callable(value) else resolve_name(path, value)
    if not callable(target):
        raise ValueError(f"{path}: {value!r} is not callable")
    return target


def _optional_seconds(path: str, value: object) -> object:
    if value is False or value is None:
        return None
    return value


# --- the tables ----------------------------------------------------------------------------


def _policy_fields(path: str, value: object, kind: type[Any]) -> dict[str, Any]:
    """A circuit_breaker / retry table as keyword arguments for ``kind``."""
    table = _table(path, value)
    fields = {f.name for f in dataclasses.fields(kind) if f.init}
    _check_keys(path, table, fields)
    converted: dict[str, Any] = {}
    for key, item in table.items():
        where = _join(path, key)
        if key in _EXCEPTION_LISTS:
            converted[key] = _exception_types(where, item)
        elif key in _CALLABLES:
            converted[key] = _callable(where, item)
        elif key == "sliding_window_type":
            converted[key] = _enum(where, item, SlidingWindowType)
        elif key == "max_wait_duration":
            converted[key] = _optional_seconds(where, item)
        else:
            converted[key] = item
    return converted


def _policy(path: str, value: object, base: Any) -> Any:
    if isinstance(value, type(base)):
        return value
    changes = _policy_fields(path, value, type(base))
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as exc:
        raise _located(path, exc) from None


def _database(path: str, value: object) -> DatabaseConfig:
    if isinstance(value, DatabaseConfig):
        return value
    table = _table(path, value)
    _check_keys(path, table, _parameters(DatabaseConfig),
                "; redis client options (password, ssl, socket_timeout...) go in client_kwargs")
    kwargs = dict(table)
    if "client_kwargs" in kwargs:
        kwargs["client_kwargs"] = dict(_table(_join(path, "client_kwargs"),
                                              kwargs["client_kwargs"]))
    try:
        return DatabaseConfig(**kwargs)
    except ValueError as exc:
        raise _located(path, exc) from None


def _databases(path: str, value: object) -> list[DatabaseConfig]:
    if not isinstance(value, (list, tuple)):
        raise ConfigTypeError(f"{path} must be a list of tables, got {describe(value)}")
    return [_database(f"{path}[{i}]", item) for i, item in enumerate(value)]


def _health_check(path: str, value: object) -> Any:
    if isinstance(value, str):
        value = {"type": value}  # "ping": the type alone, with its defaults
    if not isinstance(value, Mapping):
        return value  # an object: MultiDbConfig checks that it is a health check
    table = _table(path, value)
    if "type" not in table:
        raise ValueError(f"{_join(path, 'type')}: missing; give \"ping\", \"lag_aware\" or "
                         "the dotted name of a health-check class")
    kind_name = table["type"]
    kind = HEALTH_CHECK_TYPES.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        kind = resolve_name(_join(path, "type"), kind_name)
        if not isinstance(kind, type):
            raise ValueError(f"{_join(path, 'type')}: {kind_name!r} is not a class")
    kwargs = {k: v for k, v in table.items() if k != "type"}
    _check_keys(path, kwargs, _parameters(kind))
    if "cluster_policy" in kwargs:
        kwargs["cluster_policy"] = _enum(_join(path, "cluster_policy"),
                                         kwargs["cluster_policy"], HealthCheckPolicy)
    try:
        return kind(**kwargs)
    except ValueError as exc:
        raise _located(path, exc) from None


def _health_checks(path: str, value: object) -> object:
    if not isinstance(value, (list, tuple)):
        return value  # MultiDbConfig names the field and what it takes
    return [_health_check(f"{path}[{i}]", item) for i, item in enumerate(value)]


# --- entry points --------------------------------------------------------------------------


def load_multidb(
    build: Callable[..., T], mapping: Mapping[str, Any], *,
    base_circuit_breaker: CircuitBreakerConfig, base_retry: RetryConfig,
    environ: Mapping[str, str] | None = None,
) -> T:
    """``build(...)`` (``MultiDbConfig``) from ``mapping`` (see the module docstring for the
    format); ``circuit_breaker`` and ``retry`` tables apply over the ``base_*`` configs."""
    data = _table("config", mapping)
    data = expand_environment("", data, os.environ if environ is None else environ)
    _check_keys("", data, _parameters(build))
    if "databases" not in data:
        raise ValueError("databases: missing; give a list of tables, one per database")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "databases":
            kwargs[key] = _databases(key, value)
        elif key == "circuit_breaker":
            kwargs[key] = _policy(key, value, base_circuit_breaker)
        elif key == "retry":
            kwargs[key] = _policy(key, value, base_retry)
        elif key == "fallback_exceptions":
            kwargs[key] = _exception_types(key, value)
        elif key == "health_checks":
            kwargs[key] = _health_checks(key, value)
        elif key == "health_check_policy":
            kwargs[key] = _enum(key, value, HealthCheckPolicy)
        elif key in _OPTIONAL_SECONDS:
            kwargs[key] = _optional_seconds(key, value)
        else:
            kwargs[key] = value
    return build(**kwargs)


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tables of the TOML file at ``path`` (``ValueError`` naming the file when it is not
    valid TOML; ``OSError`` when it cannot be read)."""
    raw = Path(path).read_bytes()
    try:
        data: dict[str, Any] = _toml.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{os.fspath(path)}: not UTF-8 text") from None
    except _toml.TOMLDecodeError as exc:
        raise ValueError(f"{os.fspath(path)}: not valid TOML: {exc}") from None
    return data


def load_multidb_toml(
    build: Callable[..., T], path: str | os.PathLike[str], *,
    base_circuit_breaker: CircuitBreakerConfig, base_retry: RetryConfig,
    environ: Mapping[str, str] | None = None,
) -> T:
    """:func:`load_multidb` of the TOML file at ``path``."""
    return load_multidb(build, read_toml(path), base_circuit_breaker=base_circuit_breaker,
                        base_retry=base_retry, environ=environ)
