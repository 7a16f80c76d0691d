"""Procedures on live calls: read the audit (quality review), send the agent's commands
(resume after hold, next in the dialect procedure, end, hangup). Starting one is
`POST /calls/{id}/procedures/{name}` in cti/features/desk/call_control.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from cti.features.auth.http import CurrentUser, Desk, require_role
from cti.features.auth.service import Principal, Role
from cti.features.desk.call_control import authorize_call
from cti.features.ivr.runner import IvrRunner
from cti.features.procedures.audit import ProcedureAudit
from cti.platform.errors import NotFound
from cti.platform.http_guards import CallIdPath, IsoTime, error_responses
from cti.platform.provide import provide

router = APIRouter(prefix="/calls", tags=["procedures"], responses=error_responses(401, 403, 422))
AGENT_COMMANDS = ("resume", "next", "end", "hangup")
# another command is no resource here: 404, as before
CommandName = Annotated[str, Path(max_length=16, json_schema_extra={"enum": list(AGENT_COMMANDS)})]


Runner = Annotated[IvrRunner, Depends(provide(IvrRunner))]
Audit = Annotated[ProcedureAudit, Depends(provide(ProcedureAudit))]


Reviewer = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]


class StepOut(BaseModel):
    """One entry of a run's timeline: prompt start/end, wait start/end, trigger, hang-up."""

    seq: int
    at: IsoTime
    offset_ms: int = Field(description="since the run started")
    kind: str
    detail: dict[str, Any]


class RunOut(BaseModel):
    run_id: str
    procedure: str
    started_by: str = Field(description="auto | agent")
    agent_id: str | None
    started_at: IsoTime
    ended_at: IsoTime | None
    end_reason: str | None
    hung_up: bool
    timeline: list[StepOut]


class DepartureOut(BaseModel):
    """Where the agent left the script (e.g. hung up during a procedure)."""

    at: IsoTime
    what: str
    agent_id: str | None
    run_id: str | None
    detail: dict[str, Any]


class ProcedureRunsOut(BaseModel):
    call_id: str
    runs: list[RunOut]
    departures: list[DepartureOut]


class CommandOut(BaseModel):
    call_id: str
    command: str
    result: Literal["sent", "procedure", "not_ivr_or_direct"]


@router.get("/{call_id}/procedures")
async def procedure_runs(call_id: CallIdPath, audit: Audit, who: Reviewer) -> ProcedureRunsOut:
    """Quality review: every procedure run on the call with its timeline (supervisors)."""
    await audit.flush()
    return ProcedureRunsOut.model_validate(await audit.runs_for_call(call_id))


@router.post(
    "/{call_id}/ivr/commands/{command}", status_code=202,
    responses=error_responses(404, 409, 502, 503, 504),
)
async def agent_command(
    call_id: CallIdPath, command: CommandName, runner: Runner, desk: Desk, who: CurrentUser,
) -> CommandOut:
    if command not in AGENT_COMMANDS:
        raise NotFound(f"unknown command {command!r}; known: {', '.join(AGENT_COMMANDS)}")
    authorize_call(desk, who, call_id)  # an agent commands only their own call
    agent_id = who.agent_id
    if command == "hangup":
        took_over = await runner.request_hangup(call_id, agent_id)
        return CommandOut(call_id=call_id, command=command,
                          result="procedure" if took_over else "not_ivr_or_direct")
    if runner.state_of(call_id) is None:
        raise NotFound(f"no IVR running for call {call_id!r}")
    await runner.agent_command(call_id, command, agent_id)
    return CommandOut(call_id=call_id, command=command, result="sent")
