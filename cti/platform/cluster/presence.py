"""Which nodes are alive: each node's heartbeat in Redis, on Redis's clock.

  nodes         sorted set: node id -> the time (ms, Redis's clock) its presence ends
  node:<id>     hash: what the node says of itself (started, http, asterisk), expiring with it

A node that stops beating (killed, stalled, cut off) is past its score `ttl` seconds after
its last beat; the others see it in `dead()` and adopt its work, then `forget` it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from cti.domain.cluster.lease import LeaseTimes
from cti.platform.clock import Clock
from cti.platform.cluster.leases import stop_loop
from cti.platform.cluster.redis_store import as_str, call
from cti.platform.errors import ClusterUnavailable
from cti.platform.log import get_logger

log = get_logger(__name__)

_BEAT = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if #ARGV > 2 then redis.call('HSET', KEYS[2], unpack(ARGV, 3)) end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return now
"""

_SPLIT = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)
return {redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf'),
        redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)}
"""


@dataclass(frozen=True, slots=True)
class PresenceState:
    """What the heartbeat last found: reachable or not, since when (this node's clock)."""

    reachable: bool
    since: float
    error: str | None = None


class NodePresence:
    def __init__(
        self, redis: Redis, prefix: str, node_id: str, clock: Clock, times: LeaseTimes,
        info: Mapping[str, str] | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.node_id = node_id
        self.clock = clock
        self.times = times
        self.info = dict(info or {})
        self.state = PresenceState(reachable=False, since=clock.monotonic(), error="not started")
        self._beat = redis.register_script(_BEAT)
        self._split = redis.register_script(_SPLIT)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def _nodes(self) -> str:
        return f"{self.prefix}nodes"

    async def beat(self) -> None:
        """Say this node is alive for another `ttl`; records whether Redis answered."""
        flat = [x for kv in self.info.items() for x in kv]
        keys = [self._nodes, f"{self.prefix}node:{self.node_id}"]
        try:
            await call("heartbeat", lambda: self._beat(
                keys, [self.node_id, round(self.times.ttl * 1000), *flat]))
        except ClusterUnavailable as exc:
            if self.state.reachable or self.state.error == "not started":
                log.error("cluster.redis_unreachable", error=exc.message,
                          effect="this node goes on alone with the calls it owns")
                self.state = PresenceState(False, self.clock.monotonic(), exc.message)
            raise
        if not self.state.reachable:
            if self.state.error != "not started":
                log.info("cluster.redis_back", node=self.node_id)
            self.state = PresenceState(True, self.clock.monotonic())

    async def members(self) -> tuple[list[str], list[str]]:
        """(alive, dead) node ids; dead ones stopped beating and were not forgotten yet."""
        alive, dead = await call("presence read", lambda: self._split([self._nodes], []))
        return [as_str(n) for n in alive], [as_str(n) for n in dead]

    async def describe(self, node_id: str) -> dict[str, str]:
        raw = await call("presence read",
                         lambda: self.redis.hgetall(f"{self.prefix}node:{node_id}"))
        return {as_str(k): as_str(v) for k, v in raw.items()}

    async def forget(self, node_id: str) -> None:
        """Remove a dead node (its work adopted), or this one as it stops."""
        await call("presence forget", lambda: self.redis.zrem(self._nodes, node_id))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-presence")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(ClusterUnavailable):  # said once, in beat()
                await self.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.times.renew_every)

    async def aclose(self) -> None:
        await stop_loop(self._task, self._stopping)
        self._task = None
        with contextlib.suppress(ClusterUnavailable):  # leaving cleanly: not "dead"
            await self.forget(self.node_id)
            await call("presence forget",
                       lambda: self.redis.delete(f"{self.prefix}node:{self.node_id}"))
