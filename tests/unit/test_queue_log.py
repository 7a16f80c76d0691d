"""The queue_log export (cti.features.events.queue_log): hand-written event sequences and the
exact lines an Asterisk queue_log reader gets for them, field by field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from routing_fixtures import basic_rules

from cti.events import (
    AgentStateChanged,
    CallArrived,
    CallConnected,
    CallEnded,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    CallTransferred,
    DomainEvent,
    FallbackReached,
    OfferWithdrawn,
    OutboundCallPlaced,
    TransferStarted,
)
from cti.features.events.queue_log import QueueLog, member_queues, queue_log_lines

T0 = datetime(2026, 3, 2, 1, 0, 0, tzinfo=UTC)
E0 = 1772413200  # T0 as epoch seconds
assert int(T0.timestamp()) == E0


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def arrived(call: str, number: str, at: float = 0.0) -> CallArrived:
    return CallArrived(call, t(at), call, number, "4000")


def queued(call: str, queue: str, at: float, priority: int = 0, pos: int = 1) -> CallQueued:
    return CallQueued(call, queue, priority, pos, t(at))


def offered(call: str, agent: str, queue: str, at: float, offer: str) -> CallOffered:
    return CallOffered(call, agent, queue, 0.0, {}, t(at), offer, "")


def answered(agent: str, call: str, at: float) -> AgentStateChanged:
    return AgentStateChanged(agent, "reserved", "on_call", t(at), None, call)


def connected(call: str, agent: str, queue: str, at: float) -> CallConnected:
    return CallConnected(call, agent, queue, 0.0, t(at))


def wrap_up(agent: str, call: str, at: float) -> AgentStateChanged:
    return AgentStateChanged(agent, "on_call", "wrap_up", t(at), None, call)


def ended(call: str, at: float, by: str = "caller") -> CallEnded:
    return CallEnded(call, t(at), 16, "Normal Clearing", by)


def state(agent: str, old: str, new: str, at: float, reason: str | None = None,
          call: str | None = None) -> AgentStateChanged:
    return AgentStateChanged(agent, old, new, t(at), reason, call)


@dataclass(frozen=True)
class Case:
    name: str
    events: Sequence[DomainEvent]
    lines: Sequence[str]  # "+s|callid|queue|agent|EVENT|data...": +s is seconds after T0


def expected(lines: Sequence[str]) -> list[str]:
    out = []
    for line in lines:
        offset, rest = line.split("|", 1)
        out.append(f"{E0 + int(offset)}|{rest}")
    return out


CASES = [
    Case(
        "queued, one ring-no-answer, answered, the caller hangs up",
        [
            arrived("c1", "+8613800000001"),
            queued("c1", "billing", 5.4, priority=10),
            offered("c1", "1001", "billing", 7.0, "o1"),
            OfferWithdrawn("c1", "1001", "no_answer", t(10.25), "o1"),
            state("1001", "reserved", "available", 10.25, call="c1"),
            offered("c1", "1003", "billing", 10.3, "o2"),
            answered("1003", "c1", 11.8),
            connected("c1", "1003", "billing", 11.9),
            ended("c1", 41.5, by="caller"),
            wrap_up("1003", "c1", 41.6),
        ],
        [
            "+5|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
            "+10|c1|billing|Agent/1001|RINGNOANSWER|3250",
            # holdtime 11 - 5 (epoch seconds), leg o2, rang 1.5 s (offer to answer)
            "+11|c1|billing|Agent/1003|CONNECT|6|o2|1",
            "+41|c1|billing|Agent/1003|COMPLETECALLER|6|30|1",
        ],
    ),
    Case(
        "the agent hangs up: their leg ends before the call (whatever the hang-up cause says)",
        [
            arrived("c1", "+8613800000001"),
            queued("c1", "billing", 1.0),
            offered("c1", "1003", "billing", 1.0, "o1"),
            answered("1003", "c1", 3.0),
            connected("c1", "1003", "billing", 3.0),
            wrap_up("1003", "c1", 20.0),
            ended("c1", 20.2, by="caller"),
        ],
        [
            "+1|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
            "+3|c1|billing|Agent/1003|CONNECT|2|o1|2",
            "+20|c1|billing|Agent/1003|COMPLETEAGENT|2|17|1",
        ],
    ),
    Case(
        "ended by the agent's side (the IVR for the agent) is COMPLETEAGENT",
        [
            arrived("c1", "+8613800000001"),
            offered("c1", "1003", "billing", 1.0, "o1"),
            answered("1003", "c1", 2.0),
            connected("c1", "1003", "billing", 2.0),
            ended("c1", 12.0, by="agent"),
        ],
        [
            # offered at once (no CallQueued): it entered the queue then, at its head
            "+1|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
            "+2|c1|billing|Agent/1003|CONNECT|1|o1|1",
            "+12|c1|billing|Agent/1003|COMPLETEAGENT|1|10|1",
        ],
    ),
    Case(
        "two callers wait; the first abandons, then the second (who moved up to first)",
        [
            arrived("c2", "+8613800000002"),
            arrived("c3", "+8613800000003"),
            queued("c2", "tech", 0.5),
            queued("c3", "tech", 2.0, pos=2),
            ended("c2", 9.0),
            CallLeftQueue("c2", "tech", "abandoned", 8.6, t(9.1)),
            ended("c3", 20.0),
            CallLeftQueue("c3", "tech", "abandoned", 18.1, t(20.1)),
        ],
        [
            "+0|c2|tech|NONE|ENTERQUEUE||+8613800000002|1",
            "+2|c3|tech|NONE|ENTERQUEUE||+8613800000003|2",
            "+9|c2|tech|NONE|ABANDON|1|1|9",
            "+20|c3|tech|NONE|ABANDON|1|2|18",
        ],
    ),
    Case(
        "a higher priority caller goes ahead of one waiting",
        [
            arrived("c2", "+8613800000002"),
            arrived("c3", "+8613800000003"),
            queued("c2", "tech", 0.0, priority=0),
            queued("c3", "tech", 1.0, priority=100),
            ended("c2", 5.0),
            CallLeftQueue("c2", "tech", "abandoned", 5.0, t(5.0)),
        ],
        [
            "+0|c2|tech|NONE|ENTERQUEUE||+8613800000002|1",
            "+1|c3|tech|NONE|ENTERQUEUE||+8613800000003|1",
            "+5|c2|tech|NONE|ABANDON|2|1|5",
        ],
    ),
    Case(
        "the caller hangs up while an agent's phone rings: RINGCANCELED, then ABANDON",
        [
            arrived("c1", "+8613800000001"),
            queued("c1", "billing", 0.0),
            offered("c1", "1001", "billing", 3.0, "o1"),
            ended("c1", 5.0),
            CallLeftQueue("c1", "billing", "abandoned", 5.1, t(5.1)),
            OfferWithdrawn("c1", "1001", "caller_hangup", t(5.2), "o1"),
            state("1001", "reserved", "available", 5.2, call="c1"),
        ],
        [
            "+0|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
            "+5|c1|billing|Agent/1001|RINGCANCELED|2100",
            "+5|c1|billing|NONE|ABANDON|1|1|5",
        ],
    ),
    Case(
        "max wait reached: EXITWITHTIMEOUT (the fallback's own flow writes nothing)",
        [
            arrived("c1", "+8613800000001"),
            queued("c1", "billing", 2.0),
            CallLeftQueue("c1", "billing", "fallback", 120.0, t(122.0), "voicemail", None),
            FallbackReached("c1", t(122.0), "c1", "billing", "voicemail"),
            ended("c1", 150.0),
        ],
        [
            "+2|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
            "+122|c1|billing|NONE|EXITWITHTIMEOUT|1|1|120",
        ],
    ),
    Case(
        "after hours: never in a queue, no line",
        [
            arrived("c1", "+8613800000001"),
            CallLeftQueue("c1", "", "fallback", 0.0, t(3.0), "after_hours", "general"),
            ended("c1", 30.0),
        ],
        [],
    ),
    Case(
        "the rules move a waiting caller to another queue: exit one, enter the other",
        [
            arrived("c1", "+8613800000001"),
            queued("c1", "tech", 0.0),
            offered("c1", "1004", "general", 60.0, "o1"),
            answered("1004", "c1", 62.0),
            connected("c1", "1004", "general", 62.0),
            ended("c1", 90.0),
        ],
        [
            "+0|c1|tech|NONE|ENTERQUEUE||+8613800000001|1",
            "+60|c1|tech|NONE|EXITWITHTIMEOUT|1|1|60",
            "+60|c1|general|NONE|ENTERQUEUE||+8613800000001|1",
            "+62|c1|general|Agent/1004|CONNECT|2|o1|2",
            "+90|c1|general|Agent/1004|COMPLETECALLER|2|28|1",
        ],
    ),
    Case(
        "blind transfer to a queue: TRANSFER, then the call enters that queue",
        [
            arrived("c1", "+8613800000001"),
            queued("c1", "billing", 0.0),
            offered("c1", "1001", "billing", 4.0, "o1"),
            answered("1001", "c1", 5.0),
            connected("c1", "1001", "billing", 5.0),
            TransferStarted("c1", t(30.0), "1001", "blind", "queue", "tech"),
            wrap_up("1001", "c1", 30.1),
            queued("c1", "tech", 30.2),
            CallTransferred("c1", t(30.3), "1001", "blind", "queue", "tech"),
            offered("c1", "1004", "tech", 31.0, "o2"),
            answered("1004", "c1", 33.0),
            connected("c1", "1004", "tech", 33.0),
            ended("c1", 60.0),
        ],
        [
            "+0|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
            "+5|c1|billing|Agent/1001|CONNECT|5|o1|1",
            "+30|c1|billing|Agent/1001|TRANSFER|tech|queue|5|25|1",
            "+30|c1|tech|NONE|ENTERQUEUE||+8613800000001|1",
            "+33|c1|tech|Agent/1004|CONNECT|3|o2|2",
            "+60|c1|tech|Agent/1004|COMPLETECALLER|3|27|1",
        ],
    ),
    Case(
        "attended transfer: the consultation writes nothing until it is completed",
        [
            arrived("c1", "+8613800000001"),
            offered("c1", "1001", "billing", 0.0, "o1"),
            answered("1001", "c1", 2.0),
            connected("c1", "1001", "billing", 2.0),
            offered("c1", "1003", "billing", 30.0, "o2"),
            TransferStarted("c1", t(30.1), "1001", "attended", "agent", "1003"),
            answered("1003", "c1", 32.5),
            CallTransferred("c1", t(40.0), "1001", "attended", "agent", ""),
            wrap_up("1001", "c1", 40.1),
            connected("c1", "1003", "billing", 40.2),
            ended("c1", 70.0),
        ],
        [
            "+0|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
            "+2|c1|billing|Agent/1001|CONNECT|2|o1|2",
            "+40|c1|billing|Agent/1001|TRANSFER|1003|agent|2|38|1",
            "+40|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
            # the colleague's phone rang from 30 s to their answer at 32.5 s
            "+40|c1|billing|Agent/1003|CONNECT|0|o2|2",
            "+70|c1|billing|Agent/1003|COMPLETECALLER|0|30|1",
        ],
    ),
    Case(
        "a cancelled consultation: the call stays with its agent",
        [
            arrived("c1", "+8613800000001"),
            offered("c1", "1001", "billing", 0.0, "o1"),
            answered("1001", "c1", 1.0),
            connected("c1", "1001", "billing", 1.0),
            offered("c1", "1003", "billing", 10.0, "o2"),
            TransferStarted("c1", t(10.1), "1001", "attended", "agent", "1003"),
            OfferWithdrawn("c1", "1003", "caller_hangup", t(13.0), "o2"),
            ended("c1", 30.0),
        ],
        [
            "+0|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
            "+1|c1|billing|Agent/1001|CONNECT|1|o1|1",
            "+30|c1|billing|Agent/1001|COMPLETECALLER|1|29|1",
        ],
    ),
    Case(
        "transfer to an outside number: TRANSFER ends the queue call",
        [
            arrived("c1", "+8613800000001"),
            queued("c1", "billing", 0.0),
            offered("c1", "1001", "billing", 1.0, "o1"),
            answered("1001", "c1", 2.0),
            connected("c1", "1001", "billing", 2.0),
            TransferStarted("c1", t(20.0), "1001", "blind", "number", "13900000000"),
            wrap_up("1001", "c1", 20.1),
            CallTransferred("c1", t(20.2), "1001", "blind", "number", "13900000000"),
            ended("c1", 80.0),
        ],
        [
            "+0|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
            "+2|c1|billing|Agent/1001|CONNECT|2|o1|1",
            "+20|c1|billing|Agent/1001|TRANSFER|13900000000|number|2|18|1",
        ],
    ),
    Case(
        "an agent logs in, pauses, comes back, is paused for missed calls, logs out",
        [
            state("1001", "logged_out", "available", 0.0),
            state("1001", "available", "paused", 60.0, reason="lunch"),
            state("1001", "paused", "available", 1800.0),
            state("1001", "available", "reserved", 1801.0, call="c9"),
            state("1001", "reserved", "paused", 1816.0, reason="missed", call="c9"),
            state("1001", "paused", "logged_out", 2000.0),
        ],
        [
            "+0|NONE|billing|Agent/1001|ADDMEMBER|",
            "+0|NONE|general|Agent/1001|ADDMEMBER|",
            "+60|NONE|billing|Agent/1001|PAUSE|lunch",
            "+60|NONE|general|Agent/1001|PAUSE|lunch",
            "+1800|NONE|billing|Agent/1001|UNPAUSE|",
            "+1800|NONE|general|Agent/1001|UNPAUSE|",
            "+1816|NONE|billing|Agent/1001|PAUSE|missed",
            "+1816|NONE|general|Agent/1001|PAUSE|missed",
            "+2000|NONE|billing|Agent/1001|REMOVEMEMBER|",
            "+2000|NONE|general|Agent/1001|REMOVEMEMBER|",
        ],
    ),
    Case(
        "an agent of no known queue, logging in paused: queue NONE",
        [state("7777", "logged_out", "paused", 5.0, reason="login")],
        [
            "+5|NONE|NONE|Agent/7777|ADDMEMBER|PAUSED",
            "+5|NONE|NONE|Agent/7777|PAUSE|login",
        ],
    ),
]

MEMBERS = {"1001": ("billing", "general")}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_events_give_the_queue_log_lines(case: Case) -> None:
    lines = queue_log_lines(enumerate(case.events, start=1), MEMBERS)
    assert [str(line) for line in lines] == expected(case.lines)


def test_a_replayed_event_writes_nothing_twice() -> None:
    log = QueueLog.for_members(None)
    assert log.feed(1, arrived("c1", "+1")) == []
    first = log.feed(2, queued("c1", "billing", 0.0))
    assert [line.event for line in first] == ["ENTERQUEUE"]
    assert log.feed(2, queued("c1", "billing", 0.0)) == []
    assert log.feed(1, queued("c1", "billing", 0.0)) == []


def test_a_requeue_after_a_restart_is_the_same_stay() -> None:
    lines = queue_log_lines(enumerate([
        arrived("c1", "+1"), queued("c1", "billing", 0.0), queued("c1", "billing", 30.0),
        CallLeftQueue("c1", "billing", "abandoned", 40.0, t(40.0)),
    ], start=1))
    assert [str(line) for line in lines] == expected([
        "+0|c1|billing|NONE|ENTERQUEUE||+1|1", "+40|c1|billing|NONE|ABANDON|1|1|40",
    ])


def test_a_connection_whose_start_is_not_in_the_stream_keeps_the_acds_hold_time() -> None:
    event = CallConnected("c1", "1001", "billing", 42.7, t(100.0))
    lines = queue_log_lines([(1, event), (2, ended("c1", 130.0))])
    assert [str(line) for line in lines] == expected([
        "+100|c1|billing|Agent/1001|CONNECT|42||0",
        "+130|c1|billing|Agent/1001|COMPLETECALLER|42|30|1",
    ])


def test_no_field_can_split_a_line() -> None:
    lines = queue_log_lines(enumerate([
        arrived("c1", "+86|13800\n000001"), queued("c1", "billing", 0.0),
    ], start=1))
    assert str(lines[0]).split("|")[5:] == ["", "+86_13800_000001", "1"]


def test_members_are_the_queues_whose_calls_can_reach_the_agent() -> None:
    # billing: billing >= 3, after 30 s billing >= 1, after 60 s general's agents too
    assert member_queues(basic_rules()) == {
        "a1": ("billing", "general"),
        "a2": ("billing",),
        "a3": ("billing", "tech"),
        "a4": ("billing", "general"),
        "a5": ("billing", "general", "tech"),
    }


def test_a_call_an_agent_placed_writes_no_queue_lines() -> None:
    out = "out-1"
    lines = queue_log_lines(enumerate([
        OutboundCallPlaced(out, t(0.0), "1001", "+8613900000004"),
        CallOffered(out, "1001", "billing", 0.0, {"direction": "outbound"}, t(0.0)),
        CallConnected(out, "1001", "billing", 0.0, t(8.0)),
        ended(out, 60.0),
        arrived("c1", "+1"), queued("c1", "billing", 61.0),
    ], start=1))
    assert [line.callid for line in lines] == ["c1"]  # the next caller's ENTERQUEUE only
