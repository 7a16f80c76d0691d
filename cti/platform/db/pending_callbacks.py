"""The pending call-backs store: shared by the two features that call customers back (queue
call-backs in cti/features/routing/, complaint call-backs in cti/features/complaint_callbacks/),
each under its own `kind`. A row is written at every change of its call-back and deleted when
the call-back is over, so a restart finds exactly the ones still to make."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.platform.db.base import read_sessions
from cti.platform.db.tables.callbacks import PendingCallbackRow


@dataclass(frozen=True, slots=True)
class PendingCallback:
    kind: str  # "queue" | "complaint"
    key: str  # the call id | the order id
    number: str
    status: str
    attempts: int = 0
    next_at: datetime | None = None
    queue: str | None = None
    agent_id: str | None = None
    entered_at: datetime | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


class PendingCallbackStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md

    async def save(self, cb: PendingCallback, now: datetime) -> None:
        """Insert or replace the row of (kind, key)."""
        async with self.sessions.begin() as session:
            row = await session.get(PendingCallbackRow, (cb.kind, cb.key))
            if row is None:
                row = PendingCallbackRow(kind=cb.kind, key=cb.key)
                session.add(row)
            row.number = cb.number
            row.status = cb.status
            row.attempts = cb.attempts
            row.next_at = cb.next_at
            row.queue = cb.queue
            row.agent_id = cb.agent_id
            row.entered_at = cb.entered_at
            row.attributes = dict(cb.attributes) or None
            row.updated_at = now

    async def delete(self, kind: str, key: str) -> None:
        async with self.sessions.begin() as session:
            await session.execute(delete(PendingCallbackRow).where(
                PendingCallbackRow.kind == kind, PendingCallbackRow.key == key))

    async def load(self, kind: str) -> list[PendingCallback]:
        """Every pending call-back of `kind`, queue call-backs in their original order."""
        async with self.reads() as session:
            rows = (await session.scalars(
                select(PendingCallbackRow).where(PendingCallbackRow.kind == kind)
                .order_by(PendingCallbackRow.entered_at, PendingCallbackRow.key))).all()
        return [PendingCallback(r.kind, r.key, r.number, r.status, r.attempts, r.next_at,
                                r.queue, r.agent_id, r.entered_at, dict(r.attributes or {}))
                for r in rows]
