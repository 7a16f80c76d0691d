"""The PBX side of the calls the ACD holds: each caller's channel and bridge, the agent legs
it rang, a consultation in progress, an announcement being said.

The pure core keeps the routing state (who waits where, which agent is offered what); this is
what the driver (acd), the announcements and the transfers need to act on the PBX, shared by
the three through one `AcdCalls`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from cti.domain.routing.events import CallConnected
from cti.platform.errors import TelephonyError
from cti.platform.ports import Telephony
from cti.platform.scheduler import TimerHandle

LEG_SETTLE_TIMEOUT_S = 10.0  # a safety net: the commands normally take milliseconds


def fresh_bridge_id(prefix: str, call_id: str) -> str:
    """A bridge id not used before: Asterisk keeps a destroyed bridge's id taken for a moment
    (ARI answers 409 "already exists"), so a call bridged again soon after needs a new one."""
    return f"{prefix}-{call_id}"[:53] + f"-{uuid.uuid4().hex[:6]}"


async def hang_up_quietly(telephony: Telephony, channel_id: str) -> None:
    with contextlib.suppress(TelephonyError):  # already gone
        await telephony.hangup(channel_id)


async def destroy_bridge_quietly(telephony: Telephony, bridge_id: str) -> None:
    with contextlib.suppress(TelephonyError):  # already gone
        await telephony.destroy_bridge(bridge_id)


@dataclass
class AgentLeg:
    offer_id: str
    call_id: str
    agent_id: str
    channel_id: str | None = None
    answered: bool = False
    ring_timer: TimerHandle | None = None
    bridge_id: str | None = None
    # Set once the commands that rang this leg have all run (the offer's events included):
    # the leg's answer or end is handled only after them, so its events keep their order.
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def stop_ring_timer(self) -> None:
        if self.ring_timer is not None:
            self.ring_timer.cancel()


@dataclass
class Consultation:
    """An attended transfer in progress: `agent_leg` (the call's agent) talks with the
    colleague's leg in `bridge_id` while the caller waits on hold."""

    agent_leg: AgentLeg
    bridge_id: str | None = None
    connected: CallConnected | None = None  # held back until the transfer completes


@dataclass
class Announcement:
    """The position/wait announcement of a waiting caller: its task (preparing the media,
    starting it, or putting the hold music back), whether it has reached the PBX (then it is
    waited for, not cancelled), and the playback it started, until that finishes or stops."""

    task: asyncio.Task[None] | None = None
    at_pbx: bool = False
    playback_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectedLegs:
    """A call talking with its agent: who, the agent's channel, and the bridge mixing them."""

    agent_id: str
    agent_channel: str
    bridge_id: str


@dataclass
class AcdCall:
    channel_id: str
    leg: AgentLeg | None = None
    bridge_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    consult: Consultation | None = None
    rebridged: bool = False  # its bridge was destroyed for a transfer: the next needs a new id
    moh_class: str = "default"
    announcement: Announcement = field(default_factory=Announcement)
    # the caller left the queue for a call-back (their number), and the channel dialling them
    # back once an agent took the call (docs/queue_callbacks.md)
    callback_number: str | None = None
    callback_channel: str | None = None
    callback_answered: bool = False


class AcdCalls:
    """The calls by id, and the agent legs by offer and by channel."""

    def __init__(self) -> None:
        self.by_id: dict[str, AcdCall] = {}
        self.legs: dict[str, AgentLeg] = {}  # offer id -> leg
        self.by_channel: dict[str, AgentLeg] = {}
        self.callback_channels: dict[str, str] = {}  # dialling-back channel -> call id

    def get(self, call_id: str) -> AcdCall | None:
        return self.by_id.get(call_id)

    def add_leg(self, leg: AgentLeg) -> None:
        self.legs[leg.offer_id] = leg
        if leg.channel_id:
            self.by_channel[leg.channel_id] = leg

    def forget_leg(self, leg: AgentLeg) -> None:
        self.legs.pop(leg.offer_id, None)
        if leg.channel_id:
            self.by_channel.pop(leg.channel_id, None)

    def consult_of(self, call_id: str) -> Consultation | None:
        call = self.by_id.get(call_id)
        return call.consult if call else None

    def connected(self, call_id: str) -> ConnectedLegs | None:
        """The call's agent leg and bridge while they talk (None otherwise)."""
        call = self.by_id.get(call_id)
        leg = call.leg if call is not None else None
        if call is None or leg is None or not leg.answered or not leg.channel_id \
                or not call.bridge_id:
            return None
        return ConnectedLegs(leg.agent_id, leg.channel_id, call.bridge_id)

    def agent_channel_of(self, call_id: str) -> str | None:
        """The answered agent leg of a connected call (the consulting agent's in a consult)."""
        call = self.by_id.get(call_id)
        if call is None:
            return None
        leg = call.consult.agent_leg if call.consult else call.leg
        return leg.channel_id if leg is not None and leg.answered else None
