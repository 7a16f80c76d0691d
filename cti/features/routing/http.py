"""Routing endpoints: rules reload and status, per-call decision traces, agents' skills and
states.

Rules and skills changes need an admin; reading traces needs a supervisor; an agent may set
their own state (a supervisor anyone's).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cti.features.auth.http import CurrentUser, require_role
from cti.features.auth.service import Principal, Role
from cti.features.routing.acd import Acd
from cti.platform.errors import Forbidden
from cti.platform.provide import provide

router = APIRouter(tags=["routing"])


AcdDep = Annotated[Acd, Depends(provide(Acd))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]


class SkillsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skills: dict[str, Annotated[int, Field(ge=1, le=5)]]


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


def _status(acd: Acd, agent_id: str) -> dict[str, Any]:
    s = acd.agent_status(agent_id)
    return {
        "agent_id": agent_id,
        "state": s.state.value,
        "reason": s.reason,
        "since": s.since.isoformat() if s.since else None,
        "call_id": s.call_id,
        "pending": s.pending,
        "missed": s.missed,
    }


@router.post("/admin/rules/reload")
async def reload_rules(acd: AcdDep, _who: Admin) -> dict[str, Any]:
    """Re-read the rules file; on error the running rules stay and the error is returned."""
    st = await acd.reload()
    return {"ok": st.last_error is None, **st.as_dict()}


@router.get("/admin/rules")
async def rules_status(acd: AcdDep, _who: Supervisor) -> dict[str, Any]:
    return acd.rules_status.as_dict()


@router.get("/calls/{call_id}/routing")
async def call_routing(call_id: str, acd: AcdDep, _who: Supervisor) -> dict[str, Any]:
    """The call's routing trace: every decision with candidates, steps applied and why."""
    return acd.describe_call(call_id)


@router.get("/agents/{agent_id}/skills")
async def get_skills(agent_id: str, acd: AcdDep, who: CurrentUser) -> dict[str, Any]:
    if not who.may_see_agent(agent_id):
        raise Forbidden("you may see only your own skills")
    return {"agent_id": agent_id, "skills": acd.skills_of(agent_id)}


@router.put("/agents/{agent_id}/skills")
async def put_skills(agent_id: str, body: SkillsIn, acd: AcdDep, _who: Admin) -> dict[str, Any]:
    return {"agent_id": agent_id, "skills": await acd.set_skills(agent_id, body.skills)}


@router.get("/agents/{agent_id}/state")
async def get_state(agent_id: str, acd: AcdDep, who: CurrentUser) -> dict[str, Any]:
    if not who.may_see_agent(agent_id):
        raise Forbidden("you may see only your own state")
    return _status(acd, agent_id)


@router.post("/agents/{agent_id}/state")
async def set_state(agent_id: str, body: StateIn, acd: AcdDep, who: CurrentUser) -> dict[str, Any]:
    """available | paused (with a reason) | logged_out. During a call, a pause or log-out is
    accepted and applies when the call ends (see `pending`). Illegal moves answer 409."""
    if not who.may_see_agent(agent_id):
        raise Forbidden("you may change only your own state")
    await acd.request_agent_state(agent_id, body.state, body.reason)
    return _status(acd, agent_id)
