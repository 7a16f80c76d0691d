"""Procedures on live calls: read the audit (quality review), send the agent's commands
(resume after hold, next in the dialect procedure, end, hangup). Starting one is
`POST /calls/{id}/procedures/{name}` in cti/api/call_control.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from cti.features.auth.http import CurrentUser, Desk, require_role
from cti.features.auth.service import Principal, Role
from cti.features.desk.call_control import authorize_call
from cti.features.ivr.runner import IvrRunner
from cti.features.procedures.audit import ProcedureAudit
from cti.platform.errors import NotFound
from cti.platform.provide import provide

router = APIRouter(prefix="/calls", tags=["procedures"])
AGENT_COMMANDS = ("resume", "next", "end", "hangup")


Runner = Annotated[IvrRunner, Depends(provide(IvrRunner))]
Audit = Annotated[ProcedureAudit, Depends(provide(ProcedureAudit))]


Reviewer = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]


@router.get("/{call_id}/procedures")
async def procedure_runs(call_id: str, audit: Audit, who: Reviewer) -> dict[str, Any]:
    """Quality review: every procedure run on the call with its timeline (supervisors)."""
    await audit.flush()
    return await audit.runs_for_call(call_id)


@router.post("/{call_id}/ivr/commands/{command}", status_code=202)
async def agent_command(
    call_id: str, command: str, runner: Runner, desk: Desk, who: CurrentUser
) -> dict[str, Any]:
    if command not in AGENT_COMMANDS:
        raise NotFound(f"unknown command {command!r}; known: {', '.join(AGENT_COMMANDS)}")
    authorize_call(desk, who, call_id)  # an agent commands only their own call
    agent_id = who.agent_id
    if command == "hangup":
        took_over = await runner.request_hangup(call_id, agent_id)
        return {"call_id": call_id, "command": command,
                "result": "procedure" if took_over else "not_ivr_or_direct"}
    if runner.state_of(call_id) is None:
        raise NotFound(f"no IVR running for call {call_id!r}")
    await runner.agent_command(call_id, command, agent_id)
    return {"call_id": call_id, "command": command, "result": "sent"}
