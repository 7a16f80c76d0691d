"""The shift handover log over HTTP (docs/shift_handover.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from cti.domain.handover import HandoverEntry, HandoverItem, NewItem
from cti.features.auth.http import CurrentUser
from cti.features.handover.service import Handovers
from cti.platform.http_guards import IdPath, IsoTime, error_responses
from cti.platform.provide import provide

router = APIRouter(tags=["handover"], responses=error_responses(401, 422))
Log = Annotated[Handovers, Depends(provide(Handovers))]
ShiftName = Annotated[str, Field(min_length=1, max_length=64)]


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=1000)
    work_order_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shift: ShiftName = Field(description='the shift handing over, e.g. "2026-12-01 day"')
    next_shift: ShiftName = Field(description="the shift taking over")
    note: str = Field(default="", max_length=8000)
    items: list[ItemIn] = Field(default_factory=list, max_length=30)


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(
        default=None, max_length=30, description="default: every open item of the entry")
    note: str = Field(default="", max_length=2000)


class ItemOut(BaseModel):
    id: int
    text: str
    work_order_id: int | None
    acknowledged_by: str | None
    acknowledged_at: IsoTime | None
    ack_note: str
    reminders: int

    @classmethod
    def of(cls, i: HandoverItem) -> ItemOut:
        return cls(id=i.id, text=i.text, work_order_id=i.work_order_id,
                   acknowledged_by=i.acknowledged_by,
                   acknowledged_at=i.acknowledged_at.isoformat() if i.acknowledged_at else None,
                   ack_note=i.ack_note, reminders=i.reminders)


class EntryOut(BaseModel):
    id: int
    shift: str
    next_shift: str
    written_by: str
    written_at: IsoTime
    note: str
    open_items: int
    items: list[ItemOut]

    @classmethod
    def of(cls, e: HandoverEntry) -> EntryOut:
        return cls(id=e.id, shift=e.shift, next_shift=e.next_shift, written_by=e.written_by,
                   written_at=e.written_at.isoformat(), note=e.note,
                   open_items=len(e.open_items), items=[ItemOut.of(i) for i in e.items])


@router.post("/handovers", status_code=201, responses=error_responses(404, 409))
async def write_handover(body: EntryIn, log: Log, who: CurrentUser) -> EntryOut:
    """An entry for the next shift: a note and the items to pick up (maybe linked to work
    orders). Unacknowledged items are reminded on the desk."""
    entry = await log.write(who, shift=body.shift, next_shift=body.next_shift, note=body.note,
                            items=[NewItem(i.text, i.work_order_id) for i in body.items])
    return EntryOut.of(entry)


@router.get("/handovers")
async def list_handovers(
    log: Log, _who: CurrentUser,
    open: Annotated[bool, Query(description="only entries with items to pick up")] = False,
    next_shift: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[EntryOut]:
    """Newest first."""
    return [EntryOut.of(e) for e in await log.recent(open_only=open, next_shift=next_shift,
                                                     limit=limit)]


@router.get("/handovers/{entry_id}", responses=error_responses(404))
async def get_handover(entry_id: IdPath, log: Log, _who: CurrentUser) -> EntryOut:
    return EntryOut.of(await log.get(entry_id))


@router.post("/handovers/{entry_id}/acknowledge", responses=error_responses(404, 409))
async def acknowledge_handover(entry_id: IdPath, body: AcknowledgeIn, log: Log,
                               who: CurrentUser) -> EntryOut:
    """The next shift picked the items up (409 for the entry's own writer, or an item
    acknowledged already)."""
    return EntryOut.of(await log.acknowledge(who, entry_id, body.item_ids, body.note))
