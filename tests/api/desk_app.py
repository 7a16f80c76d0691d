"""Builds the agent desk on a FastAPI app over a migrated temporary SQLite DB (for API tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from cti.features.auth.service import NewUser, Role, UserDirectory
from cti.features.auth.settings import AuthSettings
from cti.features.crm.external import ExternalCrmSettings
from cti.features.desk.desk import AgentDesk
from cti.features.desk.http import install_agent_desk
from cti.features.desk.ws_server import uvicorn_ws_options
from cti.platform.clock import Clock
from cti.platform.db.base import make_engine, make_sessionmaker, warm_up
from cti.platform.db.migrate import upgrade_async
from cti.platform.errors import CtiError
from cti.platform.http_guards import install_http_guards
from cti.platform.settings import HttpSettings

SECRET = "test-secret-0123456789abcdef-0123456789"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class DeskEnv:
    app: FastAPI
    desk: AgentDesk
    client: httpx.AsyncClient

    async def login(self, username: str, password: str) -> dict[str, str]:
        r = await self.client.post("/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    async def token(self, username: str, password: str) -> str:
        return (await self.login(username, password))["Authorization"].removeprefix("Bearer ")


USERS = (
    NewUser("agent1001", "agent-1001", Role.AGENT, "1001"),
    NewUser("agent1002", "agent-1002", Role.AGENT, "1002"),
    NewUser("supervisor", "supervisor-pw", Role.SUPERVISOR),
    NewUser("admin", "admin-pw", Role.ADMIN),
)


@contextlib.asynccontextmanager
async def desk_app(
    tmp_path: Path,
    *,
    clock: Clock | None = None,
    external_crm: ExternalCrmSettings | None = None,
    external_transport: httpx.AsyncBaseTransport | None = None,
    ui: bool = False,
    auth_settings: AuthSettings | None = None,
    http: HttpSettings | None = None,
    **desk_fields: Any,
) -> AsyncIterator[DeskEnv]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}"
    await upgrade_async(url, "heads")
    engine = make_engine(url)
    await warm_up(engine)  # as the service does at start
    sessions = make_sessionmaker(engine)
    desk = AgentDesk.build(sessions, token_secret=SECRET, clock=clock, auth_settings=auth_settings)
    desk.auth.users = UserDirectory(sessions, hasher=FAST_HASHER, clock=clock)
    if external_crm is not None:
        from cti.features.crm.external import ExternalCrm

        desk.external_crm = ExternalCrm(
            external_crm, client=httpx.AsyncClient(transport=external_transport), clock=clock
        )
        desk.crm.external = desk.external_crm
    for name, value in desk_fields.items():
        setattr(desk, name, value)
    for user in USERS:
        await desk.auth.users.create(user)
    app = FastAPI()

    @app.exception_handler(CtiError)
    async def _cti_error(_request: Request, exc: CtiError) -> JSONResponse:
        return JSONResponse({"error": exc.error_id, "detail": exc.message}, exc.http_status)

    install_http_guards(app, http or HttpSettings())
    install_agent_desk(app, desk, ui=ui)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://desk") as client:
        try:
            yield DeskEnv(app, desk, client)
        finally:
            await desk.aclose()
            if desk.external_crm is not None:
                await desk.external_crm._client.aclose()
            await engine.dispose()


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Run `app` on a real socket (uvicorn, with the service's WebSocket options) and yield its
    base URL (http://127.0.0.1:PORT)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    desk = getattr(app.state, "services", {}).get(AgentDesk)
    ws = uvicorn_ws_options(desk.auth_settings if desk else AuthSettings())
    config = uvicorn.Config(app, log_level="warning", lifespan="off", **ws)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def closed_with(ws: ClientConnection, within: float = 10.0) -> tuple[int, str]:
    """The close code and reason the server sent, waiting for them without sending anything;
    fails when the connection dropped without a close frame or stays open `within` s."""
    closed: ConnectionClosed | None = None
    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        closed = exc
    assert closed is not None
    assert closed.rcvd is not None, "dropped without a close frame"
    return closed.rcvd.code, closed.rcvd.reason


async def next_message(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of type `kind` (others skipped), within 10 s."""
    async with asyncio.timeout(10):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == kind:
                return msg  # type: ignore[no-any-return]


async def open_socket(base: str, token: str, **options: Any) -> ClientConnection:
    """A desk socket, authenticated by its first message."""
    ws = await connect(f"{base.replace('http', 'ws')}/ws/desk", **options)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    return ws
