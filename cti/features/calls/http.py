"""The call log over HTTP: live and recent calls (supervisors), one call (its agent or a
supervisor), and the service's health."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from cti.domain.calls import Call
from cti.features.auth.http import CurrentUser, require_role
from cti.features.auth.service import Principal, Role, require_agent_access
from cti.features.calls.registry import CallRegistry
from cti.features.calls.resync import Resync
from cti.features.calls.storage import CallRepository
from cti.features.pbxs.status import PbxStatus
from cti.platform.ari.client import AriClient
from cti.platform.cluster.node import ClusterHealthOut, ClusterStatus
from cti.platform.db.health import DatabaseHealth, DatabaseHealthOut
from cti.platform.errors import NotFound
from cti.platform.http_guards import CallIdPath, error_responses
from cti.platform.provide import provide

router = APIRouter(tags=["calls"])

Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]
Registry = Annotated[CallRegistry, Depends(provide(CallRegistry))]
Calls = Annotated[CallRepository, Depends(provide(CallRepository))]
# A call id is an Asterisk channel id ("1733012345.42" or one of ours): short, printable.
CallId = CallIdPath


class CallOut(BaseModel):
    """One call as the log keeps it."""

    id: str
    channel_id: str
    state: str
    caller_number: str
    caller_name: str
    dialled_number: str
    arrived_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    hangup_cause: int | None
    hangup_cause_text: str | None
    ended_by: str | None
    greeting_played: bool
    agent_id: str | None
    queue: str | None
    direction: str = Field(default="inbound",
                           description="inbound, or outbound (placed by an agent, a call-back)")

    @classmethod
    def of(cls, call: Call) -> CallOut:
        return cls(
            id=call.id, channel_id=call.channel_id, state=call.state.value,
            caller_number=call.caller_number, caller_name=call.caller_name,
            dialled_number=call.dialled_number, arrived_at=call.arrived_at,
            answered_at=call.answered_at, ended_at=call.ended_at,
            hangup_cause=call.hangup_cause, hangup_cause_text=call.hangup_cause_text,
            ended_by=call.ended_by, greeting_played=call.greeting_played,
            agent_id=call.agent_id, queue=call.queue,
            direction=call.attributes.get("direction", "inbound"),
        )


class ResyncOut(BaseModel):
    """What the last resync after an ARI (re)connect found."""

    generation: int
    kept: int
    closed: int
    adopted: int
    orphan_bridges_destroyed: int


class PbxOut(BaseModel):
    """One Asterisk (settings `ari:` or `asterisks:`)."""

    id: str
    url: str
    connected: bool
    generation: int
    lost: bool  # its socket stayed down past lost_after_s: its calls were ended
    last_resync: ResyncOut | None  # what its last (re)connect's resync found


class HealthOut(BaseModel):
    ari_connected: bool  # the first (usually the only) Asterisk's
    ari_generation: int
    pbxs: list[PbxOut]
    active_calls: int
    last_resync: ResyncOut | None  # the first Asterisk's; each one's is in `pbxs`
    cluster: ClusterHealthOut
    database: DatabaseHealthOut


@router.get("/health")
async def health(
    ari: Annotated[AriClient, Depends(provide(AriClient))],
    resync: Annotated[Resync, Depends(provide(Resync))],
    registry: Registry,
    cluster: Annotated[ClusterStatus, Depends(provide(ClusterStatus))],
    database: Annotated[DatabaseHealth, Depends(provide(DatabaseHealth))],
    pbxs: Annotated[PbxStatus, Depends(provide(PbxStatus))],
) -> HealthOut:
    last = resync.last
    return HealthOut(
        ari_connected=ari.connected.is_set(), ari_generation=ari.generation,
        pbxs=[PbxOut(**{**s.__dict__, "last_resync": ResyncOut.model_validate(
            s.last_resync.__dict__) if s.last_resync else None}) for s in pbxs.states()],
        active_calls=len(registry),
        last_resync=ResyncOut.model_validate(last.__dict__) if last else None,
        cluster=await cluster.health_now(), database=database.health(),
    )


@router.get("/calls", responses=error_responses(401, 403, 422))
async def list_calls(
    who: Supervisor, registry: Registry, repo: Calls, active: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CallOut]:
    """The newest calls first (`active=true`: the calls in progress)."""
    if active:
        return [CallOut.of(s.call) for s in registry.sessions()]
    return [CallOut.of(c) for c in await repo.recent(limit)]


@router.get("/calls/{call_id}", responses=error_responses(401, 403, 404, 422))
async def get_call(call_id: CallId, who: CurrentUser, registry: Registry, repo: Calls) -> CallOut:
    session = registry.get(call_id)
    call = session.call if session else await repo.get(call_id)
    if call is None:
        raise NotFound(f"no call {call_id}")
    require_agent_access(who, call.agent_id)  # agents: only their own calls
    return CallOut.of(call)
