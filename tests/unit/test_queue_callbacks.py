"""Call-backs instead of waiting, in the pure ACD core: a caller who leaves for a call-back
keeps their place (entry time, order) and is offered in their turn, neither before nor after
the callers who stayed; only a waiting call can leave."""

from __future__ import annotations

from datetime import UTC, datetime

from routing_fixtures import basic_rules

from cti.domain.routing.acd import AcdCore, RingAgent

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
