"""Call recordings (queues with `record: true`): one row per segment (a segment per bridge the
call talks in; a transfer starts a new one), each pause of it, and what became of the file
(kept for the retention period, then deleted at the PBX and marked)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime


class CallRecordingRow(Base):
    __tablename__ = "call_recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    segment: Mapped[int] = mapped_column(Integer)  # 1, 2, ... in the call
    name: Mapped[str] = mapped_column(String(128), unique=True)  # the PBX's recording name
    format: Mapped[str] = mapped_column(String(16))
    bridge_id: Mapped[str] = mapped_column(String(128))
    queue: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # recording | done | failed | deleted
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(500))  # why it failed
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    duration_s: Mapped[float | None] = mapped_column(Float)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class CallRecordingPauseRow(Base):
    __tablename__ = "call_recording_pauses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("call_recordings.id", ondelete="CASCADE"), index=True
    )
    paused_at: Mapped[datetime] = mapped_column(UtcDateTime())
    resumed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    by: Mapped[str] = mapped_column(String(64))
