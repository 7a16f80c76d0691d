"""Listen, whisper, barge over HTTP, for supervisors (an agent-only role gets 403):
`POST /calls/{id}/monitor` dials the supervisor's phone, `PATCH` switches mode on the same
leg, `DELETE` stops; `GET` the call's monitor, `GET /monitors` every live one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from cti.domain.monitoring import Mode, Phase
from cti.features.auth.http import require_role
from cti.features.auth.service import Principal, Role
from cti.features.monitoring.service import Monitoring, MonitorView
from cti.platform.http_guards import CallIdPath, IsoTime, error_responses
from cti.platform.provide import provide

router = APIRouter(tags=["monitoring"], responses=error_responses(401, 403, 422))

Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]
Monitors = Annotated[Monitoring, Depends(provide(Monitoring))]

# A PJSIP endpoint: the supervisor's desk phone or the page's softphone ("1003" is short for
# "PJSIP/1003"); nothing else can be dialled from here.
ENDPOINT = r"^(PJSIP/)?[A-Za-z0-9_.+-]{1,40}$"


class MonitorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Mode
    endpoint: str = Field(pattern=ENDPOINT, description="the supervisor's phone: PJSIP/1003")


class ModeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Mode


class MonitorOut(BaseModel):
    """A supervisor on a call: `dialling` until their phone answers, then `active`."""

    monitor_id: str
    call_id: str
    supervisor: str
    agent_id: str
    endpoint: str
    mode: Mode
    state: Phase
    started_at: IsoTime


def _out(v: MonitorView) -> MonitorOut:
    return MonitorOut(
        monitor_id=v.monitor_id, call_id=v.call_id, supervisor=v.supervisor,
        agent_id=v.agent_id, endpoint=v.endpoint, mode=v.mode, state=v.state,
        started_at=v.started_at.isoformat(),
    )


def _who(who: Principal) -> str:
    return who.username


@router.post("/calls/{call_id}/monitor", status_code=202,
             responses=error_responses(404, 409, 502, 503, 504))
async def start_monitor(
    call_id: CallIdPath, body: MonitorIn, who: Supervisor, monitors: Monitors
) -> MonitorOut:
    """Dial the supervisor's phone; when it answers they hear the call in `mode` (listen:
    both sides, nobody hears them; whisper: the agent hears them, the caller does not; barge:
    all three). 409 `call_not_connected` unless the call talks with an agent,
    `already_monitored` when another supervisor is on it."""
    endpoint = body.endpoint if body.endpoint.startswith("PJSIP/") else f"PJSIP/{body.endpoint}"
    return _out(await monitors.start(call_id, body.mode, endpoint, _who(who)))


@router.patch("/calls/{call_id}/monitor",
              responses=error_responses(404, 409, 502, 503, 504))
async def change_mode(
    call_id: CallIdPath, body: ModeIn, who: Supervisor, monitors: Monitors
) -> MonitorOut:
    """Switch mode; the supervisor's leg stays up (no re-dial). 404 `not_monitored`."""
    return _out(await monitors.change(call_id, body.mode, _who(who)))


@router.delete("/calls/{call_id}/monitor", responses=error_responses(404))
async def stop_monitor(call_id: CallIdPath, who: Supervisor, monitors: Monitors) -> MonitorOut:
    """Stop: the supervisor's leg is hung up. 404 `not_monitored`."""
    return _out(await monitors.stop(call_id, _who(who)))


@router.get("/calls/{call_id}/monitor", responses=error_responses(404))
async def get_monitor(call_id: CallIdPath, who: Supervisor, monitors: Monitors) -> MonitorOut:
    return _out(monitors.get(call_id))


@router.get("/monitors")
async def list_monitors(who: Supervisor, monitors: Monitors) -> list[MonitorOut]:
    """Every monitor in progress (dialling or active)."""
    return [_out(v) for v in monitors.active()]
