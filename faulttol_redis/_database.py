"""One Redis database: :class:`DatabaseConfig`, an immutable, validated record.

It says where the database is (host and port, or a URL), how to talk to it (the options of
its client) and how it ranks (weight, name); it builds no client: that is
:func:`faulttol_redis.create_client`'s job (``_clients``), to which the deprecated
``create_client`` / ``create_async_client`` methods delegate. Health checks import this
module for the type of the database they probe; it imports none of them.

Secrets (passwords in URLs, any ``client_kwargs`` key that looks like a password, token,
secret, key or credential) never appear in a ``repr``, a ``str`` or an error message.
"""

from __future__ import annotations

import urllib.parse
import warnings
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from redis.connection import parse_url

from faulttol import ConfigTypeError
from faulttol.validation import (
    check_bool,
    check_host,
    check_non_negative,
    check_port,
    check_str,
    describe,
)

from . import _clients
from ._clients import RESERVED_CLIENT_KWARGS
from ._secrets import masked_kwargs, masked_url

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_WEIGHT",
    "DatabaseConfig",
]

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6379
DEFAULT_WEIGHT = 1.0


def _check_url(url: object) -> None:
    """Refuse a URL whose syntax an unencoded character broke.

    A ``#`` anywhere (redis URLs have no fragment), or an ``@`` after the authority (which
    ends at the first ``/``, ``?`` or ``#``), means a password or user name held a character
    that should have been percent-encoded: parsed as is, its start would become the host
    name (``redis://user:1234#x@db`` is host ``user``, port 1234).
    """
    if not isinstance(url, str):
        raise ConfigTypeError(f"url must be a str or None, got {describe(url)}")
    _scheme, _sep, rest = url.partition("://")
    ends = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
    if "#" in url or (ends and "@" in rest[min(ends):]):
        raise ValueError(
            "url must be a well-formed redis://, rediss:// or unix:// URL: percent-encode "
            "'#', '?', '/' and '@' in a user name or password (%23, %3F, %2F, %40), "
            f"got {masked_url(url)!r}"
        )
    if _scheme.lower() in ("redis", "rediss") and ends:
        path = rest[min(ends):].partition("?")[0]
        if path not in ("", "/") and not (path[1:].isdigit() and path.isascii()):
            raise ValueError(
                "url path must be the database number (redis://host:port/0), "
                f"got {masked_url(url)!r}"
            )


def _check_health_check_url(value: object) -> None:
    """The base URL of a REST API: http(s)://host[:port][/], nothing else."""
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigTypeError(
            f"health_check_url must be a str (an https:// URL) or None, got {describe(value)}"
        )
    shown = masked_url(value)
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        raise ValueError(f"health_check_url must be a well-formed URL, got {shown!r}") from None
    if "://" not in value or parts.scheme.lower() not in ("https", "http"):
        raise ValueError(
            "health_check_url must be an https:// URL such as "
            "https://cluster.example.com:9443 (http:// only with "
            f"LagAwareHealthCheck(allow_insecure_http=True)), got {shown!r}"
        )
    if not parts.hostname:
        raise ValueError(f"health_check_url must name a host, got {shown!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"health_check_url port must be in 1..65535, got {shown!r}")
    if parts.path not in ("", "/"):
        raise ValueError(
            "health_check_url must be the API base (scheme, host and port) without a path: "
            f"the REST paths (/v1/bdbs...) are added to it, got {shown!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"health_check_url must not have a query or a fragment, got {shown!r}"
        )


def _warn_moved(method: str) -> None:
    """The deprecation warning of ``DatabaseConfig.<method>()``, which moved to the
    package (a config builds no clients), pointing at the caller of that method."""
    warnings.warn(
        f"DatabaseConfig.{method}() is deprecated: use "
        f"faulttol_redis.{method}(config, **overrides)",
        DeprecationWarning,
        stacklevel=3,
    )


@dataclass(frozen=True, slots=True, repr=False)
class DatabaseConfig:
    """One Redis database (standalone, or a cluster when ``cluster=True``).

    Give ``host``/``port`` or a ``url`` (``redis://``, ``rediss://`` or ``unix://``); when
    ``url`` is given it wins, and ``host``, ``port`` and ``db`` are read from it. ``db``
    otherwise comes from ``client_kwargs`` (default 0). ``client_kwargs`` go to the client
    (password, ssl, socket timeouts...; not host/port). ``weight`` orders databases under
    the ``"weighted"`` failover strategy. ``health_check_url`` is the base URL of the Redis
    Enterprise REST API for :class:`~faulttol_redis.LagAwareHealthCheck`: ``https://`` (or
    ``http://``, which the check refuses unless ``allow_insecure_http=True``), a host and
    optionally a port, no path, query or fragment.

    ``host`` is a host name or address, never a URL (give that as ``url``). In ``url``, a
    user name or password holding ``#``, ``?`` or ``/`` must be percent-encoded (``%23``,
    ``%3F``, ``%2F``; ``@`` as ``%40`` is safest): a URL whose syntax they break is refused,
    its password masked in the message, rather than read with the wrong host (parsed as is,
    ``redis://user:1234#x@db`` is host ``user``, port 1234). The path of a ``redis://`` URL
    is the database number, nothing else.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    _: KW_ONLY
    url: str | None = None
    weight: float = DEFAULT_WEIGHT
    name: str | None = None
    client_kwargs: Mapping[str, Any] | None = field(default=None, hash=False)
    """Always a read-only mapping after construction (``None`` becomes empty)."""
    cluster: bool = False
    health_check_url: str | None = None
    db: int = field(init=False, default=0)
    """The logical database number (from ``url`` or ``client_kwargs``)."""

    def __post_init__(self) -> None:
        kwargs = {} if self.client_kwargs is None else self.client_kwargs
        if not isinstance(kwargs, Mapping):
            raise ConfigTypeError(
                f"client_kwargs must be a mapping or None, got {describe(kwargs)}"
            )
        for key in kwargs:
            if not isinstance(key, str):
                raise ConfigTypeError(f"client_kwargs keys must be str, got {describe(key)}")
            if key in RESERVED_CLIENT_KWARGS:
                raise ValueError(
                    f"client_kwargs must not set {key!r}: use DatabaseConfig's host/port/url"
                )
        object.__setattr__(self, "client_kwargs", MappingProxyType(dict(kwargs)))
        db: object = kwargs.get("db", 0)
        if self.url is not None:
            _check_url(self.url)
            try:
                parsed = parse_url(self.url)  # type: ignore[no-untyped-call]
            except ValueError:
                raise ValueError(
                    "url must start with redis://, rediss:// or unix:// and be well formed, "
                    f"got {masked_url(self.url)!r}"
                ) from None
            if "path" in parsed:
                object.__setattr__(self, "host", str(parsed["path"]))
                object.__setattr__(self, "port", 0)
            else:
                port = int(parsed.get("port", DEFAULT_PORT))
                if not 1 <= port <= 65535:
                    raise ValueError(
                        f"url port must be in 1..65535, got {port} in {masked_url(self.url)!r}"
                    )
                object.__setattr__(self, "host", str(parsed.get("host", DEFAULT_HOST)))
                object.__setattr__(self, "port", port)
            db = parsed.get("db", db)
        else:
            check_host("host", self.host, hint="give a redis:// URL as url=...")
            check_port("port", self.port)
        if isinstance(db, bool) or not isinstance(db, int):
            raise ConfigTypeError(f"db must be an int >= 0, got {describe(db)}")
        if db < 0:
            raise ValueError(f"db must be an int >= 0, got {db!r}")
        object.__setattr__(self, "db", db)
        object.__setattr__(self, "weight", check_non_negative("weight", self.weight))
        check_str("name", self.name, optional=True)
        check_bool("cluster", self.cluster)
        _check_health_check_url(self.health_check_url)
        if self.cluster and self.db != 0:
            raise ValueError(f"db must be 0 for a cluster database, got {self.db}")

    # --- identity ------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``host:port/db`` (``unix:path/db`` for a socket), without any secret."""
        if self.port == 0:
            return f"unix:{self.host}/{self.db}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.db}"

    @property
    def endpoint_key(self) -> tuple[str, int, int]:
        """What makes two configs the same database: host (case-insensitive), port, db."""
        return (self.host.lower(), self.port, self.db)

    @property
    def display_name(self) -> str:
        """``name`` if given, else :attr:`endpoint`: what logs and events show."""
        return self.name if self.name is not None else self.endpoint

    # --- clients (deprecated: a config builds no clients) --------------------------------

    def create_client(self, **overrides: Any) -> redis.Redis | redis.cluster.RedisCluster:
        """Deprecated: use :func:`faulttol_redis.create_client` (``config``
        first), which this calls after a ``DeprecationWarning``."""
        _warn_moved("create_client")
        return _clients.create_client(self, **overrides)

    def create_async_client(
        self, **overrides: Any
    ) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
        """Deprecated: use :func:`faulttol_redis.create_async_client`
        (``config`` first), which this calls after a ``DeprecationWarning``."""
        _warn_moved("create_async_client")
        return _clients.create_async_client(self, **overrides)

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only client_kwargs mapping cannot be pickled as is: rebuild from fields.
        return (
            _rebuild_database,
            (
                self.host, self.port, self.url, self.weight, self.name,
                dict(self.client_kwargs or {}), self.cluster, self.health_check_url,
            ),
        )

    # --- display -------------------------------------------------------------------------

    def __repr__(self) -> str:
        parts = [f"host={self.host!r}", f"port={self.port!r}", f"db={self.db!r}"]
        if self.url is not None:
            parts.append(f"url={masked_url(self.url)!r}")
        parts.append(f"weight={self.weight!r}")
        if self.name is not None:
            parts.append(f"name={self.name!r}")
        if self.client_kwargs:
            parts.append(f"client_kwargs={masked_kwargs(self.client_kwargs)!r}")
        if self.cluster:
            parts.append("cluster=True")
        if self.health_check_url is not None:
            parts.append(f"health_check_url={masked_url(self.health_check_url)!r}")
        return f"DatabaseConfig({', '.join(parts)})"

    def __str__(self) -> str:
        return self.display_name


def _rebuild_database(
    host: str,
    port: int,
    url: str | None,
    weight: float,
    name: str | None,
    client_kwargs: dict[str, Any],
    cluster: bool,
    health_check_url: str | None,
) -> DatabaseConfig:
    return DatabaseConfig(
        host, port, url=url, weight=weight, name=name, client_kwargs=client_kwargs,
        cluster=cluster, health_check_url=health_check_url,
    )
