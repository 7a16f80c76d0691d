"""A rules reload that removes an agent (pure core): the call or offer they hold goes on to
its end (and wrap-up), then they are logged out and offered nothing more; idle ones are
logged out at once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from routing_fixtures import BASIC, basic_rules

from cti.domain.agents.state import AgentState
from cti.domain.routing.acd import AcdCore, Connect, RingAgent
from cti.features.routing.rules import parse_rules
from cti.platform.errors import NotFound

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
S = AgentState
WITHOUT_A4 = parse_rules(
    BASIC.replace("  a4: {skills: {general: 3}}\n", "").replace("{strategy}", "longest_idle"),
    "basic.yaml",
)


def _ring(cmds: list[object]) -> RingAgent:
    (ring,) = [c for c in cmds if isinstance(c, RingAgent)]
    return ring


def test_an_agent_removed_while_ringing_can_answer_and_is_logged_out_after_the_call() -> None:
    core = AcdCore(basic_rules())
    core.agent_login("a4", 1.0, AT)
    ring = _ring(core.enqueue("c1", {"menu": "9"}, 2.0, AT))
    assert ring.agent_id == "a4"
    core.reload(WITHOUT_A4, 3.0, AT)
    assert core.status("a4").state is S.RESERVED
    assert core.status("a4").pending == "logout"
    cmds = core.offer_answered(ring.offer_id, 4.0, AT)  # raised KeyError before
    assert any(isinstance(c, Connect) and c.call_id == "c1" for c in cmds)
    assert core.status("a4").state is S.ON_CALL
    core.call_ended("c1", 30.0, AT)
    assert core.status("a4").state is S.WRAP_UP  # wrap-up is still their work
    core.wrap_up_elapsed("a4", core.status("a4").wrap_gen, 40.0, AT)
    assert core.status("a4").state is S.LOGGED_OUT
    # nothing more for them: a new caller for their old queue waits
    assert [
        c
        for c in core.enqueue("c2", {"menu": "9"}, 31.0, AT)
        if isinstance(c, RingAgent) and c.agent_id == "a4"
    ] == []


def test_an_idle_removed_agent_is_logged_out_at_once_and_cannot_log_in_again() -> None:
    core = AcdCore(basic_rules())
    core.agent_login("a4", 1.0, AT)
    core.reload(WITHOUT_A4, 2.0, AT)
    assert core.status("a4").state is S.LOGGED_OUT
    assert not core.router.is_available("a4")
    with pytest.raises(NotFound, match="no longer in the routing rules"):
        core.agent_login("a4", 3.0, AT)
    assert core.status("a4").state is S.LOGGED_OUT


def test_a_removed_agent_who_does_not_answer_is_logged_out_and_the_call_goes_on() -> None:
    core = AcdCore(basic_rules())
    core.agent_login("a4", 1.0, AT)
    core.agent_login("a5", 1.5, AT, available=False)
    ring = _ring(core.enqueue("c1", {"menu": "9"}, 2.0, AT))
    core.reload(WITHOUT_A4, 3.0, AT)
    core.offer_failed(ring.offer_id, 20.0, AT)
    assert core.status("a4").state is S.LOGGED_OUT
    nxt = _ring(core.agent_available("a5", 21.0, AT))
    assert (nxt.call_id, nxt.agent_id) == ("c1", "a5")
