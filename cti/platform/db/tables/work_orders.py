"""Work orders (cti/domain/work_orders.py) and their history: who changed what, when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime


class WorkOrderRow(Base):
    __tablename__ = "work_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64))
    complaint: Mapped[bool] = mapped_column(Boolean, default=False)
    severity: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), index=True)
    owner: Mapped[str] = mapped_column(String(96), index=True)  # agent:ID | team:NAME
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(96))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    description: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(Text, default="")
    call_id: Mapped[str | None] = mapped_column(String(128), index=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    ack_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_progress_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    overdue_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated: Mapped[list[str]] = mapped_column(JSON, default=list)
    escalated_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    # When the driver must look at the order again (cti.domain.work_orders.next_timer).
    next_timer_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)

    # An agent's open orders (the agent page's list): only the owner's orders in those
    # statuses are read, not every order they ever closed (migration 0015).
    __table_args__ = (Index("ix_work_orders_owner_status", "owner", "status"),)


class WorkOrderHistoryRow(Base):
    __tablename__ = "work_order_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(96))
    action: Mapped[str] = mapped_column(String(32))
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_work_order_history_order", "order_id", "position"),)
