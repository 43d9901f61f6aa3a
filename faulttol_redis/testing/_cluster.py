"""A real Redis Cluster on loopback for tests: N primaries, no replicas, killed node by node.

:class:`LocalCluster` starts ``primaries`` ``redis-server`` processes with
``--cluster-enabled yes`` (each with its own ``nodes.conf`` in its own temporary directory, a
free client port and a free cluster-bus port), joins them with
``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`` and returns once every
node reports ``cluster_state:ok``. :func:`cluster_factory` is a context manager yielding
``start(primaries=3) -> LocalCluster`` that stops every node it started, whatever happens.

Needs redis-server 7.0 or newer (an explicit ``--cluster-port``) and a ``redis-cli``.
Public through :mod:`faulttol_redis.testing`.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator

import redis
from redis.crc import key_slot

from ._binaries import find_redis_cli, find_redis_server, free_port, server_version
from ._server import RedisServer, stop_all

__all__ = [
    "DEFAULT_NODE_TIMEOUT_MS",
    "DEFAULT_PRIMARIES",
    "MIN_CLUSTER_SERVER_VERSION",
    "LocalCluster",
    "cluster_factory",
    "find_redis_cli",
]

DEFAULT_PRIMARIES = 3
DEFAULT_NODE_TIMEOUT_MS = 1000
"""``cluster-node-timeout``: how long a dead primary stays unnoticed by its peers."""

DEFAULT_READY_TIMEOUT = 20.0
"""Seconds to wait for ``cluster_state:ok`` on every node."""

MIN_CLUSTER_SERVER_VERSION = (7, 0, 0)
"""The oldest ``redis-server`` a :class:`LocalCluster` runs on (``--cluster-port`` is 7.0's)."""

HASH_SLOTS = 16384
_START_ATTEMPTS = 3


def _start_node(node_timeout_ms: int) -> RedisServer:
    """One cluster-enabled server on a free port with a free, explicit cluster-bus port
    (the default bus port, port + 10000, may be taken or out of range)."""
    last: RuntimeError | None = None
    for _ in range(_START_ATTEMPTS):
        port, bus = free_port(), free_port()
        if port == bus:
            continue
        try:
            return RedisServer(
                port=port,
                extra_args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",  # relative to the server's own dir
                    "--cluster-node-timeout", str(node_timeout_ms),
                    "--cluster-port", str(bus),
                ],
            )
        except RuntimeError as exc:  # lost a race for one of the ports
            last = exc
    assert last is not None
    raise last


class LocalCluster:
    """A running N-primary Redis Cluster on 127.0.0.1 (see the module docstring).

    ``nodes[i]`` is the :class:`RedisServer` of node ``i``; :meth:`kill` SIGKILLs one,
    :meth:`stop` stops them all (idempotent). Node ``i`` owns the ``i``-th range of slots
    as ``redis-cli`` assigned them; :meth:`owner_of` tells which node owns a key.
    """

    def __init__(
        self,
        primaries: int = DEFAULT_PRIMARIES,
        *,
        node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
    ) -> None:
        if primaries < 3:
            raise ValueError(f"primaries must be >= 3 (redis-cli's minimum), got {primaries}")
        if node_timeout_ms < 100:
            raise ValueError(f"node_timeout_ms must be >= 100, got {node_timeout_ms}")
        binary = find_redis_server()
        version = server_version(binary)
        if version < MIN_CLUSTER_SERVER_VERSION:
            raise RuntimeError(
                f"LocalCluster needs redis-server >= 7.0, {binary} is "
                f"{'.'.join(map(str, version))}: install Redis 7 (e.g. apt-get install "
                "redis-server)"
            )
        self.nodes: list[RedisServer] = []
        self._slot_owner: list[int] = []
        try:
            for _ in range(primaries):
                self.nodes.append(_start_node(node_timeout_ms))
            self._create()
            self.wait_until_state("ok", timeout=ready_timeout)
            self._read_slot_map()
        except BaseException:
            self.stop()
            raise

    # --- setup ---------------------------------------------------------------------------

    def _create(self) -> None:
        addresses = [f"{node.host}:{node.port}" for node in self.nodes]
        result = subprocess.run(
            [find_redis_cli(), "--cluster", "create", *addresses,
             "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
        )
        if result.returncode != 0 or "[OK] All 16384 slots covered" not in result.stdout:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({result.returncode}): "
                f"{result.stdout[-2000:]} {result.stderr[-2000:]}"
            )

    def _read_slot_map(self) -> None:
        by_port = {node.port: i for i, node in enumerate(self.nodes)}
        owner = [-1] * HASH_SLOTS
        with self.client(0) as client:
            for start, end, primary, *_replicas in client.execute_command("CLUSTER", "SLOTS"):
                for slot in range(int(start), int(end) + 1):
                    owner[slot] = by_port[int(primary[1])]
        if -1 in owner:
            raise RuntimeError("the new cluster does not cover every slot")
        self._slot_owner = owner

    # --- queries -------------------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def host(self) -> str:
        return self.nodes[0].host

    def client(self, index: int, **kwargs: object) -> redis.Redis:
        """A plain ``redis.Redis`` on node ``index`` (no cluster routing); close it."""
        node = self.nodes[index]
        return redis.Redis(host=node.host, port=node.port, socket_timeout=2.0, **kwargs)  # type: ignore[arg-type]

    def owner_of(self, key: str | bytes) -> int:
        """The index of the node that owns ``key``'s slot."""
        return self._slot_owner[key_slot(key.encode() if isinstance(key, str) else key)]

    def keys_on_every_node(self, prefix: str = "key") -> list[str]:
        """One key per node, in node order: ``f"{prefix}:{n}"`` for the first fitting n."""
        found: dict[int, str] = {}
        n = 0
        while len(found) < len(self.nodes):
            key = f"{prefix}:{n}"
            found.setdefault(self.owner_of(key), key)
            n += 1
        return [found[i] for i in range(len(self.nodes))]

    def state(self, index: int) -> str | None:
        """Node ``index``'s ``cluster_state`` (``ok``/``fail``), or None if it does not answer."""
        try:
            with self.client(index, socket_connect_timeout=0.5) as client:
                info = client.execute_command("CLUSTER", "INFO")
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return None
        text = info.decode() if isinstance(info, bytes) else str(info)
        for line in text.splitlines():
            if line.startswith("cluster_state:"):
                return line.split(":", 1)[1].strip()
        return None

    def wait_until_state(
        self, state: str, *, timeout: float = DEFAULT_READY_TIMEOUT, nodes: list[int] | None = None
    ) -> None:
        """Wait until every running node (or those in ``nodes``) reports ``cluster_state``."""
        deadline = time.monotonic() + timeout
        while True:
            wanted = nodes if nodes is not None else [
                i for i, node in enumerate(self.nodes) if node.is_running
            ]
            states = {i: self.state(i) for i in wanted}
            if all(s == state for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster_state is not {state!r} after {timeout}s: {states}")
            time.sleep(0.05)

    # --- faults and teardown -------------------------------------------------------------

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (its slots become unreachable: there are no replicas)."""
        self.nodes[index].kill()

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def stop(self) -> None:
        """Stop every node (also killed or paused ones) and remove their directories."""
        stop_all(self.nodes)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalCluster({', '.join(repr(node) for node in self.nodes)})"


@contextlib.contextmanager
def cluster_factory() -> Iterator[Callable[..., LocalCluster]]:
    """Yield ``start(primaries=3, **kwargs) -> LocalCluster``; on exit stop every cluster
    it started (every node, even when the body raised or a stop failed)."""
    started: list[LocalCluster] = []

    def start(primaries: int = DEFAULT_PRIMARIES, **kwargs: int | float) -> LocalCluster:
        cluster = LocalCluster(primaries, **kwargs)  # type: ignore[arg-type]
        started.append(cluster)
        return cluster

    try:
        yield start
    finally:
        stop_all(started)
