"""Routing events the ACD emits, and the listener protocol other parts subscribe with.

The screen pop subscribes to `CallOffered` (sent when the agent's phone starts ringing, before
the agent answers); supervisors' views use all of them. Events are immutable values with a UTC
timestamp `at`; `attributes` are the call's routing attributes (menu choice, language, tier,
dialled number, caller number, CRM fields flattened as "crm.<field>").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

WithdrawReason = Literal["caller_hangup", "no_answer", "ring_failed", "agent_unavailable"]
FallbackAction = Literal["callback", "voicemail", "queue", "after_hours"]


@dataclass(frozen=True, slots=True)
class CallQueued:
    call_id: str
    queue: str
    priority: int
    position: int
    at: datetime


@dataclass(frozen=True, slots=True)
class CallOffered:
    """An agent was reserved for the call and their phone is being rung."""

    call_id: str
    agent_id: str
    queue: str
    waited_s: float
    attributes: Mapping[str, Any]
    at: datetime
    offer_id: str = ""
    caller_number: str = ""


@dataclass(frozen=True, slots=True)
class OfferWithdrawn:
    """The offer ended without a connection; the agent is released (or paused if missed)."""

    call_id: str
    agent_id: str
    reason: WithdrawReason
    at: datetime
    offer_id: str = ""


@dataclass(frozen=True, slots=True)
class CallConnected:
    """The agent answered and is bridged with the caller."""

    call_id: str
    agent_id: str
    queue: str
    waited_s: float
    at: datetime
    bridge_id: str = ""


@dataclass(frozen=True, slots=True)
class CallLeftQueue:
    """The call left the ACD without an agent: abandoned (hang-up) or sent to its fallback."""

    call_id: str
    queue: str
    outcome: Literal["abandoned", "fallback"]
    waited_s: float
    at: datetime
    fallback: FallbackAction | None = None
    fallback_target: str | None = None


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    agent_id: str
    old: str
    new: str
    at: datetime
    reason: str | None = None
    call_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


RoutingEvent = (
    CallQueued | CallOffered | OfferWithdrawn | CallConnected | CallLeftQueue | AgentStateChanged
)


class RoutingListener(Protocol):
    """Subscribe to the ACD: `Acd(..., listeners=[my_listener])` or `acd.add_listener(...)`.

    Called in order for every event; an exception is logged and does not stop routing.
    """

    async def on_routing_event(self, event: RoutingEvent) -> None: ...
