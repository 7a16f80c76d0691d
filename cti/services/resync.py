"""Rebuild the call registry from the PBX after every (re)connect, so no call is lost or orphaned.

Events are not replayed by Asterisk after a socket drop, so the truth is what ARI lists now:
calls whose caller channel vanished are closed; calls still up (ours, or left open in the
database by an earlier process) are adopted and carry on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from cti.adapters.ari.telephony import AriTelephony
from cti.adapters.db.call_repository import CallRepository
from cti.clock import Clock
from cti.domain.calls import Call, ended
from cti.errors import TelephonyError
from cti.log import get_logger
from cti.services.call_registry import CallRegistry
from cti.services.caller_audio import is_tap_channel
from cti.services.inbound_calls import InboundCalls

log = get_logger(__name__)


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
    ) -> None:
        self.telephony = telephony
        self.registry = registry
        self.repo = repo
        self.inbound = inbound
        self.clock = clock
        self.last: ResyncReport | None = None

    async def __call__(self, generation: int) -> ResyncReport:
        in_app = await self.telephony.application_channel_ids()
        channels = {c.id: c for c in await self.telephony.list_channels()}
        kept = closed = adopted = 0

        for session in self.registry.sessions():
            if session.call.channel_id in channels:
                kept += 1
            else:
                await self.inbound.end_lost(session)
                closed += 1

        for call in await self.repo.open_calls():
            if self.registry.get(call.id) is not None:
                continue
            if call.channel_id in in_app:
                self.inbound.adopt(call, channels.get(call.channel_id))
                adopted += 1
            else:
                await self.repo.save(ended(call, self.clock.now(), None, "gone while disconnected"))
                closed += 1

        known = {ch for s in self.registry.sessions() for ch in s.channels}
        for channel_id in in_app - known:
            info = channels.get(channel_id)
            if info is None:
                continue
            if is_tap_channel(channel_id):
                # An audio tap left by an earlier process: its call gets a new one if needed.
                with contextlib.suppress(TelephonyError):
                    await self.telephony.hangup(channel_id)
                continue
            # A caller that entered Stasis while we could not see it: take it on.
            call = Call(
                id=info.id, channel_id=info.id, caller_number=info.caller_number,
                caller_name=info.caller_name, dialled_number=info.dialplan_exten,
                arrived_at=self.clock.now(),
            )
            self.inbound.adopt(call, info)
            adopted += 1

        destroyed = 0
        for bridge in await self.telephony.list_bridges():
            if not bridge.channels and bridge.name.startswith("cti-"):
                await self.telephony.destroy_bridge(bridge.id)
                destroyed += 1

        self.last = ResyncReport(generation, kept, closed, adopted, destroyed)
        log.info(
            "ari.resynced", generation=generation, kept=kept, closed=closed, adopted=adopted,
            orphan_bridges_destroyed=destroyed,
        )
        return self.last
