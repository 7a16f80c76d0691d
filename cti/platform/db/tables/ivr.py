"""Procedure runs and script departures, for quality review (docs/phrases.md#enforce:
every procedure run and every departure from the script is recorded)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime


class ProcedureRunRow(Base):
    __tablename__ = "ivr_procedure_runs"

    id: Mapped[str] = mapped_column(String(96), primary_key=True)  # "<call id>-r<n>"
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    procedure: Mapped[str] = mapped_column(String(32))
    started_by: Mapped[str] = mapped_column(String(16))  # auto | agent
    agent_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(32))
    hung_up: Mapped[bool] = mapped_column(default=False)


class ProcedureStepRow(Base):
    """One entry of a run's timeline: prompt start/end, wait start/end, trigger, hang-up."""

    __tablename__ = "ivr_procedure_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(
        String(96), ForeignKey("ivr_procedure_runs.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    offset_ms: Mapped[int] = mapped_column(Integer)  # since the run started (monotonic clock)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ScriptDepartureRow(Base):
    __tablename__ = "ivr_script_departures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str | None] = mapped_column(String(96))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    what: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class IvrCheckpointRow(Base):
    """Each live call's latest IVR position (cti.domain.ivr.checkpoint), so another process
    adopting the call goes on at the same step with the rest of its wait. One row per call,
    overwritten (only the latest matters), deleted when the call's IVR ends."""

    __tablename__ = "ivr_checkpoints"

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
