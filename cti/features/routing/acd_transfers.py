"""Transfers of a connected call by its agent: blind (to an agent or a queue), out of the ACD
(an outside number), and attended (consult a colleague, then complete or cancel).

The core decides who is offered what; this moves the legs and bridges at the PBX around the
core's commands, which it hands back to the driver (`run`) so they are executed like any
other. The driver calls in when a consultation's leg is answered (`connect_consult`), ends or
goes unanswered, and when the caller hangs up mid-consultation.

A class of its own (the ACD owns one) rather than a mixin: what it shares with the driver is
explicit and small — the shared `AcdCalls`, the announcements (stopped before a bridge) and
three driver functions (run commands, emit an event, now).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

from cti.domain.routing.acd import AcdCore, Command
from cti.domain.routing.events import CallConnected, RoutingEvent
from cti.features.routing.acd_calls import (
    AcdCall,
    AcdCalls,
    AgentLeg,
    Consultation,
    destroy_bridge_quietly,
    fresh_bridge_id,
    hang_up_quietly,
)
from cti.features.routing.announcements import Announcements
from cti.platform.errors import NotFound, TelephonyError
from cti.platform.ports import Telephony


class AcdTransfers:
    def __init__(
        self,
        telephony: Telephony,
        core: AcdCore,
        calls: AcdCalls,
        announcements: Announcements,
        *,
        run: Callable[[list[Command]], Awaitable[None]],
        emit: Callable[[RoutingEvent], Awaitable[None]],
        now: Callable[[], tuple[float, datetime]],
    ) -> None:
        self._telephony = telephony
        self._core = core
        self._calls = calls
        self._announcements = announcements
        self._run = run
        self._emit = emit
        self._now = now

    def consult_state(self, call_id: str) -> str | None:
        """None (no consultation), "ringing" or "talking"."""
        consult = self._calls.consult_of(call_id)
        if consult is None:
            return None
        return "talking" if consult.bridge_id else "ringing"

    # ----- blind -------------------------------------------------------------------------

    async def transfer(
        self, call_id: str, *, queue: str | None = None, agent_id: str | None = None
    ) -> None:
        """Blind transfer: the agent's leg leaves at once (the agent goes to wrap-up); the
        caller, with the attributes it arrived with, is offered to `agent_id` or waits in
        `queue`. Conflict/NotFound (nothing changed) when the target cannot take it."""
        call = self._require(call_id)
        commands = self._core.transfer(
            call_id, call.attributes, *self._now(), queue=queue, agent_id=agent_id
        )
        await self._detach_agent(call)
        await self._run(commands)

    async def release_call(self, call_id: str) -> str:
        """The call leaves the ACD for good (a transfer to an outside number): the agent's leg
        leaves and the agent goes to wrap-up. Returns the caller's channel id."""
        call = self._require(call_id)
        commands = self._core.call_ended(call_id, *self._now())
        await self._detach_agent(call)
        self._calls.by_id.pop(call_id, None)
        await self._run(commands)
        return call.channel_id

    # ----- attended ----------------------------------------------------------------------

    async def consult(self, call_id: str, agent_id: str) -> None:
        """Attended transfer: take the agent's leg out of the caller's bridge and ring
        `agent_id`; on answer the two agents talk in a consultation bridge."""
        call = self._require(call_id)
        if call.leg is None or not call.leg.answered:
            raise NotFound(f"call {call_id} has no answered agent leg")
        commands = self._core.consult(call_id, call.attributes, *self._now(), agent_id=agent_id)
        call.consult = Consultation(call.leg)
        if call.bridge_id and call.leg.channel_id:
            with contextlib.suppress(TelephonyError):
                await self._telephony.remove_from_bridge(call.bridge_id, [call.leg.channel_id])
        await self._run(commands)

    async def connect_consult(self, call: AcdCall, leg: AgentLeg) -> None:
        """The colleague answered: the two agents talk, the caller stays on hold."""
        assert call.consult is not None
        bridge = await self._telephony.create_bridge(
            fresh_bridge_id("consult", leg.call_id), "mixing"
        )
        call.consult.bridge_id = leg.bridge_id = bridge
        assert call.consult.agent_leg.channel_id is not None
        assert leg.channel_id is not None
        await self._telephony.add_to_bridge(bridge, [call.consult.agent_leg.channel_id,
                                                     leg.channel_id])

    def hold_back(self, event: RoutingEvent) -> bool:
        """A colleague answering a consultation is not theirs yet: its CallConnected waits
        for the transfer to complete (True: held back)."""
        if not isinstance(event, CallConnected):
            return False
        consult = self._calls.consult_of(event.call_id)
        if consult is None:
            return False
        consult.connected = event
        return True

    async def complete_consult(self, call_id: str) -> None:
        """The consulting agent leaves; the colleague (talking, or still ringing) keeps the
        call and the caller is bridged with them."""
        call = self._calls.get(call_id)
        consult = call.consult if call else None
        if call is None or consult is None:
            raise NotFound(f"no consultation on call {call_id}")
        call.consult = None
        a_leg = consult.agent_leg
        self._calls.forget_leg(a_leg)
        if consult.bridge_id:
            await destroy_bridge_quietly(self._telephony, consult.bridge_id)
        if a_leg.channel_id:
            await hang_up_quietly(self._telephony, a_leg.channel_id)
        if call.bridge_id:
            await destroy_bridge_quietly(self._telephony, call.bridge_id)
            call.bridge_id = None
        await self._run(self._core.consult_completed(call_id, *self._now()))
        b_leg = call.leg if call.leg is not a_leg else None
        if b_leg is not None and b_leg.answered and b_leg.channel_id:
            await self._bridge_with(call, b_leg)
            if consult.connected is not None:
                await self._emit(consult.connected)
        elif b_leg is None:
            call.leg = None

    async def cancel_consult(self, call_id: str) -> None:
        """The consultation ends without a transfer: the colleague is released and the
        consulting agent is back with the caller."""
        call = self._calls.get(call_id)
        consult = call.consult if call else None
        if call is None or consult is None:
            raise NotFound(f"no consultation on call {call_id}")
        call.consult = None
        b_leg = call.leg if call.leg is not consult.agent_leg else None
        if b_leg is not None:
            b_leg.stop_ring_timer()
            self._calls.forget_leg(b_leg)
            if b_leg.channel_id:
                await hang_up_quietly(self._telephony, b_leg.channel_id)
        if consult.bridge_id:
            await destroy_bridge_quietly(self._telephony, consult.bridge_id)
        call.leg = consult.agent_leg
        await self._run(self._core.consult_cancelled(call_id, *self._now()))
        await self._bridge_with(call, consult.agent_leg)

    async def leg_ended(self, leg: AgentLeg, consult: Consultation) -> None:
        """Either side left the consultation: the consulting agent hands the call over, the
        colleague hanging up (or rejecting) cancels it."""
        if leg is consult.agent_leg:
            await self.complete_consult(leg.call_id)
        else:
            await self.cancel_consult(leg.call_id)

    async def end_consult_legs(self, consult: Consultation) -> None:
        """The caller hung up mid-consultation: the consulting agent's leg and the
        consultation bridge go too."""
        self._calls.forget_leg(consult.agent_leg)
        if consult.bridge_id:
            await destroy_bridge_quietly(self._telephony, consult.bridge_id)
        if consult.agent_leg.channel_id:
            await hang_up_quietly(self._telephony, consult.agent_leg.channel_id)

    # ----- the legs and bridges ------------------------------------------------------------

    async def _bridge_with(self, call: AcdCall, leg: AgentLeg) -> None:
        assert leg.channel_id is not None
        await self._announcements.stop(call)
        await self._telephony.stop_moh(call.channel_id)
        if call.bridge_id is None:
            call.bridge_id = await self._telephony.create_bridge(
                fresh_bridge_id("acd", leg.call_id), "mixing"
            )
            await self._telephony.add_to_bridge(call.bridge_id, [call.channel_id, leg.channel_id])
        else:
            await self._telephony.add_to_bridge(call.bridge_id, [leg.channel_id])
        leg.bridge_id = call.bridge_id
        call.leg = leg

    async def _detach_agent(self, call: AcdCall) -> None:
        """Forget the agent's leg before hanging it up, so its end does not end the call."""
        leg, call.leg = call.leg, None
        if call.bridge_id:
            await destroy_bridge_quietly(self._telephony, call.bridge_id)
            call.bridge_id, call.rebridged = None, True
        if leg is not None:
            self._calls.forget_leg(leg)
            leg.stop_ring_timer()
            if leg.channel_id:
                await hang_up_quietly(self._telephony, leg.channel_id)

    def _require(self, call_id: str) -> AcdCall:
        call = self._calls.get(call_id)
        if call is None:
            raise NotFound(f"call {call_id} is not with the ACD")
        return call
