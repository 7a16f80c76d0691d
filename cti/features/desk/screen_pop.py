"""Screen pop: turns domain events into the messages the agent and supervisor pages show.
It subscribes to the bus; nothing calls it to say what happened.

- `CallOffered` (the agent's phone starts ringing, before answer): the caller's record from the
  local store at once (name + title, tier, number, last calls, notes), the queue and menu path,
  the seconds waited and the suggested script line; when an external CRM is configured, its
  answer follows as an update of the same pop (same key, higher `revision`). A slow or failing
  external CRM never delays the first message.
- `OfferWithdrawn` / `CallConnected` at another agent: the pop is removed from that agent.
- `AgentStateChanged`: pushed to the agent and to supervisors (the wrap-up timer starts from it).
- `CustomerIdentified` (the one CRM lookup of the call, at arrival) is what the pop shows;
  a call without one (taken back after a restart) is looked up here.
- Call state (`CallHeld`, `CallResumed`, `CallMuted`, `TransferStarted`, `CallTransferred`,
  `TransferCancelled`, `CallEnded`) and procedure progress (`ProcedureStarted/Stepped/Ended`)
  update the call's card.

Message shapes (all on the hub; `key` makes them part of the topic's snapshot):
  agent:<id>   {"type": "pop", "key": "pop:<call_id>", ...}      removed with op="remove"
               {"type": "agent.state", "key": "agent_state", "state", "reason", "since", ...}
               {"type": "call.state", "key": "call:<call_id>", "state", ...}
               {"type": "procedure", "key": "procedure:<call_id>", "name", "step", "status", ...}
  supervisors  {"type": "agent.state", "key": "agent:<id>", ...}
               {"type": "queue.state", "key": "queue:<name>", "waiting": [...]}
               {"type": "call.state", "key": "call:<call_id>", ...}
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cti.domain.crm import CallSummary, Customer, suggest_greeting
from cti.domain.routing.events import RoutingEvent
from cti.events import (
    AgentStateChanged,
    Bus,
    CallConnected,
    CallEnded,
    CallHeld,
    CallLeftQueue,
    CallMuted,
    CallOffered,
    CallQueued,
    CallResumed,
    CallTransferred,
    CustomerIdentified,
    DomainEvent,
    OfferWithdrawn,
    ProcedureEnded,
    ProcedureStarted,
    ProcedureStepped,
    TransferCancelled,
    TransferStarted,
)
from cti.features.crm.service import CrmLookup, CustomerView
from cti.features.desk.hub import SUPERVISORS, AgentHub, agent_topic
from cti.platform.log import get_logger

log = get_logger(__name__)

LANGUAGES = ("zh", "en")
# Agent states after which the call card is cleared from the page.
_CLEARING_STATES = frozenset({"available", "paused", "logged_out"})


@dataclass(frozen=True, slots=True)
class CompanyNames:
    zh: str
    en: str

    def for_language(self, language: str) -> str:
        return self.en if language == "en" else self.zh


def customer_json(c: Customer | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "id": c.id,
        "numbers": list(c.numbers),
        "name": c.name,
        "surname": c.surname,
        "title": c.title.value if c.title else None,
        "tier": c.tier,
        "vip": c.is_vip,
        "company": c.company,
        "notes": c.notes,
        "source": c.source,
    }


def history_json(history: tuple[CallSummary, ...]) -> list[dict[str, Any]]:
    return [
        {"call_id": h.call_id, "at": h.at.isoformat(), "outcome": h.outcome,
         "agent_id": h.agent_id, "queue": h.queue}
        for h in history
    ]


def script_json(customer: Customer | None, agent_id: str, company: CompanyNames) -> dict[str, Any]:
    lines = {
        lang: suggest_greeting(
            customer, agent_id=agent_id, company=company.for_language(lang), language=lang
        )
        for lang in LANGUAGES
    }
    return {
        "phrase_id": lines["zh"].phrase_id,
        "text": {lang: g.text for lang, g in lines.items()},
        "address_as": {lang: g.address_as for lang, g in lines.items() if g.address_as},
    }


def _menu_path(attributes: Mapping[str, Any]) -> list[str]:
    raw = attributes.get("menu_path") or attributes.get("menu") or []
    if isinstance(raw, str):
        return [p for p in raw.replace(">", "/").split("/") if p]
    return [str(p) for p in raw] if isinstance(raw, list | tuple) else [str(raw)]


@dataclass
class _Offer:
    call_id: str
    agents: set[str]
    connected_agent: str | None = None


# How a procedure ended, as the card shows it.
_ENDED = {"hangup": "done", "completed": "done", "caller_hangup": "done"}
_CALL_EVENTS = (
    CustomerIdentified, CallHeld, CallResumed, CallMuted, TransferStarted, CallTransferred,
    TransferCancelled, CallEnded, ProcedureStarted, ProcedureStepped, ProcedureEnded,
)
SCREEN_POP_EVENTS = (
    CallQueued, CallOffered, OfferWithdrawn, CallConnected, CallLeftQueue, AgentStateChanged,
    *_CALL_EVENTS,
)


class ScreenPop:
    def __init__(
        self, hub: AgentHub, crm: CrmLookup, company: CompanyNames, bus: Bus | None = None
    ) -> None:
        self.hub = hub
        self.crm = crm
        self.company = company
        self._offers: dict[str, _Offer] = {}
        self._queues: dict[str, dict[str, dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._customers: dict[str, CustomerView] = {}  # call id -> its CustomerIdentified
        self._agent_of: dict[str, str] = {}  # call id -> the agent it is connected to
        if bus is not None:
            # An agent's page may be connected to any node of a cluster: every node's events.
            bus.subscribe("desk.screen_pop", self.on_event, SCREEN_POP_EVENTS, everywhere=True)

    async def on_event(self, event: DomainEvent) -> None:
        if isinstance(event, _CALL_EVENTS):
            self._on_call_event(event)
        else:
            await self.on_routing_event(event)  # type: ignore[arg-type]

    def _on_call_event(self, event: DomainEvent) -> None:
        match event:
            case CustomerIdentified():
                self._customers[event.call_id] = CustomerView(
                    event.number, event.customer, tuple(event.history), event.external_pending,
                    event.external_error, tuple(event.sources),
                )
            case CallHeld():
                self.call_state(event.call_id, event.agent_id, "held")
            case CallResumed() | TransferCancelled():
                self.call_state(event.call_id, event.agent_id, "connected")
            case CallMuted():
                self.call_state(event.call_id, event.agent_id, "connected", muted=event.on)
            case TransferStarted():
                state = "consulting" if event.kind == "attended" else "transferring"
                self.call_state(event.call_id, event.agent_id, state, target=event.target,
                                target_type=event.target_type, kind=event.kind)
            case CallTransferred():
                # The transferring agent's card shows the call as gone from them.
                self.call_ended(event.call_id, event.agent_id, cause="transferred")
                if self._agent_of.get(event.call_id) == event.agent_id:
                    del self._agent_of[event.call_id]
            case CallEnded():
                agent = event.agent_id or self._agent_of.get(event.call_id)
                if agent is not None:  # the card shows it ended
                    cause = "caller_hangup" if event.ended_by == "caller" else event.ended_by
                    self.call_ended(event.call_id, agent, cause=cause)
                self._customers.pop(event.call_id, None)
                self._agent_of.pop(event.call_id, None)
            case ProcedureStarted() | ProcedureStepped() | ProcedureEnded():
                self._procedure(event)

    def _procedure(self, event: ProcedureStarted | ProcedureStepped | ProcedureEnded) -> None:
        if isinstance(event, ProcedureEnded):
            status = _ENDED.get(str(event.detail.get("reason", "")), "cancelled")
        else:
            status = "running"
        reserved = {"call_id", "agent_id", "name", "step", "status", "type", "key"}
        info = {
            k: v for k, v in event.detail.items()
            if k not in reserved and isinstance(v, str | int | float | bool)
        }
        agent = self._agent_of.get(event.call_id)
        self.procedure_progress(event.call_id, agent, event.procedure, event.kind, status, **info)

    # ----------------------------------------------------------------- routing events

    async def on_routing_event(self, event: RoutingEvent) -> None:
        match event:
            case CallOffered():
                await self._offered(event)
            case OfferWithdrawn():
                self._withdraw(event.call_id, event.agent_id, event.reason)
            case CallConnected():
                self._connected(event)
            case AgentStateChanged():
                self._agent_state(event)
            case CallQueued():
                self._queue_add(event.queue, event.call_id, {"priority": event.priority,
                                                             "since": event.at.isoformat()})
            case CallLeftQueue():
                self._queue_remove(event.queue, event.call_id)
                self._supervisor_call(event.call_id, state=event.outcome, queue=event.queue)

    async def _offered(self, ev: CallOffered) -> None:
        number = ev.caller_number or str(ev.attributes.get("caller_number", ""))
        view = self._customers.get(ev.call_id)
        if view is None:  # no lookup at arrival (a call taken back after a restart)
            try:
                view = await self.crm.lookup_fast(number)
            except Exception as exc:  # the store failing must not stop the pop
                log.error("screen_pop.lookup_failed", call_id=ev.call_id, error=str(exc))
                view = CustomerView(number=number, customer=None, external_error="lookup failed")
            self._customers[ev.call_id] = view
        offer = self._offers.setdefault(ev.call_id, _Offer(ev.call_id, set()))
        offer.agents.add(ev.agent_id)
        base = {
            "type": "pop",
            "key": f"pop:{ev.call_id}",
            "call_id": ev.call_id,
            "offer_id": ev.offer_id,
            "agent_id": ev.agent_id,
            "state": "ringing",
            "queue": ev.queue,
            "menu_path": _menu_path(ev.attributes),
            "waited_s": round(ev.waited_s, 1),
            "offered_at": ev.at.isoformat(),
            # a call the agent placed (docs/outbound_calls.md): no greeting script for it
            "direction": str(ev.attributes.get("direction", "inbound")),
        }
        self._publish_pop(ev.agent_id, base, view, revision=1)
        self._supervisor_call(ev.call_id, state="offered", agent_id=ev.agent_id, queue=ev.queue,
                              caller=view.number)
        if view.external_pending:
            task = asyncio.create_task(self._complete(ev.agent_id, base, view))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _publish_pop(
        self, agent_id: str, base: Mapping[str, Any], view: CustomerView, revision: int
    ) -> None:
        message = dict(base)
        message.update(
            revision=revision,
            caller={
                "number": view.number,
                "customer": customer_json(view.customer),
                "history": history_json(view.history),
                "external_pending": view.external_pending,
                "external_error": view.external_error,
            },
            script=script_json(view.customer, agent_id, self.company),
        )
        self.hub.publish_now(agent_topic(agent_id), message)

    async def _complete(self, agent_id: str, base: Mapping[str, Any], fast: CustomerView) -> None:
        full = await self.crm.lookup_external(fast)
        current = self.hub.item(agent_topic(agent_id), str(base["key"]))
        if current is None:  # withdrawn meanwhile: nothing to update
            return
        updated = dict(base)
        updated["state"] = current.get("state", base["state"])
        self._publish_pop(agent_id, updated, full, revision=int(current.get("revision", 1)) + 1)

    def _withdraw(self, call_id: str, agent_id: str, reason: str) -> None:
        key = f"pop:{call_id}"
        if self.hub.item(agent_topic(agent_id), key) is not None:
            self.hub.publish_now(
                agent_topic(agent_id),
                {"type": "pop", "op": "remove", "key": key, "call_id": call_id, "reason": reason},
            )
        offer = self._offers.get(call_id)
        if offer is not None:
            offer.agents.discard(agent_id)
            if not offer.agents and offer.connected_agent is None:
                del self._offers[call_id]

    def _connected(self, ev: CallConnected) -> None:
        self._agent_of[ev.call_id] = ev.agent_id
        offer = self._offers.setdefault(ev.call_id, _Offer(ev.call_id, {ev.agent_id}))
        offer.connected_agent = ev.agent_id
        for other in sorted(offer.agents - {ev.agent_id}):
            self._withdraw(ev.call_id, other, "answered_elsewhere")
        offer.agents = {ev.agent_id}
        topic = agent_topic(ev.agent_id)
        pop = self.hub.item(topic, f"pop:{ev.call_id}")
        if pop is not None:
            updated = {k: v for k, v in pop.items() if k not in ("seq", "topic", "at")}
            updated["state"] = "connected"
            self.hub.publish_now(topic, updated)
        self.call_state(ev.call_id, ev.agent_id, "connected", queue=ev.queue,
                        bridge_id=ev.bridge_id)
        for queue in self._queues:
            self._queue_remove(queue, ev.call_id)

    def _agent_state(self, ev: AgentStateChanged) -> None:
        body: dict[str, Any] = {
            "type": "agent.state",
            "agent_id": ev.agent_id,
            "state": ev.new,
            "previous": ev.old,
            "reason": ev.reason,
            "call_id": ev.call_id,
            "since": ev.at.isoformat(),
            **{k: v for k, v in ev.extra.items() if isinstance(v, str | int | float | bool)},
        }
        self.hub.publish_now(agent_topic(ev.agent_id), {**body, "key": "agent_state"})
        self.hub.publish_now(SUPERVISORS, {**body, "key": f"agent:{ev.agent_id}"})
        if ev.new in _CLEARING_STATES:
            self._clear_agent(ev.agent_id)

    def _clear_agent(self, agent_id: str) -> None:
        topic = agent_topic(agent_id)
        for key in self.hub.keys(topic, "pop:") + self.hub.keys(topic, "call:") + self.hub.keys(
            topic, "procedure:"
        ):
            self.hub.publish_now(topic, {"type": key.split(":")[0], "op": "remove", "key": key})
        for call_id in [c for c, o in self._offers.items() if agent_id in o.agents]:
            offer = self._offers[call_id]
            offer.agents.discard(agent_id)
            if not offer.agents:
                del self._offers[call_id]

    # ----------------------------------------------------------------- queues (supervisors)

    def _queue_add(self, queue: str, call_id: str, info: dict[str, Any]) -> None:
        self._queues.setdefault(queue, {})[call_id] = info
        self._publish_queue(queue)

    def _queue_remove(self, queue: str, call_id: str) -> None:
        calls = self._queues.get(queue)
        if calls is not None and calls.pop(call_id, None) is not None:
            self._publish_queue(queue)

    def _publish_queue(self, queue: str) -> None:
        calls = self._queues.get(queue, {})
        self.hub.publish_now(
            SUPERVISORS,
            {"type": "queue.state", "key": f"queue:{queue}", "queue": queue,
             "waiting": [{"call_id": c, **info} for c, info in calls.items()]},
        )

    def _supervisor_call(self, call_id: str, **fields: Any) -> None:
        self.hub.publish_now(
            SUPERVISORS, {"type": "call.state", "key": f"call:{call_id}", "call_id": call_id,
                          **fields}
        )

    # ----------------------------------------------------------------- the card

    def call_state(self, call_id: str, agent_id: str | None, state: str, **info: Any) -> None:
        """Push a call's state (connected, held, muted, transferring, ended...) to its agent."""
        body = {"type": "call.state", "key": f"call:{call_id}", "call_id": call_id,
                "agent_id": agent_id, "state": state, **info}
        if agent_id:
            self.hub.publish_now(agent_topic(agent_id), body)
        self.hub.publish_now(SUPERVISORS, body)

    def call_ended(self, call_id: str, agent_id: str | None, cause: str = "") -> None:
        """The call is over: the card stays (wrap-up) but shows the call as ended."""
        self.call_state(call_id, agent_id, "ended", cause=cause)
        if agent_id:
            topic = agent_topic(agent_id)
            pop = self.hub.item(topic, f"pop:{call_id}")
            if pop is not None:
                updated = {k: v for k, v in pop.items() if k not in ("seq", "topic", "at")}
                updated["state"] = "ended"
                self.hub.publish_now(topic, updated)
        self._offers.pop(call_id, None)

    def procedure_progress(
        self, call_id: str, agent_id: str | None, name: str, step: str, status: str,
        **info: Any,
    ) -> None:
        """A scripted procedure's progress (status: running | done | cancelled | failed)."""
        body = {"type": "procedure", "key": f"procedure:{call_id}", "call_id": call_id,
                "agent_id": agent_id, "name": name, "step": step, "status": status, **info}
        if agent_id:
            self.hub.publish_now(agent_topic(agent_id), body)
        self.hub.publish_now(SUPERVISORS, body)

    async def drain(self) -> None:
        """Wait for pending external-CRM updates (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
