"""The Redis connection of a cluster node, and its failures translated into ours."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from cti.platform.errors import ClusterUnavailable

T = TypeVar("T")

# A Redis that does not answer must not hold a caller up: every command gives up quickly and
# the node goes on with what it owns (docs/cluster.md, "Redis down").
SOCKET_TIMEOUT_S = 1.0


def connect(url: str) -> Redis:
    return Redis.from_url(
        url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S,
        decode_responses=True, health_check_interval=5,
    )


async def call(what: str, op: Callable[[], Awaitable[T]]) -> T:
    """Run one Redis operation; connection trouble becomes ClusterUnavailable naming `what`."""
    try:
        return await op()
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise ClusterUnavailable(f"Redis unreachable ({what}): {exc}") from None


def as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
