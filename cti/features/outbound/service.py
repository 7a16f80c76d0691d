"""Calls placed from the agent page, and by the system for an agent (a complaint's call-back):
the agent's phone is rung first; when the agent answers, the customer is dialled through the
configured outbound dial pattern with the center's caller id; when the customer answers, both
are bridged. From the request on it is a call like any other (docs/outbound_calls.md):

- a call-log row (`attributes.direction = "outbound"`, the customer's number as the other
  party), and the usual events: `OutboundCallPlaced`, the customer's `CustomerIdentified`,
  `CallOffered` (the agent's pop card while their phone rings), `CallAnswered` and
  `CallConnected` (the card shows connected; queues with `record: true` record it),
  `CallEnded`, and `OutboundCallOutcome` saying how it went;
- the ACD has the agent on the call from the start (no queue offers them another meanwhile)
  and owns the agent leg as an answered one: either side hanging up ends the other and brings
  the wrap-up; transfers and hang-up from the card work as on an inbound call.

One asyncio task per call reads the call's ARI events (both channels are the session's).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Final

import structlog

from cti.domain.callbacks import outcome_of
from cti.domain.calls import Call, CallState
from cti.domain.crm import InvalidPhoneNumber, normalise_number
from cti.domain.routing.events import CallConnected, CallOffered
from cti.events import (
    Bus,
    CallAnswered,
    OutboundCallOutcome,
    OutboundCallPlaced,
)
from cti.features.calls.inbound import STOP, InboundCalls
from cti.features.calls.registry import CallRegistry, CallSession
from cti.features.calls.storage import CallRepository
from cti.features.routing.acd import Acd
from cti.platform.ari.events import ChannelDestroyed, StasisStart
from cti.platform.clock import Clock
from cti.platform.errors import ConfigError, CtiError, TelephonyError
from cti.platform.log import get_logger
from cti.platform.metrics import CALLS_ACTIVE
from cti.platform.ports import Telephony
from cti.platform.settings import OutboundSettings

log = get_logger(__name__)

AGENT_ARG: Final = "outbound-agent"  # Stasis(cti,outbound-agent,<call_id>): the agent answered
CUSTOMER_ARG: Final = "outbound"  # Stasis(cti,outbound,<call_id>): the customer answered
_DIALLABLE = re.compile(r"\+?[0-9]{3,20}")


def dialable(raw: str) -> str:
    """The E.164 form of `raw`, or ConfigError (422): only a phone number reaches the dial
    string ("1234@elsewhere" must not pick another route)."""
    try:
        number = normalise_number(raw)
    except InvalidPhoneNumber as exc:
        raise ConfigError(f"not a phone number to dial: {exc}") from None
    if not _DIALLABLE.fullmatch(number):
        raise ConfigError(f"not a phone number to dial: {raw!r}")
    return number


@dataclass(eq=False)
class PlacedCall:
    call_id: str
    agent_id: str
    number: str
    agent_channel: str
    purpose: str = "agent"
    customer_id: int | None = None
    work_order_id: int | None = None
    customer_dialled: bool = False
    connected: bool = False
    # "connected", "agent_no_answer", "busy", "no_answer", "failed": set once
    outcome: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, outcome: str) -> bool:
        if self.outcome.done():
            return False
        self.outcome.set_result(outcome)
        return True


class OutboundCalls:
    def __init__(
        self, telephony: Telephony, registry: CallRegistry, repo: CallRepository, acd: Acd,
        calls: InboundCalls, bus: Bus, clock: Clock, settings: OutboundSettings,
    ) -> None:
        self.telephony = telephony
        self.registry = registry
        self.repo = repo
        self.acd = acd
        self.calls = calls  # ends a call as every call ends (CallEnded, the log row)
        self.bus = bus
        self.clock = clock
        self.settings = settings
        self.placed: dict[str, PlacedCall] = {}

    def queue(self) -> str:
        rules = self.acd.core.rules
        q = self.settings.queue
        return q if q is not None and q in rules.queues else rules.default_queue

    async def place(
        self, agent_id: str, number: str, *, purpose: str = "agent",
        customer_id: int | None = None, work_order_id: int | None = None,
    ) -> PlacedCall:
        """Ring `agent_id`'s phone, then the customer. 422 for a number that is not one, 409
        when the agent is not available or paused (on a call, ringing, logged out)."""
        number = dialable(number)
        endpoint = self.acd.agent_endpoint(agent_id)
        hexid = uuid.uuid4().hex[:20]
        call_id, agent_channel = f"out-{hexid}", f"outa-{hexid}"
        queue = self.queue()
        attributes = {"direction": "outbound", "purpose": purpose, "caller": number,
                      "menu": ""}
        # The agent is on the call before their phone rings: no queue offers them a caller.
        await self.acd.start_outbound(call_id, call_id, agent_id, agent_channel, queue,
                                      attributes)
        now = self.clock.now()
        call_attrs = {"direction": "outbound", "purpose": purpose}
        if work_order_id is not None:
            call_attrs["work_order_id"] = str(work_order_id)
        call = Call(
            id=call_id, channel_id=call_id, caller_number=number, caller_name="",
            dialled_number=number, arrived_at=now, state=CallState.QUEUED, agent_id=agent_id,
            queue=queue, attributes=call_attrs,
        )
        session = CallSession(call=call)
        self.registry.add(session)
        self.registry.attach_channel(call_id, agent_channel)
        placed = PlacedCall(call_id, agent_id, number, agent_channel, purpose, customer_id,
                            work_order_id)
        self.placed[call_id] = placed
        CALLS_ACTIVE.inc()
        self.bus.publish(OutboundCallPlaced(call_id, now, agent_id, number, purpose,
                                            customer_id, work_order_id))
        # the agent's card, while their phone rings (the customer's record: the lookup above)
        self.bus.publish(CallOffered(call_id, agent_id, queue, 0.0, {"direction": "outbound"},
                                     now, offer_id=f"out-{call_id}", caller_number=number))
        await self.repo.save(call)
        session.task = asyncio.create_task(self._run(session, placed), name=f"call-{call_id}")
        try:
            await self.telephony.originate(
                endpoint, app_args=f"{AGENT_ARG},{call_id}", caller_id=number,
                timeout=self.settings.agent_ring_s, channel_id=agent_channel,
                variables={"CTI_CALL_ID": call_id}, formats="ulaw",
            )
        except TelephonyError as exc:
            log.warning("outbound.agent_ring_failed", call_id=call_id, error=exc.message)
            placed.settle("failed")
            session.ended_by = "service"
            await self._end(session, None, f"agent phone: {exc.message}")
            raise
        log.info("outbound.placed", call_id=call_id, agent_id=agent_id, purpose=purpose)
        return placed

    async def _run(self, session: CallSession, placed: PlacedCall) -> None:
        structlog.contextvars.bind_contextvars(call_id=placed.call_id)
        try:
            while not session.call.is_over:
                event = await session.events.get()
                if event is STOP:
                    return
                await self._on_event(session, placed, event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbound.task_failed")
            session.ended_by = session.ended_by or "service"
            await self._hang_up(placed.agent_channel, placed.call_id)
            await self._end(session, None, "service error")
        finally:
            placed.settle("failed")
            self.placed.pop(placed.call_id, None)
            self.registry.remove(placed.call_id)
            CALLS_ACTIVE.dec()

    async def _on_event(self, session: CallSession, placed: PlacedCall, event: object) -> None:
        customer, agent = placed.call_id, placed.agent_channel
        if isinstance(event, StasisStart) and event.channel.id == agent:
            await self._agent_answered(session, placed)
        elif isinstance(event, StasisStart) and event.channel.id == customer:
            await self._customer_answered(session, placed)
        elif isinstance(event, ChannelDestroyed) and event.channel.id == customer:
            if not placed.connected:
                outcome = outcome_of(event.cause)
                if placed.settle(outcome):
                    self._outcome(placed, outcome, event.cause_txt or "")
                session.ended_by = session.ended_by or "customer"
            else:
                session.ended_by = session.ended_by or "caller"
            await self.calls.finish(session, event.cause, event.cause_txt)
        elif isinstance(event, ChannelDestroyed) and event.channel.id == agent:
            if not placed.customer_dialled:  # the agent did not answer (or refused)
                if placed.settle("agent_no_answer"):
                    self._outcome(placed, "agent_no_answer", event.cause_txt or "")
                session.ended_by = "agent"
                await self._end(session, event.cause, event.cause_txt)
            elif not placed.connected:  # the agent gave up while the customer rang
                session.ended_by = "agent"
                await self._hang_up(customer, placed.call_id)
            # connected: the ACD ends the customer's side (or it was a transfer)

    async def _agent_answered(self, session: CallSession, placed: PlacedCall) -> None:
        if placed.customer_dialled:
            return
        placed.customer_dialled = True
        with contextlib.suppress(CtiError):
            await self.telephony.ring(placed.agent_channel)  # ringback while the customer rings
        pattern = self.settings.dial
        endpoint = pattern.format(number=placed.number, digits=placed.number.lstrip("+"))
        try:
            await self.telephony.originate(
                endpoint, app_args=f"{CUSTOMER_ARG},{placed.call_id}",
                caller_id=self.settings.caller_id or None,
                timeout=self.settings.customer_ring_s, channel_id=placed.call_id,
                variables={"CTI_CALL_ID": placed.call_id}, formats="ulaw",
            )
        except TelephonyError as exc:
            log.warning("outbound.dial_failed", error=exc.message, endpoint=endpoint)
            if placed.settle("failed"):
                self._outcome(placed, "failed", exc.message)
            session.ended_by = "service"
            await self._hang_up(placed.agent_channel, placed.call_id)
            await self._end(session, None, f"dial failed: {exc.message}")
            return
        log.info("outbound.customer_dialled", endpoint=endpoint)

    async def _customer_answered(self, session: CallSession, placed: PlacedCall) -> None:
        if placed.connected:
            return
        placed.connected = True
        with contextlib.suppress(CtiError):
            await self.telephony.ring_stop(placed.agent_channel)
        bridge = await self.telephony.create_bridge(f"out-{placed.call_id}"[:60], "mixing")
        self.acd.outbound_bridged(placed.call_id, bridge)
        session.bridge_id = bridge
        await self.telephony.add_to_bridge(bridge, [placed.call_id, placed.agent_channel])
        now = self.clock.now()
        session.call = replace(session.call, answered_at=now)
        self.bus.publish(CallAnswered(placed.call_id, now))
        # the routing feature moves the call to connected and writes the log row
        self.bus.publish(CallConnected(placed.call_id, placed.agent_id, self.queue(), 0.0, now,
                                       bridge_id=bridge))
        if placed.settle("connected"):
            self._outcome(placed, "connected", "")
        log.info("outbound.connected", bridge=bridge)

    def _outcome(self, placed: PlacedCall, outcome: str, cause: str) -> None:
        self.bus.publish(OutboundCallOutcome(placed.call_id, self.clock.now(), placed.agent_id,
                                             outcome, cause, placed.work_order_id))

    async def _end(self, session: CallSession, cause: int | None, text: str | None) -> None:
        await self.calls.finish(session, cause, text)

    async def _hang_up(self, channel: str, call_id: str) -> None:
        try:
            await self.telephony.hangup(channel)
        except CtiError as exc:
            log.info("outbound.hangup_skipped", channel=channel, call_id=call_id,
                     error=exc.message)

    async def on_stray(self, event: StasisStart) -> None:
        """A leg of a call this process does not know (a restart between the originate and
        the answer): nobody would bridge it, so it is hung up."""
        await self._hang_up(event.channel.id, event.args[1] if len(event.args) > 1 else "")
