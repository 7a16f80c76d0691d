"""Pushes work-order news to the desk: the new owner (an agent) hears of an order assigned or
handed over to them and of its reminders and overdue alert; supervisors (team leads, duty
managers) hear of every escalation. A small bus subscriber over the desk's hub."""

from __future__ import annotations

from typing import Any

from cti.domain.work_orders import (
    WorkOrderAssigned,
    WorkOrderCreated,
    WorkOrderEscalated,
    WorkOrderEvent,
    WorkOrderReminded,
    WorkOrderStatusChanged,
)
from cti.events import Bus, event_record
from cti.platform.ports import Publisher

SUPERVISORS = "supervisors"


def _agent_topic(agent_id: str) -> str:
    return f"agent:{agent_id}"


class WorkOrderNotifier:
    def __init__(self, bus: Bus, hub: Publisher) -> None:
        self.hub = hub
        bus.subscribe("work_orders.notify", self.on_event, (
            WorkOrderCreated, WorkOrderAssigned, WorkOrderEscalated, WorkOrderReminded,
        ))

    async def on_event(self, event: WorkOrderEvent) -> None:
        body = _message(event)
        if isinstance(event, WorkOrderEscalated):
            await self.hub.publish(SUPERVISORS, body)
            return
        agent = getattr(event, "agent_id", None)
        if agent:
            await self.hub.publish(_agent_topic(agent), body)


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
