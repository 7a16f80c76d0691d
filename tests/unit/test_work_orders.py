"""The work-order state machine: the status flow (table-driven), SLA due times, reminders and
the overdue alert as timers, complaint escalations; and properties over random command
sequences with an injected clock (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.domain.work_orders import (
    DONE,
    Acknowledge,
    Assign,
    Command,
    IllegalTransition,
    InvalidCommand,
    Owner,
    Status,
    Tick,
    Transition,
    WorkOrder,
    WorkOrderAssigned,
    WorkOrderConfig,
    WorkOrderCreated,
    WorkOrderEscalated,
    WorkOrderReminded,
    WorkOrderStatusChanged,
    create,
    next_timer,
    step,
)
from cti.features.work_orders.config import load_work_orders

CONFIG: WorkOrderConfig = load_work_orders(
    Path(__file__).resolve().parents[2] / "config" / "work_orders.yaml"
)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AGENT = Owner("agent", "1001")
H = timedelta(hours=1)
M = timedelta(minutes=1)


def new_order(type_name: str = "service_request", severity: str = "high",
              owner: Owner | None = AGENT, **kw: object) -> WorkOrder:
    order, _ = create(CONFIG, order_id=1, type_name=type_name, severity=severity, at=T0,
                      actor="agent1001", owner=owner, **kw)  # type: ignore[arg-type]
    return order


def at_status(status: Status) -> WorkOrder:
    """An order walked to `status` along the default flow."""
    path = {
        Status.NEW: [], Status.ASSIGNED: [], Status.IN_PROGRESS: [Status.IN_PROGRESS],
        Status.WAITING_CUSTOMER: [Status.IN_PROGRESS, Status.WAITING_CUSTOMER],
        Status.RESOLVED: [Status.IN_PROGRESS, Status.RESOLVED],
        Status.CLOSED: [Status.IN_PROGRESS, Status.RESOLVED, Status.CLOSED],
    }[status]
    order = new_order(owner=None if status is Status.NEW else AGENT)
    for i, to in enumerate(path):
        order, _ = step(CONFIG, order, Transition(to, result="fixed"), T0 + i * M, "agent1001")
    assert order.status is status
    return order


# ----- the flow, table-driven ----------------------------------------------------------------

MOVES = [
    (Status.NEW, Status.ASSIGNED, False),  # assigned needs an agent owner: assign instead
    (Status.NEW, Status.IN_PROGRESS, True),
    (Status.NEW, Status.RESOLVED, False),
    (Status.ASSIGNED, Status.IN_PROGRESS, True),
    (Status.ASSIGNED, Status.CLOSED, False),
    (Status.IN_PROGRESS, Status.WAITING_CUSTOMER, True),
    (Status.IN_PROGRESS, Status.RESOLVED, True),
    (Status.IN_PROGRESS, Status.NEW, False),
    (Status.WAITING_CUSTOMER, Status.IN_PROGRESS, True),
    (Status.WAITING_CUSTOMER, Status.RESOLVED, True),
    (Status.WAITING_CUSTOMER, Status.CLOSED, False),
    (Status.RESOLVED, Status.CLOSED, True),
    (Status.RESOLVED, Status.IN_PROGRESS, True),  # reopen
    (Status.CLOSED, Status.IN_PROGRESS, True),  # reopen
    (Status.CLOSED, Status.RESOLVED, False),
    (Status.CLOSED, Status.NEW, False),
]


@pytest.mark.parametrize(("start", "to", "ok"), MOVES)
def test_status_flow(start: Status, to: Status, ok: bool) -> None:
    order = at_status(start)
    cmd = Transition(to, result="done")
    if not ok:
        with pytest.raises(InvalidCommand) as info:
            step(CONFIG, order, cmd, T0 + H, "agent1001")
        if isinstance(info.value, IllegalTransition):
            assert start.value in str(info.value)
            assert to.value in str(info.value)
        return
    new, events = step(CONFIG, order, cmd, T0 + H, "agent1001")
    assert new.status is to
    assert events == [WorkOrderStatusChanged(
        order_id=1, at=T0 + H, from_status=start.value, to_status=to.value, actor="agent1001",
        owner=str(new.owner), result=new.result, agent_id=new.owner.id
        if new.owner.kind == "agent" else None,
    )]
    assert new.history[-1].actor == "agent1001"
    assert new.history[-1].at == T0 + H
    assert len(new.history) == len(order.history) + 1


def test_illegal_transition_names_both_states() -> None:
    with pytest.raises(IllegalTransition, match="cannot go from closed to resolved"):
        step(CONFIG, at_status(Status.CLOSED), Transition(Status.RESOLVED, result="x"), T0,
             "a")


def test_resolving_needs_a_result() -> None:
    with pytest.raises(InvalidCommand, match="needs a result"):
        step(CONFIG, at_status(Status.IN_PROGRESS), Transition(Status.RESOLVED), T0, "a")


# ----- creation, SLA, owner ------------------------------------------------------------------


@pytest.mark.parametrize(("type_name", "severity", "hours", "priority"), [
    ("service_request", "low", 72, 4), ("service_request", "critical", 2, 1),
    ("complaint", "high", 24, 2),
])
def test_due_time_and_priority_from_the_sla(
    type_name: str, severity: str, hours: int, priority: int
) -> None:
    order = new_order(type_name, severity)
    assert (order.due_at, order.priority) == (T0 + hours * H, priority)


def test_without_an_agent_the_types_team_owns_a_new_order() -> None:
    order, events = create(CONFIG, order_id=7, type_name="complaint", severity="normal",
                           at=T0, actor="sup", customer_id=5, call_id="c1")
    assert (order.owner, order.status) == (Owner("team", "back_office"), Status.NEW)
    assert isinstance(events[0], WorkOrderCreated)
    assert events[0].customer_id == 5
    assert order.ack_due_at == T0 + 240 * M


def test_unknown_type_or_severity_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="unknown type"):
        new_order("nope")
    with pytest.raises(InvalidCommand, match="no SLA for severity 'low'"):
        new_order("complaint", "low")


def test_assign_moves_new_to_assigned_and_records_who() -> None:
    order = at_status(Status.NEW)
    new, events = step(CONFIG, order, Assign(Owner("agent", "1002"), "yours"), T0 + M, "sup")
    assert new.status is Status.ASSIGNED
    assert new.owner == Owner("agent", "1002")
    assert isinstance(events[0], WorkOrderAssigned)
    assert events[0].agent_id == "1002"
    assert isinstance(events[1], WorkOrderStatusChanged)
    last = new.history[-1]
    assert (last.actor, last.action, last.note) == ("sup", "assigned", "yours")
    with pytest.raises(InvalidCommand, match="already owned"):
        step(CONFIG, new, Assign(Owner("agent", "1002")), T0, "sup")
    with pytest.raises(InvalidCommand, match="reopen it"):
        step(CONFIG, at_status(Status.CLOSED), Assign(Owner("agent", "1002")), T0, "sup")


# ----- timers --------------------------------------------------------------------------------


def test_reminders_then_overdue_as_timers() -> None:
    order = new_order(severity="high")  # due in 8 h, reminders 60 and 15 min before
    due = T0 + 8 * H
    assert next_timer(CONFIG, order) == due - 60 * M
    order, events = step(CONFIG, order, Tick(), due - 61 * M, "system")
    assert events == []
    order, events = step(CONFIG, order, Tick(), due - 60 * M, "system")
    assert [type(e) for e in events] == [WorkOrderReminded]
    assert next_timer(CONFIG, order) == due - 15 * M
    order, events = step(CONFIG, order, Tick(), due - 15 * M, "system")
    assert len(events) == 1
    assert not events[0].overdue
    assert next_timer(CONFIG, order) == due
    order, events = step(CONFIG, order, Tick(), due, "system")
    assert isinstance(events[0], WorkOrderReminded)
    assert events[0].overdue
    assert next_timer(CONFIG, order) is None
    assert step(CONFIG, order, Tick(), due + H, "system")[1] == []


def test_a_late_driver_sends_one_reminder_not_a_burst() -> None:
    order = new_order(severity="high")
    order, events = step(CONFIG, order, Tick(), T0 + 8 * H - 10 * M, "system")
    assert len(events) == 1
    assert next_timer(CONFIG, order) == T0 + 8 * H


def test_reopen_starts_a_new_sla_period() -> None:
    order = at_status(Status.CLOSED)
    order, _ = step(CONFIG, order, Tick(), T0 + 9 * H, "system")
    assert order.overdue_alerted is False  # closed orders have no timers
    later = T0 + 30 * H
    order, _ = step(CONFIG, order, Transition(Status.IN_PROGRESS), later, "agent1001")
    assert order.due_at == later + 8 * H
    assert order.history[-1].action == "reopened"
    assert next_timer(CONFIG, order) == later + 7 * H


# ----- complaint escalations -----------------------------------------------------------------


def escalations(events: list[object]) -> list[tuple[str, str]]:
    return [(e.rule, e.target) for e in events if isinstance(e, WorkOrderEscalated)]


@pytest.mark.parametrize(("severity", "prior", "expected"), [
    ("critical", [], [("critical_complaint", "duty_manager")]),
    ("normal", [], []),
    ("normal", [T0 - 2 * 24 * H, T0 - 10 * 24 * H], [("repeat_customer", "duty_manager")]),
    ("normal", [T0 - 2 * 24 * H, T0 - 40 * 24 * H], []),  # one outside the 30 days
])
def test_escalation_at_creation(
    severity: str, prior: list[datetime], expected: list[tuple[str, str]]
) -> None:
    order, events = create(CONFIG, order_id=1, type_name="complaint", severity=severity,
                           at=T0, actor="a", customer_id=3, prior_complaints=prior)
    assert escalations(list(events)) == expected
    assert order.escalated_to == tuple(dict.fromkeys(t for _, t in expected))


def test_service_requests_never_escalate() -> None:
    _, events = create(CONFIG, order_id=1, type_name="service_request", severity="critical",
                       at=T0, actor="a")
    assert escalations(list(events)) == []


def test_not_acknowledged_escalates_at_the_deadline_unless_acknowledged() -> None:
    order = new_order("complaint", "high")  # acknowledge within 60 min
    assert next_timer(CONFIG, order) == T0 + 60 * M
    _late, events = step(CONFIG, order, Tick(), T0 + 60 * M, "system")
    assert escalations(list(events)) == [("not_acknowledged", "duty_manager")]
    acked, _ = step(CONFIG, order, Acknowledge("called back"), T0 + 10 * M, "agent1001")
    assert acked.history[-1].action == "acknowledged"
    _, events = step(CONFIG, acked, Tick(), T0 + 60 * M, "system")
    assert escalations(list(events)) == []
    with pytest.raises(InvalidCommand):
        step(CONFIG, acked, Acknowledge(), T0 + 11 * M, "a")


def test_no_progress_escalates_to_the_back_office_and_progress_resets_it() -> None:
    order, _ = step(CONFIG, new_order("complaint", "normal"), Acknowledge(), T0, "a")
    moved, _ = step(CONFIG, order, Transition(Status.IN_PROGRESS), T0 + 20 * H, "a")
    _, events = step(CONFIG, moved, Tick(), T0 + 24 * H, "system")
    assert escalations(list(events)) == []
    _, events = step(CONFIG, moved, Tick(), T0 + 44 * H, "system")
    assert escalations(list(events)) == [("stalled", "back_office")]
    _, events = step(CONFIG, order, Tick(), T0 + 24 * H, "system")
    assert escalations(list(events)) == [("stalled", "back_office")]


# ----- properties ----------------------------------------------------------------------------

OWNERS = [Owner("agent", "1001"), Owner("agent", "1002"), Owner("team", "back_office")]
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(Transition, st.sampled_from(list(Status)), st.just(""),
              st.sampled_from([None, "fixed"])),
    st.builds(Assign, st.sampled_from(OWNERS)),
    st.just(Acknowledge()),
    st.just(Tick()),
)


@settings(max_examples=300, deadline=None)
@given(
    type_name=st.sampled_from(["service_request", "complaint"]),
    severity=st.sampled_from(["normal", "high", "critical"]),
    owner=st.sampled_from([None, *OWNERS]),
    script=st.lists(st.tuples(st.integers(0, 6 * 60), commands), max_size=30),
)
def test_random_command_sequences_keep_the_invariants(
    type_name: str, severity: str, owner: Owner | None,
    script: list[tuple[int, Command]],
) -> None:
    order, events = create(CONFIG, order_id=1, type_name=type_name, severity=severity, at=T0,
                           actor="a", owner=owner)
    now = T0
    reminders = overdue = 0
    fired: list[str] = [e.rule for e in events if isinstance(e, WorkOrderEscalated)]
    for minutes, cmd in script:
        now += timedelta(minutes=minutes)  # the injected clock only moves forward
        before = order
        timer = next_timer(CONFIG, order)
        try:
            order, events = step(CONFIG, order, cmd, now, "a")
        except InvalidCommand:
            assert order == before  # a refused command changes nothing
            continue
        # Never without an owner; never a status outside the flow.
        assert order.owner is not None
        assert order.status in Status
        if isinstance(cmd, Transition):
            assert cmd.to in CONFIG.flow[before.status]
        # History grows, and only at the end.
        assert order.history[: len(before.history)] == before.history
        assert all(e.at <= now for e in order.history)
        reminders += sum(isinstance(e, WorkOrderReminded) and not e.overdue for e in events)
        overdue += sum(isinstance(e, WorkOrderReminded) and e.overdue for e in events)
        fired += [e.rule for e in events if isinstance(e, WorkOrderEscalated)]
        if isinstance(cmd, Tick):
            # A tick handles everything due: the next timer is later, or none.
            nxt = next_timer(CONFIG, order)
            assert nxt is None or nxt > now
            if timer is None or timer > now:
                assert events == []
                assert order == before
        if order.status in DONE:
            assert next_timer(CONFIG, order) is None
    # Each escalation rule fires at most once per order.
    assert len(fired) == len(set(fired))
    sla = CONFIG.sla(type_name, severity)
    reopens = sum(e.action == "reopened" for e in order.history)
    assert overdue <= 1 + reopens
    assert reminders <= len(sla.reminders_before) * (1 + reopens)
    # The order ends with a closing status or an owner (always an owner, in fact).
    assert order.status in DONE or order.owner is not None
