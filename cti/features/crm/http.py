"""Customer search, read, create, update, lookup by number, and CSV import (admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
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

router = APIRouter(prefix="/crm", tags=["crm"])
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
            raise HTTPException(
                422, [{"loc": ["body", "numbers", i], "msg": str(exc), "type": "phone_number"}]
            ) from None
        if num not in out:
            out.append(num)
    return tuple(out)


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numbers: list[str] = Field(min_length=1, max_length=10)
    name: str = Field(default="", max_length=MAX_NAME)
    surname: str = Field(default="", max_length=MAX_NAME)
    title: Title | None = None
    tier: str = Field(default=DEFAULT_TIER, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    company: str = Field(default="", max_length=MAX_NAME)
    notes: str = Field(default="", max_length=MAX_NOTES)

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, v: Any) -> Any:
        return Title.parse(v) if isinstance(v, str) and v else None


class CustomerPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numbers: list[str] | None = Field(default=None, min_length=1, max_length=10)
    name: str | None = Field(default=None, max_length=MAX_NAME)
    surname: str | None = Field(default=None, max_length=MAX_NAME)
    title: str | None = Field(default=None, description="mr, ms, 先生, 小姐; empty clears it")
    tier: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    company: str | None = Field(default=None, max_length=MAX_NAME)
    notes: str | None = Field(default=None, max_length=MAX_NOTES)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str | None) -> str | None:
        if v:
            Title.parse(v)  # raises ValueError -> 422 with the choices
        return v


@router.get("/customers")
async def search_customers(
    desk: Desk,
    _who: CurrentUser,
    q: Annotated[str, Query(max_length=128)] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[dict[str, Any]]:
    return [customer_json(c) or {} for c in await desk.customers.search(q, limit)]


@router.get("/customers/{customer_id}")
async def get_customer(customer_id: int, desk: Desk, _who: CurrentUser) -> dict[str, Any]:
    customer = await desk.customers.get(customer_id)
    history = await desk.customers.history(customer, 10)
    return {**(customer_json(customer) or {}), "history": history_json(tuple(history))}


@router.post("/customers", status_code=201)
async def add_customer(body: CustomerIn, desk: Desk, who: CurrentUser) -> dict[str, Any]:
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
    return customer_json(await desk.customers.add(customer)) or {}


@router.patch("/customers/{customer_id}")
async def update_customer(
    customer_id: int, body: CustomerPatchIn, desk: Desk, who: CurrentUser
) -> dict[str, Any]:
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
    return customer_json(await desk.customers.replace(apply_patch(current, patch))) or {}


@router.get("/lookup")
async def lookup(
    desk: Desk, _who: CurrentUser, number: Annotated[str, Query(min_length=1, max_length=64)]
) -> dict[str, Any]:
    """The caller's record by number: local store and external CRM (bounded by its timeout)."""
    view = await desk.crm.lookup(number)
    return {
        "number": view.number,
        "customer": customer_json(view.customer),
        "history": history_json(view.history),
        "external_error": view.external_error,
        "sources": list(view.sources),
    }


@router.post("/import")
async def import_csv(
    request: Request,
    desk: Desk,
    _admin: Annotated[Principal, Depends(require_role(Role.ADMIN))],
) -> dict[str, Any]:
    """Body: the CSV file (text/csv, UTF-8). Good rows are loaded, bad ones reported by line."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"the file is not UTF-8 (byte {exc.start})") from None
    result = await import_customers(
        desk.customers, text.splitlines(keepends=True), desk.crm.default_region
    )
    return {
        "added": result.added,
        "updated": result.updated,
        "rejected": [{"line": r.line, "reason": r.reason} for r in result.rejected],
    }
