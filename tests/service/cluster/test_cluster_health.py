"""What a node says about the cluster (GET /health's `cluster`): embedded by default; in a
cluster, Redis down is reported with what the node cannot do, and the node recovers alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from cti.events import MenuKeyPressed
from cti.platform.clock import SystemClock
from cti.platform.cluster.node import ClusterNode, ClusterStatus
from cti.platform.errors import ConfigError
from cti.platform.settings import ClusterSettings
from tests.service.cluster.redis_server import RedisServer

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
FAST = ClusterSettings(node_id="n1", lease_ttl_s=0.6, lease_margin_s=0.15,
                       lease_renew_every_s=0.1)


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (polls what other tasks change)
            await asyncio.sleep(0.02)


def test_a_single_box_is_embedded() -> None:
    assert ClusterStatus(None).health().model_dump() == {
        "mode": "embedded", "node_id": None, "redis_reachable": None, "redis_error": None,
        "stream_backlog": 0, "events_received": 0, "events_missed": 0, "leases_held": 0,
        "limits": [], "role": None, "active_node": None, "active_url": None,
        "took_lease_s": None, "activated_in_s": None,
    }


def test_clustering_on_sqlite_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="database_url to PostgreSQL"):
        ClusterNode.build("redis://127.0.0.1:6379/0", "sqlite+aiosqlite:///x.db",
                          ClusterSettings(), SystemClock())


def test_lease_times_that_cannot_work_are_refused_at_start() -> None:
    bad = ClusterSettings(lease_ttl_s=1.0, lease_margin_s=0.2, lease_renew_every_s=0.9)
    with pytest.raises(ConfigError, match="renew_every"):
        ClusterNode.build("redis://127.0.0.1:6379/0", PG, bad, SystemClock())


async def test_redis_down_is_reported_and_recovered_without_a_restart(
    redis_server: RedisServer,
) -> None:
    node = ClusterNode.build(redis_server.url, PG, FAST, SystemClock())
    status = ClusterStatus(node)
    await node.start(first_seq=0)
    try:
        await eventually(lambda: bool(status.health().redis_reachable))
        healthy = status.health()
        assert (healthy.mode, healthy.node_id, healthy.limits) == ("cluster", "n1", [])

        await redis_server.stop()
        await eventually(lambda: status.health().redis_reachable is False)
        node.bus.publish(MenuKeyPressed("c1", datetime.now(UTC), "1"))
        down = status.health()
        assert down.redis_error is not None
        assert "Redis unreachable" in down.redis_error
        assert any("goes on alone" in limit for limit in down.limits)
        await eventually(lambda: status.health().stream_backlog == 1)

        await redis_server.start()
        await eventually(lambda: bool(status.health().redis_reachable))
        back = status.health()
        assert (back.limits, back.redis_error, back.stream_backlog) == ([], None, 0)
    finally:
        await node.aclose()
