"""This node's part in a cluster: its id, the shared Redis, its presence, the event stream,
the lease keeper — and what it reports about them (GET /health). Built only when
`redis_url` is set (docs/cluster.md); a single box has `ClusterStatus` saying "embedded".
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from cti.domain.cluster.lease import LeaseTimes
from cti.platform.clock import Clock
from cti.platform.cluster.active import ActiveRole
from cti.platform.cluster.bus import ClusterBus
from cti.platform.cluster.forward import forward_client
from cti.platform.cluster.leases import LeaseKeeper, RedisLeases
from cti.platform.cluster.presence import NodePresence
from cti.platform.cluster.redis_store import connect
from cti.platform.errors import ConfigError
from cti.platform.settings import ClusterSettings


@dataclass
class ClusterNode:
    node_id: str
    redis: Redis
    bus: ClusterBus
    presence: NodePresence
    leases: LeaseKeeper
    times: LeaseTimes = field(default_factory=LeaseTimes)

    @classmethod
    def build(
        cls, redis_url: str, database_url: str, settings: ClusterSettings, clock: Clock
    ) -> ClusterNode:
        if not database_url.startswith("postgresql"):
            raise ConfigError(
                "redis_url turns clustering on, and the nodes must share their record: set "
                f"database_url to PostgreSQL (now {database_url.split(':', 1)[0]}), or remove "
                "redis_url for a single box"
            )
        try:
            times = LeaseTimes(settings.lease_ttl_s, settings.lease_margin_s,
                               settings.lease_renew_every_s)
        except ValueError as exc:
            raise ConfigError(f"cluster: {exc}") from None
        node_id = settings.node_id or f"{socket.gethostname()}-{os.getpid()}"
        redis = connect(redis_url)
        prefix = settings.key_prefix
        return cls(
            node_id=node_id, redis=redis,
            bus=ClusterBus(redis, prefix, node_id, maxlen=settings.stream_maxlen),
            presence=NodePresence(redis, prefix, node_id, clock, times),
            leases=LeaseKeeper(RedisLeases(redis, prefix), node_id, clock, times),
            times=times,
        )

    async def start(self, first_seq: int) -> None:
        self.bus.continue_after(first_seq)
        await self.bus.start()
        self.presence.start()
        self.leases.start()

    async def aclose(self) -> None:
        await self.leases.aclose()
        await self.presence.aclose()
        await self.bus.aclose()
        await self.redis.aclose()


class ClusterHealthOut(BaseModel):
    """`embedded`: one process, nothing shared. `cluster`: what this node can reach."""

    mode: str
    node_id: str | None = None
    redis_reachable: bool | None = None
    redis_error: str | None = None
    # this node's events not yet on the shared stream (kept while Redis is away)
    stream_backlog: int = 0
    events_received: int = 0
    events_missed: int = 0
    leases_held: int = 0
    # "active": this node drives the PBX; "standby": it serves pages and forwards the API to
    # `active_node`, and takes over when that one goes
    role: str | None = None
    active_node: str | None = None
    active_url: str | None = None
    # the last takeover by this node: from asking for the lease to holding it, then to driving
    # the PBX (resync included)
    took_lease_s: float | None = None
    activated_in_s: float | None = None
    # what the cluster cannot do right now, in words
    limits: list[str] = Field(default_factory=list)


class ClusterStatus:
    """What GET /health says about clustering (registered with the app in both modes)."""

    def __init__(self, node: ClusterNode | None, role: ActiveRole | None = None) -> None:
        self.node = node
        self.role = role
        self.activated_in_s: float | None = None
        # a standby's API requests go on to the active node through this (cluster/forward.py)
        self.forward = forward_client() if role is not None else None

    async def aclose(self) -> None:
        if self.forward is not None:
            await self.forward.aclose()

    async def health_now(self) -> ClusterHealthOut:
        """`health()` with where the active node is (one Redis read, cached briefly)."""
        out = self.health()
        if self.role is not None:
            active = await self.role.active()
            if active is not None:
                out.active_node, out.active_url = active.node_id, active.url
            elif self.role.lookup_error is None and self.role.state != "active":
                # (Redis away: who holds the lease is not known, and limits say why.)
                out.limits.append("no node holds the active lease: calls wait for a takeover")
        return out

    def health(self) -> ClusterHealthOut:
        node = self.node
        if node is None:
            return ClusterHealthOut(mode="embedded")
        stats = node.bus.stats
        reachable = node.presence.state.reachable and stats.writer_ok and stats.reader_ok
        error = node.presence.state.error or stats.error
        limits = []
        if not reachable:
            limits = [
                "Redis unreachable: this node goes on alone with the calls it owns",
                f"other nodes do not see this node's events ({node.bus.backlog} kept, sent "
                "when Redis is back)",
                "agents' pages on this node do not see other nodes' calls",
                "no lease can be taken: this node adopts no other node's calls",
            ]
        role = self.role
        if role is not None and role.alone:
            limits.append("Redis is away for every node: this node drives the PBX without "
                          "its lease; no standby can take over until Redis is back")
        elif role is not None and role.state == "standby" and not reachable:
            limits.append("this standby can neither take over nor find the active node "
                          "while Redis is away: its API requests answer 503")
        return ClusterHealthOut(
            mode="cluster", node_id=node.node_id, redis_reachable=reachable,
            redis_error=None if reachable else error, stream_backlog=node.bus.backlog,
            events_received=stats.received, events_missed=stats.gaps,
            leases_held=len(node.leases.held()), limits=limits,
            role=self.role.state if self.role is not None else None,
            took_lease_s=self.role.took_s if self.role is not None else None,
            activated_in_s=self.activated_in_s,
        )
