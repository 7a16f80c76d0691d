"""Work orders over HTTP: create (from the agent page, during a call), list, read with history,
move through the status flow, assign / hand over, acknowledge a complaint; a customer's orders
(`GET /crm/customers/{id}/work-orders`, for the screen pop's customer card); reload the config
(admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from cti.domain.work_orders import HistoryEntry, Owner, Status, WorkOrder
from cti.features.auth.http import CurrentUser, require_role
from cti.features.auth.service import Principal, Role
from cti.features.work_orders.service import WorkOrders
from cti.platform.errors import ConfigError
from cti.platform.http_guards import IdPath, IsoTime, error_responses, invalid
from cti.platform.provide import provide

router = APIRouter(tags=["work_orders"], responses=error_responses(401, 403, 422))
Orders = Annotated[WorkOrders, Depends(provide(WorkOrders))]

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
OwnerText = Annotated[str, Field(min_length=3, max_length=96,
                                 pattern=r"^(agent|team):[A-Za-z0-9_.@-]+$",
                                 description="agent:ID or team:NAME")]
Note = Annotated[str, Field(default="", max_length=2000)]


class CreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_id: str | None = Field(default=None, min_length=1, max_length=128,
                                description="the call it was made in (links the caller)")
    customer_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    type: Name
    severity: Name
    description: str = Field(default="", max_length=8000)
    owner: OwnerText | None = Field(default=None,
                                    description="default: the creating agent, else the "
                                                "type's team")


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Status
    note: Note = ""
    result: str | None = Field(default=None, max_length=8000,
                               description="required on the way to resolved")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: OwnerText
    note: Note = ""


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note = ""


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=2000)


class ChangeOut(BaseModel):
    field: str
    old: str | None
    new: str | None


class HistoryOut(BaseModel):
    at: IsoTime
    actor: str
    action: str
    changes: list[ChangeOut]
    note: str

    @classmethod
    def of(cls, e: HistoryEntry) -> HistoryOut:
        return cls(at=e.at.isoformat(), actor=e.actor, action=e.action, note=e.note,
                   changes=[ChangeOut(field=c.field, old=c.old, new=c.new) for c in e.changes])


class WorkOrderOut(BaseModel):
    id: int
    type: str
    complaint: bool
    severity: str
    priority: int
    status: Status
    owner: str
    created_at: IsoTime
    created_by: str
    due_at: IsoTime
    overdue: bool
    description: str
    result: str
    call_id: str | None
    customer_id: int | None
    ack_due_at: IsoTime | None
    acknowledged_at: IsoTime | None
    escalated_to: list[str]

    @classmethod
    def of(cls, o: WorkOrder) -> WorkOrderOut:
        return cls(
            id=o.id, type=o.type, complaint=o.complaint, severity=o.severity,
            priority=o.priority, status=o.status, owner=str(o.owner),
            created_at=o.created_at.isoformat(), created_by=o.created_by,
            due_at=o.due_at.isoformat(), overdue=o.overdue_alerted and o.is_open,
            description=o.description, result=o.result, call_id=o.call_id,
            customer_id=o.customer_id,
            ack_due_at=o.ack_due_at.isoformat() if o.ack_due_at else None,
            acknowledged_at=o.acknowledged_at.isoformat() if o.acknowledged_at else None,
            escalated_to=list(o.escalated_to),
        )


class WorkOrderDetailOut(WorkOrderOut):
    history: list[HistoryOut]

    @classmethod
    def detail(cls, o: WorkOrder) -> WorkOrderDetailOut:
        return cls(**WorkOrderOut.of(o).model_dump(),
                   history=[HistoryOut.of(e) for e in o.history])


class TypeOut(BaseModel):
    name: str
    complaint: bool
    severities: list[str]


class TypesOut(BaseModel):
    types: list[TypeOut]
    severities: list[str]
    teams: list[str]
    flow: dict[str, list[str]]


class ReloadOut(BaseModel):
    ok: bool
    summary: str


StatusFilter = Annotated[
    str, Query(max_length=32, pattern=r"^[a-z_]+$",
               description="open | done | all | new | assigned | in_progress | "
                           "waiting_customer | resolved | closed"),
]
OwnerFilter = Annotated[
    str, Query(max_length=96, pattern=r"^(me|any|(agent|team):[A-Za-z0-9_.@-]+)$",
               description="me | any | agent:ID | team:NAME (agents: me only)"),
]
Limit = Annotated[int, Query(ge=1, le=500)]


def _owner(text: str) -> Owner:
    try:
        return Owner.parse(text)
    except ValueError as exc:
        raise invalid(("body", "owner"), str(exc), "owner", text) from None


@router.get("/work-orders/types")
async def work_order_types(orders: Orders, _who: CurrentUser) -> TypesOut:
    """The configured types (with the severities each has an SLA for), teams and status
    moves: what the page offers in its forms."""
    config = orders.config
    order = {s: i for i, s in enumerate(config.severities)}
    return TypesOut(
        types=[TypeOut(name=t.name, complaint=t.complaint,
                       severities=sorted(t.sla, key=lambda s: order.get(s, 99)))
               for t in config.types.values()],
        severities=list(config.severities), teams=sorted(config.teams),
        flow={a.value: sorted(b.value for b in bs) for a, bs in config.flow.items()},
    )


@router.post("/work-orders", status_code=201, responses=error_responses(404, 409))
async def create_work_order(body: CreateIn, orders: Orders, who: CurrentUser
                            ) -> WorkOrderDetailOut:
    """A new order; during a call give `call_id`: the caller's CRM record is linked."""
    order = await orders.create(
        who, type_name=body.type, severity=body.severity, description=body.description,
        call_id=body.call_id, customer_id=body.customer_id,
        owner=_owner(body.owner) if body.owner else None,
    )
    return WorkOrderDetailOut.detail(order)


@router.get("/work-orders", responses=error_responses(409))
async def list_work_orders(
    orders: Orders, who: CurrentUser, owner: OwnerFilter = "me",
    status: StatusFilter = "open", limit: Limit = 100,
) -> list[WorkOrderOut]:
    """Most urgent first (priority, due time). Supervisors may list any owner's."""
    return [WorkOrderOut.of(o)
            for o in await orders.search(who, owner=owner, status=status, limit=limit)]


@router.get("/work-orders/{order_id}", responses=error_responses(404))
async def get_work_order(order_id: IdPath, orders: Orders, who: CurrentUser
                         ) -> WorkOrderDetailOut:
    return WorkOrderDetailOut.detail(await orders.get(who, order_id))


@router.post("/work-orders/{order_id}/transition", responses=error_responses(404, 409))
async def transition_work_order(
    order_id: IdPath, body: TransitionIn, orders: Orders, who: CurrentUser
) -> WorkOrderDetailOut:
    """Move along the configured status flow (409 `work_order_invalid` names both states)."""
    await orders.get(who, order_id)
    return WorkOrderDetailOut.detail(
        await orders.transition(who, order_id, body.to, body.note, body.result)
    )


@router.post("/work-orders/{order_id}/assign", responses=error_responses(404, 409))
async def assign_work_order(
    order_id: IdPath, body: AssignIn, orders: Orders, who: CurrentUser
) -> WorkOrderDetailOut:
    """Assign or reassign (supervisors), or hand over (the owning agent). The new owner is
    notified on the desk."""
    await orders.get(who, order_id)
    return WorkOrderDetailOut.detail(
        await orders.assign(who, order_id, _owner(body.owner), body.note)
    )


@router.post("/work-orders/{order_id}/notes", responses=error_responses(404, 409))
async def note_work_order(
    order_id: IdPath, body: NoteIn, orders: Orders, who: CurrentUser
) -> WorkOrderDetailOut:
    """A note on the order's history (the owning agent, supervisors)."""
    await orders.get(who, order_id)
    return WorkOrderDetailOut.detail(await orders.add_note(who, order_id, body.note))


@router.post("/work-orders/{order_id}/acknowledge", responses=error_responses(404, 409))
async def acknowledge_work_order(
    order_id: IdPath, body: AcknowledgeIn, orders: Orders, who: CurrentUser
) -> WorkOrderDetailOut:
    """A complaint's customer was told it is being handled (stops the acknowledgement
    escalation)."""
    await orders.get(who, order_id)
    return WorkOrderDetailOut.detail(await orders.acknowledge(who, order_id, body.note))


@router.get("/crm/customers/{customer_id}/work-orders", responses=error_responses(409))
async def customer_work_orders(
    customer_id: IdPath, orders: Orders, who: CurrentUser, status: StatusFilter = "open",
    limit: Limit = 50,
) -> list[WorkOrderOut]:
    """The customer's orders (open by default): what the agent sees next to the screen pop."""
    return [WorkOrderOut.of(o) for o in await orders.search(
        who, owner="any", status=status, customer_id=customer_id, limit=limit)]


@router.post("/work-orders/config/reload")
async def reload_work_order_config(
    orders: Orders, _admin: Annotated[Principal, Depends(require_role(Role.ADMIN))]
) -> ReloadOut:
    """Load config/work_orders.yaml again; a broken file is refused (422, file:line:col) and
    the running config kept."""
    ok, text = orders.rules.reload()
    if not ok:
        raise ConfigError(text)
    return ReloadOut(ok=True, summary=text)

