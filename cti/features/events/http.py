"""The kept event stream over HTTP, for supervisors: a range of it, or one call's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from cti.events import Bus
from cti.features.auth.http import require_role
from cti.features.auth.service import Principal, Role
from cti.features.events.store import EventLog, StoredEvent
from cti.platform.bus import InProcessBus
from cti.platform.http_guards import QueryTime, error_responses
from cti.platform.provide import provide

router = APIRouter(tags=["events"], responses=error_responses(401, 403, 422))
Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]
Log = Annotated[EventLog, Depends(provide(EventLog))]
TheBus = Annotated[InProcessBus, Depends(provide(InProcessBus))]


class EventOut(BaseModel):
    seq: int
    at: datetime
    type: str
    version: int
    call_id: str | None
    agent_id: str | None
    queue: str | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, e: StoredEvent) -> EventOut:
        return cls(seq=e.seq, at=e.at, type=e.type, version=e.version, call_id=e.call_id,
                   agent_id=e.agent_id, queue=e.queue, payload=e.payload)


async def _settled(bus: Bus) -> None:
    await bus.drain(5.0)  # what happened until now is readable now


@router.get("/events")
async def events(
    who: Supervisor, log: Log, bus: TheBus,
    since: QueryTime | None = None, until: QueryTime | None = None,
    after_seq: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[EventOut]:
    """Events in stream order: `since` (inclusive) .. `until` (exclusive), after a sequence
    number (to follow the stream), of one agent."""
    await _settled(bus)
    rows = await log.read(since=since, until=until, after_seq=after_seq, agent_id=agent_id,
                          limit=limit)
    return [EventOut.of(e) for e in rows]


@router.get("/calls/{call_id}/events")
async def call_events(
    call_id: Annotated[str, Path(min_length=1, max_length=128)], who: Supervisor, log: Log,
    bus: TheBus,
) -> list[EventOut]:
    """Everything that happened on one call, in order."""
    await _settled(bus)
    return [EventOut.of(e) for e in await log.read(call_id=call_id, limit=None)]
