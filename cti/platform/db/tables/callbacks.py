"""Pending call-backs (docs/queue_callbacks.md, docs/complaint_callbacks.md): what a restart
must not forget. A row lives while its call-back waits or is being dialled, and goes when it
connected, was given up or cancelled."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime


class PendingCallbackRow(Base):
    __tablename__ = "pending_callbacks"

    # "queue" (a caller who left the queue: key = the call id) or "complaint" (key = order id)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[str] = mapped_column(String(32))
    queue: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    # a queue call-back's ORIGINAL queue entry: its place when it waits again
    entered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # None: in the queue
    status: Mapped[str] = mapped_column(String(16))
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the call's, for routing
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
