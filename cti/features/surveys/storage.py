"""Surveys and survey offers in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.survey import Answers, SurveyFact
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.surveys import SurveyOfferRow, SurveyRow

# A keypad survey is stored when the call ends, a minute or so after its offer; reading the
# surveys stored up to this long after a period finds the ones offered in it (index on `at`).
STORED_WITHIN = timedelta(hours=1)


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
        self.reads = read_sessions(sessions)  # docs/storage.md

    async def add(self, *, at: datetime, channel: str, call_id: str | None,
                  agent_id: str | None, queue: str | None, work_order_id: int | None,
                  answers: Answers, recorded_by: str | None = None,
                  offered_at: datetime | None = None) -> Survey:
        async with self.sessions.begin() as session:
            row = SurveyRow(at=at, channel=channel, call_id=call_id, agent_id=agent_id,
                            queue=queue, work_order_id=work_order_id, speed=answers.speed,
                            resolved=answers.resolved, attitude=answers.attitude,
                            complete=answers.complete, recorded_by=recorded_by,
                            offered_at=offered_at)
            session.add(row)
            await session.flush()
            return _survey(row)

    async def of_call(self, call_id: str) -> list[Survey]:
        async with self.reads() as session:
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
        async with self.reads() as session:
            rows = (await session.scalars(query.order_by(SurveyRow.at).limit(100_000))).all()
            return [_survey(r) for r in rows]

    async def add_offer(self, *, at: datetime, call_id: str, agent_id: str | None,
                        queue: str | None) -> None:
        async with self.sessions.begin() as session:
            session.add(SurveyOfferRow(at=at, call_id=call_id, agent_id=agent_id, queue=queue))

    async def survey_facts(self, since: datetime, until: datetime) -> list[SurveyFact]:
        """The offers made and the surveys offered (or, without an offer, stored) in
        [since, until), as the reports count them."""
        counted_at = func.coalesce(SurveyRow.offered_at, SurveyRow.at)
        async with self.reads() as session:
            offers = (await session.execute(
                select(SurveyOfferRow.at, SurveyOfferRow.queue, SurveyOfferRow.agent_id)
                .where(SurveyOfferRow.at >= since, SurveyOfferRow.at < until))).all()
            surveys = (await session.execute(
                select(SurveyRow.at, SurveyRow.offered_at, SurveyRow.queue, SurveyRow.agent_id,
                       SurveyRow.speed, SurveyRow.resolved, SurveyRow.attitude)
                .where(SurveyRow.at >= since, SurveyRow.at < until + STORED_WITHIN,
                       counted_at >= since, counted_at < until))).all()
        return [SurveyFact(at, queue, agent) for at, queue, agent in offers] + [
            SurveyFact(offered_at or at, queue, agent, Answers(speed, resolved, attitude),
                       offered=offered_at is not None)
            for at, offered_at, queue, agent, speed, resolved, attitude in surveys]
