"""Rebuild the call registry from the PBX after every (re)connect, so no call is lost or orphaned.

Events are not replayed by Asterisk after a socket drop, so the truth is what ARI lists now:
calls whose caller channel vanished are closed; calls still up (ours, or left open in the
database by an earlier process) are adopted and carry on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from cti.domain.calls import Call, CallState, ended, move
from cti.features.calls.inbound import InboundCalls
from cti.features.calls.registry import CallRegistry
from cti.features.calls.storage import CallRepository
from cti.features.ivr.caller_audio import is_tap_channel
from cti.platform.ari.telephony import AriTelephony
from cti.platform.clock import Clock
from cti.platform.errors import TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import BridgeInfo

log = get_logger(__name__)

# Channels the service originates (ACD agent legs, outside transfer legs): never callers.
ORIGINATED_PREFIXES = ("acd-", "xfer-")
# Supervisors' monitor legs and snoops: left to their feature (Monitoring.on_connect).
MONITOR_PREFIX = "mon-"
# Bridges the service creates; an empty one is left over from an earlier process.
OUR_BRIDGE_PREFIXES = ("cti-", "acd-", "consult-", "xfer-", MONITOR_PREFIX)


class AdoptedCalls(Protocol):
    """Who takes an adopted call's routing back (CallRouting): with its agent, or queued."""

    def leg_channel_ids(self) -> set[str]: ...
    async def on_leg_lost(self, channel_id: str) -> None: ...
    async def attributes_of(self, call: Call) -> dict[str, Any]: ...
    async def resume_adopted(
        self, call: Call, agent_link: tuple[str, str] | None,
        attributes: dict[str, Any] | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class ResyncReport:
    generation: int
    kept: int
    closed: int
    adopted: int
    orphan_bridges_destroyed: int


class Resync:
    def __init__(
        self,
        telephony: AriTelephony,
        registry: CallRegistry,
        repo: CallRepository,
        inbound: InboundCalls,
        clock: Clock,
        routing: AdoptedCalls | None = None,
        *,
        pbx: str = "",
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        """One per Asterisk when a process drives several: `owns(channel_id)` says which
        calls and legs are this PBX's (the others are left to their own resync)."""
        self.routing = routing
        self.pbx = pbx
        self.owns = owns or (lambda _channel_id: True)
        self.telephony = telephony
        self.registry = registry
        self.repo = repo
        self.inbound = inbound
        self.clock = clock
        self.last: ResyncReport | None = None

    async def __call__(self, generation: int) -> ResyncReport:
        in_app = await self.telephony.application_channel_ids()
        channels = {c.id: c for c in await self.telephony.list_channels()}
        bridges = await self.telephony.list_bridges()
        kept = closed = adopted = 0

        for session in self.registry.sessions():
            if not self.owns(session.call.channel_id):
                continue
            if session.call.channel_id in channels:
                kept += 1
            else:
                await self.inbound.end_lost(session)
                closed += 1
        if self.routing is not None:
            # Agent legs that ended while the socket was down: their end was never heard.
            for leg in self.routing.leg_channel_ids() - set(channels):
                if self.owns(leg):
                    await self.routing.on_leg_lost(leg)

        ours = self.routing.leg_channel_ids() if self.routing is not None else set()
        stray_legs = {c for c in in_app if c.startswith(ORIGINATED_PREFIXES)} - ours
        # In the order they entered the queue: callers put back at the same kept time keep
        # their order too.
        taken: list[tuple[Call, tuple[str, str] | None]] = []
        gone: list[Call] = []
        for call in sorted(await self.repo.open_calls(),
                           key=lambda c: (c.queued_at or c.arrived_at, c.arrived_at)):
            if self.registry.get(call.id) is not None or not self.owns(call.channel_id):
                continue
            if call.channel_id not in in_app:
                gone.append(call)
                continue
            link = None
            if call.state is CallState.CONNECTED:
                link = _agent_link(call.channel_id, bridges, stray_legs)
                if link is None:  # the agent's leg is gone: the caller waits for the next one
                    log.info("resync.agent_leg_gone", call_id=call.id, agent_id=call.agent_id)
                    call = move(call, CallState.QUEUED)
            elif call.state is CallState.OFFERED:  # that offer died with its process
                call = move(call, CallState.QUEUED)
            if link is not None:
                stray_legs.discard(link[0])
            taken.append((call, link))
        # The record and the CRM are asked for every call at once (a takeover is timed: one
        # after the other they took ~0.15 s a call on a loaded box); the ACD then takes the
        # calls back one by one, in queue order.
        now = self.clock.now()
        await asyncio.gather(*(
            self.repo.save(ended(c, now, None, "gone while disconnected")) for c in gone))
        closed += len(gone)
        looked_up: list[Any] = [None] * len(taken)
        if self.routing is not None:
            looked_up = list(await asyncio.gather(
                *(self.routing.attributes_of(c) for c, _ in taken)))
        for (call, link), attributes in zip(taken, looked_up, strict=True):
            self.inbound.adopt(call, channels.get(call.channel_id), self.pbx)
            if self.routing is not None:
                await self.routing.resume_adopted(call, link, attributes)
            adopted += 1

        # still ringing, or its caller is gone: nobody will bridge it
        await _all_quietly(self.telephony.hangup(leg) for leg in stray_legs)

        known = {ch for s in self.registry.sessions() for ch in s.channels}
        stale_taps: set[str] = set()
        tap_channels: list[str] = []
        for channel_id in in_app - known - ours:
            info = channels.get(channel_id)
            if info is None or channel_id.startswith((*ORIGINATED_PREFIXES, MONITOR_PREFIX)):
                continue
            if is_tap_channel(channel_id):
                # An audio tap left by an earlier process: its call gets a new one if needed.
                tap_channels.append(channel_id)
                stale_taps.update(b.id for b in bridges if channel_id in b.channels)
                continue
            # A caller that entered Stasis while we could not see it: take it on.
            call = Call(
                id=info.id, channel_id=info.id, caller_number=info.caller_number,
                caller_name=info.caller_name, dialled_number=info.dialplan_exten,
                arrived_at=self.clock.now(),
            )
            self.inbound.adopt(call, info, self.pbx)
            adopted += 1

        await _all_quietly(self.telephony.hangup(ch) for ch in tap_channels)
        # the stale taps' bridges: listed with the tap's channels in them, so not empty below
        doomed = set(stale_taps)
        for bridge in bridges:
            if bridge.id in stale_taps:
                continue
            # After a reconnect, a bridge of this process may be empty for the moment between
            # its creation and its first channel: only the first resync removes any but cti-.
            prefixes = OUR_BRIDGE_PREFIXES if generation == 1 else ("cti-",)
            # Our bridges are known by their id (made with one); a name, if any, counts too.
            if not bridge.channels and (
                bridge.id.startswith(prefixes) or bridge.name.startswith(prefixes)
            ):
                doomed.add(bridge.id)
        await _all_quietly(self.telephony.destroy_bridge(b) for b in doomed)
        destroyed = len(doomed)

        self.last = ResyncReport(generation, kept, closed, adopted, destroyed)
        log.info(
            "ari.resynced", generation=generation, kept=kept, closed=closed, adopted=adopted,
            orphan_bridges_destroyed=destroyed,
        )
        return self.last


async def _all_quietly(requests: Iterable[Awaitable[None]]) -> None:
    """At once; one refused (already gone) does not stop the others."""
    for outcome in await asyncio.gather(*requests, return_exceptions=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, TelephonyError):
            raise outcome


def _agent_link(
    caller: str, bridges: list[BridgeInfo], legs: set[str]
) -> tuple[str, str] | None:
    """(agent leg, bridge) of the bridge holding `caller` with one of the service's legs."""
    for bridge in bridges:
        if caller in bridge.channels:
            for channel in bridge.channels:
                if channel in legs:
                    return channel, bridge.id
    return None
