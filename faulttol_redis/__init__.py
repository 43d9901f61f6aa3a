"""faulttol_redis: a failover Redis client built on faulttol."""

__all__: list[str] = []
