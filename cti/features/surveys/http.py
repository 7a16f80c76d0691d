"""Surveys over HTTP: an agent records a survey done by a call-back; a call's surveys; the
averages per agent, queue or day (supervisors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from cti.domain.survey import Average, check
from cti.features.auth.http import CurrentUser, require_role
from cti.features.auth.service import Principal, Role
from cti.features.surveys.service import Surveys
from cti.features.surveys.storage import Survey
from cti.platform.http_guards import CallIdPath, IsoTime, error_responses, invalid
from cti.platform.provide import provide

router = APIRouter(tags=["surveys"], responses=error_responses(401, 403, 422))
Service = Annotated[Surveys, Depends(provide(Surveys))]
Score = Literal[5, 3, 1]


class SurveyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_id: str | None = Field(default=None, min_length=1, max_length=128)
    work_order_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    agent_id: str | None = Field(default=None, min_length=1, max_length=64,
                                 description="whose service was rated (default: yourself)")
    speed: Score | None = None
    resolved: bool | None = None
    attitude: Score | None = None


class SurveyOut(BaseModel):
    id: int
    at: IsoTime
    channel: str
    call_id: str | None
    agent_id: str | None
    queue: str | None
    work_order_id: int | None
    speed: int | None
    resolved: bool | None
    attitude: int | None
    complete: bool

    @classmethod
    def of(cls, s: Survey) -> SurveyOut:
        a = s.answers
        return cls(id=s.id, at=s.at.isoformat(), channel=s.channel, call_id=s.call_id,
                   agent_id=s.agent_id, queue=s.queue, work_order_id=s.work_order_id,
                   speed=a.speed, resolved=a.resolved, attitude=a.attitude,
                   complete=a.complete)


class AverageOut(BaseModel):
    key: str
    surveys: int
    speed: float | None
    resolved_rate: float | None
    attitude: float | None

    @classmethod
    def of(cls, a: Average) -> AverageOut:
        return cls(key=a.key, surveys=a.surveys, speed=a.speed, resolved_rate=a.resolved_rate,
                   attitude=a.attitude)


@router.post("/surveys", status_code=201)
async def record_survey(body: SurveyIn, surveys: Service, who: CurrentUser) -> SurveyOut:
    """A survey done by a call-back (channel "callback"): at least one answer."""
    try:
        answers = check(body.speed, body.resolved, body.attitude)
    except ValueError as exc:
        raise invalid(("body",), str(exc), "value_error") from None
    return SurveyOut.of(await surveys.record(
        who, answers, call_id=body.call_id, work_order_id=body.work_order_id,
        agent_id=body.agent_id))


@router.get("/calls/{call_id}/surveys")
async def call_surveys(call_id: CallIdPath, surveys: Service,
                       _who: Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]
                       ) -> list[SurveyOut]:
    return [SurveyOut.of(s) for s in await surveys.store.of_call(call_id)]


@router.get("/reports/surveys")
async def survey_figures(
    surveys: Service, _who: Annotated[Principal, Depends(require_role(Role.SUPERVISOR))],
    since: Annotated[datetime | None, Query(description="default: 7 days ago")] = None,
    until: Annotated[datetime | None, Query(description="default: now")] = None,
    by: Annotated[Literal["agent", "queue", "day", "all"], Query()] = "agent",
    tz: Annotated[str, Query(max_length=64)] = "UTC",
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    queue: Annotated[str | None, Query(max_length=64)] = None,
) -> list[AverageOut]:
    """Surveys, average speed and attitude (5/3/1) and the resolved share, per agent, queue or
    day, over [since, until)."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(("query", "tz"), "unknown time zone", "value_error", tz) from None
    end = until or datetime.now(UTC)
    start = since or end - timedelta(days=7)
    if start.tzinfo is None or end.tzinfo is None:
        raise invalid(("query", "since"), "give a time zone offset (e.g. Z)", "value_error")
    return [AverageOut.of(a) for a in await surveys.figures(start, end, by, tz, agent_id, queue)]
