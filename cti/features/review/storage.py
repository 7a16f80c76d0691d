"""Stored evaluations: written once, read by agent, team and time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.platform.db.base import read_sessions
from cti.platform.db.tables.evaluations import EvaluationRow

READ_MAX = 100_000  # evaluations in one answer's window (a year of a large center's reviews)


@dataclass(frozen=True, slots=True)
class NewEvaluation:
    call_id: str
    agent_id: str | None
    team: str | None
    evaluator: str
    form_id: str
    form_version: int
    answers: dict[str, Any]
    sections: dict[str, float | None]
    score: float
    auto_failed: tuple[str, ...]
    comment: str
    created_at: datetime


def as_json(r: EvaluationRow) -> dict[str, Any]:
    return {
        "id": r.id, "call_id": r.call_id, "agent_id": r.agent_id, "team": r.team,
        "evaluator": r.evaluator, "form_id": r.form_id, "form_version": r.form_version,
        "answers": r.answers, "sections": r.sections, "score": r.score,
        "auto_failed": list(r.auto_failed), "comment": r.comment, "created_at": r.created_at,
    }


class EvaluationStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md

    async def add(self, e: NewEvaluation) -> dict[str, Any]:
        row = EvaluationRow(
            call_id=e.call_id, agent_id=e.agent_id, team=e.team, evaluator=e.evaluator,
            form_id=e.form_id, form_version=e.form_version, answers=e.answers,
            sections=e.sections, score=e.score, auto_failed=list(e.auto_failed),
            comment=e.comment, created_at=e.created_at,
        )
        async with self.sessions.begin() as session:
            session.add(row)
            await session.flush()
            return as_json(row)

    async def find(
        self, *, call_id: str | None = None, agent_id: str | None = None,
        team: str | None = None, since: datetime | None = None, until: datetime | None = None,
        limit: int = READ_MAX,
    ) -> list[dict[str, Any]]:
        """Oldest first; `since` inclusive, `until` exclusive."""
        query = select(EvaluationRow).order_by(EvaluationRow.created_at, EvaluationRow.id)
        if call_id is not None:
            query = query.where(EvaluationRow.call_id == call_id)
        if agent_id is not None:
            query = query.where(EvaluationRow.agent_id == agent_id)
        if team is not None:
            query = query.where(EvaluationRow.team == team)
        if since is not None:
            query = query.where(EvaluationRow.created_at >= since)
        if until is not None:
            query = query.where(EvaluationRow.created_at < until)
        async with self.reads() as session:
            rows = (await session.scalars(query.limit(limit))).all()
        return [as_json(r) for r in rows]
