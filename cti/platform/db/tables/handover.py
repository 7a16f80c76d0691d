"""The shift handover log (cti/domain/handover.py): entries and the items they hand over."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime


class HandoverEntryRow(Base):
    __tablename__ = "handover_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shift: Mapped[str] = mapped_column(String(64))
    next_shift: Mapped[str] = mapped_column(String(64), index=True)
    written_by: Mapped[str] = mapped_column(String(96))
    written_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    note: Mapped[str] = mapped_column(Text, default="")


class HandoverItemRow(Base):
    __tablename__ = "handover_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("handover_entries.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    work_order_id: Mapped[int | None] = mapped_column(
        ForeignKey("work_orders.id", ondelete="SET NULL"), index=True
    )
    acknowledged_by: Mapped[str | None] = mapped_column(String(96))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ack_note: Mapped[str] = mapped_column(Text, default="")
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    # When the reminder driver must look at the item again (None once acknowledged).
    next_reminder_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_handover_items_next_reminder_at", "next_reminder_at"),)
