"""The desk's live channel: one WebSocket per page, plus the agent's state buttons.

Socket protocol (JSON text frames):
  server -> page: {"type": "hello", "user": {...}, "topics": [...]}, then per topic a
                  {"type": "snapshot", "topic", "seq", "items": [...]}, then deltas with
                  {"topic", "seq", "type", "key"?, "op"?, ...} (see cti.features.desk.screen_pop).
  page -> server: {"type": "ping"} -> {"type": "pong"};
                  {"type": "resync", "topic"} -> a fresh snapshot (after a seq gap);
                  {"type": "subscribe", "topic": "agent:<id>"} (supervisors only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Literal

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cti.features.auth.http import WS_CLOSE_FORBIDDEN, CurrentUser, Desk, authenticate_websocket
from cti.features.auth.service import Principal, Role
from cti.features.desk.desk import AgentDesk, ServiceMissing
from cti.features.desk.hub import SUPERVISORS, Subscription, agent_topic, drain_to
from cti.platform.errors import Forbidden
from cti.platform.http_guards import error_responses
from cti.platform.provide import provide

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
    who = await authenticate_websocket(ws, desk)
    if who is None:
        return
    topics = topics_for(who)
    if not topics:
        await ws.close(code=WS_CLOSE_FORBIDDEN, reason="no agent id and no supervisor role")
        return
    sub = desk.hub.connect()
    sub.send({"type": "hello", "user": who.public(), "topics": topics})
    for topic in topics:
        desk.hub.subscribe(sub, topic)
    writer = asyncio.create_task(drain_to(sub, ws.send_text))
    try:
        await _read_loop(ws, desk, who, sub)
    except WebSocketDisconnect:
        pass
    finally:
        sub.close()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer


async def _read_loop(ws: WebSocket, desk: AgentDesk, who: Principal, sub: Subscription) -> None:
    while True:
        raw = await ws.receive_text()
        try:
            msg: Any = json.loads(raw)
        except ValueError:
            sub.send({"type": "error", "detail": "messages must be JSON"})
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
