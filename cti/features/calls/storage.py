"""Persistence of the call log (SQLAlchemy async)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.domain.calls import Call, CallState
from cti.platform.db.tables.calls import CallRow


def _row_values(call: Call) -> dict[str, Any]:
    return {
        "channel_id": call.channel_id,
        "caller_number": call.caller_number or None,
        "caller_name": call.caller_name or None,
        "dialled_number": call.dialled_number or None,
        "state": call.state.value,
        "arrived_at": call.arrived_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "hangup_cause": call.hangup_cause,
        "hangup_cause_text": call.hangup_cause_text,
        "ended_by": call.ended_by,
        "greeting_played": call.greeting_played,
        "agent_id": call.agent_id,
        "queue": call.queue,
        "attributes": dict(call.attributes) or None,
        "queued_at": call.queued_at,
    }


def _from_row(row: CallRow) -> Call:
    return Call(
        id=row.id,
        channel_id=row.channel_id,
        caller_number=row.caller_number or "",
        caller_name=row.caller_name or "",
        dialled_number=row.dialled_number or "",
        arrived_at=row.arrived_at,
        state=CallState(row.state),
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        hangup_cause=row.hangup_cause,
        hangup_cause_text=row.hangup_cause_text,
        ended_by=row.ended_by,
        greeting_played=row.greeting_played,
        agent_id=row.agent_id,
        queue=row.queue,
        attributes=dict(row.attributes or {}),
        queued_at=row.queued_at,
    )


def _insert_for(dialect: str) -> Any:
    """The dialect's INSERT, which has ON CONFLICT DO UPDATE (both PostgreSQL and SQLite)."""
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"call log upsert on {dialect}")


class CallRepository:
    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions
        # Saves of one call run one at a time, in the order asked: several tasks save the same
        # call (lifecycle, routing), and the first insert must not race a later update.
        self._locks: dict[str, asyncio.Lock] = {}

    async def save(self, call: Call) -> None:
        """Insert or update the row for this call."""
        lock = self._locks.setdefault(call.id, asyncio.Lock())
        values = _row_values(call)
        try:
            async with lock, self._sessions() as session, session.begin():
                # One upsert statement: a call is saved four times or more, and the ORM's
                # select-then-flush cost twice the round trips and most of the CPU of a call.
                upsert = _insert_for(session.bind.dialect.name)(CallRow).values(
                    id=call.id, **values
                )
                await session.execute(
                    upsert.on_conflict_do_update(index_elements=[CallRow.id], set_=values)
                )
        finally:
            if call.state is CallState.ENDED and not lock.locked():
                self._locks.pop(call.id, None)

    async def get(self, call_id: str) -> Call | None:
        async with self._sessions() as session:
            row = await session.get(CallRow, call_id)
            return _from_row(row) if row is not None else None

    async def open_calls(self) -> list[Call]:
        async with self._sessions() as session:
            rows = await session.scalars(select(CallRow).where(CallRow.state != "ended"))
            return [_from_row(r) for r in rows]

    async def recent(self, limit: int = 100) -> list[Call]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(CallRow).order_by(CallRow.arrived_at.desc()).limit(limit)
            )
            return [_from_row(r) for r in rows]
