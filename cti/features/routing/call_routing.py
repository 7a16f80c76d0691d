"""Joins a call's IVR and the ACD, by events: the IVR's `CallRouted` hands the call to the
ACD; the ACD's events move the call's state (queued -> offered -> connected) and switch the
IVR to the agent's greeting; `CallEnded` takes the caller out of the ACD. Agent legs' ARI
events reach the ACD through here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from cti.domain.calls import Call, CallState, move
from cti.domain.routing.events import (
    AgentStateChanged,
    CallConnected,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    OfferWithdrawn,
    RoutingEvent,
)
from cti.events import Bus, CallEnded, CallRouted
from cti.features.calls.registry import CallRegistry
from cti.features.calls.storage import CallRepository
from cti.features.crm.caller_lookup import CallerLookup
from cti.features.ivr.runner import IvrRunner
from cti.features.routing.acd import Acd
from cti.platform.ari.events import AriEvent, ChannelDestroyed, StasisEnd, StasisStart
from cti.platform.errors import NotFound
from cti.platform.log import get_logger

log = get_logger(__name__)

ROUTING_EVENTS = (CallQueued, CallOffered, OfferWithdrawn, CallConnected, CallLeftQueue,
                  AgentStateChanged)


class CallRouting:
    def __init__(
        self,
        acd: Acd,
        runner: IvrRunner,
        registry: CallRegistry,
        repo: CallRepository,
        customers: CallerLookup,
        bus: Bus,
        agent_flow: str = "agent_greeting",
    ) -> None:
        self.acd = acd
        self.runner = runner
        self.registry = registry
        self.repo = repo
        self.customers = customers
        self.agent_flow = agent_flow
        self._leg_work: dict[str, asyncio.Task[None]] = {}  # agent leg -> its latest handling
        self._routing: set[asyncio.Task[None]] = set()  # calls being handed to the ACD
        # At publish, not a turn of the loop later: the route is on the caller's way to an agent
        bus.subscribe_now("routing.call_routed", self._on_routed, (CallRouted,))
        bus.subscribe("routing.call_states", self.on_routing_event, ROUTING_EVENTS)
        bus.subscribe("routing.call_ended", self._on_call_ended, (CallEnded,))

    def _on_routed(self, event: CallRouted) -> None:
        # Each call on a task of its own: a bus subscriber handles its events one at a time,
        # and a route's CRM lookup, ring and call-log write (tens of ms) would make every
        # later caller wait behind it; at 20 calls/s the waits grew to seconds.
        task = asyncio.create_task(self._route(event), name=f"route-{event.call_id}")
        self._routing.add(task)
        task.add_done_callback(self._routing.discard)

    async def _route(self, event: CallRouted) -> None:
        try:
            await self.on_route(event.call_id, event.queue, event.lang)
        except Exception:
            log.exception("call.route_failed", call_id=event.call_id, queue=event.queue)

    async def _on_call_ended(self, event: CallEnded) -> None:
        await self.acd.on_caller_hangup(event.call_id)

    async def on_route(self, call_id: str, queue: str, lang: str) -> None:
        """The IVR reached a route node: hand the call to the ACD with its attributes."""
        session = self.registry.get(call_id)
        if session is None or session.call.is_over:
            return
        call = session.call
        # Kept with the call (and its log row): a restarted service requeues it with them.
        call.attributes["language"] = lang
        attributes = await self._routing_attributes(call)
        if session.call.is_over:  # the caller hung up during the lookup
            return
        # Its first entry into the ACD, kept with the row written below: a process that
        # adopts the call later puts it back at this time, in its place (docs/cluster.md).
        session.call = replace(move(call, CallState.QUEUED), queue=queue,
                               queued_at=call.queued_at or self.acd.clock.now())
        log.info("call.queued", call_id=call_id, ivr_queue=queue, menu=attributes["menu"])
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
        customer = await self.customers.identity(call.id, call.caller_number)
        if customer is not None:
            attributes["tier"] = customer.tier
            attributes["crm"] = {
                "name": customer.name, "tier": customer.tier, "company": customer.company,
            }
        return attributes

    def leg_channel_ids(self) -> set[str]:
        return self.acd.leg_channel_ids()

    async def on_leg_lost(self, channel_id: str) -> None:
        """An agent leg ended while the event socket was down (resync found it gone)."""
        self._in_order(channel_id, lambda: self.acd.on_agent_channel_ended(channel_id))

    async def attributes_of(self, call: Call) -> dict[str, Any]:
        """What routing tests of an adopted call (looked up again: the CRM tier)."""
        return await self._routing_attributes(call)

    async def resume_adopted(
        self, call: Call, agent_link: tuple[str, str] | None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        """After a restart: a call the last process had with an agent (`agent_link`: the
        agent leg and the bridge holding both) or in a queue is the ACD's again, in the queue
        it was in, with the menu key and language its log row kept; the tier is looked up
        again (or given: `attributes_of`, asked for many calls at once)."""
        if attributes is None:
            attributes = await self._routing_attributes(call)
        if call.state is CallState.CONNECTED and agent_link is not None and call.agent_id:
            leg, bridge = agent_link
            await self.acd.adopt_connected(
                call.id, call.channel_id, leg, bridge, call.agent_id, call.queue, attributes
            )
            log.info("call.adopted_with_agent", call_id=call.id, agent_id=call.agent_id)
        elif call.state in (CallState.QUEUED, CallState.OFFERED):
            await self.acd.requeue(call.id, call.channel_id, attributes, call.queue,
                                   since=call.queued_at)
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

    async def on_callback_leg_start(self, event: StasisStart) -> None:
        # A caller called back (they left the queue for a call-back) answered.
        channel_id = event.channel.id
        self._in_order(channel_id, lambda: self.acd.on_callback_answered(channel_id))

    async def on_ari_event(self, event: AriEvent) -> None:
        if isinstance(event, StasisEnd | ChannelDestroyed) and self.acd.is_agent_channel(
            event.channel.id
        ):
            channel_id = event.channel.id
            self._in_order(channel_id, lambda: self.acd.on_agent_channel_ended(channel_id))
        elif isinstance(event, ChannelDestroyed) and self.acd.is_callback_channel(
            event.channel.id
        ):
            channel_id = event.channel.id
            cause = event.cause
            self._in_order(channel_id,
                           lambda: self.acd.on_callback_channel_ended(channel_id, cause))
