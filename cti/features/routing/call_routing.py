"""Joins a call's IVR, the ACD and the desk: the menu's route goes to the ACD, the agent's
answer switches the IVR to the agent's greeting, and agent legs' events reach the ACD."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from cti.domain.calls import Call, CallState, move
from cti.domain.ivr.commands import RouteToQueue
from cti.domain.routing.events import (
    CallConnected,
    CallLeftQueue,
    CallOffered,
    OfferWithdrawn,
    RoutingEvent,
)
from cti.features.calls.registry import CallRegistry
from cti.features.calls.storage import CallRepository
from cti.features.crm.service import CrmLookup, CustomerView
from cti.features.desk.screen_pop import ScreenPop
from cti.features.ivr.runner import IvrRunner
from cti.features.routing.acd import Acd
from cti.platform.ari.events import AriEvent, ChannelDestroyed, StasisEnd, StasisStart
from cti.platform.errors import NotFound
from cti.platform.log import get_logger

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
        # The caller's CRM record, looked up as the call arrives (call id -> lookup): the tier
        # is ready when the IVR routes, instead of a database round trip before the ring.
        self._customers: dict[str, asyncio.Task[CustomerView]] = {}
        self._leg_work: dict[str, asyncio.Task[None]] = {}  # agent leg -> its latest handling
        self.screen_pop: ScreenPop | None = None

    async def on_route(self, call_id: str, command: RouteToQueue) -> None:
        """The IVR reached a route node: hand the call to the ACD with its attributes."""
        session = self.registry.get(call_id)
        if session is None:
            return
        call = session.call
        # Kept with the call (and its log row): a restarted service requeues it with them.
        call.attributes["language"] = command.lang
        attributes = await self._routing_attributes(call)
        session.call = replace(move(call, CallState.QUEUED), queue=command.queue)
        log.info("call.queued", call_id=call_id, ivr_queue=command.queue, menu=attributes["menu"])
        # The ACD first (it may ring an agent at once), the call log after: the row then holds
        # whatever the call reached meanwhile (queued, or already offered).
        await self.acd.enqueue(call_id, call.channel_id, attributes)
        if not session.call.is_over:
            await self.repo.save(session.call)

    async def _routing_attributes(self, call: Call) -> dict[str, Any]:
        """What the routing rules test: the menu key, language, numbers, and the caller's CRM
        tier and fields (looked up when the call arrived)."""
        attributes: dict[str, Any] = {
            "menu": call.attributes.get("menu", ""),
            "dialled": call.dialled_number,
            "caller": call.caller_number,
            "tier": "standard",
        }
        if call.attributes.get("language"):
            attributes["language"] = call.attributes["language"]
        view = await self.customer(call.id, call.caller_number)
        if view is not None and view.customer is not None:
            attributes["tier"] = view.customer.tier
            attributes["crm"] = {
                "name": view.customer.name, "tier": view.customer.tier,
                "company": view.customer.company,
            }
        return attributes

    def leg_channel_ids(self) -> set[str]:
        return self.acd.leg_channel_ids()

    async def on_leg_lost(self, channel_id: str) -> None:
        """An agent leg ended while the event socket was down (resync found it gone)."""
        self._in_order(channel_id, lambda: self.acd.on_agent_channel_ended(channel_id))

    async def resume_adopted(self, call: Call, agent_link: tuple[str, str] | None) -> None:
        """After a restart: a call the last process had with an agent (`agent_link`: the
        agent leg and the bridge holding both) or in a queue is the ACD's again, in the queue
        it was in, with the menu key and language its log row kept; the tier is looked up
        again."""
        attributes = await self._routing_attributes(call)
        if call.state is CallState.CONNECTED and agent_link is not None and call.agent_id:
            leg, bridge = agent_link
            await self.acd.adopt_connected(
                call.id, call.channel_id, leg, bridge, call.agent_id, call.queue, attributes
            )
            log.info("call.adopted_with_agent", call_id=call.id, agent_id=call.agent_id)
        elif call.state in (CallState.QUEUED, CallState.OFFERED):
            await self.acd.requeue(call.id, call.channel_id, attributes, call.queue)
            log.info("call.requeued", call_id=call.id, queue=call.queue)

    async def on_routing_event(self, event: RoutingEvent) -> None:
        session = self.registry.get(getattr(event, "call_id", "") or "")
        if session is None or session.call.is_over:
            return
        if isinstance(event, CallOffered):
            # The call's own states follow the offer: queued -> offered -> connected, and back
            # to queued when the agent does not answer. (A connected call offered to a
            # colleague is an attended transfer's consultation: it stays connected.) These
            # stay in memory (the registry is the live view): the call log is written at
            # queue, connect and end, not twice more per offer.
            if session.call.state is not CallState.CONNECTED:
                session.call = move(session.call, CallState.OFFERED)
        elif (
            isinstance(event, OfferWithdrawn)
            and event.reason != "caller_hangup"
            and session.call.state is CallState.OFFERED
        ):
            session.call = move(session.call, CallState.QUEUED)
        elif isinstance(event, CallConnected):
            call = session.call
            if call.state is CallState.QUEUED:  # the offer's own event was not seen (yet)
                call = move(call, CallState.OFFERED)
            session.call = replace(
                move(call, CallState.CONNECTED), agent_id=event.agent_id, queue=event.queue
            )
            await self.repo.save(session.call)
            slots = {"zh": {"agent_id": event.agent_id}, "en": {"agent_id": event.agent_id}}
            try:
                await self.runner.switch_flow(session.call.id, self.agent_flow, slots)
            except NotFound:  # the caller hung up as the agent answered: nothing to greet
                log.info("call.gone_at_connect", call_id=session.call.id)
        elif isinstance(event, CallLeftQueue) and event.outcome == "fallback":
            log.info("call.fallback", call_id=session.call.id, fallback=str(event.fallback))

    async def on_agent_leg_start(self, event: StasisStart) -> None:
        # An originated agent leg enters Stasis when the agent picks up.
        channel_id = event.channel.id
        self._in_order(channel_id, lambda: self.acd.on_agent_channel_answered(channel_id))

    def _in_order(self, channel_id: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run an agent leg's handling off the ARI event reader (bridging, the greeting and the
        call log take tens of milliseconds; every other call's events would wait behind
        them), one at a time per leg, in the order the events came."""
        before = self._leg_work.get(channel_id)

        async def run() -> None:
            if before is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await before
            try:
                await work()
            except Exception:
                log.exception("acd.agent_leg_failed", channel=channel_id)

        task = asyncio.create_task(run(), name=f"acd-leg-{channel_id}")
        self._leg_work[channel_id] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._leg_work.get(channel_id) is t:
                del self._leg_work[channel_id]

        task.add_done_callback(done)

    async def customer(self, call_id: str, number: str) -> CustomerView | None:
        """The caller's CRM record (local store), looked up once per call as it arrived; for
        the route's tier and for anyone else on the call path (the IVR's greeting by name).
        None when there is no CRM or the lookup failed (the call goes on as "standard")."""
        if self.crm is None:
            return None
        lookup = self._customers.get(call_id)
        if lookup is None:  # an adopted call (no StasisStart seen): look up now, keep it
            lookup = self._customers[call_id] = asyncio.create_task(
                self.crm.lookup_fast(number), name=f"crm-{call_id}"
            )
        try:
            return await asyncio.shield(lookup)
        except Exception:
            log.exception("crm.lookup_failed", call_id=call_id)
            return None

    def _forget_customer(self, call_id: str) -> None:
        lookup = self._customers.pop(call_id, None)
        if lookup is not None and not lookup.done():
            lookup.cancel()
        elif lookup is not None and not lookup.cancelled():
            with contextlib.suppress(Exception):
                lookup.exception()  # retrieved: no "exception never retrieved" warning

    async def on_ari_event(self, event: AriEvent) -> None:
        if (
            isinstance(event, StasisStart)
            and self.crm is not None
            and event.args[:1] == ["inbound"]
            and event.channel.id not in self._customers
        ):
            self._customers[event.channel.id] = asyncio.create_task(
                self.crm.lookup_fast(event.channel.caller.number),
                name=f"crm-{event.channel.id}",
            )
        elif isinstance(event, ChannelDestroyed) and event.channel.id in self._customers:
            self._forget_customer(event.channel.id)
        if isinstance(event, StasisEnd | ChannelDestroyed) and self.acd.is_agent_channel(
            event.channel.id
        ):
            channel_id = event.channel.id
            self._in_order(channel_id, lambda: self.acd.on_agent_channel_ended(channel_id))

    async def on_caller_ended(self, call_id: str) -> None:
        self._forget_customer(call_id)
        agent = self.acd.core.connected_calls().get(call_id)
        await self.acd.on_caller_hangup(call_id)
        if self.screen_pop is not None and agent is not None:  # the card shows it ended
            self.screen_pop.call_ended(call_id, agent, cause="caller_hangup")
