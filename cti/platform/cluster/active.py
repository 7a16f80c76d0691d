"""Which node drives the PBX: the holder of the `active` lease (docs/cluster.md, "Takeover").

One node at a time is *active*: it holds the ARI event socket, runs the ACD and the timers
(work orders, call-backs, reminders, the outbox). The others are *standby*: they serve the
pages and their live sockets (events reach them over the shared stream), forward every API
request to the active node, and keep asking for the lease. When the active node dies its lease
ends within `lease_ttl_s`; the first standby to get it connects to ARI, and the restart
resync adopts the calls where they are.

Fencing: a node whose lease went to another node, or that is cut off from Redis while a peer
still reaches it, stops acting at once by ending its process: its in-memory calls, offers and
timers are no longer its to act on, and another node may already be adopting them. The
process supervisor (systemd, compose's `restart:`) starts it again, as a standby. When Redis is
away for every node, nobody can take the lease over, so the active node goes on alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cti.domain.cluster.lease import HeldLease
from cti.platform.clock import Clock
from cti.platform.cluster.leases import LeaseKeeper, RedisLeases
from cti.platform.cluster.presence import NodePresence
from cti.platform.errors import ClusterUnavailable
from cti.platform.log import get_logger

log = get_logger(__name__)

ACTIVE = "active"
# Exit status of a fenced node (EX_TEMPFAIL: "try again", the supervisor restarts it).
FENCED_EXIT = 75


def exit_process(reason: str) -> None:
    """The default fence: nothing of this process may act any more, not even its finalisers."""
    log.critical("cluster.fenced", reason=reason, effect="the process ends; restart it")
    sys.stderr.flush()
    os._exit(FENCED_EXIT)


@dataclass(frozen=True)
class ActiveNode:
    node_id: str
    url: str
    token: int


class ActiveRole:
    """This node's role, and where the active node is."""

    def __init__(
        self, keeper: LeaseKeeper, store: RedisLeases, clock: Clock, url: str,
        *, presence: NodePresence | None = None, poll_s: float = 0.1,
        fence: Callable[[str], None] = exit_process,
        ask_peer: Callable[[str], Awaitable[bool | None]] | None = None,
    ) -> None:
        self.keeper = keeper
        self.store = store
        self.clock = clock
        self.url = url
        self.presence = presence
        self.poll_s = poll_s
        self.fence = fence
        self.ask_peer = ask_peer or peer_reaches_redis
        self.held: HeldLease | None = None
        self.alone = False  # active without the lease: Redis is away for every node
        self.waiting_since = clock.monotonic()
        self._back_at: float | None = None  # when Redis answered again after being away
        self.lookup_error: str | None = None  # why the active node could not be looked up
        self.took_s: float | None = None  # from asking to holding (the last takeover)
        self.peers: dict[str, str] = {}  # node id -> URL, kept while Redis answers
        self._peers_read = -1e9
        self._watch: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._cached: tuple[float, ActiveNode | None] | None = None
        self._deciding = asyncio.Lock()  # the guard and the keeper's report may meet

    @property
    def node_id(self) -> str:
        return self.keeper.node_id

    @property
    def state(self) -> str:
        return "active" if self.held is not None or self.alone else "standby"

    def driving(self) -> bool:
        """On this node's own clock: its active lease is current, or Redis is away for every
        node and it drives alone."""
        return self.alone or self.keeper.holds(ACTIVE) is not None

    async def may_drive(self) -> bool:
        """Asked before every command to the PBX and every IVR checkpoint write. A node paused
        past its lease (a long GC, a stalled VM or network) looks at the lease before it acts
        on waking, not at the guard's next round: its lease gone by its own clock, the guard's
        decision is taken now (the lease again if nobody took it; else fence) or, if the guard
        is taking it, waited for. False: not to act (a standby; a fenced node under a test's
        fence). A clean stop acts until its sockets are closed (the lease goes after them)."""
        if self.driving() or self._stopping.is_set():
            return True
        async with self._deciding:
            if self.driving():
                return True
            if self.held is None:  # never active, or fenced
                return False
            await self._decide()
        return self.driving()

    async def wait_active(self) -> HeldLease:
        """Ask for the lease until it is ours (Redis away: keep asking), then publish our URL
        under it and watch it: losing it fences this node."""
        self.waiting_since = self.clock.monotonic()
        redis_lost = False
        while True:
            held = None
            try:
                if redis_lost:
                    redis_lost = await self._rejoin_grace()
                if not redis_lost:
                    held = await self.keeper.acquire(ACTIVE)
            except ClusterUnavailable:
                redis_lost, self._back_at = True, None
            if held is not None:
                break
            await self._read_peers()
            await asyncio.sleep(self.poll_s)
        self.took_s = self.clock.monotonic() - self.waiting_since
        await self._holding(held)
        log.info("cluster.active", node=self.node_id, token=held.token,
                 waited_s=round(self.took_s, 3))
        self._watch = asyncio.get_running_loop().create_task(self._guard(), name="active-guard")
        return held

    async def _rejoin_grace(self) -> bool:
        """After Redis was away: True while this standby must not ask for the lease yet.

        A Redis restarted empty has no lease, and the node that drove the PBX alone meanwhile
        asks for it again within `poll_s`; a standby asking at the same moment could win, and
        the active node would then fence itself with every call on it. So a standby waits one
        lease time from Redis's return first: the node driving alone takes its lease back, and
        if no node does (it died meanwhile) the standby takes over one lease time later."""
        await self.store.current(ACTIVE)  # ClusterUnavailable: still away
        now = self.clock.monotonic()
        if self._back_at is None:
            self._back_at = now
            log.info("cluster.redis_back_standby", node=self.node_id,
                     grace_s=self.keeper.times.ttl)
        return now - self._back_at < self.keeper.times.ttl

    async def _holding(self, held: HeldLease) -> None:
        self.held, self.alone = held, False
        with contextlib.suppress(ClusterUnavailable):  # standbys then forward with 503s
            await self.store.fenced_write(
                ACTIVE, held.token, {"node": self.node_id, "url": self.url})

    async def _guard(self) -> None:
        """The lease is checked on our own clock ten times a second: with the default margin
        (0.4 s) the node stops well before the store may grant the lease to another."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll_s)
                return
            if self.keeper.holds(ACTIVE) is not None:
                await self._read_peers()
                continue
            if self.held is not None or self.alone:
                await self._without_lease()

    async def on_lost(self, resource: str, _token: int) -> None:
        """The keeper's report (a renewal refused, or its time ran out)."""
        if resource == ACTIVE and self.held is not None:
            await self._without_lease()

    async def _without_lease(self) -> None:
        """Our lease is gone by our clock. Redis answers: take it again if nobody holds it
        (nobody acted meanwhile), else another node has it: fence. Redis does not answer:
        if a peer still reaches it, we are the one cut off: fence (that peer takes over);
        if no peer does, Redis is away for all: nobody can take the lease, and the calls
        need a driver, so this node goes on alone and asks again until Redis is back."""
        async with self._deciding:
            if self.keeper.holds(ACTIVE) is not None:  # decided meanwhile
                return
            await self._decide()

    async def _decide(self) -> None:
        self.held = None
        try:
            held = await self.keeper.acquire(ACTIVE)
        except ClusterUnavailable:
            pass
        else:
            if held is None:
                self.alone = False
                self.fence("the active lease is another node's")
                return
            if self.alone:
                log.info("cluster.redis_back_active", node=self.node_id, token=held.token)
            await self._holding(held)
            return
        if self.alone:
            return
        answers = [await self.ask_peer(url) for url in self.peers.values()]
        if any(a is True for a in answers):
            self.fence("cut off from Redis while a peer reaches it")
            return
        if self.peers and not any(a is False for a in answers):
            # No peer answered at all: we may be the one cut off from everything.
            self.fence("cut off from Redis and from every peer")
            return
        self.alone = True
        log.error("cluster.active_alone", node=self.node_id,
                  effect="Redis is away for every node: this node drives the PBX without "
                         "the lease until Redis is back; no standby can take over meanwhile")

    async def _read_peers(self, every_s: float = 2.0) -> None:
        """The other nodes' URLs, read while Redis answers, for when it does not."""
        now = self.clock.monotonic()
        if self.presence is None or now - self._peers_read < every_s:
            return
        self._peers_read = now
        with contextlib.suppress(ClusterUnavailable):
            alive, _ = await self.presence.members()
            peers = {}
            for node in alive:
                if node != self.node_id:
                    url = (await self.presence.describe(node)).get("url")
                    if url:
                        peers[node] = url
            self.peers = peers

    async def active(self, max_age_s: float = 0.25) -> ActiveNode | None:
        """The node holding the lease now, with the URL it published under it (cached briefly:
        a standby asks for each forwarded request)."""
        now = self.clock.monotonic()
        if self._cached is not None and now - self._cached[0] < max_age_s:
            return self._cached[1]
        found: ActiveNode | None = None
        try:
            current = await self.store.current(ACTIVE)
            if current is not None:
                holder, token = current
                info = await self.store.state(ACTIVE)
                # The URL of an earlier holder stays in the state hash: only this token's counts.
                if info.get("_token") == str(token) and info.get("url"):
                    found = ActiveNode(holder, info["url"], token)
            self.lookup_error = None
        except ClusterUnavailable as exc:
            self.lookup_error = exc.message
        self._cached = (now, found)
        return found

    async def aclose(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        self.held = None
        self.alone = False


async def peer_reaches_redis(url: str, timeout_s: float = 0.25) -> bool | None:
    """What a peer's /health says of Redis: True/False, None when it did not answer."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            r = await client.get(f"{url.rstrip('/')}/health")
        return bool(r.json()["cluster"]["redis_reachable"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
