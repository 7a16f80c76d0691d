"""Follow-up messages over HTTP: the outbox (supervisors: what was sent, what waits, what failed
and why) and a customer's contact for messages (any user: the agent notes it during the call)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from cti.domain.messages import Contact
from cti.features.auth.http import CurrentUser, require_role
from cti.features.auth.service import Principal, Role
from cti.features.messages.service import FollowUps
from cti.features.messages.storage import OutboxItem
from cti.platform.http_guards import IdPath, IsoTime, error_responses
from cti.platform.provide import provide

router = APIRouter(tags=["messages"], responses=error_responses(401, 403, 422))
Messages = Annotated[FollowUps, Depends(provide(FollowUps))]


class OutboxOut(BaseModel):
    id: int
    kind: str
    channel: str
    recipient: str
    language: str
    subject: str
    body: str
    order_id: int | None
    status: str
    attempts: int
    created_at: IsoTime
    next_attempt_at: IsoTime | None
    sent_at: IsoTime | None
    last_error: str

    @classmethod
    def of(cls, i: OutboxItem) -> OutboxOut:
        return cls(
            id=i.id, kind=i.kind, channel=i.channel, recipient=i.recipient,
            language=i.language, subject=i.subject, body=i.body, order_id=i.order_id,
            status=i.status, attempts=i.attempts, created_at=i.created_at.isoformat(),
            next_attempt_at=i.next_attempt_at.isoformat() if i.next_attempt_at else None,
            sent_at=i.sent_at.isoformat() if i.sent_at else None, last_error=i.last_error,
        )


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=255, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 ()-]{3,31}$")
    language: Literal["zh", "en"] | None = None


class ContactOut(BaseModel):
    customer_id: int
    email: str | None
    phone: str | None
    language: str | None


Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]


@router.get("/messages/outbox")
async def outbox(
    messages: Messages, _who: Supervisor,
    status: Annotated[Literal["pending", "sent", "failed"] | None, Query()] = None,
    order_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OutboxOut]:
    """Newest first: each message's status, attempts, next attempt and last error."""
    items = await messages.store.list(status=status, order_id=order_id, limit=limit)
    return [OutboxOut.of(i) for i in items]


@router.get("/crm/customers/{customer_id}/contact", responses=error_responses(404))
async def get_contact(customer_id: IdPath, messages: Messages, _who: CurrentUser) -> ContactOut:
    await messages.customers.get(customer_id)  # 404 for an unknown customer
    c = await messages.store.contact(customer_id) or Contact()
    return ContactOut(customer_id=customer_id, email=c.email, phone=c.phone, language=c.language)


@router.put("/crm/customers/{customer_id}/contact", responses=error_responses(404))
async def put_contact(customer_id: IdPath, body: ContactIn, messages: Messages,
                      _who: CurrentUser) -> ContactOut:
    """Where follow-up messages go (e-mail; SMS, by default the customer's main number) and in
    which language."""
    await messages.customers.get(customer_id)
    await messages.store.set_contact(customer_id, Contact(body.email, body.phone, body.language),
                                     messages.clock.now())
    return ContactOut(customer_id=customer_id, email=body.email, phone=body.phone,
                      language=body.language)
