"""The HTTP app over a built `Service`: each feature's routes, the services they reach
(cti.platform.provide), and one handler that turns our typed errors into responses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cti.features.calls import http as calls_http
from cti.features.desk.http import install_agent_desk
from cti.features.fallback import http as fallback_http
from cti.features.procedures import http as procedures_http
from cti.features.routing import http as routing_http
from cti.platform.errors import CtiError
from cti.platform.http_guards import install_http_guards
from cti.platform.provide import register

if TYPE_CHECKING:
    from cti.runtime import Service


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="CTI", version="0.1.0")
    install_error_handler(app)
    install_http_guards(app, service.settings.http)
    register(
        app, service.registry, service.calls_repo, service.ari, service.resync, service.acd,
        service.ivr, service.audit, service.voicemails,
    )
    app.include_router(calls_http.router)
    install_agent_desk(app, service.desk)
    app.include_router(routing_http.router)
    app.include_router(procedures_http.router)
    app.include_router(fallback_http.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def install_error_handler(app: FastAPI) -> None:
    """Our errors carry their HTTP status and a stable id: {"error": id, "detail": why}."""

    @app.exception_handler(CtiError)
    async def _cti_error(_request: Request, exc: CtiError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.error_id, "detail": exc.message}, status_code=exc.http_status
        )
