"""The outbox and the customers' contacts in the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.messages import Contact, Draft, OutboxStatus, Outcome
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.messages import CustomerContactRow, OutboxRow


@dataclass(frozen=True, slots=True)
class OutboxItem:
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
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str


def _item(r: OutboxRow) -> OutboxItem:
    return OutboxItem(r.id, r.kind, r.channel, r.recipient, r.language, r.subject, r.body,
                      r.order_id, r.status, r.attempts, r.created_at, r.next_attempt_at,
                      r.sent_at, r.last_error)


class OutboxStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md

    async def enqueue(self, drafts: Sequence[Draft], now: datetime) -> int:
        """Keep the drafts, due now; a draft whose key is already there is skipped (the same
        event handled again). Returns how many were added."""
        added = 0
        for d in drafts:
            try:
                async with self.sessions.begin() as session:
                    session.add(OutboxRow(
                        key=d.key[:255], kind=d.kind, channel=d.channel.value, recipient=d.to,
                        language=d.language, subject=d.subject[:255], body=d.body,
                        order_id=d.order_id, status=OutboxStatus.PENDING.value, attempts=0,
                        created_at=now, next_attempt_at=now, last_error="",
                    ))
                added += 1
            except IntegrityError:
                continue
        return added

    async def due(self, now: datetime, limit: int = 50) -> list[OutboxItem]:
        async with self.reads() as session:
            rows = (await session.scalars(
                select(OutboxRow).where(OutboxRow.status == OutboxStatus.PENDING.value,
                                        OutboxRow.next_attempt_at <= now)
                .order_by(OutboxRow.next_attempt_at, OutboxRow.id).limit(limit)
            )).all()
            return [_item(r) for r in rows]

    async def earliest(self) -> datetime | None:
        async with self.reads() as session:
            value: datetime | None = await session.scalar(
                select(func.min(OutboxRow.next_attempt_at))
                .where(OutboxRow.status == OutboxStatus.PENDING.value)
            )
            return value

    async def record(self, item_id: int, outcome: Outcome) -> None:
        async with self.sessions.begin() as session:
            row = await session.get(OutboxRow, item_id)
            if row is None:
                return
            row.status = outcome.status.value
            row.attempts = outcome.attempts
            row.next_attempt_at = outcome.next_attempt_at
            row.last_error = outcome.last_error
            row.sent_at = outcome.sent_at

    async def list(self, *, status: str | None = None, order_id: int | None = None,
                   limit: int = 100) -> list[OutboxItem]:
        query = select(OutboxRow)
        if status is not None:
            query = query.where(OutboxRow.status == status)
        if order_id is not None:
            query = query.where(OutboxRow.order_id == order_id)
        async with self.reads() as session:
            rows = (await session.scalars(query.order_by(OutboxRow.id.desc()).limit(limit))).all()
            return [_item(r) for r in rows]

    # ----- contacts --------------------------------------------------------------------

    async def contact(self, customer_id: int) -> Contact | None:
        async with self.reads() as session:
            row = await session.get(CustomerContactRow, customer_id)
            return None if row is None else Contact(row.email, row.phone, row.language)

    async def set_contact(self, customer_id: int, contact: Contact, now: datetime) -> None:
        async with self.sessions.begin() as session:
            row = await session.get(CustomerContactRow, customer_id)
            if row is None:
                row = CustomerContactRow(customer_id=customer_id)
                session.add(row)
            row.email, row.phone, row.language = contact.email, contact.phone, contact.language
            row.updated_at = now
