"""FastAPI application factory: routes over a built `Service`, one error handler for our errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cti.features.auth.http import CurrentUser, require_role
from cti.features.auth.service import Principal, Role, require_agent_access
from cti.platform.errors import CtiError

if TYPE_CHECKING:
    from cti.runtime import Service


def _call_json(call: Any) -> dict[str, Any]:
    return {
        "id": call.id,
        "channel_id": call.channel_id,
        "state": call.state.value,
        "caller_number": call.caller_number,
        "caller_name": call.caller_name,
        "dialled_number": call.dialled_number,
        "arrived_at": call.arrived_at.isoformat(),
        "answered_at": call.answered_at.isoformat() if call.answered_at else None,
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "hangup_cause": call.hangup_cause,
        "hangup_cause_text": call.hangup_cause_text,
        "ended_by": call.ended_by,
        "greeting_played": call.greeting_played,
        "agent_id": call.agent_id,
        "queue": call.queue,
    }


Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="CTI", version="0.1.0")
    app.state.service = service

    @app.exception_handler(CtiError)
    async def _cti_error(_request: Request, exc: CtiError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.error_id, "detail": exc.message}, status_code=exc.http_status
        )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        resync = service.resync.last
        return {
            "ari_connected": service.ari.connected.is_set(),
            "ari_generation": service.ari.generation,
            "active_calls": len(service.registry),
            "last_resync": resync.__dict__ if resync else None,
        }

    @app.get("/calls")
    async def list_calls(
        who: Supervisor, active: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        if active:
            return [_call_json(s.call) for s in service.registry.sessions()]
        if not 1 <= limit <= 1000:
            raise HTTPException(422, "limit must be between 1 and 1000")
        return [_call_json(c) for c in await service.calls_repo.recent(limit)]

    @app.get("/calls/{call_id}")
    async def get_call(call_id: str, who: CurrentUser) -> dict[str, Any]:
        session = service.registry.get(call_id)
        call = session.call if session else await service.calls_repo.get(call_id)
        if call is None:
            raise HTTPException(404, f"no call {call_id}")
        require_agent_access(who, call.agent_id)  # agents: only their own calls
        return _call_json(call)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    from cti.features.desk.http import install_agent_desk
    from cti.features.fallback import http as fallback
    from cti.features.procedures import http as procedures
    from cti.features.routing import http as routing

    app.state.acd = service.acd
    app.state.ivr_runner = service.ivr
    app.state.procedure_audit = service.audit
    app.state.voicemails = service.voicemails
    install_agent_desk(app, service.desk)
    app.include_router(routing.router)
    app.include_router(procedures.router)
    app.include_router(fallback.router)

    return app
