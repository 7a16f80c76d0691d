"""The handover log in the database: entries with their items (tables handover_entries,
handover_items, migration 0014)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.handover import HandoverEntry, HandoverItem, NewItem
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.handover import HandoverEntryRow, HandoverItemRow
from cti.platform.errors import NotFound

T = TypeVar("T")


def _item(row: HandoverItemRow) -> HandoverItem:
    return HandoverItem(
        id=row.id, entry_id=row.entry_id, text=row.text, work_order_id=row.work_order_id,
        acknowledged_by=row.acknowledged_by, acknowledged_at=row.acknowledged_at,
        ack_note=row.ack_note or "", reminders=row.reminders,
        next_reminder_at=row.next_reminder_at,
    )


def _entry(row: HandoverEntryRow, items: Sequence[HandoverItemRow]) -> HandoverEntry:
    return HandoverEntry(
        id=row.id, shift=row.shift, next_shift=row.next_shift, written_by=row.written_by,
        written_at=row.written_at, note=row.note or "",
        items=tuple(_item(i) for i in sorted(items, key=lambda i: i.id)),
    )


class HandoverStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md

    async def create(
        self, *, shift: str, next_shift: str, written_by: str, written_at: datetime, note: str,
        items: Sequence[NewItem], first_reminder: datetime,
    ) -> HandoverEntry:
        async with self.sessions.begin() as session:
            row = HandoverEntryRow(shift=shift, next_shift=next_shift, written_by=written_by,
                                   written_at=written_at, note=note)
            session.add(row)
            await session.flush()
            rows = [HandoverItemRow(entry_id=row.id, text=i.text, work_order_id=i.work_order_id,
                                    ack_note="", reminders=0, next_reminder_at=first_reminder)
                    for i in items]
            session.add_all(rows)
            await session.flush()
            return _entry(row, rows)

    async def get(self, entry_id: int) -> HandoverEntry:
        async with self.reads() as session:
            row = await session.get(HandoverEntryRow, entry_id)
            if row is None:
                raise NotFound(f"no handover entry {entry_id}")
            items = (await session.scalars(
                select(HandoverItemRow).where(HandoverItemRow.entry_id == entry_id)
            )).all()
            return _entry(row, items)

    async def update(
        self, entry_id: int, change: Callable[[HandoverEntry], tuple[Sequence[HandoverItem], T]],
    ) -> tuple[HandoverEntry, T]:
        """Read the entry, `change(entry)` -> (its items changed, extra), write them, and the
        entry as it is then: one transaction, the entry's row locked from the read (FOR
        UPDATE; on SQLite the write lock from BEGIN), so two nodes acknowledging or reminding
        one item at once run one after the other. What `change` raises rolls it back."""
        async with self.sessions.begin() as session:
            row = await session.get(HandoverEntryRow, entry_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no handover entry {entry_id}")
            rows = {r.id: r for r in (await session.scalars(
                select(HandoverItemRow).where(HandoverItemRow.entry_id == entry_id)
            )).all()}
            changed, extra = change(_entry(row, list(rows.values())))
            for item in changed:
                r = rows[item.id]
                r.acknowledged_by = item.acknowledged_by
                r.acknowledged_at = item.acknowledged_at
                r.ack_note = item.ack_note
                r.reminders = item.reminders
                r.next_reminder_at = item.next_reminder_at
            return _entry(row, list(rows.values())), extra

    async def recent(self, *, open_only: bool = False, next_shift: str | None = None,
                     limit: int = 50) -> list[HandoverEntry]:
        """Newest first; `open_only`: entries with an item not acknowledged yet."""
        query: Any = select(HandoverEntryRow)
        if next_shift is not None:
            query = query.where(HandoverEntryRow.next_shift == next_shift)
        if open_only:
            query = query.where(HandoverEntryRow.id.in_(
                select(HandoverItemRow.entry_id).where(HandoverItemRow.acknowledged_at.is_(None))
            ))
        query = query.order_by(HandoverEntryRow.written_at.desc(), HandoverEntryRow.id.desc())
        async with self.reads() as session:
            rows = (await session.scalars(query.limit(limit))).all()
            if not rows:
                return []
            items = (await session.scalars(
                select(HandoverItemRow).where(HandoverItemRow.entry_id.in_([r.id for r in rows]))
            )).all()
        by_entry: dict[int, list[HandoverItemRow]] = {}
        for i in items:
            by_entry.setdefault(i.entry_id, []).append(i)
        return [_entry(r, by_entry.get(r.id, [])) for r in rows]

    async def due(self, now: datetime, limit: int = 500) -> list[HandoverItem]:
        async with self.reads() as session:
            rows = (await session.scalars(
                select(HandoverItemRow).where(HandoverItemRow.next_reminder_at <= now)
                .order_by(HandoverItemRow.next_reminder_at).limit(limit)
            )).all()
            return [_item(r) for r in rows]

    async def earliest_reminder(self) -> datetime | None:
        async with self.reads() as session:
            value: datetime | None = await session.scalar(
                select(func.min(HandoverItemRow.next_reminder_at))
            )
            return value
