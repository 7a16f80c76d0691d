"""Login, logout, the current user, role checks, user (de)activation, and WebSocket
authentication for the agent desk."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from cti.features.auth.service import (
    NewUser,
    Principal,
    Role,
    TooManyLogins,
    VerifiedToken,
    require,
)
from cti.features.desk.desk import AgentDesk
from cti.features.desk.frames import (
    WS_CLOSE_UNAUTHORIZED,
    WS_POLICY_VIOLATION,
    CloseSocket,
    NotJson,
    close_reason,
    decode_message,
)
from cti.platform.errors import Unauthorized
from cti.platform.log import get_logger
from cti.platform.provide import provide

log = get_logger(__name__)

WS_AUTH_TIMEOUT_S = 5.0

router = APIRouter(prefix="/auth", tags=["auth"])
_bearer = HTTPBearer(auto_error=False)


Desk = Annotated[AgentDesk, Depends(provide(AgentDesk))]


async def current_token(
    desk: Desk,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> VerifiedToken:
    """The good (signed, unexpired, not revoked) token of `Authorization: Bearer`; 401 else."""
    return await desk.auth.verify(credentials.credentials if credentials else None)


async def current_user(token: Annotated[VerifiedToken, Depends(current_token)]) -> Principal:
    """The logged-in user from `Authorization: Bearer <token>`; 401 otherwise."""
    return token.principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_role(needed: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency: the current user, who must have `needed` (or a higher role); 403 otherwise."""

    async def _check(who: CurrentUser) -> Principal:
        require(who, needed)
        return who

    return _check


async def close_websocket(ws: WebSocket, code: int, reason: str) -> None:
    """Close with a reason the page can show; a peer already gone is only logged."""
    try:
        await ws.close(code=code, reason=close_reason(reason))
    except (RuntimeError, OSError) as exc:  # Starlette: already closed; uvicorn: peer gone
        log.info("ws.close_failed", code=code, reason=reason, error=str(exc))


async def authenticate_websocket(ws: WebSocket, desk: AgentDesk) -> VerifiedToken | None:
    """Authenticate a socket by its first message {"type": "auth", "token": ...} within 5 s.
    A token in the URL (`?token=`) is refused: URLs end up in proxy and access logs.
    Returns None after closing the socket when authentication fails."""
    await ws.accept()
    if "token" in ws.query_params:
        await close_websocket(
            ws, WS_POLICY_VIOLATION,
            "token in the URL is refused: send {type: auth, token} as the first message",
        )
        return None
    limits = desk.auth_settings
    try:
        message = await asyncio.wait_for(ws.receive(), WS_AUTH_TIMEOUT_S)
    except TimeoutError:
        await close_websocket(ws, WS_CLOSE_UNAUTHORIZED, "authentication required")
        return None
    if message["type"] == "websocket.disconnect":
        return None
    try:
        first: Any = decode_message(
            message, max_bytes=limits.ws_max_message_bytes, max_depth=limits.ws_max_json_depth
        )
        if not isinstance(first, dict) or first.get("type") != "auth":
            raise Unauthorized("first message must be {type: auth, token}")
        return await desk.auth.verify(str(first.get("token") or ""))
    except CloseSocket as exc:
        await close_websocket(ws, exc.code, exc.reason)
    except (NotJson, Unauthorized) as exc:
        reason = exc.message if isinstance(exc, Unauthorized) else "authentication required"
        await close_websocket(ws, WS_CLOSE_UNAUTHORIZED, reason)
    return None


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=6, max_length=256)
    role: Role
    agent_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    display_name: str = Field(default="", max_length=128)
    language: str = Field(default="zh", pattern=r"^(zh|en)$")


class UserPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool


@router.post("/login", response_model=None)
async def login(body: LoginIn, desk: Desk, request: Request) -> dict[str, Any] | JSONResponse:
    """A token for username and password; 401 when wrong; 429 with Retry-After (seconds)
    after too many failures for the user name or from the client address."""
    # The peer address: behind a reverse proxy, run uvicorn with --proxy-headers (and the
    # proxy's address in --forwarded-allow-ips) so this is the client's, not the proxy's.
    address = request.client.host if request.client else None
    try:
        issued = await desk.auth.login(body.username, body.password, address)
    except TooManyLogins as exc:
        return JSONResponse(
            {"error": exc.error_id, "detail": exc.message}, status_code=exc.http_status,
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    return {
        "token": issued.token,
        "token_type": "bearer",
        "expires_at": issued.expires_at.isoformat(),
        "user": issued.principal.public(),
    }


@router.post("/logout", status_code=204)
async def logout(desk: Desk, token: Annotated[VerifiedToken, Depends(current_token)]) -> Response:
    """End this token now: it no longer works for HTTP, and its open sockets are closed."""
    await desk.auth.logout(token)
    return Response(status_code=204)


@router.get("/me")
async def me(who: CurrentUser) -> dict[str, Any]:
    return who.public()


@router.get("/users")
async def list_users(
    desk: Desk, _admin: Annotated[Principal, Depends(require_role(Role.ADMIN))]
) -> list[dict[str, Any]]:
    return [u.public() for u in await desk.auth.users.list()]


@router.post("/users", status_code=201)
async def add_user(
    body: UserIn, desk: Desk, _admin: Annotated[Principal, Depends(require_role(Role.ADMIN))]
) -> dict[str, Any]:
    if body.role is Role.AGENT and not body.agent_id:
        raise HTTPException(422, "agent_id: an agent needs an agent id")
    created = await desk.auth.users.create(
        NewUser(body.username, body.password, body.role, body.agent_id, body.display_name,
                body.language)
    )
    return created.public()


@router.patch("/users/{username}")
async def patch_user(
    username: str,
    body: UserPatchIn,
    desk: Desk,
    admin: Annotated[Principal, Depends(require_role(Role.ADMIN))],
) -> dict[str, Any]:
    """{"active": false} deactivates a user: their tokens stop working and their open desk
    sockets are closed (4401). {"active": true} lets them log in again (old tokens stay dead)."""
    if not body.active and username == admin.username:
        raise HTTPException(409, "you cannot deactivate yourself")
    who = await desk.auth.set_active(username, body.active)
    return {**who.public(), "active": body.active}
