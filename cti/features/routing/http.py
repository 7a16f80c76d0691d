"""Routing endpoints: rules reload and status, per-call decision traces, agents' skills and
states.

Rules and skills changes need an admin; reading traces needs a supervisor; an agent may set
their own state (a supervisor anyone's).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cti.domain.routing.decisions import Outcome, Trigger
from cti.features.auth.http import CurrentUser, require_role
from cti.features.auth.service import Principal, Role
from cti.features.routing.acd import Acd
from cti.platform.errors import Forbidden
from cti.platform.http_guards import AgentIdPath, CallIdPath, IsoTime, error_responses
from cti.platform.provide import provide

router = APIRouter(tags=["routing"], responses=error_responses(401, 403, 422))


AcdDep = Annotated[Acd, Depends(provide(Acd))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]


class SkillsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skills: dict[Annotated[str, Field(max_length=64)], Annotated[int, Field(ge=1, le=5)]] = (
        Field(max_length=100)
    )


class StateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["available", "paused", "logged_out"]
    reason: str | None = Field(default=None, max_length=64)

    # The same rule as /agents/me/state: a pause without a reason is useless in the reports.
    @model_validator(mode="after")
    def _pause_has_reason(self) -> StateIn:
        if self.state == "paused" and not (self.reason or "").strip():
            raise ValueError("reason: a pause needs a reason")
        return self


class AgentStatusOut(BaseModel):
    agent_id: str
    state: str = Field(description="logged_out, available, reserved, on_call, wrap_up, paused")
    reason: str | None = Field(description="why paused")
    since: IsoTime | None
    call_id: str | None
    pending: Literal["pause", "logout"] | None = Field(
        description="a pause or log-out asked for during a call: applies when it ends"
    )
    missed: int = Field(description="offers missed in a row")


class SkillsOut(BaseModel):
    agent_id: str
    skills: dict[str, int] = Field(description="skill -> proficiency 1..5")


class RulesStatusOut(BaseModel):
    path: str
    loaded_at: IsoTime | None
    last_error: str | None
    last_error_at: IsoTime | None
    summary: str


class RulesReloadOut(RulesStatusOut):
    ok: bool = Field(description="false: the file was rejected and the running rules stay")


class CandidateOut(BaseModel):
    agent_id: str
    key: list[float]
    why: str


class DecisionOut(BaseModel):
    """One routing decision: what was considered, what applied, why."""

    seq: int
    at: IsoTime
    router_time_s: float
    trigger: Trigger
    outcome: Outcome
    call_id: str | None
    agent_id: str | None
    offer_id: str | None
    queue: str
    filter: str
    strategy: str
    waited_s: float
    priority: int
    stage: list[str]
    pools: list[str]
    candidates: int
    excluded: list[str]
    considered: list[CandidateOut]
    calls_considered: int
    reason: str


class CallRoutingOut(BaseModel):
    call_id: str
    waiting: bool
    position: int | None
    queue: str | None
    agent_id: str | None
    decisions: list[DecisionOut]


def _status(acd: Acd, agent_id: str) -> AgentStatusOut:
    s = acd.agent_status(agent_id)
    return AgentStatusOut(
        agent_id=agent_id,
        state=s.state.value,
        reason=s.reason,
        since=s.since.isoformat() if s.since else None,
        call_id=s.call_id,
        pending=s.pending,
        missed=s.missed,
    )


@router.post("/admin/rules/reload")
async def reload_rules(acd: AcdDep, _who: Admin) -> RulesReloadOut:
    """Re-read the rules file; on error the running rules stay and the error is returned."""
    st = await acd.reload()
    return RulesReloadOut.model_validate({"ok": st.last_error is None, **st.as_dict()})


@router.get("/admin/rules")
async def rules_status(acd: AcdDep, _who: Supervisor) -> RulesStatusOut:
    return RulesStatusOut.model_validate(acd.rules_status.as_dict())


@router.get("/calls/{call_id}/routing", responses=error_responses(404))
async def call_routing(call_id: CallIdPath, acd: AcdDep, _who: Supervisor) -> CallRoutingOut:
    """The call's routing trace: every decision with candidates, steps applied and why."""
    return CallRoutingOut.model_validate(acd.describe_call(call_id))


@router.get("/agents/{agent_id}/skills", responses=error_responses(404))
async def get_skills(agent_id: AgentIdPath, acd: AcdDep, who: CurrentUser) -> SkillsOut:
    if not who.may_see_agent(agent_id):
        raise Forbidden("you may see only your own skills")
    return SkillsOut(agent_id=agent_id, skills=acd.skills_of(agent_id))


@router.put("/agents/{agent_id}/skills", responses=error_responses(404))
async def put_skills(
    agent_id: AgentIdPath, body: SkillsIn, acd: AcdDep, _who: Admin
) -> SkillsOut:
    return SkillsOut(agent_id=agent_id, skills=await acd.set_skills(agent_id, body.skills))


@router.get("/agents/{agent_id}/state", responses=error_responses(404))
async def get_state(agent_id: AgentIdPath, acd: AcdDep, who: CurrentUser) -> AgentStatusOut:
    if not who.may_see_agent(agent_id):
        raise Forbidden("you may see only your own state")
    return _status(acd, agent_id)


@router.post("/agents/{agent_id}/state", responses=error_responses(404, 409))
async def set_state(
    agent_id: AgentIdPath, body: StateIn, acd: AcdDep, who: CurrentUser
) -> AgentStatusOut:
    """available | paused (with a reason) | logged_out. During a call, a pause or log-out is
    accepted and applies when the call ends (see `pending`). Illegal moves answer 409."""
    if not who.may_see_agent(agent_id):
        raise Forbidden("you may change only your own state")
    await acd.request_agent_state(agent_id, body.state, body.reason)
    return _status(acd, agent_id)
