"""The figures of docs/metrics.md, from a hand-computed scripted day (queue "sales": service
level 20 s, short abandons under 5 s)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cti.domain.stats import QueueTargets, StatsFold
from cti.events import (
    AgentStateChanged,
    CallConnected,
    CallEnded,
    CallHeld,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    CallResumed,
    DomainEvent,
    OfferWithdrawn,
    OutboundCallPlaced,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def t(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def agent(a: str, old: str, new: str, at: float, reason: str | None = None,
          call: str | None = None) -> AgentStateChanged:
    return AgentStateChanged(a, old, new, t(at), reason, call)


def scripted_day() -> list[DomainEvent]:
    return [
        agent("1001", "logged_out", "available", 0),
        # A: rung on 1001, not answered; answered by 1001 after 30 s; 10 s on hold
        CallQueued("A", "sales", 0, 1, t(10)),
        agent("1001", "available", "reserved", 12, call="A"),
        CallOffered("A", "1001", "sales", 2.0, {}, t(12)),
        OfferWithdrawn("A", "1001", "no_answer", t(27)),
        agent("1001", "reserved", "available", 27),
        agent("1001", "available", "reserved", 38, call="A"),
        agent("1001", "reserved", "on_call", 40, call="A"),
        CallConnected("A", "1001", "sales", 30.0, t(40)),
        # B: answered by 1002 after 5 s
        agent("1002", "logged_out", "available", 50),
        CallQueued("B", "sales", 0, 1, t(50)),
        agent("1002", "available", "reserved", 54, call="B"),
        agent("1002", "reserved", "on_call", 55, call="B"),
        CallConnected("B", "1002", "sales", 5.0, t(55)),
        CallHeld("A", t(60), "1001"),
        # C gives up after 3 s (a short abandon), D after 15 s
        CallQueued("C", "sales", 0, 2, t(60)),
        CallLeftQueue("C", "sales", "abandoned", 3.0, t(63)),
        CallEnded("C", t(63), 16, None, "caller"),
        CallResumed("A", t(70), "1001"),
        CallQueued("D", "sales", 0, 2, t(70)),
        CallQueued("E", "sales", 0, 3, t(80)),
        CallLeftQueue("D", "sales", "abandoned", 15.0, t(85)),
        CallEnded("D", t(85), 16, None, "caller"),
        CallEnded("B", t(85), 16, None, "caller", "1002", "sales"),
        agent("1002", "on_call", "wrap_up", 85, call="B"),
        agent("1002", "wrap_up", "available", 95),
        CallEnded("A", t(100), 16, None, "agent", "1001", "sales"),
        agent("1001", "on_call", "wrap_up", 100, call="A"),
        agent("1001", "wrap_up", "available", 110),
        agent("1001", "available", "paused", 200, reason="lunch"),
        # E waits the queue's max wait and leaves a voicemail: not an abandon
        CallLeftQueue("E", "sales", "fallback", 210.0, t(290), "voicemail", "sales"),
        CallEnded("E", t(295), 16, None, "caller"),
    ]


def day() -> StatsFold:
    fold = StatsFold(lambda _q: QueueTargets(sl_s=20, short_abandon_s=5))
    return fold.apply_all(scripted_day()).close(t(300))


def test_queue_counts() -> None:
    q = day().queue("sales")
    assert (q.offered, q.answered, q.answered_in_sl) == (5, 2, 1)
    assert (q.abandoned, q.abandoned_in_sl, q.short_abandoned) == (1, 1, 1)
    assert (q.voicemails, q.callbacks) == (1, 0)


def test_service_levels_exclude_short_abandons() -> None:
    q = day().queue("sales")
    assert q.sl == pytest.approx(1 / 2)
    assert q.sl2 == pytest.approx((1 + 1) / (2 + 1))
    assert q.abandonment_rate == pytest.approx(1 / 3)


def test_asa_is_a_true_mean_and_aht_is_talk_hold_wrap_per_handled_call() -> None:
    q = day().queue("sales")
    assert q.asa_s == pytest.approx((30 + 5) / 2)
    assert (q.talk_s, q.hold_s, q.wrap_s, q.handled) == (80.0, 10.0, 20.0, 2)
    assert q.aht_s == pytest.approx((80 + 10 + 20) / 2)
    assert q.longest_wait_answered_s == 30.0


def test_agent_times_and_occupancy() -> None:
    fold = day()
    a = fold.agent("1001")
    assert (a.calls, a.missed) == (1, 1)
    assert a.logged_in_s == 300
    assert (a.talk_s, a.hold_s, a.wrap_s) == (50.0, 10.0, 10.0)
    assert a.pause_s == {"lunch": 100.0}
    assert a.occupancy == pytest.approx((50 + 10 + 10) / (300 - 100))
    b = fold.agent("1002")
    assert (b.logged_in_s, b.talk_s, b.wrap_s) == (250.0, 30.0, 10.0)
    assert b.occupancy == pytest.approx(40 / 250)


def test_intervals_split_agent_time_and_count_calls_where_their_offer_began() -> None:
    fold = StatsFold(interval=timedelta(minutes=1), origin=T0)
    fold.apply_all(scripted_day()).close(t(300))
    first, second = T0, T0 + timedelta(minutes=1)
    assert fold.queue("sales", first).offered == 2  # A and B, at 10 and 50 s
    assert fold.queue("sales", second).offered == 3  # C at 60 s (the edge), D, E
    assert fold.agent("1001", first).logged_in_s == 60.0
    assert fold.agent("1001", first).on_call_s == 20.0  # 40..60 s
    assert fold.agent("1001", second).on_call_s == 40.0  # 60..100 s
    total = sum(fold.agent("1001", b).logged_in_s for b in fold.agents)
    assert total == 300.0


def test_no_state_is_kept_for_finished_calls() -> None:
    fold = day()
    assert not fold._calls  # every call ended and was wrapped up: nothing lingers


def test_who_waits_now_follows_the_calls() -> None:
    fold = StatsFold()
    events = scripted_day()
    fold.apply_all(events[:18])  # C has just abandoned; A and B are with agents
    assert fold.waiting_since("sales") == []
    fold.apply_all(events[18:21])  # D and E join
    assert fold.waiting_since("sales") == [t(70), t(80)]
    fold.apply(events[21])  # D abandons
    assert fold.waiting_since("sales") == [t(80)]


def test_a_call_the_agent_placed_counts_for_the_agent_not_the_queue() -> None:
    fold = StatsFold()
    fold.apply_all([
        agent("1001", "logged_out", "available", 0),
        OutboundCallPlaced("out-1", t(10), "1001", "+8613900000004"),
        agent("1001", "available", "on_call", 10, reason="outbound", call="out-1"),
        CallOffered("out-1", "1001", "sales", 0.0, {"direction": "outbound"}, t(10)),
        CallConnected("out-1", "1001", "sales", 0.0, t(20)),
        CallEnded("out-1", t(80), 16, None, "caller", "1001", "sales"),
        agent("1001", "on_call", "wrap_up", 80, call="out-1"),
        agent("1001", "wrap_up", "available", 85),
    ]).close(t(100))
    q = fold.queue("sales")
    assert (q.offered, q.answered, q.handled, q.talk_s) == (0, 0, 0, 0.0)
    a = fold.agent("1001")
    assert a.calls == 1
    assert a.on_call_s == 70.0
    assert not fold._calls
    assert not fold._outbound


def test_a_call_offered_at_once_to_a_free_agent_is_offered_too() -> None:
    """The ACD publishes CallQueued only for callers who wait; one offered at once enters
    the queue with its offer (found by the scripted-calls e2e: offered 5 for 6 calls)."""
    fold = StatsFold(lambda _q: QueueTargets(sl_s=20, short_abandon_s=5))
    fold.apply_all([
        CallOffered("F", "1001", "sales", 0.0, {}, t(10)),
        CallConnected("F", "1001", "sales", 0.4, t(10.4)),
        # a re-offer or a transfer of a call counted already adds nothing
        CallQueued("G", "sales", 0, 1, t(20)),
        CallOffered("G", "1002", "sales", 1.0, {}, t(21)),
        OfferWithdrawn("G", "1002", "no_answer", t(24)),
        CallOffered("G", "1001", "sales", 4.0, {}, t(24)),
    ])
    q = fold.queue("sales")
    assert (q.offered, q.answered, q.answered_in_sl) == (2, 1, 1)
    assert q.asa_s == pytest.approx(0.4)
