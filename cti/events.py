"""The typed domain events: everything that happens to a call, an agent or the rules, as
small frozen facts named in the past tense, and the `Bus` they are published on.

Every feature publishes what it did and subscribes to what it needs; no feature calls
another to tell it something happened (docs/architecture.md). The events are kept, in
order, by the event log (cti/features/events/), so their shapes are versioned: a change to
an event's fields bumps its entry in `VERSIONS`, and readers of old rows get the old shape.

The routing core's events (cti/domain/routing/events.py) and the work orders' (cti/domain/
work_orders.py) are domain events as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cti.domain.crm import CallSummary, Customer
from cti.domain.routing.events import (
    AgentStateChanged,
    CallConnected,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    OfferWithdrawn,
)
from cti.domain.work_orders import (
    WorkOrderAssigned,
    WorkOrderCreated,
    WorkOrderEscalated,
    WorkOrderReminded,
    WorkOrderStatusChanged,
)

__all__ = [
    "AgentStateChanged",
    "Bus",
    "CallAnswered",
    "CallArrived",
    "CallConnected",
    "CallEnded",
    "CallEvaluated",
    "CallHeld",
    "CallLeftQueue",
    "CallMuted",
    "CallOffered",
    "CallQueued",
    "CallResumed",
    "CallRouted",
    "CallTransferred",
    "CallbackMissed",
    "CustomerIdentified",
    "DomainEvent",
    "Envelope",
    "FallbackReached",
    "HandoverItemAcknowledged",
    "HandoverReminded",
    "HandoverWritten",
    "IvrNoted",
    "KnowledgeGapAnswered",
    "KnowledgeGapRecorded",
    "MenuKeyPressed",
    "MonitorModeChanged",
    "MonitorStarted",
    "MonitorStopped",
    "OfferWithdrawn",
    "OutboundCallOutcome",
    "OutboundCallPlaced",
    "ProcedureEnded",
    "ProcedureStarted",
    "ProcedureStepped",
    "QueueCallbackAttempted",
    "QueueCallbackRequested",
    "RecordingPaused",
    "RecordingResumed",
    "RecordingStarted",
    "RecordingStopped",
    "RulesReloaded",
    "SurveyAnswered",
    "TransferCancelled",
    "TransferStarted",
    "event_from_record",
    "event_record",
]


# ----- calls ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallArrived:
    """A caller's channel entered the application (or was taken back after a restart)."""

    call_id: str
    at: datetime
    channel_id: str
    caller_number: str
    dialled_number: str
    adopted: bool = False
    # The Asterisk the call is on (its id in the settings; v2).
    pbx: str = ""


@dataclass(frozen=True, slots=True)
class CallAnswered:
    call_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CustomerIdentified:
    """The caller's CRM record, looked up once as the call arrived; everyone downstream (the
    routing attributes, the greeting by name, the screen pop) reads it from here."""

    call_id: str
    at: datetime
    number: str
    customer: Customer | None
    history: tuple[CallSummary, ...] = ()
    external_pending: bool = False
    external_error: str | None = None
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MenuKeyPressed:
    call_id: str
    at: datetime
    digit: str


@dataclass(frozen=True, slots=True)
class CallRouted:
    """The caller's IVR reached a route node: the call is for `queue` (the ACD takes it)."""

    call_id: str
    at: datetime
    queue: str
    lang: str


@dataclass(frozen=True, slots=True)
class FallbackReached:
    """The ACD let the call go to its queue's fallback (max wait, after hours)."""

    call_id: str
    at: datetime
    channel_id: str
    queue: str
    action: str
    mailbox: str | None = None
    target: str | None = None


@dataclass(frozen=True, slots=True)
class CallHeld:
    call_id: str
    at: datetime
    agent_id: str | None


@dataclass(frozen=True, slots=True)
class CallResumed:
    call_id: str
    at: datetime
    agent_id: str | None


@dataclass(frozen=True, slots=True)
class CallMuted:
    call_id: str
    at: datetime
    agent_id: str | None
    on: bool


@dataclass(frozen=True, slots=True)
class TransferStarted:
    """An agent asked for a transfer (blind: under way; attended: consulting a colleague)."""

    call_id: str
    at: datetime
    agent_id: str | None
    kind: str
    target_type: str
    target: str


@dataclass(frozen=True, slots=True)
class CallTransferred:
    """The call left `agent_id` for the target (blind at once, attended on completion)."""

    call_id: str
    at: datetime
    agent_id: str | None
    kind: str
    target_type: str
    target: str
    waited_s: float = 0.0


@dataclass(frozen=True, slots=True)
class TransferCancelled:
    """A transfer was refused or a consultation cancelled: the agent keeps the call."""

    call_id: str
    at: datetime
    agent_id: str | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RecordingStarted:
    """A recording began: a voicemail, or a segment of a call's recording (`purpose` "call":
    one segment per bridge the call talks in, `segment` counting from 1)."""

    call_id: str
    at: datetime
    name: str
    purpose: str = "voicemail"
    agent_id: str | None = None
    segment: int = 0


@dataclass(frozen=True, slots=True)
class RecordingStopped:
    call_id: str
    at: datetime
    name: str
    duration_s: float | None = None
    failed: bool = False
    purpose: str = "voicemail"
    reason: str | None = None  # why it failed (the PBX's cause, an ARI error)
    agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingPaused:
    """The call's recording was paused (the agent's button): the stretch stays silent."""

    call_id: str
    at: datetime
    name: str
    agent_id: str | None = None
    by: str = ""


@dataclass(frozen=True, slots=True)
class RecordingResumed:
    call_id: str
    at: datetime
    name: str
    agent_id: str | None = None
    by: str = ""


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_id: str
    at: datetime
    cause: int | None
    cause_text: str | None
    ended_by: str
    agent_id: str | None = None
    queue: str | None = None


# ----- the IVR's audit facts: procedures (docs/phrases.md), departures, requests -------------


@dataclass(frozen=True, slots=True)
class ProcedureStarted:
    call_id: str
    at: datetime
    mono: float  # the service's monotonic clock: offsets within a run are exact
    run_id: str
    procedure: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "procedure_started"


@dataclass(frozen=True, slots=True)
class ProcedureStepped:
    """One step of a running procedure: a prompt started/finished, a wait, a trigger..."""

    call_id: str
    at: datetime
    mono: float
    run_id: str
    procedure: str
    kind: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProcedureEnded:
    call_id: str
    at: datetime
    mono: float
    run_id: str
    procedure: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "procedure_ended"


@dataclass(frozen=True, slots=True)
class IvrNoted:
    """Any other fact of the IVR's audit: a script departure, a call-back request..."""

    call_id: str
    at: datetime
    mono: float
    kind: str
    run_id: str | None = None
    procedure: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


# ----- quality review ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallEvaluated:
    """A supervisor scored the call with an evaluation form (cti/features/review/)."""

    call_id: str
    at: datetime
    agent_id: str | None
    team: str | None
    evaluation_id: int
    form_id: str
    form_version: int
    score: float
    auto_failed: bool
    evaluator: str


# ----- supervisors on live calls: listen, whisper, barge (docs/monitoring.md) -----------------


@dataclass(frozen=True, slots=True)
class MonitorStarted:
    """The supervisor's phone answered and hears the call in `mode`."""

    call_id: str
    at: datetime
    monitor_id: str
    supervisor: str
    agent_id: str | None
    mode: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class MonitorModeChanged:
    call_id: str
    at: datetime
    monitor_id: str
    supervisor: str
    agent_id: str | None
    mode: str
    previous: str


@dataclass(frozen=True, slots=True)
class MonitorStopped:
    """Monitoring ended: `reason` stopped, supervisor_hung_up, no_answer, call_ended, failed."""

    call_id: str
    at: datetime
    monitor_id: str
    supervisor: str
    agent_id: str | None
    reason: str
    detail: str = ""


# ----- calls placed by agents and call-backs (cti.features.outbound) -----------------------


@dataclass(frozen=True, slots=True)
class OutboundCallPlaced:
    """An agent places a call (or the system places a call-back through them): their phone
    is rung first, the customer's `number` when they answer. `purpose`: "agent" (the page),
    "callback" (a complaint's call-back)."""

    call_id: str
    at: datetime
    agent_id: str
    number: str
    purpose: str = "agent"
    customer_id: int | None = None
    work_order_id: int | None = None


@dataclass(frozen=True, slots=True)
class OutboundCallOutcome:
    """How a placed call went: "connected" (agent and customer bridged), "agent_no_answer",
    "busy", "no_answer", "failed" (with the PBX's cause)."""

    call_id: str
    at: datetime
    agent_id: str
    outcome: str
    cause: str = ""
    work_order_id: int | None = None


@dataclass(frozen=True, slots=True)
class QueueCallbackRequested:
    """A waiting caller pressed the call-back key: they left, their call keeps its place in
    `queue` and `number` is called back when an agent takes it (docs/queue_callbacks.md)."""

    call_id: str
    at: datetime
    queue: str
    number: str


@dataclass(frozen=True, slots=True)
class QueueCallbackAttempted:
    """The caller of a call-back an agent took was dialled: "answered" (then bridged with the
    agent), not taken ("busy", "no_answer", "failed", with the PBX's Q.850 cause), or
    "agent_left" (the agent hung up first: the attempt does not count)."""

    call_id: str
    at: datetime
    number: str
    outcome: str
    cause: int | None = None


@dataclass(frozen=True, slots=True)
class CallbackMissed:
    """A call-back given up after its last attempt: `kind` "queue" (a caller who left the
    queue, `call_id` and `queue`) or "complaint" (a resolved complaint, `order_id`)."""

    kind: str
    at: datetime
    number: str
    attempts: int
    call_id: str | None = None
    queue: str | None = None
    order_id: int | None = None
    customer_id: int | None = None
    language: str | None = None  # the caller's, when known (zh, en)


# ----- the shift handover log (cti.features.handover) ----------------------------------------


@dataclass(frozen=True, slots=True)
class HandoverWritten:
    entry_id: int
    at: datetime
    shift: str
    next_shift: str
    written_by: str
    items: int
    work_order_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HandoverItemAcknowledged:
    entry_id: int
    item_id: int
    at: datetime
    by: str
    work_order_id: int | None = None
    open_items: int = 0  # what the entry still has to be picked up


@dataclass(frozen=True, slots=True)
class HandoverReminded:
    """An item the next shift has not acknowledged yet (`reminders`: how many so far)."""

    entry_id: int
    item_id: int
    at: datetime
    next_shift: str
    reminders: int
    work_order_id: int | None = None


# ----- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RulesReloaded:
    """A routing-rules reload: applied (`ok`), or rejected with the running rules kept."""

    at: datetime
    path: str
    ok: bool
    error: str | None = None
    summary: str = ""


# ----- knowledge base ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnowledgeGapRecorded:
    """A question the knowledge base had no answer to, escalated to the duty manager."""

    gap_id: int
    at: datetime
    question: str
    asked_by: str
    language: str
    agent_id: str | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class KnowledgeGapAnswered:
    gap_id: int
    at: datetime
    answered_by: str
    asked_by: str
    agent_id: str | None = None
    article_id: int | None = None  # the answer published as an article
    answer: str = ""


# ----- satisfaction --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SurveyAnswered:
    """A satisfaction survey stored: by the caller's keys after the call (`channel` "ivr") or
    recorded by an agent after a call-back ("callback"). A score left unanswered is None."""

    survey_id: int
    at: datetime
    channel: str
    call_id: str | None
    agent_id: str | None
    queue: str | None
    work_order_id: int | None
    speed: int | None
    resolved: bool | None
    attitude: int | None
    complete: bool


DomainEvent = (
    CallArrived | CallAnswered | CustomerIdentified | MenuKeyPressed | CallRouted
    | CallQueued | CallOffered | OfferWithdrawn | CallConnected | CallLeftQueue
    | FallbackReached | CallHeld | CallResumed | CallMuted | TransferStarted | CallTransferred
    | TransferCancelled | RecordingStarted | RecordingStopped | RecordingPaused
    | RecordingResumed | CallEnded | ProcedureStarted | MonitorStarted | MonitorModeChanged
    | MonitorStopped
    | ProcedureStepped | ProcedureEnded | IvrNoted | AgentStateChanged | RulesReloaded
    | WorkOrderCreated | WorkOrderAssigned | WorkOrderStatusChanged | WorkOrderEscalated
    | WorkOrderReminded | CallEvaluated | OutboundCallPlaced | OutboundCallOutcome
    | HandoverWritten | HandoverItemAcknowledged | HandoverReminded | QueueCallbackRequested
    | QueueCallbackAttempted | CallbackMissed | KnowledgeGapRecorded | KnowledgeGapAnswered
    | SurveyAnswered
)

_CLASSES: tuple[type[Any], ...] = (
    CallArrived, CallAnswered, CustomerIdentified, MenuKeyPressed, CallRouted, CallQueued,
    CallOffered, OfferWithdrawn, CallConnected, CallLeftQueue, FallbackReached, CallHeld,
    CallResumed, CallMuted, TransferStarted, CallTransferred, TransferCancelled,
    RecordingStarted, RecordingStopped, RecordingPaused, RecordingResumed, CallEnded,
    ProcedureStarted, ProcedureStepped, MonitorStarted, MonitorModeChanged, MonitorStopped,
    ProcedureEnded, IvrNoted, AgentStateChanged, RulesReloaded, WorkOrderCreated,
    WorkOrderAssigned, WorkOrderStatusChanged, WorkOrderEscalated, WorkOrderReminded,
    CallEvaluated, OutboundCallPlaced, OutboundCallOutcome, HandoverWritten,
    HandoverItemAcknowledged, HandoverReminded, QueueCallbackRequested,
    QueueCallbackAttempted, CallbackMissed, KnowledgeGapRecorded, KnowledgeGapAnswered,
    SurveyAnswered,
)
EVENT_CLASSES: dict[str, type[Any]] = {cls.__name__: cls for cls in _CLASSES}
# The shape version of each kept event; bump on a change of fields.
VERSIONS: dict[str, int] = {
    **dict.fromkeys(EVENT_CLASSES, 1),
    # 2: call recordings (agent_id, segment; reason on a failure)
    "RecordingStarted": 2, "RecordingStopped": 2,
    # 2: the PBX the call is on (several Asterisks, docs/cluster.md)
    "CallArrived": 2,
}


# ----- keeping events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as the log keeps it: the indexed facts apart, the rest as JSON."""

    type: str
    version: int
    at: datetime
    call_id: str | None
    agent_id: str | None
    queue: str | None
    payload: dict[str, Any]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def event_record(event: DomainEvent) -> EventRecord:
    name = type(event).__name__
    payload = {
        f.name: _plain(getattr(event, f.name)) for f in dataclasses.fields(event) if f.name != "at"
    }
    return EventRecord(
        type=name, version=VERSIONS[name], at=event.at,
        call_id=getattr(event, "call_id", None), agent_id=getattr(event, "agent_id", None),
        queue=getattr(event, "queue", None), payload=payload,
    )


def event_from_record(type_name: str, at: datetime, payload: Mapping[str, Any]) -> DomainEvent:
    """The event again from its kept form (replays, exports). Unknown fields are dropped, so a
    reader of a newer log keeps working; a missing required field raises TypeError. Nested facts
(a customer record, say) come back as plain mappings."""
    cls = EVENT_CLASSES[type_name]
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "at":
            values["at"] = at
        elif f.name in payload:
            v = payload[f.name]
            if isinstance(v, list) and "tuple" in str(f.type):
                v = tuple(v)
            values[f.name] = v
    return cls(**values)  # type: ignore[no-any-return]


# ----- the bus -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """An event with its place in the stream (global, gap-free within a process)."""

    seq: int
    event: DomainEvent


Handler = Callable[[Any], Awaitable[None]]
BatchHandler = Callable[[list[Envelope]], Awaitable[None]]


class Bus(Protocol):
    """Where features publish what happened. `publish` never blocks and never fails because of
    a subscriber: each subscriber reads its own queue, in order, so a slow one delays nobody."""

    def publish(self, event: DomainEvent) -> int:
        """Append the event to the stream; returns its sequence number."""
        ...

    def subscribe(
        self, name: str, handler: Handler, kinds: tuple[type[Any], ...] | None = None,
        *, everywhere: bool = False,
    ) -> None:
        """`handler(event)` for every event of `kinds` (all when None), in stream order.
        `everywhere`: in a cluster, other nodes' events too (docs/cluster.md)."""
        ...

    def subscribe_now(
        self, name: str, callback: Callable[[Any], None], kinds: tuple[type[Any], ...],
    ) -> None:
        """`callback(event)` inside `publish()`, for this node's events of `kinds`: for a
        subscriber whose whole work is to start a task (a call's route, its CRM lookup) and
        that must not wait a turn of the event loop first. It must return at once and not
        raise (a raise is logged)."""
        ...

    def subscribe_batches(
        self, name: str, handler: BatchHandler, max_batch: int = 500, *,
        everywhere: bool = False, settle_s: float = 0.0,
    ) -> None:
        """`handler([envelopes])` with whatever queued up meanwhile (stores, exporters);
        with `settle_s`, at most about one batch per `settle_s` (drain() cuts it short)."""
        ...

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every subscriber has handled what was published so far; False if
        `timeout` passed first."""
        ...
