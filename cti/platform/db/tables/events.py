"""The kept event stream: every domain event, in order (cti/events.py). The source for the
call log's history, the statistics, replays and the queue_log export."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime


class EventRow(Base):
    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    type: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer, default=1)
    call_id: Mapped[str | None] = mapped_column(String(128))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_events_call_seq", "call_id", "seq"),
        Index("ix_events_agent_seq", "agent_id", "seq"),
    )
