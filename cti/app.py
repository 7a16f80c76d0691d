"""The running service: the HTTP app over a built `Service` (each feature's routes, the services
they reach through cti.platform.provide, one handler turning our typed errors into
responses), and `cti serve`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError

from cti.features.calls import http as calls_http
from cti.features.desk.http import install_agent_desk
from cti.features.events import http as events_http
from cti.features.fallback import http as fallback_http
from cti.features.handover import http as handover_http
from cti.features.knowledge import http as knowledge_http
from cti.features.messages import http as messages_http
from cti.features.monitoring import http as monitoring_http
from cti.features.outbound import http as outbound_http
from cti.features.procedures import http as procedures_http
from cti.features.recordings import http as recordings_http
from cti.features.reports import http as reports_http
from cti.features.review import http as review_http
from cti.features.routing import http as routing_http
from cti.features.surveys import http as surveys_http
from cti.features.work_orders import http as work_orders_http
from cti.platform import event_loop
from cti.platform.cluster.forward import ForwardToActive
from cti.platform.db.health import db_unavailable, describe
from cti.platform.errors import CtiError, DatabaseUnavailable
from cti.platform.http_guards import install_http_guards
from cti.platform.log import configure_logging, get_logger
from cti.platform.provide import register
from cti.platform.settings import Settings
from cti.runtime import Service

log = get_logger(__name__)


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="CTI", version="0.1.0")
    install_error_handler(app)
    if service.cluster.role is not None and service.cluster.forward is not None:
        # innermost: the guards have checked a request before it goes on to the active node
        app.add_middleware(ForwardToActive, role=service.cluster.role,
                           client=service.cluster.forward)
    install_http_guards(app, service.settings.http)
    register(
        app, service.registry, service.calls_repo, service.ari, service.resync, service.acd,
        service.ivr, service.audit, service.voicemails, service.bus, service.events, service.live,
        service.work_orders,
        service.recordings, service.rollups, service.reviews, service.reviews.forms,
        service.monitoring, service.outbound, service.handovers, service.messages,
        service.knowledge, service.surveys, service.cluster, service.database,
        service.pbx_status,
    )
    app.include_router(calls_http.router)
    install_agent_desk(app, service.desk)
    app.include_router(routing_http.router)
    app.include_router(procedures_http.router)
    app.include_router(fallback_http.router)
    app.include_router(events_http.router)
    app.include_router(reports_http.router)
    app.include_router(work_orders_http.router)
    app.include_router(recordings_http.router)
    app.include_router(review_http.router)
    app.include_router(monitoring_http.router)
    app.include_router(outbound_http.router)
    app.include_router(handover_http.router)
    app.include_router(messages_http.router)
    app.include_router(knowledge_http.router)
    app.include_router(surveys_http.router)

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

    async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
        # A request that needed the record while the database is away (a restart): 503,
        # said as such, rather than a bare 500.
        if not db_unavailable(exc):
            raise exc
        return JSONResponse(
            {"error": DatabaseUnavailable.error_id,
             "detail": f"the database is unreachable ({describe(exc)}); retry"},
            status_code=DatabaseUnavailable.http_status, headers={"retry-after": "1"},
        )

    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(ConnectionRefusedError, _database_error)


async def serve_async(settings: Settings) -> None:
    import uvicorn

    from cti.features.desk.ws_server import uvicorn_ws_options

    service = Service.build(settings)
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    http = f"{settings.http_host}:{settings.http_port}"
    log.info("service.started", ari=settings.ari.url, http=http, loop=event_loop.loop_name())
    app = create_app(service)
    config = uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port, log_level="warning",
        lifespan="off", **uvicorn_ws_options(settings.auth),
    )
    server = uvicorn.Server(config)
    try:
        await server.serve()
    finally:
        await service.stop()
        log.info("service.stopped")


def run_service(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_json)
    event_loop.run(serve_async(settings), settings.event_loop)
