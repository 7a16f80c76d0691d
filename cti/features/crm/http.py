"""Customer search, read, create, update, lookup by number, and CSV import (admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cti.domain.crm import (
    MAX_NAME,
    MAX_NOTES,
    Customer,
    CustomerPatch,
    InvalidPhoneNumber,
    Title,
    apply_patch,
    normalise_number,
)
from cti.features.auth.http import CurrentUser, Desk, require_role
from cti.features.auth.service import Principal, Role, require
from cti.features.crm.service import import_customers
from cti.features.desk.screen_pop import customer_json, history_json
from cti.platform.http_guards import IdPath, IsoTime, error_responses, invalid

router = APIRouter(prefix="/crm", tags=["crm"], responses=error_responses(401, 403, 422))
# A phone number as typed: bounded before it is parsed (and echoed in an error).
NumberIn = Annotated[str, Field(min_length=1, max_length=64)]
MAX_TITLE = 16
DEFAULT_TIER = "standard"


def _require_tier_change_allowed(who: Principal, current: str, wanted: str | None) -> None:
    """The tier decides routing priority (VIPs jump the queue), so only supervisors set it;
    agents keep editing everything else, and may send the tier unchanged."""
    if wanted is not None and wanted.lower() != current.lower():
        require(who, Role.SUPERVISOR)


def _numbers(values: list[str], region: str) -> tuple[str, ...]:
    out: list[str] = []
    for i, raw in enumerate(values):
        try:
            num = normalise_number(raw, region)
        except InvalidPhoneNumber as exc:
            raise invalid(("body", "numbers", i), str(exc), "phone_number", raw) from None
        if num not in out:
            out.append(num)
    return tuple(out)


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numbers: list[NumberIn] = Field(min_length=1, max_length=10)
    name: str = Field(default="", max_length=MAX_NAME)
    surname: str = Field(default="", max_length=MAX_NAME)
    title: Title | None = None
    tier: str = Field(default=DEFAULT_TIER, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    company: str = Field(default="", max_length=MAX_NAME)
    notes: str = Field(default="", max_length=MAX_NOTES)

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, v: Any) -> Any:
        if isinstance(v, str) and len(v) > MAX_TITLE:
            raise ValueError(f"a title has at most {MAX_TITLE} characters")
        return Title.parse(v) if isinstance(v, str) and v else None


class CustomerPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numbers: list[NumberIn] | None = Field(default=None, min_length=1, max_length=10)
    name: str | None = Field(default=None, max_length=MAX_NAME)
    surname: str | None = Field(default=None, max_length=MAX_NAME)
    title: str | None = Field(default=None, max_length=MAX_TITLE,
                             description="mr, ms, 先生, 小姐; empty clears it")
    tier: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    company: str | None = Field(default=None, max_length=MAX_NAME)
    notes: str | None = Field(default=None, max_length=MAX_NOTES)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str | None) -> str | None:
        if v:
            Title.parse(v)  # raises ValueError -> 422 with the choices
        return v


class CustomerOut(BaseModel):
    """A customer as the desk shows it (the same object as in the screen pop)."""

    id: int | None
    numbers: list[str] = Field(description="E.164; the first is the main one")
    name: str
    surname: str
    title: str | None
    tier: str
    vip: bool
    company: str
    notes: str
    source: str = Field(description="local | external | merged")

    @classmethod
    def of(cls, customer: Customer) -> CustomerOut:
        return cls.model_validate(customer_json(customer))


class PastCallOut(BaseModel):
    """One past call of the customer, newest first."""

    call_id: str
    at: IsoTime
    outcome: str
    agent_id: str | None
    queue: str | None


class CustomerDetailOut(CustomerOut):
    history: list[PastCallOut]


class LookupOut(BaseModel):
    number: str
    customer: CustomerOut | None
    history: list[PastCallOut]
    external_error: str | None = Field(description="why the external CRM gave no answer")
    sources: list[str]


class RejectedRowOut(BaseModel):
    line: int
    reason: str


class ImportOut(BaseModel):
    added: int
    updated: int
    rejected: list[RejectedRowOut]


@router.get("/customers")
async def search_customers(
    desk: Desk,
    _who: CurrentUser,
    q: Annotated[str, Query(max_length=128)] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[CustomerOut]:
    return [CustomerOut.of(c) for c in await desk.customers.search(q, limit)]


@router.get("/customers/{customer_id}", responses=error_responses(404))
async def get_customer(customer_id: IdPath, desk: Desk, _who: CurrentUser) -> CustomerDetailOut:
    customer = await desk.customers.get(customer_id)
    history = await desk.customers.history(customer, 10)
    return CustomerDetailOut.model_validate(
        {**(customer_json(customer) or {}), "history": history_json(tuple(history))}
    )


@router.post("/customers", status_code=201, responses=error_responses(409))
async def add_customer(body: CustomerIn, desk: Desk, who: CurrentUser) -> CustomerOut:
    _require_tier_change_allowed(who, DEFAULT_TIER, body.tier)
    customer = Customer(
        id=None,
        numbers=_numbers(body.numbers, desk.crm.default_region),
        name=body.name,
        surname=body.surname,
        title=body.title,
        tier=body.tier.lower(),
        company=body.company,
        notes=body.notes,
    )
    return CustomerOut.of(await desk.customers.add(customer))


@router.patch("/customers/{customer_id}", responses=error_responses(404, 409))
async def update_customer(
    customer_id: IdPath, body: CustomerPatchIn, desk: Desk, who: CurrentUser
) -> CustomerOut:
    current = await desk.customers.get(customer_id)
    _require_tier_change_allowed(who, current.tier, body.tier)
    patch = CustomerPatch(
        numbers=_numbers(body.numbers, desk.crm.default_region) if body.numbers else None,
        name=body.name,
        surname=body.surname,
        title=Title.parse(body.title) if body.title else None,
        clear_title=body.title == "",
        tier=body.tier,
        company=body.company,
        notes=body.notes,
    )
    return CustomerOut.of(await desk.customers.replace(apply_patch(current, patch)))


@router.get("/lookup", responses=error_responses(504))
async def lookup(
    desk: Desk, _who: CurrentUser, number: Annotated[str, Query(min_length=1, max_length=64)]
) -> LookupOut:
    """The caller's record by number: local store and external CRM (bounded by its timeout)."""
    view = await desk.crm.lookup(number)
    return LookupOut.model_validate({
        "number": view.number,
        "customer": customer_json(view.customer),
        "history": history_json(view.history),
        "external_error": view.external_error,
        "sources": list(view.sources),
    })


@router.post(
    "/import",
    responses=error_responses(413),
    openapi_extra={"requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string"}}}}},
)
async def import_csv(
    request: Request,
    desk: Desk,
    _admin: Annotated[Principal, Depends(require_role(Role.ADMIN))],
) -> ImportOut:
    """Body: the CSV file (text/csv, UTF-8). Good rows are loaded, bad ones reported by line."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise invalid(("body",), f"the file is not UTF-8 (byte {exc.start})", "unicode_decode",
                      None) from None
    result = await import_customers(
        desk.customers, text.splitlines(keepends=True), desk.crm.default_region
    )
    return ImportOut(
        added=result.added, updated=result.updated,
        rejected=[RejectedRowOut(line=r.line, reason=r.reason) for r in result.rejected],
    )
