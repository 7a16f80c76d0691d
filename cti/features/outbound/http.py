"""`POST /calls/outbound`: the agent places a call from the page (dial pad, the customer card,
a work order). Their phone rings first; the customer is dialled when they answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cti.features.auth.http import CurrentUser
from cti.features.outbound.service import OutboundCalls, dialable
from cti.features.work_orders.service import WorkOrders
from cti.platform.errors import ConfigError, Conflict, Forbidden
from cti.platform.http_guards import error_responses
from cti.platform.provide import provide

router = APIRouter(tags=["outbound"], responses=error_responses(401, 403, 422))
Outbound = Annotated[OutboundCalls, Depends(provide(OutboundCalls))]
Orders = Annotated[WorkOrders, Depends(provide(WorkOrders))]


class PlaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str | None = Field(default=None, min_length=1, max_length=32,
                               description="a phone number (national or +E.164)")
    customer_id: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                    description="call the customer's main number")
    work_order_id: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                      description="call the order's customer (linked)")

    @model_validator(mode="after")
    def _one_target(self) -> PlaceIn:
        if self.number is None and self.customer_id is None and self.work_order_id is None:
            raise ValueError("give a number, a customer_id or a work_order_id")
        if self.number is not None:
            try:
                self.number = dialable(self.number)  # 422 before anything is dialled
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return self


class PlacedOut(BaseModel):
    call_id: str
    agent_id: str
    number: str
    state: str = Field(description="ringing_agent: the agent's phone rings first")


class NoNumber(Conflict):
    error_id = "no_number"


@router.post("/calls/outbound", status_code=201, responses=error_responses(404, 409, 502))
async def place_call(body: PlaceIn, outbound: Outbound, orders: Orders, who: CurrentUser
                     ) -> PlacedOut:
    """Ring the agent's phone, then the customer through the outbound dial pattern with the
    center's caller id; bridged when both answered. 409 when the agent is not available or
    paused."""
    if who.agent_id is None:
        raise Forbidden("only agents place calls (their phone is rung first)")
    customer_id, order_id = body.customer_id, body.work_order_id
    if order_id is not None:
        order = await orders.get(who, order_id)  # 404 unless theirs (or they created it)
        customer_id = customer_id or order.customer_id
    number = body.number
    if number is None:
        if customer_id is None:
            raise NoNumber(f"work order {order_id} has no customer to call")
        if orders.customers is None:
            raise NoNumber("no customer store on this service")
        customer = await orders.customers.get(customer_id)
        if not customer.numbers:
            raise NoNumber(f"customer {customer_id} has no phone number")
        number = customer.numbers[0]
    placed = await outbound.place(who.agent_id, number, customer_id=customer_id,
                                  work_order_id=order_id)
    return PlacedOut(call_id=placed.call_id, agent_id=placed.agent_id, number=placed.number,
                     state="ringing_agent")
