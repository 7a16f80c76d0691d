"""Quality review over HTTP (supervisors): a call's time line, the evaluation forms, scoring a
call, and the evaluations with their averages per agent and team."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from cti.domain.evaluation import Form
from cti.domain.review import Review
from cti.features.auth.http import require_role
from cti.features.auth.service import Principal, Role
from cti.features.review.forms import EvaluationForms
from cti.features.review.service import CallReviews
from cti.platform.http_guards import MAX_KEY, CallIdPath, error_responses, invalid
from cti.platform.provide import provide

router = APIRouter(tags=["quality review"], responses=error_responses(401, 403, 422))
Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]
Reviews = Annotated[CallReviews, Depends(provide(CallReviews))]
Forms = Annotated[EvaluationForms, Depends(provide(EvaluationForms))]
Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY)]


class MediaOut(BaseModel):
    recording_id: int
    at_s: float = Field(description="seconds into that recording's file")
    paused: bool = Field(description="the moment fell in a pause of the recording")


class EntryOut(BaseModel):
    seq: int = Field(description="the event's place in the stream (0: a routing decision)")
    at: datetime
    offset_s: float = Field(description="seconds since the call arrived")
    lane: str
    kind: str
    text: str
    detail: dict[str, Any]
    media: MediaOut | None


class StretchOut(BaseModel):
    lane: str
    kind: str = Field(description="segment | pause | hold | queue_wait | run")
    start_s: float
    end_s: float | None
    label: str
    recording_id: int | None


class StepOut(BaseModel):
    at: datetime
    offset_ms: int = Field(description="since the run started")
    kind: str
    detail: dict[str, Any]


class RunOut(BaseModel):
    run_id: str
    procedure: str
    started_by: str
    agent_id: str | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    steps: list[StepOut]


class DepartureOut(BaseModel):
    at: datetime
    offset_s: float
    kind: str = Field(description="direct_hangup_blocked | procedure_skipped | "
                                  "procedure_cut_short | forbidden_phrase_blocked | ...")
    what: str
    run_id: str | None
    agent_id: str | None
    detail: dict[str, Any]


class SegmentOut(BaseModel):
    id: int
    segment: int
    status: str
    reason: str | None
    agent_id: str | None
    started_at: str
    ended_at: str | None
    duration_s: float | None


class ReviewOut(BaseModel):
    call_id: str
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    agents: list[str]
    queues: list[str]
    recordings: list[SegmentOut]
    entries: list[EntryOut]
    stretches: list[StretchOut]
    runs: list[RunOut]
    departures: list[DepartureOut]


def _review_out(review: Review, rows: list[dict[str, Any]]) -> ReviewOut:
    from dataclasses import asdict

    return ReviewOut.model_validate({**asdict(review), "recordings": rows})


class QuestionOut(BaseModel):
    id: str
    text: str
    weight: float
    scale: int = Field(description="1: yes/no (0/1); n: 0..n")
    na: bool
    auto_fail: bool


class SectionOut(BaseModel):
    id: str
    title: str
    weight: float
    questions: list[QuestionOut]


class FormOut(BaseModel):
    id: str
    version: int
    title: str
    sections: list[SectionOut]

    @classmethod
    def of(cls, f: Form) -> FormOut:
        return cls(id=f.id, version=f.version, title=f.title, sections=[
            SectionOut(id=s.id, title=s.title, weight=s.weight, questions=[
                QuestionOut(id=q.id, text=q.text, weight=q.weight, scale=q.max,
                            na=q.na_allowed, auto_fail=q.auto_fail) for q in s.questions
            ]) for s in f.sections
        ])


class EvaluationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    form_id: Key
    answers: dict[Key, StrictInt | Literal["na"]] = Field(
        max_length=500, description="question id -> 0..scale, or \"na\" where allowed")
    agent_id: Key | None = Field(default=None,
                                 description="which agent, when the call had several")
    comment: str = Field(default="", max_length=4000)


class EvaluationOut(BaseModel):
    id: int
    call_id: str
    agent_id: str | None
    team: str | None
    evaluator: str
    form_id: str
    form_version: int
    answers: dict[str, int | Literal["na"]]
    sections: dict[str, float | None] = Field(description="each section's score, 0..100")
    score: float = Field(ge=0, le=100)
    auto_failed: list[str] = Field(description="automatic-fail questions answered 0")
    comment: str
    created_at: datetime


class AverageOut(BaseModel):
    key: str = Field(description="the agent id or team")
    evaluations: int
    average: float
    auto_failed: int


class EvaluationsOut(BaseModel):
    evaluations: list[EvaluationOut]
    agents: list[AverageOut]
    teams: list[AverageOut]


@router.get("/calls/{call_id}/review", responses=error_responses(404))
async def call_review(call_id: CallIdPath, reviews: Reviews, who: Supervisor) -> ReviewOut:
    """The call on one time line: recording segments and their pauses, the IVR path, the
    routing decisions, every procedure run with its prompts and waits, transfers, holds, and
    the departures from the script."""
    review, rows = await reviews.review(call_id)
    return _review_out(review, rows)


@router.get("/evaluation-forms")
async def evaluation_forms(forms: Forms, who: Supervisor) -> list[FormOut]:
    return [FormOut.of(f) for f in forms.forms.values()]


@router.post("/calls/{call_id}/evaluations", status_code=201,
             responses=error_responses(404))
async def evaluate(
    call_id: CallIdPath, body: EvaluationIn, reviews: Reviews, who: Supervisor
) -> EvaluationOut:
    """Score the call with a form: every question answered (0..scale, or "na" where the form
    allows it); an automatic-fail question answered 0 makes the score 0."""
    row = await reviews.evaluate(
        call_id, form_id=body.form_id, answers=body.answers, evaluator=who.username,
        agent_id=body.agent_id, comment=body.comment,
    )
    return EvaluationOut.model_validate(row)


def _utc(t: datetime | None, name: str) -> datetime | None:
    if t is None:
        return None
    try:
        return t.astimezone(UTC) if t.tzinfo is not None else t.replace(tzinfo=UTC)
    except OverflowError:  # 9999-12-31T23:59-23:00 is past the last UTC instant
        raise invalid(("query", name), "time out of range", "value_error",
                      t.isoformat()) from None


@router.get("/evaluations")
async def evaluations(
    reviews: Reviews, who: Supervisor,
    agent_id: Annotated[str | None, Query(min_length=1, max_length=MAX_KEY)] = None,
    team: Annotated[str | None, Query(min_length=1, max_length=MAX_KEY)] = None,
    call_id: Annotated[str | None, Query(min_length=1, max_length=MAX_KEY)] = None,
    since: datetime | None = None, until: datetime | None = None,
) -> EvaluationsOut:
    """Evaluations (oldest first; `since` inclusive, `until` exclusive; a time without zone is
    UTC) with the mean score per agent and per team over them."""
    since, until = _utc(since, "since"), _utc(until, "until")
    if since is not None and until is not None and since >= until:
        raise invalid(("query", "until"), "until must be after since", "value_error",
                      until.isoformat())
    found = await reviews.evaluations(agent_id=agent_id, team=team, call_id=call_id,
                                      since=since, until=until)
    return EvaluationsOut.model_validate(found)
