"""Cluster health: a Redis Cluster database is healthy when its primaries answer PING as the
check's policy asks (and its slot map covers every slot), sync and asyncio. Used by
:class:`~faulttol_redis.PingHealthCheck` for ``cluster=True`` databases.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.asyncio.cluster
import redis.cluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from faulttol.health import HealthCheckPolicy, ProbeTally

__all__ = ["check_cluster", "check_cluster_async"]

_log = logging.getLogger("faulttol_redis.healthcheck")


def _covers_every_slot(nodes_manager: Any) -> bool:
    slots = getattr(nodes_manager, "slots_cache", None)
    if slots is None:  # a redis-py without a slot map we can read: rely on the primaries
        return True
    return len(slots) == REDIS_CLUSTER_HASH_SLOTS and all(slots.values())


def _is_pong(answer: Any) -> bool:
    return answer is True or answer in (b"PONG", "PONG")


class _PrimaryRound:
    """One asking of a cluster's primaries: the decision logic shared by the sync and
    asyncio checks (the policy's arithmetic is :class:`faulttol.health.ProbeTally`'s, with one
    primary for one probe)."""

    __slots__ = ("_tally", "error", "verdict")

    def __init__(self, policy: HealthCheckPolicy, primaries: int, covered: bool) -> None:
        self.error: BaseException | None = None
        self.verdict: bool | None = None
        self._tally: ProbeTally | None = None
        if primaries == 0 or (policy is HealthCheckPolicy.HEALTHY_ALL and not covered):
            self.verdict = False  # never vacuously healthy; ALL needs every slot served
        else:
            self._tally = ProbeTally(policy, primaries)

    def record(self, answered: bool, error: BaseException | None = None) -> bool:
        """Count one primary's answer; True once the outcome is decided."""
        if error is not None:
            self.error = error
        assert self._tally is not None
        self.verdict = self._tally.record(answered)
        return self.verdict is not None

    @property
    def worth_reloading(self) -> bool:
        """Unhealthy because a primary did not answer: the topology may have changed."""
        return self.verdict is not True and self.error is not None

    def reload_failed(self) -> BaseException:
        """What to raise when the topology could not be loaded again: the primary's error."""
        assert self.error is not None
        return self.error

    def outcome(self) -> bool:
        """The verdict; a primary's error propagates when the cluster is unhealthy."""
        if self.verdict is True:
            return True
        if self.error is not None:
            raise self.error
        return False


_PING_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _ask_primaries(client: redis.cluster.RedisCluster, policy: HealthCheckPolicy) -> _PrimaryRound:
    primaries = client.get_primaries()  # type: ignore[no-untyped-call]
    asking = _PrimaryRound(policy, len(primaries), _covers_every_slot(client.nodes_manager))
    for node in primaries:
        if asking.verdict is not None:
            break
        try:
            answered, error = client.get_redis_connection(node).ping() is True, None
        except _PING_ERRORS as exc:
            answered, error = False, exc
        asking.record(answered, error)
    return asking


def check_cluster(client: redis.cluster.RedisCluster, policy: HealthCheckPolicy) -> bool:
    asking = _ask_primaries(client, policy)
    if asking.worth_reloading:
        try:  # load the slot map again, through any node that answers
            client.nodes_manager.initialize()
        except Exception as exc:
            _log.debug("reloading the cluster topology failed", exc_info=True)
            raise asking.reload_failed() from exc
        asking = _ask_primaries(client, policy)
    return asking.outcome()


async def _ask_primaries_async(
    client: redis.asyncio.cluster.RedisCluster, policy: HealthCheckPolicy
) -> _PrimaryRound:
    primaries = client.get_primaries()
    asking = _PrimaryRound(policy, len(primaries), _covers_every_slot(client.nodes_manager))
    for node in primaries:
        if asking.verdict is not None:
            break
        try:
            answered, error = _is_pong(await node.execute_command("PING")), None
        except _PING_ERRORS as exc:
            answered, error = False, exc
        asking.record(answered, error)
    return asking


async def check_cluster_async(
    client: redis.asyncio.cluster.RedisCluster, policy: HealthCheckPolicy
) -> bool:
    asking = await _ask_primaries_async(client, policy)
    if asking.worth_reloading:
        try:  # load the slot map again, through any node that answers
            await client.nodes_manager.initialize()
        except Exception as exc:
            _log.debug("reloading the cluster topology failed", exc_info=True)
            raise asking.reload_failed() from exc
        asking = await _ask_primaries_async(client, policy)
    return asking.outcome()
