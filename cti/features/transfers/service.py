"""One-click transfer from the agent page (cti.features.desk.desk.TransferControl).

Targets:
- `agent`: blind — the agent's leg leaves at once (the agent goes to wrap-up) and the ACD
  offers the call straight to the colleague, who gets the screen pop and is rung; should they
  not answer, the call waits in the queue it came from. Attended — the caller hears 请稍等 and
  hold music while the agent talks with the colleague in a consultation bridge; then
  `complete` (the agent leaves, the colleague has the call) or `cancel` (back to the caller).
- `queue`: the call re-enters the ACD in that queue with the attributes it arrived with.
- `number`: the call leaves the ACD; an outside leg is dialled (`number_endpoint`, e.g.
  "PJSIP/{number}@trunk") and bridged with the caller when it answers.

While a transfer rings, the caller is on the scripted hold (docs/phrases.md#row-6a: 请稍等, then
music) run by the IVR, which the colleague's answer ends (their greeting follows).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from dataclasses import replace
from typing import Any, Protocol

from cti.domain.calls import CallState, move
from cti.events import Bus, CallTransferred, TransferCancelled, TransferStarted
from cti.features.calls.registry import CallRegistry
from cti.features.routing.acd import Acd
from cti.platform.ari.events import AriEvent, ChannelDestroyed, StasisEnd, StasisStart
from cti.platform.clock import Clock
from cti.platform.errors import ConfigError, CtiError, Forbidden, NotFound, TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import Telephony

log = get_logger(__name__)

TRANSFER_LEG_ARG = "transfer-out"  # Stasis(cti,transfer-out,<call_id>): an outside leg answered
HOLD_PROCEDURE = "hold"


class CallerHold(Protocol):
    """The IVR's scripted hold (cti.features.ivr.runner.IvrRunner)."""

    async def start_procedure(
        self, call_id: str, name: str, agent_id: str | None = None, started_by: str = "agent"
    ) -> None: ...

    async def agent_command(
        self, call_id: str, command: str, agent_id: str | None = None
    ) -> None: ...


_DIALLABLE = re.compile(r"\+?[0-9*#]{1,32}")


class TransferControl:
    def __init__(
        self,
        acd: Acd,
        telephony: Telephony,
        calls: CallRegistry,
        bus: Bus,
        clock: Clock,
        hold: CallerHold | None = None,
        *,
        number_endpoint: str = "PJSIP/{number}",
        ring_timeout_s: int = 30,
    ) -> None:
        self.acd = acd
        self.telephony = telephony
        self.calls = calls
        self.bus = bus
        self.clock = clock
        self.hold = hold
        self.number_endpoint = number_endpoint
        self.ring_timeout_s = ring_timeout_s
        self._outside: dict[str, str] = {}  # outside leg channel -> call id
        self._outside_of_call: dict[str, str] = {}  # call id -> outside leg channel
        self._bridges: dict[str, str] = {}  # call id -> bridge with the outside leg
        self._tasks: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- the desk's port

    async def transfer(
        self, call_id: str, *, agent_id: str, target_type: str, target: str, kind: str
    ) -> dict[str, Any]:
        if target_type == "number" and not _DIALLABLE.fullmatch(target):
            # It goes into a dial string: "1234@elsewhere" must not pick another route.
            raise ConfigError(
                f"not a phone number to dial: {target!r} (digits, * and #, a leading +)"
            )
        self._require_agent(call_id, agent_id)
        if target_type == "agent" and kind == "attended":
            await self.acd.consult(call_id, target)
            await self._hold_caller(call_id, agent_id)
            self.bus.publish(TransferStarted(call_id, self.clock.now(), agent_id, kind,
                                             target_type, target))
            log.info("transfer.consult", call_id=call_id, agent_id=agent_id, target=target)
            return {"state": "consulting", "target": target}
        if kind == "attended":
            raise ConfigError(f"an attended transfer needs an agent, not a {target_type}")
        if target_type not in ("agent", "queue", "number"):
            raise ConfigError(f"unknown transfer target type {target_type!r}")
        self.bus.publish(TransferStarted(call_id, self.clock.now(), agent_id, kind, target_type,
                                         target))
        session = self.calls.get(call_id)
        before = session.call if session else None
        if session is not None and before is not None:
            # back to the queue before the ACD offers it on (queued -> offered -> connected)
            session.call = replace(move(before, CallState.QUEUED), agent_id=None)
        try:
            if target_type == "agent":
                await self.acd.transfer(call_id, agent_id=target)
            elif target_type == "queue":
                await self.acd.transfer(call_id, queue=target)
            else:
                await self._to_number(call_id, target)
        except CtiError as exc:
            if session is not None and before is not None:
                session.call = before  # refused: nothing changed, the agent keeps the call
            self.bus.publish(TransferCancelled(call_id, self.clock.now(), agent_id,
                                               reason=exc.error_id))
            raise
        self._hand_over(call_id, agent_id, target_type, target, "blind")
        await self._hold_caller(call_id, agent_id)
        log.info("transfer.blind", call_id=call_id, agent_id=agent_id, target_type=target_type,
                 target=target)
        return {"state": "transferred", "target": target, "target_type": target_type}

    async def complete(self, call_id: str, agent_id: str) -> dict[str, Any]:
        """Attended transfer: hand the call to the consulted colleague."""
        self._require_agent(call_id, agent_id)
        if self.acd.consult_state(call_id) is None:
            raise NotFound(f"no consultation on call {call_id}")
        # the agent's card first: the colleague's connection must not withdraw it
        self._hand_over(call_id, agent_id, "agent", "", "attended")
        await self.acd.complete_consult(call_id)
        return {"state": "transferred"}

    async def cancel(self, call_id: str, agent_id: str) -> dict[str, Any]:
        """Attended transfer: drop the colleague and return to the caller (hold ends)."""
        self._require_agent(call_id, agent_id)
        if self.acd.consult_state(call_id) is None:
            raise NotFound(f"no consultation on call {call_id}")
        await self.acd.cancel_consult(call_id)
        if self.hold is not None:
            with contextlib.suppress(CtiError):
                await self.hold.agent_command(call_id, "resume", agent_id)
        self.bus.publish(TransferCancelled(call_id, self.clock.now(), agent_id, "cancelled"))
        return {"state": "connected"}

    # ----------------------------------------------------------------- outside numbers

    async def _to_number(self, call_id: str, number: str) -> None:
        endpoint = self.number_endpoint.format(number=number, digits=number.lstrip("+"))
        session = self.calls.get(call_id)
        caller = session.call.caller_number if session else None
        leg = f"xfer-{uuid.uuid4().hex[:20]}"
        caller_channel = await self.acd.release_call(call_id)
        self._outside[leg] = call_id
        self._outside_of_call[call_id] = leg
        try:
            await self.telephony.originate(
                endpoint, app_args=f"{TRANSFER_LEG_ARG},{call_id}", caller_id=caller,
                timeout=self.ring_timeout_s, channel_id=leg, formats="ulaw",
                variables={"CTI_CALL_ID": call_id},
            )
        except TelephonyError:
            self._forget_outside(leg)
            with contextlib.suppress(TelephonyError):  # nobody left to talk to
                await self.telephony.hangup(caller_channel)
            raise

    async def on_outside_leg_start(self, event: StasisStart) -> None:
        """The dialled number answered: bridge it with the caller."""
        leg = event.channel.id
        call_id = self._outside.get(leg)
        session = self.calls.get(call_id) if call_id else None
        if call_id is None or session is None:
            with contextlib.suppress(TelephonyError):
                await self.telephony.hangup(leg)
            return
        if self.hold is not None:
            with contextlib.suppress(CtiError):
                await self.hold.agent_command(call_id, "resume")
        caller = session.call.channel_id
        await self.telephony.stop_moh(caller)
        bridge = await self.telephony.create_bridge(f"xfer-{call_id}"[:60], "mixing")
        self._bridges[call_id] = bridge
        await self.telephony.add_to_bridge(bridge, [caller, leg])
        log.info("transfer.number_answered", call_id=call_id, leg=leg)

    async def on_ari_event(self, event: AriEvent) -> None:
        """Either end of an outside transfer hanging up ends the other."""
        if not isinstance(event, StasisEnd | ChannelDestroyed):
            return
        channel = event.channel.id
        if channel in self._outside:
            call_id = self._outside[channel]
            self._forget_outside(channel)
            session = self.calls.get(call_id)
            if session is not None:
                with contextlib.suppress(TelephonyError):
                    await self.telephony.hangup(session.call.channel_id)
            return
        session = self.calls.by_channel(channel)
        if session is not None and session.call.channel_id == channel:
            leg = self._outside_of_call.get(session.call.id)
            if leg is not None:
                self._forget_outside(leg)
                with contextlib.suppress(TelephonyError):
                    await self.telephony.hangup(leg)

    def _forget_outside(self, leg: str) -> None:
        call_id = self._outside.pop(leg, None)
        if call_id is not None:
            self._outside_of_call.pop(call_id, None)
            bridge = self._bridges.pop(call_id, None)
            if bridge is not None:
                self._later_destroy(bridge)

    def _later_destroy(self, bridge: str) -> None:
        async def destroy() -> None:
            with contextlib.suppress(TelephonyError):
                await self.telephony.destroy_bridge(bridge)

        task = asyncio.get_running_loop().create_task(destroy())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- helpers

    def _require_agent(self, call_id: str, agent_id: str) -> None:
        owner = self.acd.core.agent_of_call(call_id)  # the consulting agent in a consult
        if owner is None:
            raise NotFound(f"call {call_id} is not connected to an agent")
        if owner != agent_id:
            raise Forbidden(f"call {call_id} is agent {owner}'s, not {agent_id}'s")

    def _hand_over(
        self, call_id: str, agent_id: str, target_type: str, target: str, kind: str
    ) -> None:
        """The agent is no longer on the call: their card shows it ended (wrap-up follows),
        and they lose control of it."""
        self.bus.publish(CallTransferred(
            call_id, self.clock.now(), agent_id, kind, target_type, target,
        ))
        session = self.calls.get(call_id)
        if session is None or session.call.agent_id != agent_id:
            return  # already the colleague's (they answered meanwhile)
        call = session.call
        session.call = replace(call, agent_id=None,
                               queue=target if target_type == "queue" else call.queue)

    async def _hold_caller(self, call_id: str, agent_id: str) -> None:
        if self.hold is None:
            return
        try:
            await self.hold.start_procedure(call_id, HOLD_PROCEDURE, agent_id)
        except CtiError as exc:  # no IVR on the call: the ACD's music on hold still plays
            log.warning("transfer.hold_failed", call_id=call_id, error=exc.message)
