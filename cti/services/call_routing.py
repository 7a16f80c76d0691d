"""Joins a call's IVR, the ACD and the desk: the menu's route goes to the ACD, the agent's
answer switches the IVR to the agent's greeting, and agent legs' events reach the ACD."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cti.adapters.ari.events import AriEvent, ChannelDestroyed, StasisEnd, StasisStart
from cti.adapters.db.call_repository import CallRepository
from cti.domain.calls import CallState, move
from cti.domain.ivr.commands import RouteToQueue
from cti.domain.routing.events import (
    CallConnected,
    CallLeftQueue,
    CallOffered,
    OfferWithdrawn,
    RoutingEvent,
)
from cti.log import get_logger
from cti.services.acd import Acd
from cti.services.call_registry import CallRegistry
from cti.services.crm import CrmLookup
from cti.services.ivr_runner import IvrRunner
from cti.services.screen_pop import ScreenPop

log = get_logger(__name__)


class CallRouting:
    def __init__(
        self,
        acd: Acd,
        runner: IvrRunner,
        registry: CallRegistry,
        repo: CallRepository,
        crm: CrmLookup | None,
        agent_flow: str = "agent_greeting",
    ) -> None:
        self.acd = acd
        self.runner = runner
        self.registry = registry
        self.repo = repo
        self.crm = crm
        self.agent_flow = agent_flow
        self.screen_pop: ScreenPop | None = None

    async def on_route(self, call_id: str, command: RouteToQueue) -> None:
        """The IVR reached a route node: hand the call to the ACD with its attributes."""
        session = self.registry.get(call_id)
        if session is None:
            return
        call = session.call
        attributes: dict[str, Any] = {
            "menu": call.attributes.get("menu", ""),
            "language": command.lang,
            "dialled": call.dialled_number,
            "caller": call.caller_number,
            "tier": "standard",
        }
        if self.crm is not None:
            view = await self.crm.lookup_fast(call.caller_number)
            if view.customer is not None:
                attributes["tier"] = view.customer.tier
                attributes["crm"] = {
                    "name": view.customer.name, "tier": view.customer.tier,
                    "company": view.customer.company,
                }
        session.call = replace(move(call, CallState.QUEUED), queue=command.queue)
        log.info("call.queued", call_id=call_id, ivr_queue=command.queue, menu=attributes["menu"])
        # The ACD first (it may ring an agent at once), the call log after: the row then holds
        # whatever the call reached meanwhile (queued, or already offered).
        await self.acd.enqueue(call_id, call.channel_id, attributes)
        if not session.call.is_over:
            await self.repo.save(session.call)

    async def on_routing_event(self, event: RoutingEvent) -> None:
        session = self.registry.get(getattr(event, "call_id", "") or "")
        if session is None or session.call.is_over:
            return
        if isinstance(event, CallOffered):
            # The call's own states follow the offer: queued -> offered -> connected, and back
            # to queued when the agent does not answer. (A connected call offered to a
            # colleague is an attended transfer's consultation: it stays connected.)
            if session.call.state is not CallState.CONNECTED:
                session.call = move(session.call, CallState.OFFERED)
                await self.repo.save(session.call)
        elif (
            isinstance(event, OfferWithdrawn)
            and event.reason != "caller_hangup"
            and session.call.state is CallState.OFFERED
        ):
            session.call = move(session.call, CallState.QUEUED)
            await self.repo.save(session.call)
        elif isinstance(event, CallConnected):
            session.call = replace(
                move(session.call, CallState.CONNECTED), agent_id=event.agent_id,
                queue=event.queue,
            )
            await self.repo.save(session.call)
            slots = {"zh": {"agent_id": event.agent_id}, "en": {"agent_id": event.agent_id}}
            await self.runner.switch_flow(session.call.id, self.agent_flow, slots)
        elif isinstance(event, CallLeftQueue) and event.outcome == "fallback":
            log.info("call.fallback", call_id=session.call.id, fallback=str(event.fallback))

    async def on_agent_leg_start(self, event: StasisStart) -> None:
        # An originated agent leg enters Stasis when the agent picks up.
        await self.acd.on_agent_channel_answered(event.channel.id)

    async def on_ari_event(self, event: AriEvent) -> None:
        if isinstance(event, StasisEnd | ChannelDestroyed) and self.acd.is_agent_channel(
            event.channel.id
        ):
            await self.acd.on_agent_channel_ended(event.channel.id)

    async def on_caller_ended(self, call_id: str) -> None:
        agent = self.acd.core.connected_calls().get(call_id)
        await self.acd.on_caller_hangup(call_id)
        if self.screen_pop is not None and agent is not None:  # the card shows it ended
            self.screen_pop.call_ended(call_id, agent, cause="caller_hangup")
