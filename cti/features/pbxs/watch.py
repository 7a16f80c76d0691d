"""An Asterisk that goes away, among several: its calls end in the record, its agents are
paused as unreachable, the others go on; when it comes back, its resync runs and the agents
it took away are made available again.

A socket that blinks is not a lost PBX: channels live on in Asterisk while its event socket
reconnects, and the reconnect's resync settles what happened meanwhile. Only a PBX whose
socket stays down `lost_after_s` is declared lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from cti.domain.agents.state import AgentState, AgentStatus
from cti.features.calls.inbound import InboundCalls
from cti.features.calls.registry import CallRegistry
from cti.platform.ari.pbx_set import PbxSet
from cti.platform.log import get_logger
from cti.platform.scheduler import Scheduler, TimerHandle

log = get_logger(__name__)

LOST_REASON = "PBX lost"  # the call log's hangup_cause_text of a call that went with its PBX
UNREACHABLE = "unreachable"  # the pause reason of an agent whose phone is on no live PBX


class AgentLegs(Protocol):
    def leg_channel_ids(self) -> set[str]: ...
    async def on_leg_lost(self, channel_id: str) -> None: ...


class Agents(Protocol):
    """What the watch asks of the ACD."""

    def agent_status(self, agent_id: str) -> AgentStatus: ...
    async def agent_pause(self, agent_id: str, reason: str = "break") -> None: ...
    async def agent_available(self, agent_id: str) -> None: ...


class PbxWatch:
    def __init__(
        self,
        pbxs: PbxSet,
        registry: CallRegistry,
        inbound: InboundCalls,
        legs: AgentLegs,
        agents: Agents,
        endpoints: Callable[[], Mapping[str, str]],
        scheduler: Scheduler,
        lost_after_s: Mapping[str, float],
    ) -> None:
        """`endpoints()`: agent id -> dial string (the routing rules' `agents:`)."""
        self.pbxs = pbxs
        self.registry = registry
        self.inbound = inbound
        self.legs = legs
        self.agents = agents
        self.endpoints = endpoints
        self.scheduler = scheduler
        self.lost_after_s = dict(lost_after_s)
        self._timers: dict[str, TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # agents this watch paused, by the PBX whose loss did it
        self.paused: dict[str, set[str]] = {}

    async def on_disconnected(self, pbx: str) -> None:
        """The PBX's event socket dropped: lost unless it is back within `lost_after_s`."""
        old = self._timers.pop(pbx, None)
        if old is not None:
            old.cancel()
        log.warning("pbx.disconnected", pbx=pbx, lost_after_s=self.lost_after_s[pbx])
        self._timers[pbx] = self.scheduler.call_later(
            self.lost_after_s[pbx], lambda: self._start(self.lose(pbx))
        )

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def lose(self, pbx: str) -> None:
        """End the PBX's calls and legs in the record; pause agents no live PBX reaches."""
        self._timers.pop(pbx, None)
        if pbx in self.pbxs.lost:
            return
        self.pbxs.lost.add(pbx)
        ended = 0
        for session in list(self.registry.sessions()):
            if self.pbxs.owns(pbx, session.call.channel_id):
                await self.inbound.end_lost(session, LOST_REASON)
                ended += 1
        for leg in self.legs.leg_channel_ids():
            if self.pbxs.owns(pbx, leg):
                await self.legs.on_leg_lost(leg)
        paused = self.paused.setdefault(pbx, set())
        for agent_id, endpoint in self.endpoints().items():
            status = self.agents.agent_status(agent_id)
            if status.state is AgentState.LOGGED_OUT or agent_id in paused:
                continue
            resource = _pjsip_resource(endpoint)
            if resource is None:
                continue
            where = await self.pbxs.locate_endpoint(resource, prefer=self.pbxs.first)
            if where is None:
                await self.agents.agent_pause(agent_id, UNREACHABLE)
                paused.add(agent_id)
        log.error("pbx.lost", pbx=pbx, calls_ended=ended, agents_unreachable=sorted(paused))

    async def on_connected(self, pbx: str) -> None:
        """The PBX's socket is up (again): runs before its resync. Agents paused by its loss
        and still paused for that reason are available again."""
        timer = self._timers.pop(pbx, None)
        if timer is not None:
            timer.cancel()
        if pbx not in self.pbxs.lost:
            return
        self.pbxs.lost.discard(pbx)
        back = []
        for agent_id in self.paused.pop(pbx, set()):
            status = self.agents.agent_status(agent_id)
            paused = status.state is AgentState.PAUSED and status.reason == UNREACHABLE
            # on a call (through another PBX's trunk) the pause waited for its end: cancelled
            # (in wrap-up it stays: "available" there would cut the agent's wrap-up short)
            waiting = (status.state in (AgentState.RESERVED, AgentState.ON_CALL)
                       and status.pending == "pause" and status.pending_reason == UNREACHABLE)
            if paused or waiting:
                await self.agents.agent_available(agent_id)
                back.append(agent_id)
        log.info("pbx.back", pbx=pbx, agents_available=sorted(back))

    async def aclose(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _pjsip_resource(endpoint: str) -> str | None:
    tech, _, resource = endpoint.partition("/")
    if tech.upper() != "PJSIP" or not resource or "@" in resource:
        return None
    return resource
