"""The agent-state machine (pure): logged out, available, reserved (ringing), on call,
wrap-up (after-call work), paused with a reason.

`step(status, event, at)` returns the new status and the effects: `StateChange` records (every
change, with its timestamp) and `StartWrapUpTimer` commands. A pause or logout asked for while
reserved, on a call or in wrap-up is remembered and applied when that ends. After
`max_missed` consecutive missed offers the agent is paused with reason "missed". Wrap-up is
the agent's, not the queue's, so it holds the agent for every queue. The wrap-up timer carries
a generation number; a stale timer is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from cti.platform.errors import IllegalTransition

MACHINE = "agent"
MISSED_REASON = "missed"


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RESERVED = "reserved"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


Pending = Literal["pause", "logout"]


@dataclass(frozen=True, slots=True)
class AgentStatus:
    agent_id: str
    state: AgentState = AgentState.LOGGED_OUT
    since: datetime | None = None
    reason: str | None = None  # pause reason
    call_id: str | None = None
    offer_id: str | None = None
    pending: Pending | None = None
    pending_reason: str | None = None
    missed: int = 0  # consecutive missed offers
    wrap_gen: int = 0


# ----- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    available: bool = True


@dataclass(frozen=True, slots=True)
class MakeAvailable:
    pass


@dataclass(frozen=True, slots=True)
class Pause:
    reason: str


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Reserve:
    call_id: str
    offer_id: str


@dataclass(frozen=True, slots=True)
class OfferAnswered:
    offer_id: str


@dataclass(frozen=True, slots=True)
class OfferMissed:
    """Ring-no-answer or the agent's phone refused/failed."""

    offer_id: str


@dataclass(frozen=True, slots=True)
class OfferCancelled:
    """The caller hung up while the agent's phone rang."""

    offer_id: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    wrap_up_s: float


@dataclass(frozen=True, slots=True)
class WrapUpElapsed:
    gen: int


@dataclass(frozen=True, slots=True)
class ResumeCall:
    """After a service restart the agent was found talking on `call_id` (an adopted call)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class PlaceCall:
    """The agent places a call from the page (or the system calls them for a call-back): they
    are on that call from the moment their phone is rung, so no queue offers them another."""

    call_id: str


AgentEvent = (
    Login
    | PlaceCall
    | MakeAvailable
    | Pause
    | Logout
    | Reserve
    | OfferAnswered
    | OfferMissed
    | OfferCancelled
    | CallEnded
    | WrapUpElapsed
    | ResumeCall
)

# ----- effects --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateChange:
    agent_id: str
    old: AgentState
    new: AgentState
    at: datetime
    reason: str | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class StartWrapUpTimer:
    agent_id: str
    gen: int
    seconds: float


AgentEffect = StateChange | StartWrapUpTimer


def _event_name(event: AgentEvent) -> str:
    return type(event).__name__


def _illegal(status: AgentStatus, event: AgentEvent) -> IllegalTransition:
    return IllegalTransition(MACHINE, status.state.value, _event_name(event))


def _go(
    status: AgentStatus,
    new: AgentState,
    at: datetime,
    *,
    reason: str | None = None,
    call_id: str | None = None,
    offer_id: str | None = None,
    **changes: Any,
) -> tuple[AgentStatus, list[AgentEffect]]:
    nxt = replace(
        status, state=new, since=at, reason=reason, call_id=call_id, offer_id=offer_id, **changes
    )
    change = StateChange(status.agent_id, status.state, new, at, reason, call_id or status.call_id)
    return nxt, [change]


def _settle(
    status: AgentStatus, at: datetime, **changes: Any
) -> tuple[AgentStatus, list[AgentEffect]]:
    """The current work ended: apply a pending pause/logout, else become available."""
    if status.pending == "logout":
        return _go(status, AgentState.LOGGED_OUT, at, pending=None, pending_reason=None, **changes)
    if status.pending == "pause":
        return _go(
            status,
            AgentState.PAUSED,
            at,
            reason=status.pending_reason,
            pending=None,
            pending_reason=None,
            **changes,
        )
    return _go(status, AgentState.AVAILABLE, at, **changes)


def step(
    status: AgentStatus, event: AgentEvent, at: datetime, *, max_missed: int = 3
) -> tuple[AgentStatus, list[AgentEffect]]:
    s = status.state
    S = AgentState
    match event:
        case Login(available=avail):
            if s is not S.LOGGED_OUT:
                raise _illegal(status, event)
            if avail:
                return _go(status, S.AVAILABLE, at, missed=0)
            return _go(status, S.PAUSED, at, reason="login", missed=0)
        case MakeAvailable():
            if s is S.PAUSED:
                return _go(status, S.AVAILABLE, at, missed=0)
            if s is S.WRAP_UP:  # agent finished after-call work early
                return _settle(status, at, wrap_gen=status.wrap_gen + 1)
            if s in (S.RESERVED, S.ON_CALL) and status.pending is not None:
                return replace(status, pending=None, pending_reason=None), []  # cancels a request
            raise _illegal(status, event)
        case Pause(reason=reason):
            if s in (S.AVAILABLE, S.PAUSED):
                return _go(status, S.PAUSED, at, reason=reason)
            if s in (S.RESERVED, S.ON_CALL, S.WRAP_UP):
                return replace(status, pending="pause", pending_reason=reason), []
            raise _illegal(status, event)
        case Logout():
            if s in (S.AVAILABLE, S.PAUSED):
                return _go(status, S.LOGGED_OUT, at)
            if s in (S.RESERVED, S.ON_CALL, S.WRAP_UP):
                return replace(status, pending="logout", pending_reason=None), []
            raise _illegal(status, event)
        case Reserve(call_id=call_id, offer_id=offer_id):
            if s is not S.AVAILABLE:
                raise _illegal(status, event)
            return _go(status, S.RESERVED, at, call_id=call_id, offer_id=offer_id)
        case OfferAnswered(offer_id=offer_id):
            if s is not S.RESERVED or offer_id != status.offer_id:
                raise _illegal(status, event)
            return _go(status, S.ON_CALL, at, call_id=status.call_id, offer_id=offer_id, missed=0)
        case OfferMissed(offer_id=offer_id):
            if s is not S.RESERVED or offer_id != status.offer_id:
                raise _illegal(status, event)
            missed = status.missed + 1
            if missed >= max_missed and status.pending != "logout":
                return _go(
                    status,
                    S.PAUSED,
                    at,
                    reason=MISSED_REASON,
                    missed=missed,
                    pending=None,
                    pending_reason=None,
                )
            return _settle(status, at, missed=missed)
        case OfferCancelled(offer_id=offer_id):
            if s is not S.RESERVED or offer_id != status.offer_id:
                raise _illegal(status, event)
            return _settle(status, at)
        case CallEnded(wrap_up_s=wrap):
            if s is not S.ON_CALL:
                raise _illegal(status, event)
            if wrap > 0:
                gen = status.wrap_gen + 1
                nxt, effects = _go(status, S.WRAP_UP, at, call_id=status.call_id, wrap_gen=gen)
                return nxt, [*effects, StartWrapUpTimer(status.agent_id, gen, wrap)]
            return _settle(status, at)
        case WrapUpElapsed(gen=gen):
            if s is not S.WRAP_UP or gen != status.wrap_gen:
                return status, []  # a stale timer: the agent moved on already
            return _settle(status, at)
        case PlaceCall(call_id=call_id):
            if s not in (S.AVAILABLE, S.PAUSED):
                raise _illegal(status, event)
            paused = s is S.PAUSED  # a pause stays theirs: it applies when this call ends
            return _go(
                status, S.ON_CALL, at, reason="outbound", call_id=call_id,
                offer_id=f"out-{call_id}", missed=0, pending="pause" if paused else None,
                pending_reason=status.reason if paused else None,
            )
        case ResumeCall(call_id=call_id):
            if s not in (S.LOGGED_OUT, S.AVAILABLE, S.PAUSED):
                raise _illegal(status, event)
            # A pause the agent was in stays theirs: it applies when this call ends.
            paused = s is S.PAUSED
            return _go(
                status, S.ON_CALL, at, reason="restored", call_id=call_id, missed=0,
                pending="pause" if paused else None,
                pending_reason=status.reason if paused else None,
            )
    raise _illegal(status, event)
