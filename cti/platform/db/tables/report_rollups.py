"""Report roll-ups: each quarter hour's figures per queue and per agent (docs/metrics.md),
kept as the events are appended, so a month or a year sums a few thousand kept rows in the
database instead of folding millions of events (docs/reports.md). One column per figure, so the
database adds them up; the figures kept per reason or kind (pauses, procedures) in `extras`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime

# The columns, by how a longer period combines them (names as in cti/domain/stats.py).
QUEUE_COUNTS = ("offered", "answered", "answered_in_sl", "abandoned", "abandoned_in_sl",
                "short_abandoned", "callbacks", "voicemails", "after_hours", "moved", "handled",
                "transfers_out")
QUEUE_TIMES = ("wait_answered_s", "talk_s", "hold_s", "wrap_s")
QUEUE_MAX = ("longest_wait_answered_s",)
AGENT_COUNTS = ("calls", "transfers_in", "transfers_out", "missed")
AGENT_TIMES = ("on_call_s", "hold_s", "wrap_s", "ringing_s", "available_s", "logged_in_s")


class QueueQuarterRow(Base):
    __tablename__ = "report_queue_quarters"

    bucket: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)  # quarter start
    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    offered: Mapped[int] = mapped_column(Integer, default=0)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    answered_in_sl: Mapped[int] = mapped_column(Integer, default=0)
    abandoned: Mapped[int] = mapped_column(Integer, default=0)
    abandoned_in_sl: Mapped[int] = mapped_column(Integer, default=0)
    short_abandoned: Mapped[int] = mapped_column(Integer, default=0)
    callbacks: Mapped[int] = mapped_column(Integer, default=0)
    voicemails: Mapped[int] = mapped_column(Integer, default=0)
    after_hours: Mapped[int] = mapped_column(Integer, default=0)
    moved: Mapped[int] = mapped_column(Integer, default=0)
    handled: Mapped[int] = mapped_column(Integer, default=0)
    transfers_out: Mapped[int] = mapped_column(Integer, default=0)
    wait_answered_s: Mapped[float] = mapped_column(Float, default=0.0)
    talk_s: Mapped[float] = mapped_column(Float, default=0.0)
    hold_s: Mapped[float] = mapped_column(Float, default=0.0)
    wrap_s: Mapped[float] = mapped_column(Float, default=0.0)
    longest_wait_answered_s: Mapped[float] = mapped_column(Float, default=0.0)
    # per kind of procedure
    extras: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


class AgentQuarterRow(Base):
    __tablename__ = "report_agent_quarters"

    bucket: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    transfers_in: Mapped[int] = mapped_column(Integer, default=0)
    transfers_out: Mapped[int] = mapped_column(Integer, default=0)
    missed: Mapped[int] = mapped_column(Integer, default=0)
    on_call_s: Mapped[float] = mapped_column(Float, default=0.0)
    hold_s: Mapped[float] = mapped_column(Float, default=0.0)
    wrap_s: Mapped[float] = mapped_column(Float, default=0.0)
    ringing_s: Mapped[float] = mapped_column(Float, default=0.0)
    available_s: Mapped[float] = mapped_column(Float, default=0.0)
    logged_in_s: Mapped[float] = mapped_column(Float, default=0.0)
    # pause per reason, procedures per kind
    extras: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


class ReportRollupState(Base):
    """How far the roll-ups are: the last event folded into them."""

    __tablename__ = "report_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
