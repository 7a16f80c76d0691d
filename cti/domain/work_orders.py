"""Work orders (service requests, complaints) as a pure state machine.

`step(order, command, at, actor) -> (order, events)`. No clock is read: the instant of every
command is passed in, and the timers (reminders before the due time, the overdue alert, the
complaint's acknowledgement deadline, "no progress for N minutes" escalations) are data:
`next_timer(order)` says when the driver should come back with a `Tick`.

Status flow (the allowed moves are configured, see `DEFAULT_FLOW` and config/work_orders.yaml):

    new -> assigned -> in_progress -> waiting_customer -> resolved -> closed
                             ^------------- reopen --------------/---------/

An order always has an owner (an agent or a team): it is created with one and assignment only
replaces it. Every change is appended to its history (who, what, when).

The events are domain events as they are (re-exported by cti.events, kept by the event log).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from cti.domain.callbacks import CallbackPolicy

# ----- the model -----------------------------------------------------------------------------


class Status(StrEnum):
    NEW = "new"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    WAITING_CUSTOMER = "waiting_customer"
    RESOLVED = "resolved"
    CLOSED = "closed"


DONE = frozenset({Status.RESOLVED, Status.CLOSED})
OPEN = frozenset(Status) - DONE

DEFAULT_FLOW: Mapping[Status, frozenset[Status]] = {
    Status.NEW: frozenset({Status.ASSIGNED, Status.IN_PROGRESS}),
    Status.ASSIGNED: frozenset({Status.IN_PROGRESS}),
    Status.IN_PROGRESS: frozenset({Status.WAITING_CUSTOMER, Status.RESOLVED}),
    Status.WAITING_CUSTOMER: frozenset({Status.IN_PROGRESS, Status.RESOLVED}),
    Status.RESOLVED: frozenset({Status.CLOSED, Status.IN_PROGRESS}),
    Status.CLOSED: frozenset({Status.IN_PROGRESS}),
}
# Moves every flow must allow (the reopen path and the way to the end).
REQUIRED_MOVES: tuple[tuple[Status, Status], ...] = (
    (Status.RESOLVED, Status.CLOSED),
    (Status.RESOLVED, Status.IN_PROGRESS),
    (Status.CLOSED, Status.IN_PROGRESS),
)

OwnerKind = Literal["agent", "team"]


@dataclass(frozen=True, slots=True)
class Owner:
    kind: OwnerKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Owner:
        kind, sep, ident = text.partition(":")
        if not sep or kind not in ("agent", "team") or not ident:
            raise ValueError(f"an owner is 'agent:ID' or 'team:NAME', not {text!r}")
        return cls(kind, ident)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Sla:
    """What a type and severity promise: resolution within, priority, reminders."""

    resolve_within: timedelta
    priority: int
    reminders_before: tuple[timedelta, ...] = ()  # e.g. 1 h and 15 min before due
    acknowledge_within: timedelta | None = None  # complaints


@dataclass(frozen=True, slots=True)
class EscalationRule:
    """A complaint escalation. Exactly one condition is set:
    - `severities`: at creation, when the severity is one of these;
    - `no_progress_for`: this long without a status change or assignment (while open);
    - `repeat_count`/`repeat_within`: at creation, when the customer has made at least
      `repeat_count` complaints (this one included) within `repeat_within`;
    - `not_acknowledged`: the acknowledgement deadline passed without an acknowledgement."""

    name: str
    target: str
    severities: frozenset[str] = frozenset()
    no_progress_for: timedelta | None = None
    repeat_count: int | None = None
    repeat_within: timedelta | None = None
    not_acknowledged: bool = False
    types: frozenset[str] = frozenset()  # empty: every complaint type


@dataclass(frozen=True, slots=True)
class OrderType:
    name: str
    complaint: bool
    team: str  # who owns a new order of this type when no agent takes it
    sla: Mapping[str, Sla]  # by severity


@dataclass(frozen=True, slots=True)
class WorkOrderConfig:
    types: Mapping[str, OrderType]
    severities: tuple[str, ...]
    teams: frozenset[str]
    targets: Mapping[str, str]  # escalation target -> team
    escalations: tuple[EscalationRule, ...] = ()
    flow: Mapping[Status, frozenset[Status]] = field(default_factory=lambda: dict(DEFAULT_FLOW))
    # a resolved complaint's call-back (cti/domain/callbacks.py); None: no call-backs
    callback: CallbackPolicy | None = None

    def sla(self, type_name: str, severity: str) -> Sla:
        try:
            kind = self.types[type_name]
        except KeyError:
            raise InvalidCommand(f"unknown type {type_name!r} (known: "
                                 f"{', '.join(self.types)})") from None
        try:
            return kind.sla[severity]
        except KeyError:
            raise InvalidCommand(f"type {type_name!r} has no SLA for severity {severity!r} "
                                 f"(known: {', '.join(kind.sla)})") from None


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: datetime
    actor: str
    action: str
    changes: tuple[Change, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class WorkOrder:
    id: int
    type: str
    complaint: bool
    severity: str
    priority: int
    status: Status
    owner: Owner
    created_at: datetime
    created_by: str
    due_at: datetime
    description: str = ""
    result: str = ""
    call_id: str | None = None
    customer_id: int | None = None
    ack_due_at: datetime | None = None
    acknowledged_at: datetime | None = None
    last_progress_at: datetime | None = None
    reminders_sent: int = 0  # how many of the SLA's reminders went out since the due time
    overdue_alerted: bool = False
    escalated: tuple[str, ...] = ()  # the names of the rules that fired
    escalated_to: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


# ----- commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assign:
    """Assign, reassign or hand over to `owner` (status new -> assigned for an agent)."""

    owner: Owner
    note: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    to: Status
    note: str = ""
    result: str | None = None  # required on the way to resolved


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """The customer was told their complaint is being handled."""

    note: str = ""


@dataclass(frozen=True, slots=True)
class AddNote:
    """A line on the history without a change: the agent's note, or what the system did for
    the order (a call-back attempt and its outcome: action "callback")."""

    note: str
    action: str = "note"


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: send due reminders, the overdue alert, time-based escalations."""


Command = Assign | Transition | Acknowledge | AddNote | Tick


class InvalidCommand(ValueError):
    """A command that does not apply to the order as it is."""


class IllegalTransition(InvalidCommand):
    def __init__(self, order_id: int, current: Status, wanted: Status,
                 allowed: frozenset[Status]) -> None:
        self.current = current
        self.wanted = wanted
        listed = ", ".join(sorted(allowed)) or "nothing"
        super().__init__(
            f"work order {order_id}: cannot go from {current.value} to {wanted.value} "
            f"(from {current.value}: {listed})"
        )


# ----- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkOrderCreated:
    order_id: int
    at: datetime
    type: str
    severity: str
    priority: int
    status: str
    owner: str
    due_at: datetime
    actor: str
    call_id: str | None = None
    customer_id: int | None = None
    agent_id: str | None = None  # the owner when an agent
    complaint: bool = False


@dataclass(frozen=True, slots=True)
class WorkOrderAssigned:
    order_id: int
    at: datetime
    owner: str
    previous_owner: str
    actor: str
    agent_id: str | None = None  # the new owner when an agent
    note: str = ""


@dataclass(frozen=True, slots=True)
class WorkOrderStatusChanged:
    order_id: int
    at: datetime
    from_status: str
    to_status: str
    actor: str
    owner: str
    result: str = ""
    agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class WorkOrderEscalated:
    order_id: int
    at: datetime
    rule: str
    target: str  # the escalation target (duty_manager, back_office...)
    team: str
    reason: str
    owner: str


@dataclass(frozen=True, slots=True)
class WorkOrderReminded:
    """A reminder before the due time (`overdue` False) or the overdue alert (True)."""

    order_id: int
    at: datetime
    due_at: datetime
    owner: str
    overdue: bool
    agent_id: str | None = None


WorkOrderEvent = (
    WorkOrderCreated | WorkOrderAssigned | WorkOrderStatusChanged | WorkOrderEscalated
    | WorkOrderReminded
)

SYSTEM = "system"


# ----- creating ------------------------------------------------------------------------------


def create(
    config: WorkOrderConfig,
    *,
    order_id: int,
    type_name: str,
    severity: str,
    at: datetime,
    actor: str,
    description: str = "",
    owner: Owner | None = None,
    call_id: str | None = None,
    customer_id: int | None = None,
    prior_complaints: Sequence[datetime] = (),
) -> tuple[WorkOrder, list[WorkOrderEvent]]:
    """A new order: owned by `owner` (then `assigned` when an agent) or by its type's team
    (`new`). `prior_complaints`: when the same customer's earlier complaints were made (for
    the repeat rule), as the caller of this function found them."""
    sla = config.sla(type_name, severity)
    kind = config.types[type_name]
    who = owner or Owner("team", kind.team)
    status = Status.ASSIGNED if who.kind == "agent" else Status.NEW
    order = WorkOrder(
        id=order_id, type=type_name, complaint=kind.complaint, severity=severity,
        priority=sla.priority, status=status, owner=who, created_at=at, created_by=actor,
        due_at=at + sla.resolve_within, description=description, call_id=call_id,
        customer_id=customer_id,
        ack_due_at=at + sla.acknowledge_within if sla.acknowledge_within else None,
        last_progress_at=at,
    )
    entry = HistoryEntry(at, actor, "created", (
        Change("type", None, type_name), Change("severity", None, severity),
        Change("status", None, status.value), Change("owner", None, str(who)),
        Change("due_at", None, order.due_at.isoformat()),
    ))
    order = replace(order, history=(entry,))
    events: list[WorkOrderEvent] = [WorkOrderCreated(
        order_id=order_id, at=at, type=type_name, severity=severity, priority=sla.priority,
        status=status.value, owner=str(who), due_at=order.due_at, actor=actor, call_id=call_id,
        customer_id=customer_id, agent_id=_agent(who), complaint=kind.complaint,
    )]
    if order.complaint:
        for rule in config.escalations:
            if rule.name in order.escalated or not _applies(rule, order):
                continue
            reason = _creation_reason(rule, order, at, prior_complaints)
            if reason:
                order, ev = _escalate(config, order, rule, reason, at)
                events.append(ev)
    return order, events


def _applies(rule: EscalationRule, order: WorkOrder) -> bool:
    return not rule.types or order.type in rule.types


def _creation_reason(
    rule: EscalationRule, order: WorkOrder, at: datetime, prior: Sequence[datetime]
) -> str | None:
    if rule.severities and order.severity in rule.severities:
        return f"severity {order.severity}"
    if rule.repeat_count is not None:
        window = rule.repeat_within
        recent = [t for t in prior if window is None or at - window <= t <= at]
        if len(recent) + 1 >= rule.repeat_count:
            return f"complaint {len(recent) + 1} from this customer" + (
                f" within {_human(window)}" if window else "")
    return None


# ----- the state machine ---------------------------------------------------------------------


def step(
    config: WorkOrderConfig, order: WorkOrder, command: Command, at: datetime, actor: str
) -> tuple[WorkOrder, list[WorkOrderEvent]]:
    """Apply `command` at `at` for `actor`. Raises InvalidCommand (IllegalTransition for a
    move the flow does not allow, naming both states); the order is unchanged then."""
    if isinstance(command, Tick):
        return _tick(config, order, at)
    if isinstance(command, Assign):
        return _assign(order, command, at, actor)
    if isinstance(command, Transition):
        return _transition(config, order, command, at, actor)
    if isinstance(command, AddNote):
        if not command.note.strip():
            raise InvalidCommand(f"work order {order.id}: the note is empty")
        entry = HistoryEntry(at, actor, command.action, (), command.note.strip())
        return replace(order, history=(*order.history, entry)), []
    return _acknowledge(order, command, at, actor)


def _assign(
    order: WorkOrder, cmd: Assign, at: datetime, actor: str
) -> tuple[WorkOrder, list[WorkOrderEvent]]:
    if not order.is_open:
        raise InvalidCommand(
            f"work order {order.id} is {order.status.value}: reopen it before assigning it"
        )
    if cmd.owner == order.owner:
        raise InvalidCommand(f"work order {order.id} is already owned by {order.owner}")
    changes = [Change("owner", str(order.owner), str(cmd.owner))]
    status = order.status
    if status is Status.NEW and cmd.owner.kind == "agent":
        status = Status.ASSIGNED
        changes.append(Change("status", order.status.value, status.value))
    action = "assigned" if order.owner.kind == "team" else "reassigned"
    new = replace(
        order, owner=cmd.owner, status=status, last_progress_at=at,
        history=(*order.history, HistoryEntry(at, actor, action, tuple(changes), cmd.note)),
    )
    events: list[WorkOrderEvent] = [WorkOrderAssigned(
        order_id=order.id, at=at, owner=str(cmd.owner), previous_owner=str(order.owner),
        actor=actor, agent_id=_agent(cmd.owner), note=cmd.note,
    )]
    if status is not order.status:
        events.append(_status_event(order, new, at, actor))
    return new, events


def _transition(
    config: WorkOrderConfig, order: WorkOrder, cmd: Transition, at: datetime, actor: str
) -> tuple[WorkOrder, list[WorkOrderEvent]]:
    allowed = config.flow.get(order.status, frozenset())
    if cmd.to not in allowed:
        raise IllegalTransition(order.id, order.status, cmd.to, allowed)
    if cmd.to is Status.ASSIGNED and order.owner.kind != "agent":
        raise InvalidCommand(f"work order {order.id}: assign it to an agent instead")
    changes = [Change("status", order.status.value, cmd.to.value)]
    result = order.result
    if cmd.to is Status.RESOLVED:
        result = (cmd.result or "").strip()
        if not result:
            raise InvalidCommand(f"work order {order.id}: resolving needs a result")
    elif cmd.result is not None:
        result = cmd.result.strip()
    if result != order.result:
        changes.append(Change("result", order.result or None, result or None))
    reopen = order.status in DONE and cmd.to in OPEN
    new = replace(order, status=cmd.to, result=result, last_progress_at=at)
    if reopen:  # a new SLA period: due again, its reminders and alert again
        sla = config.sla(order.type, order.severity)
        new = replace(new, due_at=at + sla.resolve_within, reminders_sent=0,
                      overdue_alerted=False)
        changes.append(Change("due_at", order.due_at.isoformat(), new.due_at.isoformat()))
    action = "reopened" if reopen else "status"
    new = replace(new, history=(*order.history,
                                HistoryEntry(at, actor, action, tuple(changes), cmd.note)))
    return new, [_status_event(order, new, at, actor)]


def _acknowledge(
    order: WorkOrder, cmd: Acknowledge, at: datetime, actor: str
) -> tuple[WorkOrder, list[WorkOrderEvent]]:
    if not order.complaint:
        raise InvalidCommand(f"work order {order.id} is not a complaint: nothing to acknowledge")
    if order.acknowledged_at is not None:
        raise InvalidCommand(f"work order {order.id} was acknowledged already")
    entry = HistoryEntry(at, actor, "acknowledged",
                         (Change("acknowledged_at", None, at.isoformat()),), cmd.note)
    return replace(order, acknowledged_at=at, history=(*order.history, entry)), []


def _status_event(old: WorkOrder, new: WorkOrder, at: datetime, actor: str) -> WorkOrderEvent:
    return WorkOrderStatusChanged(
        order_id=old.id, at=at, from_status=old.status.value, to_status=new.status.value,
        actor=actor, owner=str(new.owner), result=new.result, agent_id=_agent(new.owner),
    )


# ----- timers --------------------------------------------------------------------------------


def reminder_instants(config: WorkOrderConfig, order: WorkOrder) -> list[datetime]:
    """The reminder instants of the order's SLA, earliest first."""
    sla = config.sla(order.type, order.severity)
    return sorted(order.due_at - before for before in sla.reminders_before)


def next_timer(config: WorkOrderConfig, order: WorkOrder) -> datetime | None:
    """When a `Tick` has something to do for this order; None when nothing is pending."""
    if not order.is_open:
        return None
    pending: list[datetime] = []
    reminders = reminder_instants(config, order)
    if order.reminders_sent < len(reminders):
        pending.append(reminders[order.reminders_sent])
    if not order.overdue_alerted:
        pending.append(order.due_at)
    if order.complaint:
        for rule in config.escalations:
            if rule.name in order.escalated or not _applies(rule, order):
                continue
            when = _timed_rule_instant(rule, order)
            if when is not None:
                pending.append(when)
    return min(pending) if pending else None


def _timed_rule_instant(rule: EscalationRule, order: WorkOrder) -> datetime | None:
    if rule.no_progress_for is not None:
        return (order.last_progress_at or order.created_at) + rule.no_progress_for
    if rule.not_acknowledged and order.ack_due_at is not None and order.acknowledged_at is None:
        return order.ack_due_at
    return None


def _tick(
    config: WorkOrderConfig, order: WorkOrder, at: datetime
) -> tuple[WorkOrder, list[WorkOrderEvent]]:
    if not order.is_open:
        return order, []
    events: list[WorkOrderEvent] = []
    reminders = reminder_instants(config, order)
    sent = order.reminders_sent
    # Only the latest due reminder goes out (a driver that was away sends one, not a burst).
    due = [i for i in range(sent, len(reminders)) if reminders[i] <= at]
    if due and at < order.due_at:
        events.append(WorkOrderReminded(order.id, at, order.due_at, str(order.owner), False,
                                        _agent(order.owner)))
    if due:
        sent = due[-1] + 1
    overdue = order.overdue_alerted
    if not overdue and at >= order.due_at:
        overdue = True
        sent = len(reminders)
        events.append(WorkOrderReminded(order.id, at, order.due_at, str(order.owner), True,
                                        _agent(order.owner)))
    new = order
    if sent != order.reminders_sent or overdue != order.overdue_alerted:
        what = "overdue" if overdue and not order.overdue_alerted else "reminded"
        new = replace(new, reminders_sent=sent, overdue_alerted=overdue,
                      history=(*order.history, HistoryEntry(at, SYSTEM, what)))
    if order.complaint:
        for rule in config.escalations:
            if rule.name in new.escalated or not _applies(rule, new):
                continue
            when = _timed_rule_instant(rule, new)
            if when is None or when > at:
                continue
            if rule.no_progress_for is not None:
                reason = f"no progress for {_human(rule.no_progress_for)}"
            else:
                reason = "not acknowledged in time"
            new, ev = _escalate(config, new, rule, reason, at)
            events.append(ev)
    return new, events


def _escalate(
    config: WorkOrderConfig, order: WorkOrder, rule: EscalationRule, reason: str, at: datetime
) -> tuple[WorkOrder, WorkOrderEscalated]:
    team = config.targets[rule.target]
    entry = HistoryEntry(at, SYSTEM, "escalated",
                         (Change("escalated_to", None, rule.target),), f"{rule.name}: {reason}")
    new = replace(
        order, escalated=(*order.escalated, rule.name),
        escalated_to=tuple(dict.fromkeys((*order.escalated_to, rule.target))),
        history=(*order.history, entry),
    )
    return new, WorkOrderEscalated(order.id, at, rule.name, rule.target, team, reason,
                                   str(order.owner))


def _agent(owner: Owner) -> str | None:
    return owner.id if owner.kind == "agent" else None


def _human(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes and minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)} d"
    if minutes and minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"
