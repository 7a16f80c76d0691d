"""Node presence on a real Redis (cti/platform/cluster/presence.py): a node that stops beating
is seen dead by the others after the lease time, and an unreachable Redis is reported."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from cti.domain.cluster.lease import LeaseTimes
from cti.platform.clock import SystemClock
from cti.platform.cluster.presence import NodePresence
from cti.platform.cluster.redis_store import connect
from cti.platform.errors import ClusterUnavailable
from tests.service.cluster.redis_server import RedisServer

FAST = LeaseTimes(ttl=0.3, margin=0.06, renew_every=0.08)
# the survivor's: long enough that a loaded machine's late beat does not make it look dead
STEADY = LeaseTimes(ttl=3.0, margin=0.5, renew_every=0.2)


async def test_a_node_that_stops_beating_is_dead_after_the_ttl(redis: Redis, prefix: str) -> None:
    clock = SystemClock()
    a = NodePresence(redis, prefix, "a", clock, STEADY, {"http": "10.0.0.1:8000"})
    # b's presence lasts long enough to be seen alive first on a loaded machine (0.3 s was
    # not, under a CI run beside other work), then ends
    short = LeaseTimes(ttl=1.0, margin=0.2, renew_every=0.25)
    b = NodePresence(redis, prefix, "b", clock, short)
    await a.beat()
    a.start()
    await b.beat()  # b beats once, then is killed
    try:
        assert sorted((await a.members())[0]) == ["a", "b"]
        assert await a.describe("a") == {"http": "10.0.0.1:8000"}
        await asyncio.sleep(short.ttl + 0.1)
        alive, dead = await a.members()
        assert (alive, dead) == (["a"], ["b"])
        await a.forget("b")  # adopted: no longer listed
        assert await a.members() == (["a"], [])
    finally:
        await a.aclose()
    assert await b.members() == ([], [])  # a left cleanly: neither alive nor dead


async def test_redis_down_is_reported_and_its_return_noticed_without_a_restart(
    redis_server: RedisServer, prefix: str
) -> None:
    client = connect(redis_server.url)
    node = NodePresence(client, prefix, "a", SystemClock(), FAST)
    await node.beat()
    assert node.state.reachable
    await redis_server.stop()
    with pytest.raises(ClusterUnavailable, match="Redis unreachable"):
        await node.beat()
    assert not node.state.reachable
    assert node.state.error is not None
    await redis_server.start()  # back, empty (no persistence): the node says it is alive again
    for _ in range(50):
        try:
            await node.beat()
            break
        except ClusterUnavailable:
            await asyncio.sleep(0.05)
    assert node.state.reachable
    assert (await node.members())[0] == ["a"]
    await client.aclose()
