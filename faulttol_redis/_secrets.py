"""Keeping secrets out of what the package shows: reprs, logs, events and error messages.

Passwords in URLs, and any client option whose name looks like a password, token, secret,
key or credential, are replaced by ``***`` before a value is displayed. A module of its own,
with no import from the rest of the package, so that every module that displays a database
(its config, its cluster client, its health checks) can use it without importing another.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_secret", "masked_kwargs", "masked_url"]

MASK = "***"
"""What a secret is shown as."""

_SECRET_MARKERS = ("password", "passwd", "pwd", "token", "secret", "key", "credential", "auth")


def is_secret(key: str) -> bool:
    """Whether an option named ``key`` holds a secret (a user name is not one)."""
    lowered = key.lower()
    return "username" not in lowered and any(marker in lowered for marker in _SECRET_MARKERS)


def masked_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` for display: the value of every secret option (unless ``None``) masked."""
    return {k: (MASK if is_secret(k) and v is not None else v) for k, v in kwargs.items()}


def masked_url(url: object) -> str:
    """``url`` for display: its password, secret query values and fragment replaced.

    Works on the raw text rather than trusting a URL parser, so that a password holding an
    unencoded ``#``, ``?``, ``/`` or ``@`` (which moves the parser's idea of where the
    user info ends) is masked too: everything before the last ``@`` is user info. When that
    user info is not well formed (it holds ``/``, ``?`` or ``#``, or there is no scheme),
    all of it is masked, the user name included.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, tail = rest.rpartition("@")
    if at:
        if sep and not any(c in userinfo for c in "/?#"):
            user, colon, _password = userinfo.partition(":")
            userinfo = f"{user}:{MASK}" if colon else user
        else:
            userinfo = MASK
    tail, hash_mark, fragment = tail.partition("#")
    location, question_mark, query = tail.partition("?")
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{urllib.parse.quote(k, safe='')}="
            f"{MASK if is_secret(k) else urllib.parse.quote(v, safe='')}"
            for k, v in pairs
        )
    shown = f"{userinfo}{at}{location}{question_mark}{query}"
    if hash_mark:
        shown += f"#{MASK}" if fragment else "#"
    return f"{scheme}://{shown}" if sep else shown
