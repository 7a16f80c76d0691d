"""After a service restart (pure core): agents come back as the last process left them,
calls it had with an agent are theirs again, and queued calls wait again in their queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from routing_fixtures import basic_rules

from cti.domain.agents.state import AgentState, AgentStatus, ResumeCall, step
from cti.domain.routing.acd import AcdCore, HoldMusic, Requeued, RingAgent, StartWrapUpTimer
from cti.platform.errors import IllegalTransition

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
S = AgentState


@pytest.mark.parametrize(
    ("last", "reason", "now_state", "now_reason"),
    [
        ("available", None, S.AVAILABLE, None),
        ("paused", "lunch", S.PAUSED, "lunch"),
        ("paused", "login", S.PAUSED, "login"),
        ("on_call", None, S.AVAILABLE, None),  # was working: back to work
        ("wrap_up", None, S.AVAILABLE, None),
        ("reserved", None, S.AVAILABLE, None),
        ("logged_out", None, S.LOGGED_OUT, None),
    ],
)
def test_agents_come_back_as_they_were(
    last: str, reason: str | None, now_state: AgentState, now_reason: str | None
) -> None:
    core = AcdCore(basic_rules())
    core.restore_agent("a4", last, reason, 1.0, AT)
    status = core.status("a4")
    assert status.state is now_state
    assert status.reason == now_reason
    assert core.router.is_available("a4") == (now_state is S.AVAILABLE)


def test_a_restored_available_agent_takes_a_waiting_call() -> None:
    core = AcdCore(basic_rules())
    core.enqueue("c1", {"menu": "9"}, 1.0, AT)
    cmds = core.restore_agent("a4", "available", None, 2.0, AT)
    assert [c.agent_id for c in cmds if isinstance(c, RingAgent)] == ["a4"]


def test_restore_leaves_an_agent_who_already_logged_in_alone() -> None:
    core = AcdCore(basic_rules())
    core.agent_login("a4", 1.0, AT, available=False)
    assert core.restore_agent("a4", "available", None, 2.0, AT) == []
    assert core.status("a4").state is S.PAUSED


def test_an_adopted_connected_call_holds_its_agent_until_it_ends() -> None:
    core = AcdCore(basic_rules())
    core.restore_agent("a4", "on_call", None, 1.0, AT)
    core.adopt_connected("c1", "a4", "general", 1.0, AT)
    assert core.status("a4").state is S.ON_CALL
    assert core.agent_of_call("c1") == "a4"
    # a new caller is not offered to the busy agent
    assert not [c for c in core.enqueue("c2", {"menu": "9"}, 2.0, AT) if isinstance(c, RingAgent)]
    ended = core.call_ended("c1", 30.0, AT)
    wrap = [c for c in ended if isinstance(c, StartWrapUpTimer)]
    assert len(wrap) == 1
    assert wrap[0].seconds == basic_rules().queues["general"].wrap_up_s
    assert core.status("a4").state is S.WRAP_UP
    after = core.wrap_up_elapsed("a4", wrap[0].gen, 45.0, AT)
    assert [c.call_id for c in after if isinstance(c, RingAgent)] == ["c2"]


def test_an_agent_adopted_on_a_call_while_paused_is_paused_again_after_it() -> None:
    core = AcdCore(basic_rules())
    core.restore_agent("a4", "paused", "meeting", 1.0, AT)
    core.adopt_connected("c1", "a4", "general", 1.0, AT)
    wrap = next(c for c in core.call_ended("c1", 9.0, AT) if isinstance(c, StartWrapUpTimer))
    core.wrap_up_elapsed("a4", wrap.gen, 20.0, AT)
    assert core.status("a4").state is S.PAUSED
    assert core.status("a4").reason == "meeting"


def test_adopted_call_in_an_unknown_queue_wraps_up_as_the_default_queue() -> None:
    core = AcdCore(basic_rules())
    core.adopt_connected("c1", "a4", "gone_queue", 1.0, AT)
    wrap = [c for c in core.call_ended("c1", 9.0, AT) if isinstance(c, StartWrapUpTimer)]
    assert wrap[0].seconds == basic_rules().queues["general"].wrap_up_s


def test_resume_call_is_refused_while_the_agent_rings_or_talks() -> None:
    status = AgentStatus("a1", state=S.ON_CALL, call_id="x")
    with pytest.raises(IllegalTransition):
        step(status, ResumeCall("c1"), AT)


def test_a_requeued_call_waits_in_its_queue_with_music_and_is_offered_there() -> None:
    core = AcdCore(basic_rules())
    core.restore_agent("a1", "available", None, 0.5, AT)  # billing 5: a billing agent
    cmds = core.requeue("c1", {"menu": ""}, "billing", 1.0, AT)  # menu lost: queue kept
    assert [c.agent_id for c in cmds if isinstance(c, RingAgent)] == ["a1"]
    core2 = AcdCore(basic_rules())
    cmds = core2.requeue("c1", {"menu": ""}, "billing", 1.0, AT)
    assert [c for c in cmds if isinstance(c, HoldMusic)]
    assert core2.router.queue_of("c1") == "billing"


def test_a_requeued_call_whose_queue_is_gone_goes_through_the_rules() -> None:
    core = AcdCore(basic_rules())
    core.requeue("c1", {"menu": "2"}, "no_such_queue", 1.0, AT)
    assert core.router.queue_of("c1") == "tech"


def _offered_in_order(core: AcdCore, agent: str, now: float) -> list[str]:
    """The calls offered to `agent` one after another as it takes and ends each."""
    order: list[str] = []
    cmds = core.restore_agent(agent, "available", None, now, AT)
    while True:
        ring = next((c for c in cmds if isinstance(c, RingAgent)), None)
        if ring is None:
            return order
        order.append(ring.call_id)
        now += 1
        core.offer_answered(ring.offer_id, now, AT)
        now += 1
        ended = core.call_ended(ring.call_id, now, AT)
        wrap = next(c for c in ended if isinstance(c, StartWrapUpTimer))
        now += wrap.seconds
        cmds = core.wrap_up_elapsed(agent, wrap.gen, now, AT)


def test_requeued_callers_keep_their_original_order_ahead_of_later_arrivals() -> None:
    """c1 and c2 queued 40 s and 25 s before the restart (kept wall times); c0 arrived at the
    new process before they were put back, c3 after: c1, c2 first, then c0, c3."""
    core = AcdCore(basic_rules())
    core.enqueue("c0", {"menu": "1"}, 100.0, AT)  # billing: arrived just after the start
    core.requeue("c2", {"menu": "1"}, "billing", 100.5, AT, since=AT - timedelta(seconds=25))
    core.requeue("c1", {"menu": "1"}, "billing", 100.5, AT, since=AT - timedelta(seconds=40))
    core.enqueue("c3", {"menu": "1"}, 101.0, AT)
    assert [core.router.position(c) for c in ("c1", "c2", "c0", "c3")] == [1, 2, 3, 4]
    assert _offered_in_order(core, "a1", 102.0) == ["c1", "c2", "c0", "c3"]


def test_a_requeued_callers_wait_counts_from_the_original_entry() -> None:
    core = AcdCore(basic_rules())
    core.restore_agent("a1", "available", None, 0.5, AT)
    cmds = core.requeue("c1", {"menu": "1"}, "billing", 100.0, AT,
                        since=AT - timedelta(seconds=42))
    ring = next(c for c in cmds if isinstance(c, RingAgent))
    offer = core.router.offer(ring.offer_id)
    assert offer is not None
    assert offer.waited_s == pytest.approx(42.0)


def test_a_kept_entry_time_ahead_of_this_clock_counts_as_now() -> None:
    core = AcdCore(basic_rules())
    core.restore_agent("a1", "available", None, 0.5, AT)
    cmds = core.requeue("c1", {"menu": "1"}, "billing", 100.0, AT,
                        since=AT + timedelta(seconds=3))  # another node's clock, ahead
    offer = core.router.offer(next(c for c in cmds if isinstance(c, RingAgent)).offer_id)
    assert offer is not None
    assert offer.waited_s == 0.0


def test_callers_adopted_together_go_back_in_the_order_they_first_waited() -> None:
    # A takeover with two PBXs: each one's resync hands over its own callers, so the later
    # caller (on the PBX whose resync ended first) may come first. The agent free at that
    # moment is offered the one who waited longest.
    core = AcdCore(basic_rules())
    core.restore_agent("a4", "available", None, 1.0, AT)
    cmds = core.requeue_all([
        Requeued("on-b", {"menu": "9"}, "general", AT - timedelta(seconds=20)),
        Requeued("unknown", {"menu": "9"}, "general", None),
        Requeued("on-a", {"menu": "9"}, "general", AT - timedelta(seconds=30)),
    ], 100.0, AT)
    assert [c.call_id for c in cmds if isinstance(c, RingAgent)] == ["on-a"]
    # the others wait behind, the call without a kept time last
    assert [c.call_id for c in core.router.waiting_calls()] == ["on-b", "unknown"]
    again = core.restore_agent("a5", "available", None, 101.0, AT)
    assert [c.call_id for c in again if isinstance(c, RingAgent)] == ["on-b"]
