"""Procedures on live calls: start one (the agent page's one click), read the audit, send the
agent's commands (resume after hold, next in the dialect procedure, end, hangup).

Needs `app.state.ivr_runner` (cti.services.ivr_runner.IvrRunner) and
`app.state.procedure_audit` (cti.services.procedure_audit.ProcedureAudit).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from cti.errors import CtiError, NotFound
from cti.services.ivr_runner import IvrRunner
from cti.services.procedure_audit import ProcedureAudit

router = APIRouter(prefix="/calls", tags=["procedures"])
AGENT_COMMANDS = ("resume", "next", "end", "hangup")


class ServiceMissing(CtiError):
    error_id = "service_missing"
    http_status = 503


def _runner(request: Request) -> IvrRunner:
    runner = getattr(request.app.state, "ivr_runner", None)
    if runner is None:
        raise ServiceMissing("the IVR runner is not available on this service")
    return runner  # type: ignore[no-any-return]


def _audit(request: Request) -> ProcedureAudit:
    audit = getattr(request.app.state, "procedure_audit", None)
    if audit is None:
        raise ServiceMissing("the procedure audit is not available on this service")
    return audit  # type: ignore[no-any-return]


Runner = Annotated[IvrRunner, Depends(_runner)]
Audit = Annotated[ProcedureAudit, Depends(_audit)]


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str | None = None


@router.post("/{call_id}/procedures/{name}", status_code=202)
async def start_procedure(
    call_id: str, name: str, runner: Runner, body: AgentIn | None = None
) -> dict[str, Any]:
    agent_id = body.agent_id if body else None
    real = runner.procedure_name(name)
    if runner.state_of(call_id) is None:
        raise NotFound(f"no IVR running for call {call_id!r}")
    await runner.start_procedure(call_id, real, agent_id)
    return {"call_id": call_id, "procedure": real, "status": "started"}


@router.get("/{call_id}/procedures")
async def procedure_runs(call_id: str, audit: Audit) -> dict[str, Any]:
    await audit.flush()
    return await audit.runs_for_call(call_id)


@router.post("/{call_id}/ivr/commands/{command}", status_code=202)
async def agent_command(
    call_id: str, command: str, runner: Runner, body: AgentIn | None = None
) -> dict[str, Any]:
    if command not in AGENT_COMMANDS:
        raise NotFound(f"unknown command {command!r}; known: {', '.join(AGENT_COMMANDS)}")
    agent_id = body.agent_id if body else None
    if command == "hangup":
        took_over = await runner.request_hangup(call_id, agent_id)
        return {"call_id": call_id, "command": command,
                "result": "procedure" if took_over else "not_ivr_or_direct"}
    if runner.state_of(call_id) is None:
        raise NotFound(f"no IVR running for call {call_id!r}")
    await runner.agent_command(call_id, command, agent_id)
    return {"call_id": call_id, "command": command, "result": "sent"}
