"""Pushes work-order news to the desk, a small bus subscriber over the desk's hub:

- the owner (an agent) hears of an order created for, assigned or handed over to them, and
  of its reminders and overdue alert: `{"type": "work_order", "event": "created|assigned|
  reminder|overdue", "order": {...}}` on `agent:<id>`;
- supervisors (team leads, duty managers) hear of every escalation (`"event": "escalated"`
  on `supervisors`);
- with the screen pop: when a call is offered to an agent, the caller's open orders follow
  as `{"type": "work_orders", "key": "work_orders:<call_id>", "call_id", "customer_id",
  "orders": [...]}` on the agent's topic (part of its snapshot; removed when the offer is
  withdrawn or the call ends).

One subscriber for all of it, so the caller (`CustomerIdentified`) is known before the offer
(`CallOffered`) in stream order.
"""

from __future__ import annotations

from typing import Any

from cti.domain.routing.events import CallOffered, OfferWithdrawn
from cti.domain.work_orders import (
    OPEN,
    WorkOrder,
    WorkOrderAssigned,
    WorkOrderCreated,
    WorkOrderEscalated,
    WorkOrderEvent,
    WorkOrderReminded,
    WorkOrderStatusChanged,
)
from cti.events import Bus, CallEnded, CustomerIdentified, event_record
from cti.features.work_orders.storage import WorkOrderStore
from cti.platform.log import get_logger
from cti.platform.ports import Publisher

log = get_logger(__name__)

SUPERVISORS = "supervisors"
POP_ORDERS = 20  # open orders shown with a pop, most urgent first


def _agent_topic(agent_id: str) -> str:
    return f"agent:{agent_id}"


CallEvent = CustomerIdentified | CallOffered | OfferWithdrawn | CallEnded


class WorkOrderNotifier:
    def __init__(self, bus: Bus, hub: Publisher, store: WorkOrderStore | None = None) -> None:
        self.hub = hub
        self.store = store
        self._callers: dict[str, int] = {}  # call id -> the caller's customer id
        self._shown: dict[str, set[str]] = {}  # call id -> agents shown its orders
        kinds: tuple[type[Any], ...] = (
            WorkOrderCreated, WorkOrderAssigned, WorkOrderEscalated, WorkOrderReminded,
        )
        if store is not None:
            kinds += (CustomerIdentified, CallOffered, OfferWithdrawn, CallEnded)
        # everywhere: the owner's page may be connected to any node of a cluster
        bus.subscribe("work_orders.notify", self.on_event, kinds, everywhere=True)

    async def on_event(self, event: WorkOrderEvent | CallEvent) -> None:
        if isinstance(event, CustomerIdentified | CallOffered | OfferWithdrawn | CallEnded):
            await self._on_call(event)
            return
        body = _message(event)
        if isinstance(event, WorkOrderEscalated):
            await self.hub.publish(SUPERVISORS, body)
            return
        agent = getattr(event, "agent_id", None)
        if agent:
            await self.hub.publish(_agent_topic(agent), body)

    async def _on_call(self, event: CallEvent) -> None:
        if isinstance(event, CustomerIdentified):
            if event.customer is not None and event.customer.id is not None:
                self._callers[event.call_id] = event.customer.id
        elif isinstance(event, CallOffered):
            customer = self._callers.get(event.call_id)
            if customer is None or self.store is None:
                return
            orders = await self.store.search(customer_id=customer, statuses=sorted(OPEN),
                                             limit=POP_ORDERS)
            self._shown.setdefault(event.call_id, set()).add(event.agent_id)
            await self.hub.publish(_agent_topic(event.agent_id), {
                "type": "work_orders", "key": f"work_orders:{event.call_id}",
                "call_id": event.call_id, "customer_id": customer,
                "orders": [_summary(o) for o in orders],
            })
        elif isinstance(event, OfferWithdrawn):
            shown = self._shown.get(event.call_id, set())
            if event.agent_id in shown:
                shown.discard(event.agent_id)
                await self._remove(event.call_id, event.agent_id)
        else:
            self._callers.pop(event.call_id, None)
            for agent in self._shown.pop(event.call_id, set()):
                await self._remove(event.call_id, agent)

    async def _remove(self, call_id: str, agent_id: str) -> None:
        await self.hub.publish(_agent_topic(agent_id), {
            "type": "work_orders", "key": f"work_orders:{call_id}", "op": "remove",
            "call_id": call_id,
        })


def _summary(o: WorkOrder) -> dict[str, Any]:
    return {
        "id": o.id, "type": o.type, "severity": o.severity, "priority": o.priority,
        "status": o.status.value, "owner": str(o.owner), "due_at": o.due_at.isoformat(),
        "overdue": o.overdue_alerted, "description": o.description[:200],
    }


def _message(event: WorkOrderEvent | WorkOrderStatusChanged) -> dict[str, Any]:
    kind = {
        WorkOrderCreated: "created", WorkOrderAssigned: "assigned",
        WorkOrderEscalated: "escalated", WorkOrderReminded: "reminder",
        WorkOrderStatusChanged: "status",
    }[type(event)]
    if isinstance(event, WorkOrderReminded) and event.overdue:
        kind = "overdue"
    order = {**event_record(event).payload, "at": event.at.isoformat()}
    return {"type": "work_order", "event": kind, "order": order}
