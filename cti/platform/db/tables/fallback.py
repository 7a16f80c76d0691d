"""What callers left when no agent was free (the queue's or the after-hours fallback): call-back
requests and voicemails, for supervisors to follow up."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime


class CallbackRequestRow(Base):
    __tablename__ = "callback_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    caller_number: Mapped[str] = mapped_column(String(64))
    lang: Mapped[str] = mapped_column(String(8))
    queue: Mapped[str | None] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # a supervisor called back


class VoicemailRow(Base):
    __tablename__ = "voicemails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    caller_number: Mapped[str] = mapped_column(String(64))
    mailbox: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(64))
    lang: Mapped[str] = mapped_column(String(8))
    recording: Mapped[str] = mapped_column(String(128), unique=True)  # the PBX's stored name
    format: Mapped[str] = mapped_column(String(16))
    duration_s: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
