"""Surveys in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.survey import Answers
from cti.platform.db.tables.surveys import SurveyRow


@dataclass(frozen=True, slots=True)
class Survey:
    id: int
    at: datetime
    channel: str
    call_id: str | None
    agent_id: str | None
    queue: str | None
    work_order_id: int | None
    answers: Answers
    recorded_by: str | None


def _survey(r: SurveyRow) -> Survey:
    return Survey(r.id, r.at, r.channel, r.call_id, r.agent_id, r.queue, r.work_order_id,
                  Answers(r.speed, r.resolved, r.attitude), r.recorded_by)


class SurveyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def add(self, *, at: datetime, channel: str, call_id: str | None,
                  agent_id: str | None, queue: str | None, work_order_id: int | None,
                  answers: Answers, recorded_by: str | None = None) -> Survey:
        async with self.sessions.begin() as session:
            row = SurveyRow(at=at, channel=channel, call_id=call_id, agent_id=agent_id,
                            queue=queue, work_order_id=work_order_id, speed=answers.speed,
                            resolved=answers.resolved, attitude=answers.attitude,
                            complete=answers.complete, recorded_by=recorded_by)
            session.add(row)
            await session.flush()
            return _survey(row)

    async def of_call(self, call_id: str) -> list[Survey]:
        async with self.sessions() as session:
            rows = (await session.scalars(
                select(SurveyRow).where(SurveyRow.call_id == call_id).order_by(SurveyRow.id)
            )).all()
            return [_survey(r) for r in rows]

    async def between(self, since: datetime, until: datetime, *, agent_id: str | None = None,
                      queue: str | None = None) -> list[Survey]:
        query: Any = select(SurveyRow).where(SurveyRow.at >= since, SurveyRow.at < until)
        if agent_id is not None:
            query = query.where(SurveyRow.agent_id == agent_id)
        if queue is not None:
            query = query.where(SurveyRow.queue == queue)
        async with self.sessions() as session:
            rows = (await session.scalars(query.order_by(SurveyRow.at).limit(100_000))).all()
            return [_survey(r) for r in rows]
