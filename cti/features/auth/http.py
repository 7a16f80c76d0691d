"""Login, the current user, role checks, and WebSocket authentication for the agent desk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cti.features.auth.service import NewUser, Principal, Role, require
from cti.features.desk.desk import AgentDesk
from cti.platform.errors import Unauthorized
from cti.platform.http_guards import IsoTime, error_responses
from cti.platform.provide import provide

WS_AUTH_TIMEOUT_S = 5.0
WS_CLOSE_UNAUTHORIZED = 4401  # 4000-4999: application codes; mirrors HTTP 401
WS_CLOSE_FORBIDDEN = 4403

router = APIRouter(prefix="/auth", tags=["auth"], responses=error_responses(401, 422))
_bearer = HTTPBearer(auto_error=False)


Desk = Annotated[AgentDesk, Depends(provide(AgentDesk))]


async def current_user(
    desk: Desk,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The logged-in user from `Authorization: Bearer <token>`; 401 otherwise."""
    return desk.auth.check(credentials.credentials if credentials else None)


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_role(needed: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency: the current user, who must have `needed` (or a higher role); 403 otherwise."""

    async def _check(who: CurrentUser) -> Principal:
        require(who, needed)
        return who

    return _check


async def authenticate_websocket(ws: WebSocket, desk: AgentDesk) -> Principal | None:
    """Authenticate a socket by `?token=` (checked before accepting: a bad token is refused at the
    handshake) or, without one, by a first message {"type": "auth", "token": ...} within 5 s.
    Returns None after closing the socket when authentication fails."""
    token = ws.query_params.get("token")
    if token is not None:
        try:
            who = desk.auth.check(token)
        except Unauthorized:
            await ws.close(code=WS_CLOSE_UNAUTHORIZED, reason="invalid token")
            return None
        await ws.accept()
        return who
    await ws.accept()
    try:
        raw = await asyncio.wait_for(ws.receive_text(), WS_AUTH_TIMEOUT_S)
        first: Any = json.loads(raw)
        if not isinstance(first, dict) or first.get("type") != "auth":
            raise Unauthorized("first message must be {type: auth, token}")
        return desk.auth.check(str(first.get("token") or ""))
    except (TimeoutError, ValueError, Unauthorized) as exc:
        reason = exc.message if isinstance(exc, Unauthorized) else "authentication required"
        await ws.close(code=WS_CLOSE_UNAUTHORIZED, reason=reason[:120])
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

    @model_validator(mode="after")
    def _agent_has_id(self) -> UserIn:
        if self.role is Role.AGENT and not self.agent_id:
            raise ValueError("agent_id: an agent needs an agent id")
        return self


class UserOut(BaseModel):
    """A user as others may see them (never the password)."""

    id: int
    username: str
    role: Role
    agent_id: str | None
    display_name: str
    language: str

    @classmethod
    def of(cls, who: Principal) -> UserOut:
        return cls.model_validate(who.public())


class LoginOut(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`")
    token_type: str = "bearer"
    expires_at: IsoTime
    user: UserOut


@router.post("/login")
async def login(body: LoginIn, desk: Desk) -> LoginOut:
    issued = await desk.auth.login(body.username, body.password)
    return LoginOut(
        token=issued.token, token_type="bearer", expires_at=issued.expires_at.isoformat(),
        user=UserOut.of(issued.principal),
    )


@router.get("/me")
async def me(who: CurrentUser) -> UserOut:
    return UserOut.of(who)


@router.get("/users", responses=error_responses(403))
async def list_users(
    desk: Desk, _admin: Annotated[Principal, Depends(require_role(Role.ADMIN))]
) -> list[UserOut]:
    return [UserOut.of(u) for u in await desk.auth.users.list()]


@router.post("/users", status_code=201, responses=error_responses(403, 409))
async def add_user(
    body: UserIn, desk: Desk, _admin: Annotated[Principal, Depends(require_role(Role.ADMIN))]
) -> UserOut:
    created = await desk.auth.users.create(
        NewUser(body.username, body.password, body.role, body.agent_id, body.display_name,
                body.language)
    )
    return UserOut.of(created)
