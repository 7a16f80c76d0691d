"""Call-backs instead of waiting, in the pure ACD core: a caller who leaves for a call-back
keeps their place (entry time, order) and is offered in their turn, neither before nor after
the callers who stayed; only a waiting call can leave; a call-back is never sent to the
max-wait fallback; restored (after a restart, or for its next attempt) it waits at its
original place. And the pure retry rule of an unanswered call-back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from routing_fixtures import basic_rules

from cti.domain import callbacks as cbk
from cti.domain.routing.acd import AcdCore, Announce, Emit, HoldMusic, RingAgent, SendToFallback
from cti.domain.routing.events import CallQueued

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def rings(cmds: list[object]) -> list[str]:
    return [c.call_id for c in cmds if isinstance(c, RingAgent)]


def answer_and_end(core: AcdCore, cmds: list[object], now: float) -> list[object]:
    (ring,) = [c for c in cmds if isinstance(c, RingAgent)]
    core.offer_answered(ring.offer_id, now, AT)
    out = core.call_ended(ring.call_id, now + 1, AT)
    (gen,) = [c.gen for c in out if hasattr(c, "gen")]
    return core.wrap_up_elapsed(ring.agent_id, gen, now + 2, AT)


def test_the_middle_caller_keeps_their_place_and_is_offered_in_turn() -> None:
    core = AcdCore(basic_rules())
    for n, call in enumerate(("a", "b", "c"), 1):
        core.enqueue(call, {"menu": "9"}, float(n), AT)
    assert core.keep_place("b")
    assert [core.router.position(c) for c in ("a", "b", "c")] == [1, 2, 3]
    core.agent_login("a4", 10.0, AT, available=False)
    order = []
    cmds = core.agent_available("a4", 11.0, AT)
    for now in (20.0, 40.0, 60.0):
        order += rings(cmds)
        cmds = answer_and_end(core, cmds, now)
    assert order == ["a", "b", "c"]


def test_a_call_left_for_a_call_back_is_not_announced_to() -> None:
    core = AcdCore(basic_rules())
    core.enqueue("a", {"menu": "9"}, 1.0, AT)
    assert core.announcement_due("a") is not None  # a waiting caller hears where they are
    core.keep_place("a")
    assert core.announcement_due("a") is None


def test_only_a_waiting_call_can_leave_for_a_call_back() -> None:
    core = AcdCore(basic_rules())
    assert not core.keep_place("nobody")
    core.agent_login("a4", 1.0, AT)
    cmds = core.enqueue("a", {"menu": "9"}, 2.0, AT)
    assert rings(cmds) == ["a"]
    assert not core.keep_place("a")  # being offered


def test_a_call_back_waiting_past_max_wait_is_not_sent_to_a_fallback() -> None:
    core = AcdCore(basic_rules())
    core.enqueue("a", {"menu": "9"}, 1.0, AT)  # general: max wait 300 s, then voicemail
    assert core.keep_place("a")
    cmds = core.tick(1000.0, AT)
    assert not [c for c in cmds if isinstance(c, SendToFallback)]
    assert core.router.position("a") == 1  # nobody on the line to send anywhere: it waits


def test_a_restored_call_back_waits_at_its_original_place_without_music_or_count() -> None:
    core = AcdCore(basic_rules())
    core.enqueue("a", {"menu": "9"}, 150.0, AT)  # 100 s after the call-back first entered
    core.enqueue("c", {"menu": "9"}, 300.0, AT)
    cmds = core.restore_callback("b", {"menu": "9"}, "general", 300.0, 350.0, AT)  # at 50
    assert [core.router.position(c) for c in ("b", "a", "c")] == [1, 2, 3]
    assert not [c for c in cmds if isinstance(c, HoldMusic | Announce)]
    assert not [c for c in cmds if isinstance(c, Emit) and isinstance(c.event, CallQueued)]
    assert core.announcement_due("b") is None
    assert core.router.waited("b", 350.0) == 300.0
    assert not [c for c in core.tick(10_000.0, AT) if isinstance(c, SendToFallback)
                and c.call_id == "b"]  # a call-back again: no max-wait fallback


def test_a_restored_call_back_is_offered_at_once_to_a_free_agent() -> None:
    core = AcdCore(basic_rules())
    core.agent_login("a4", 1.0, AT)
    cmds = core.restore_callback("b", {"menu": "9"}, "general", 30.0, 2.0, AT)
    assert rings(cmds) == ["b"]


@pytest.mark.parametrize("outcome", ["busy", "no_answer", "failed"])
def test_an_unanswered_call_back_is_retried_after_the_spacing_then_missed(outcome: str
                                                                          ) -> None:
    policy = cbk.QueueCallbackPolicy(attempts=3, retry_after=timedelta(minutes=5))
    first = cbk.after_queue_attempt(policy, 1, outcome, AT)
    assert (first.what, first.attempts, first.at) == ("retry", 1, AT + timedelta(minutes=5))
    assert cbk.after_queue_attempt(policy, 2, outcome, AT).what == "retry"
    assert cbk.after_queue_attempt(policy, 3, outcome, AT) == cbk.QueueNext("missed", 3)


def test_an_answered_call_back_is_done_and_an_agent_leaving_uses_no_attempt() -> None:
    policy = cbk.QueueCallbackPolicy(attempts=1)
    assert cbk.after_queue_attempt(policy, 1, "answered", AT).what == "done"
    assert cbk.after_queue_attempt(policy, 1, "agent_left", AT) == cbk.QueueNext(
        "retry", 0, AT)
    with pytest.raises(cbk.CallbackError):
        cbk.after_queue_attempt(policy, 1, "teleported", AT)
    with pytest.raises(ValueError, match="at least one"):
        cbk.QueueCallbackPolicy(attempts=0)
