"""The desk's live channel: one WebSocket per page, plus the agent's state buttons.

Socket protocol (JSON text frames):
  page -> server first: {"type": "auth", "token": ...} (never in the URL: see
                  cti.features.auth.http.authenticate_websocket).
  server -> page: {"type": "hello", "user": {...}, "topics": [...]}, then per topic a
                  {"type": "snapshot", "topic", "seq", "items": [...]}, then deltas with
                  {"topic", "seq", "type", "key"?, "op"?, ...} (see cti.features.desk.screen_pop).
  page -> server: {"type": "ping"} -> {"type": "pong"};
                  {"type": "resync", "topic"} -> a fresh snapshot (after a seq gap);
                  {"type": "subscribe", "topic": "agent:<id>"} (supervisors only).
Closes: 4401 when the token is logged out, its user deactivated or it expires (at once when
that happens in this process, else within the revocation cache time or at the next message);
4403 without a topic; 1003 binary message; 1007 invalid Unicode; 1009 message too big or JSON
too deeply nested (limits: AuthSettings); 1011 a server fault (logged). Text that is not JSON
is answered with {"type": "error"} and the socket stays open.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cti.features.auth.http import (
    CurrentUser,
    Desk,
    authenticate_websocket,
    close_websocket,
)
from cti.features.auth.revocation import Watch
from cti.features.auth.service import Principal, Role, VerifiedToken
from cti.features.desk.desk import AgentDesk, ServiceMissing
from cti.features.desk.frames import (
    WS_CLOSE_FORBIDDEN,
    WS_CLOSE_UNAUTHORIZED,
    WS_INTERNAL_ERROR,
    CloseSocket,
    NotJson,
    decode_message,
)
from cti.features.desk.hub import SUPERVISORS, Subscription, agent_topic, drain_to
from cti.platform.errors import Forbidden
from cti.platform.http_guards import error_responses
from cti.platform.log import get_logger
from cti.platform.provide import provide

log = get_logger(__name__)

router = APIRouter(tags=["agent-desk"], responses=error_responses(401, 422))


def topics_for(who: Principal) -> list[str]:
    topics = [agent_topic(who.agent_id)] if who.agent_id else []
    if who.may(Role.SUPERVISOR):
        topics.append(SUPERVISORS)
    return topics


def may_follow(who: Principal, topic: str) -> bool:
    if topic == SUPERVISORS:
        return who.may(Role.SUPERVISOR)
    if topic.startswith("agent:"):
        return who.may_see_agent(topic.removeprefix("agent:"))
    return False


@router.websocket("/ws/desk")
async def desk_socket(ws: WebSocket) -> None:
    desk: AgentDesk = provide(AgentDesk)(ws)
    token = await authenticate_websocket(ws, desk)
    if token is None:
        return
    who = token.principal
    topics = topics_for(who)
    if not topics:
        await close_websocket(ws, WS_CLOSE_FORBIDDEN, "no agent id and no supervisor role")
        return
    sub = desk.hub.connect()
    sub.send({"type": "hello", "user": who.public(), "topics": topics})
    for topic in topics:
        desk.hub.subscribe(sub, topic)
    watch = desk.auth.watch(token)
    writer = asyncio.create_task(drain_to(sub, ws.send_text))
    reader = asyncio.create_task(_read_loop(ws, desk, token, sub))
    guard = asyncio.create_task(_until_revoked(desk, token, watch))
    tasks = (writer, reader, guard)
    done: set[asyncio.Task[None]] = set()
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        close = _closing(done, who)
    finally:
        desk.auth.unwatch(watch)
        sub.close()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            # Those in `done` were reported by _closing; CancelledError is no Exception.
            if task not in done and isinstance(result, Exception):
                log.warning("ws.task_failed", username=who.username, exc_info=result)
    if close is not None:
        await close_websocket(ws, *close)


def _closing(done: set[asyncio.Task[Any]], who: Principal) -> tuple[int, str] | None:
    """How to close after the first of writer / reader / guard ended; None: the peer left."""
    for task in done:
        exc = task.exception()
        if isinstance(exc, CloseSocket):
            log.info("ws.close", username=who.username, code=exc.code, reason=exc.reason)
            return exc.code, exc.reason
        if isinstance(exc, OSError):  # uvicorn's ClientDisconnected: the writer lost the peer
            log.info("ws.peer_gone", username=who.username, error=str(exc))
            return None
        if exc is not None:
            log.error("ws.failed", username=who.username, exc_info=exc)
            return WS_INTERNAL_ERROR, "internal error"
    return None  # the reader saw the peer's close


async def _until_revoked(desk: AgentDesk, token: VerifiedToken, watch: Watch) -> None:
    """Raise CloseSocket(4401) once the token is no longer good: woken at once by this
    process's logout / deactivation, and by the revocations' periodic refresh of every open
    socket's token (changes made by other instances, expiry)."""
    while True:
        await watch.changed.wait()
        watch.changed.clear()
        reason = await desk.auth.still_valid(token)
        if reason is not None:
            raise CloseSocket(WS_CLOSE_UNAUTHORIZED, reason)


async def _read_loop(
    ws: WebSocket, desk: AgentDesk, token: VerifiedToken, sub: Subscription
) -> None:
    """Handle the page's messages until it closes; CloseSocket for a message that ends it."""
    who = token.principal
    limits = desk.auth_settings
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        reason = await desk.auth.still_valid(token)
        if reason is not None:
            raise CloseSocket(WS_CLOSE_UNAUTHORIZED, reason)
        try:
            msg: Any = decode_message(
                message, max_bytes=limits.ws_max_message_bytes,
                max_depth=limits.ws_max_json_depth,
            )
        except NotJson as exc:
            sub.send({"type": "error", "detail": str(exc)})
            continue
        kind = msg.get("type") if isinstance(msg, dict) else None
        topic = str(msg.get("topic", "")) if isinstance(msg, dict) else ""
        if kind == "ping":
            sub.send({"type": "pong", "t": msg.get("t")})
        elif kind == "resync":
            desk.hub.resync(sub, topic)
        elif kind == "subscribe":
            if may_follow(who, topic):
                if topic not in sub.topics:
                    desk.hub.subscribe(sub, topic)
            else:
                sub.send({"type": "error", "detail": f"not allowed to follow {topic!r}"})
        else:
            sub.send({"type": "error", "detail": f"unknown message type {kind!r}"})


class TopicStateOut(BaseModel):
    """A topic's state as a socket's snapshot carries it: its last sequence number and its
    current items (screen pops, agent states, ...: the push messages, see docs)."""

    seq: int
    items: list[dict[str, Any]]


@router.get("/desk/state")
async def desk_state(desk: Desk, who: CurrentUser) -> dict[str, TopicStateOut]:
    """The same state a socket's snapshots carry, for pages that poll or debug: by topic
    (agent:<id>, supervisors)."""
    return {
        topic: TopicStateOut(seq=desk.hub._topic(topic).seq,
                             items=list(desk.hub.state(topic).values()))
        for topic in topics_for(who)
    }


class AgentStateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["available", "paused", "logged_out"]
    reason: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _pause_has_reason(self) -> AgentStateIn:
        if self.state == "paused" and not (self.reason or "").strip():
            raise ValueError("reason: a pause needs a reason")
        return self


class AgentStateRequestedOut(BaseModel):
    agent_id: str
    requested: Literal["available", "paused", "logged_out"]
    reason: str | None


@router.post("/agents/me/state", responses=error_responses(403, 409, 503))
async def set_my_state(
    body: AgentStateIn, desk: Desk, who: CurrentUser
) -> AgentStateRequestedOut:
    """Available / pause (with reason) / log out. The ACD confirms with an agent.state push."""
    if not who.agent_id:
        raise Forbidden("only agents have a state: your user has no agent id")
    if desk.agent_states is None:
        raise ServiceMissing("agent states are not available on this service (no ACD)")
    await desk.agent_states.request_agent_state(who.agent_id, body.state, body.reason)
    return AgentStateRequestedOut(agent_id=who.agent_id, requested=body.state,
                                  reason=body.reason)
