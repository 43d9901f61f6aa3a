"""The Redis Enterprise REST API as :class:`~faulttol_redis.LagAwareHealthCheck` reads it:
its settings checked (host, TLS files), a TLS context, redirects kept on the same origin
(credentials never follow a redirect elsewhere), and the database's ``bdb`` uid found by
endpoint. The check itself (what it asks and how it decides) is in
:mod:`faulttol_redis.healthcheck`.
"""

from __future__ import annotations

import http.client
import os
import ssl
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import IO, Any

from faulttol.validation import check_host, check_path

__all__ = [
    "SameOriginRedirects",
    "check_rest_api_host",
    "existing_file",
    "find_bdb_uid",
    "tls_context",
]


def check_rest_api_host(value: object) -> str:
    """A host name or address (``[::1]`` is taken as ``::1``), never a URL."""
    host = value
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        host = value[1:-1]
    return check_host(
        "rest_api_host",
        host,
        hint="give a REST API URL as DatabaseConfig(health_check_url='https://...')",
    )


def existing_file(name: str, value: object) -> str | None:
    """``value`` as a path to an existing file, or None."""
    path = check_path(name, value)
    if path is not None and not os.path.isfile(path):
        raise ValueError(f"{name} {path!r} does not exist or is not a file")
    return path


def tls_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None, verify: bool
) -> ssl.SSLContext:
    """The TLS context of every request, built once: file problems surface at construction."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"ca_file {ca_file!r} holds no usable CA certificate (PEM expected): {exc}"
        ) from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            fields = "client_cert_file / client_key_file" if key_file else "client_cert_file"
            raise ValueError(
                f"{fields} ({cert_file!r}, {key_file!r}): no usable certificate and private "
                f"key (PEM, unencrypted key expected): {exc}"
            ) from None
    return context


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the default port filled in; raises ValueError."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _shown_origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` for a log line (no user info, path or query)."""
    try:
        scheme, host, port = _origin(url)
    except ValueError:
        return "<invalid url>"
    return f"{scheme}://{host}:{port}"


class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same origin over https; refuse any other.

    urllib's own handler follows any redirect and copies every header, the Authorization
    header included, so credentials would reach another host or travel over plain http.
    A refused redirect ends the request with its 3xx status (an unhealthy probe).
    """

    def __init__(self, warn: Callable[..., None]) -> None:
        super().__init__()
        self._warn = warn

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        try:
            same = _origin(newurl) == _origin(req.full_url) and _origin(newurl)[0] == "https"
        except ValueError:
            same = False
        if same:
            return super().redirect_request(req, fp, code, msg, headers, newurl)
        source, target = _shown_origin(req.full_url), _shown_origin(newurl)
        self._warn(
            f"redirect:{source}->{target}",
            "lag-aware check: not following the HTTP %d redirect from %s to %s: redirects "
            "are followed only to the same origin over https (the credentials go nowhere "
            "else)",
            code,
            source,
            target,
        )
        return None


def find_bdb_uid(bdbs: Any, host: str) -> Any:
    """The uid of the bdb with an endpoint whose dns_name or one of whose addrs is ``host``."""
    if not isinstance(bdbs, list):
        raise ValueError("GET /v1/bdbs did not answer a JSON list")
    wanted = host.lower()
    for bdb in bdbs:
        if not isinstance(bdb, dict):
            continue
        for endpoint in bdb.get("endpoints") or ():
            if not isinstance(endpoint, dict):
                continue
            dns_name = endpoint.get("dns_name")
            addrs = endpoint.get("addr") or ()
            if isinstance(addrs, str):
                addrs = (addrs,)
            if (isinstance(dns_name, str) and dns_name.lower() == wanted) or host in addrs:
                return bdb.get("uid")
    return None


