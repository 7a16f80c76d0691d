"""Report roll-ups: each quarter hour's figures per queue and agent (docs/metrics.md), kept
as the events are appended, so a month or a year reads a few thousand rows instead of folding
millions of events (docs/reports.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime


class ReportRollupRow(Base):
    __tablename__ = "report_rollups"

    bucket: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)  # quarter start
    kind: Mapped[str] = mapped_column(String(1), primary_key=True)  # q: queue, a: agent
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # queue name or agent id
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)  # QueueFigures / AgentFigures record


class ReportRollupState(Base):
    """How far the roll-ups are: the last event folded into them."""

    __tablename__ = "report_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
