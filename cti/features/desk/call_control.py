"""One-click call control from the agent page: answer, hang up, hold/resume, mute, transfer,
the scripted procedures and the wrap-up disposition. An agent controls only their own calls.

Actions that need only the PBX go through the Telephony port; hang-up, procedures and
transfers go through the procedure and transfer services when they are installed, because
the standard phrases forbid a direct hang-up during a running procedure
(docs/phrases.md#row-6b) and a transfer needs the ACD.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cti.domain.crm import InvalidPhoneNumber, normalise_number
from cti.events import (
    CallHeld,
    CallMuted,
    CallResumed,
    ProcedureEnded,
    ProcedureStarted,
    ProcedureStepped,
)
from cti.features.auth.http import CurrentUser, Desk
from cti.features.auth.service import Principal, require_agent_access
from cti.features.calls.registry import CallSession
from cti.features.desk.desk import AgentDesk, ServiceMissing
from cti.features.desk.hub import agent_topic
from cti.platform.errors import ChannelGone, NotFound
from cti.platform.http_guards import CallIdPath, IdField, IsoTime, error_responses, invalid
from cti.platform.ports import Telephony

# Every action may meet: no login, another agent's call, no such live call, and the PBX
# refusing, missing or slow (or this service built without the PBX or the procedures).
router = APIRouter(
    prefix="/calls", tags=["call-control"],
    responses=error_responses(401, 403, 404, 409, 422, 502, 503, 504),
)

PROCEDURES = ("silent", "quiet", "noisy_line", "dialect", "volume_up")
VOLUME_STEP = 2  # dB-ish gain steps of VOLUME(TX); "raised slightly" (docs/phrases.md#row-9)


def _telephony(desk: AgentDesk) -> Telephony:
    if desk.telephony is None:
        raise ServiceMissing("no PBX connection on this service")
    return desk.telephony


def _agent_of_call(desk: AgentDesk, call_id: str) -> tuple[CallSession | None, str | None]:
    session = desk.calls.get(call_id) if desk.calls is not None else None
    agent = session.call.agent_id if session is not None else None
    return session, agent


def authorize_call(desk: AgentDesk, who: Principal, call_id: str) -> CallSession:
    """The live call, if `who` may control it: their own (assigned, or popped to them while it
    rings) or any for supervisors. 404 when no such live call, 403 when someone else's."""
    session, agent = _agent_of_call(desk, call_id)
    if session is None or session.call.is_over:
        raise NotFound(f"no live call {call_id}")
    pop = desk.hub.item(agent_topic(who.agent_id), f"pop:{call_id}") if who.agent_id else None
    # a pop that shows the call ended (e.g. transferred away) gives no control over it
    offered_to_me = pop is not None and pop.get("state") != "ended"
    if not offered_to_me:
        require_agent_access(who, agent)
    return session


def _acting_agent(who: Principal, session: CallSession) -> str:
    return who.agent_id or session.call.agent_id or who.username


CallId = CallIdPath
ProcedureName = Annotated[
    str, Path(max_length=32, json_schema_extra={"enum": list(PROCEDURES)})
]


class DeskCallOut(BaseModel):
    """A live call as the agent page shows it."""

    id: str
    state: str
    agent_id: str | None
    queue: str | None
    caller_number: str
    arrived_at: IsoTime


class CallActionOut(BaseModel):
    """What an action did: the call's state after it (`answering`, `hanging_up`, `procedure`
    when a running procedure ends the call itself, `held`, `connected`)."""

    call_id: str
    state: str


class MuteOut(BaseModel):
    call_id: str
    muted: bool


class TransferOut(BaseModel):
    """A transfer's result: `transferred` (blind), `consulting` (attended, first click),
    `connected` (attended, cancelled)."""

    call_id: str
    state: str
    target: str | None = None
    target_type: str | None = None


class ProcedureStartedOut(BaseModel):
    call_id: str
    procedure: str
    status: Literal["started"]


class DispositionOut(BaseModel):
    call_id: str
    outcome: str


@router.get("/{call_id}/desk")
async def call_for_desk(call_id: CallId, desk: Desk, who: CurrentUser) -> DeskCallOut:
    """The live call as the agent page shows it (403 for another agent's call)."""
    session = authorize_call(desk, who, call_id)
    call = session.call
    return DeskCallOut(
        id=call.id, state=call.state.value, agent_id=call.agent_id, queue=call.queue,
        caller_number=call.caller_number, arrived_at=call.arrived_at.isoformat(),
    )


@router.post("/{call_id}/answer")
async def answer(call_id: CallId, desk: Desk, who: CurrentUser) -> CallActionOut:
    """For agents without the page's softphone: answers the caller's channel if it still rings.
    (With the softphone the page answers the SIP call itself and the ACD bridges it.)"""
    session = authorize_call(desk, who, call_id)
    if session.call.answered_at is None:
        await _telephony(desk).answer(session.call.channel_id)
    return CallActionOut(call_id=call_id, state="answering")


@router.post("/{call_id}/hangup")
async def hangup(call_id: CallId, desk: Desk, who: CurrentUser) -> CallActionOut:
    session = authorize_call(desk, who, call_id)
    agent = _acting_agent(who, session)
    if desk.procedures is not None and await desk.procedures.request_hangup(call_id, agent):
        return CallActionOut(call_id=call_id, state="procedure")
    with contextlib.suppress(ChannelGone):  # the IVR may have hung it up just now
        await _telephony(desk).hangup(session.call.channel_id)
    return CallActionOut(call_id=call_id, state="hanging_up")


@router.post("/{call_id}/hold")
async def hold(call_id: CallId, desk: Desk, who: CurrentUser) -> CallActionOut:
    """请稍等 + music on hold (docs/phrases.md#row-6a): through the procedure service when
    present, which says the phrase first; else music on hold only."""
    session = authorize_call(desk, who, call_id)
    agent = _acting_agent(who, session)
    if desk.procedures is not None:
        await desk.procedures.start_procedure(call_id, "hold", agent)
    else:
        await _telephony(desk).start_moh(session.call.channel_id)
    desk.bus.publish(CallHeld(call_id, desk.clock.now(), agent))
    return CallActionOut(call_id=call_id, state="held")


@router.post("/{call_id}/resume")
async def resume(call_id: CallId, desk: Desk, who: CurrentUser) -> CallActionOut:
    session = authorize_call(desk, who, call_id)
    agent = _acting_agent(who, session)
    if desk.procedures is not None:  # the hold procedure's music stops with it
        await desk.procedures.agent_command(call_id, "resume", agent)
    else:
        await _telephony(desk).stop_moh(session.call.channel_id)
    desk.bus.publish(CallResumed(call_id, desk.clock.now(), agent))
    return CallActionOut(call_id=call_id, state="connected")


class MuteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on: bool = True


@router.post("/{call_id}/mute")
async def mute(call_id: CallId, body: MuteIn, desk: Desk, who: CurrentUser) -> MuteOut:
    """Mute what the caller hears from the agent (the caller's outbound direction)."""
    session = authorize_call(desk, who, call_id)
    tel = _telephony(desk)
    if body.on:
        await tel.mute(session.call.channel_id, "out")
    else:
        await tel.unmute(session.call.channel_id, "out")
    desk.bus.publish(CallMuted(call_id, desk.clock.now(), _acting_agent(who, session), body.on))
    return MuteOut(call_id=call_id, muted=body.on)


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_type: Literal["agent", "queue", "number"]
    target: str = Field(min_length=1, max_length=64)
    kind: Literal["blind", "attended"] = "blind"

    @model_validator(mode="after")
    def _target_shape(self) -> TransferIn:
        if self.target_type == "number":
            try:
                self.target = normalise_number(self.target)
            except InvalidPhoneNumber as exc:
                raise ValueError(f"target: {exc}") from None
        elif not self.target.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"target: {self.target!r} is not an {self.target_type} id")
        return self


@router.post("/{call_id}/transfer")
async def transfer(
    call_id: CallId, body: TransferIn, desk: Desk, who: CurrentUser
) -> TransferOut:
    session = authorize_call(desk, who, call_id)
    if desk.transfers is None:
        raise ServiceMissing("transfers are not available on this service")
    agent = _acting_agent(who, session)
    result = await desk.transfers.transfer(  # publishes TransferStarted / CallTransferred
        call_id, agent_id=agent, target_type=body.target_type, target=body.target,
        kind=body.kind,
    )
    return TransferOut.model_validate({"call_id": call_id, **result})


@router.post("/{call_id}/transfer/{step}")
async def transfer_step(
    call_id: CallId, step: Literal["complete", "cancel"], desk: Desk, who: CurrentUser
) -> TransferOut:
    """An attended transfer's second click: hand over to the colleague, or back to the caller."""
    session = authorize_call(desk, who, call_id)
    if desk.transfers is None:
        raise ServiceMissing("transfers are not available on this service")
    agent = _acting_agent(who, session)
    if step == "complete":
        result = await desk.transfers.complete(call_id, agent)
    else:
        result = await desk.transfers.cancel(call_id, agent)
    return TransferOut.model_validate({"call_id": call_id, **result})


@router.post("/{call_id}/procedures/{name}")
async def procedure(
    call_id: CallId, name: ProcedureName, desk: Desk, who: CurrentUser
) -> ProcedureStartedOut:
    if name not in PROCEDURES:
        raise invalid(("path", "name"), f"unknown procedure {name!r}; known: "
                      f"{', '.join(PROCEDURES)}", "enum", name)
    session = authorize_call(desk, who, call_id)
    agent = _acting_agent(who, session)
    if desk.procedures is not None:
        await desk.procedures.start_procedure(call_id, name, agent)
    elif name == "volume_up":  # row 9 needs only the PBX: raise what the caller hears
        await _telephony(desk).set_volume(session.call.channel_id, "TX", VOLUME_STEP)
        at, mono = desk.clock.now(), desk.clock.monotonic()
        run = f"direct-{call_id}-{mono:.3f}"
        desk.bus.publish(ProcedureStarted(call_id, at, mono, run, name, {"started_by": "agent"}))
        desk.bus.publish(ProcedureStepped(call_id, at, mono, run, name, "volume_raised"))
        desk.bus.publish(ProcedureEnded(call_id, at, mono, run, name, {"reason": "completed"}))
    else:
        raise ServiceMissing("the scripted procedures are not available on this service")
    return ProcedureStartedOut(call_id=call_id, procedure=name, status="started")


class DispositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["resolved", "follow_up", "complaint", "escalated", "no_action", "other"]
    note: str = Field(default="", max_length=4000)
    customer_id: IdField | None = None


@router.post("/{call_id}/disposition")
async def disposition(
    call_id: CallId, body: DispositionIn, desk: Desk, who: CurrentUser
) -> DispositionOut:
    """The wrap-up form. Allowed while the call's pop is on the agent's desk (also after the
    call ended), or for the call's agent; stored for the customer's history."""
    session, agent = _agent_of_call(desk, call_id)
    on_my_desk = who.agent_id is not None and desk.hub.item(
        agent_topic(who.agent_id), f"pop:{call_id}"
    ) is not None
    if not on_my_desk:
        if session is None and agent is None:
            raise NotFound(f"no call {call_id} on your desk")
        require_agent_access(who, agent)
    if body.customer_id is not None:  # 404 for no such customer (a foreign key below)
        await desk.customers.get(body.customer_id)
    await desk.customers.record_disposition(
        call_id=call_id, agent_id=who.agent_id or who.username, customer_id=body.customer_id,
        outcome=body.outcome, note=body.note,
    )
    return DispositionOut(call_id=call_id, outcome=body.outcome)
