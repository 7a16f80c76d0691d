"""The call as the service sees it: states and legal transitions (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from cti.platform.errors import IllegalTransition


class CallState(StrEnum):
    ARRIVED = "arrived"  # in Stasis, not answered yet
    ANSWERED = "answered"  # answered by the service (IVR, greeting, menus)
    QUEUED = "queued"  # waiting for an agent
    OFFERED = "offered"  # an agent is being rung
    CONNECTED = "connected"  # bridged with an agent
    ENDED = "ended"


_ALLOWED: dict[CallState, frozenset[CallState]] = {
    CallState.ARRIVED: frozenset({CallState.ANSWERED, CallState.ENDED}),
    CallState.ANSWERED: frozenset({CallState.QUEUED, CallState.CONNECTED, CallState.ENDED}),
    CallState.QUEUED: frozenset({CallState.OFFERED, CallState.ANSWERED, CallState.ENDED}),
    CallState.OFFERED: frozenset({CallState.QUEUED, CallState.CONNECTED, CallState.ENDED}),
    CallState.CONNECTED: frozenset({CallState.QUEUED, CallState.ANSWERED, CallState.ENDED}),
    CallState.ENDED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    channel_id: str
    caller_number: str
    caller_name: str
    dialled_number: str
    arrived_at: datetime
    state: CallState = CallState.ARRIVED
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    hangup_cause: int | None = None
    hangup_cause_text: str | None = None
    ended_by: str | None = None
    greeting_played: bool = False
    agent_id: str | None = None
    queue: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    # When the caller first entered the ACD: a restarted (or adopting) process puts them back
    # in the queue at this time, so they keep their place and their wait counts from here.
    queued_at: datetime | None = None

    @property
    def is_over(self) -> bool:
        return self.state is CallState.ENDED


def move(call: Call, to: CallState) -> Call:
    """Return the call in state `to`, or raise IllegalTransition naming both states."""
    if to is call.state:
        return call
    if to not in _ALLOWED[call.state]:
        raise IllegalTransition("call", call.state.value, f"move to {to.value}")
    return replace(call, state=to)


def answered(call: Call, at: datetime) -> Call:
    return replace(move(call, CallState.ANSWERED), answered_at=call.answered_at or at)


def ended(
    call: Call, at: datetime, cause: int | None, cause_text: str | None, by: str = "unknown"
) -> Call:
    if call.is_over:
        return call
    return replace(
        move(call, CallState.ENDED), ended_at=at, hangup_cause=cause,
        hangup_cause_text=cause_text, ended_by=by,
    )
