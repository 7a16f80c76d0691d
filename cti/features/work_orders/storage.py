"""Work orders in the database: one row per order (its current state and its next timer) and
one row per history entry, appended, never rewritten."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.work_orders import (
    Change,
    HistoryEntry,
    Owner,
    Status,
    WorkOrder,
)
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.work_orders import WorkOrderHistoryRow, WorkOrderRow
from cti.platform.errors import NotFound

T = TypeVar("T")


def _fill(row: WorkOrderRow, order: WorkOrder, next_timer: datetime | None) -> None:
    row.type = order.type
    row.complaint = order.complaint
    row.severity = order.severity
    row.priority = order.priority
    row.status = order.status.value
    row.owner = str(order.owner)
    row.created_at = order.created_at
    row.created_by = order.created_by
    row.due_at = order.due_at
    row.description = order.description
    row.result = order.result
    row.call_id = order.call_id
    row.customer_id = order.customer_id
    row.ack_due_at = order.ack_due_at
    row.acknowledged_at = order.acknowledged_at
    row.last_progress_at = order.last_progress_at
    row.reminders_sent = order.reminders_sent
    row.overdue_alerted = order.overdue_alerted
    row.escalated = list(order.escalated)
    row.escalated_to = list(order.escalated_to)
    row.next_timer_at = next_timer


def _order(row: WorkOrderRow, history: Sequence[WorkOrderHistoryRow] = ()) -> WorkOrder:
    return WorkOrder(
        id=row.id, type=row.type, complaint=row.complaint, severity=row.severity,
        priority=row.priority, status=Status(row.status), owner=Owner.parse(row.owner),
        created_at=row.created_at, created_by=row.created_by, due_at=row.due_at,
        description=row.description, result=row.result, call_id=row.call_id,
        customer_id=row.customer_id, ack_due_at=row.ack_due_at,
        acknowledged_at=row.acknowledged_at, last_progress_at=row.last_progress_at,
        reminders_sent=row.reminders_sent, overdue_alerted=row.overdue_alerted,
        escalated=tuple(row.escalated or ()), escalated_to=tuple(row.escalated_to or ()),
        history=tuple(
            HistoryEntry(h.at, h.actor, h.action,
                         tuple(Change(c["field"], c.get("old"), c.get("new"))
                               for c in h.changes or ()), h.note)
            for h in history
        ),
    )


def _history_rows(order: WorkOrder, start: int) -> list[WorkOrderHistoryRow]:
    return [
        WorkOrderHistoryRow(
            order_id=order.id, position=i, at=e.at, actor=e.actor, action=e.action,
            changes=[{"field": c.field, "old": c.old, "new": c.new} for c in e.changes],
            note=e.note,
        )
        for i, e in enumerate(order.history[start:], start=start)
    ]


class WorkOrderStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md

    async def create(
        self, build: Callable[[int], tuple[WorkOrder, T]],
        next_timer: Callable[[WorkOrder], datetime | None],
    ) -> tuple[WorkOrder, T]:
        """Insert an order: `build(id)` makes it once the database has given it its id."""
        async with self.sessions.begin() as session:
            row = WorkOrderRow()
            placeholder, _ = build(0)
            _fill(row, placeholder, None)
            session.add(row)
            await session.flush()
            order, extra = build(row.id)
            _fill(row, order, next_timer(order))
            session.add_all(_history_rows(order, 0))
        return order, extra

    async def get(self, order_id: int, *, history: bool = True) -> WorkOrder:
        async with self.reads() as session:
            row = await session.get(WorkOrderRow, order_id)
            if row is None:
                raise NotFound(f"no work order {order_id}")
            rows: Sequence[WorkOrderHistoryRow] = ()
            if history:
                rows = (await session.scalars(
                    select(WorkOrderHistoryRow).where(WorkOrderHistoryRow.order_id == order_id)
                    .order_by(WorkOrderHistoryRow.position)
                )).all()
            return _order(row, rows)

    async def update(
        self, order_id: int,
        change: Callable[[WorkOrder], tuple[WorkOrder, datetime | None, T]],
    ) -> tuple[WorkOrder, T]:
        """Read the order, `change(order)` -> (new order, its next timer, extra), write the new
        state and the history entries it added: one transaction, the order's row locked from
        the read (FOR UPDATE; on SQLite the write lock from BEGIN), so two changes at once (two
        nodes, two processes) run one after the other and neither is lost. What `change`
        raises rolls it back."""
        async with self.sessions.begin() as session:
            row = await session.get(WorkOrderRow, order_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no work order {order_id}")
            history = (await session.scalars(
                select(WorkOrderHistoryRow).where(WorkOrderHistoryRow.order_id == order_id)
                .order_by(WorkOrderHistoryRow.position)
            )).all()
            old = _order(row, history)
            new, timer, extra = change(old)
            _fill(row, new, timer)
            session.add_all(_history_rows(new, len(old.history)))
        return new, extra

    async def search(
        self, *, owners: Sequence[str] | None = None, statuses: Sequence[Status] | None = None,
        customer_id: int | None = None, limit: int = 100,
    ) -> list[WorkOrder]:
        """Orders without their history, most urgent first (priority, then due time)."""
        query: Any = select(WorkOrderRow)
        if owners is not None:
            query = query.where(WorkOrderRow.owner.in_(list(owners)))
        if statuses is not None:
            query = query.where(WorkOrderRow.status.in_([s.value for s in statuses]))
        if customer_id is not None:
            query = query.where(WorkOrderRow.customer_id == customer_id)
        query = query.order_by(WorkOrderRow.priority, WorkOrderRow.due_at, WorkOrderRow.id)
        async with self.reads() as session:
            return [_order(r) for r in (await session.scalars(query.limit(limit))).all()]

    async def due(self, now: datetime, limit: int = 200) -> list[int]:
        """Ids of the orders whose next timer is at or before `now`."""
        async with self.reads() as session:
            return list((await session.scalars(
                select(WorkOrderRow.id).where(WorkOrderRow.next_timer_at <= now)
                .order_by(WorkOrderRow.next_timer_at).limit(limit)
            )).all())

    async def earliest_timer(self) -> datetime | None:
        async with self.reads() as session:
            value: datetime | None = await session.scalar(
                select(func.min(WorkOrderRow.next_timer_at))
            )
            return value

    async def complaints_since(self, customer_id: int, since: datetime) -> list[datetime]:
        async with self.reads() as session:
            return list((await session.scalars(
                select(WorkOrderRow.created_at).where(
                    WorkOrderRow.customer_id == customer_id, WorkOrderRow.complaint.is_(True),
                    WorkOrderRow.created_at >= since,
                )
            )).all())
