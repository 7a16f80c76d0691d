"""One-click transfer in the pure ACD core: blind to an agent or a queue, attended (consult,
then complete or cancel), and the refusals that must leave everything as it was."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from routing_fixtures import basic_rules

from cti.domain.agents.state import AgentState
from cti.domain.routing.acd import (
    AcdCore,
    Command,
    Connect,
    Emit,
    HoldMusic,
    RingAgent,
    StopRinging,
)
from cti.domain.routing.events import AgentStateChanged, CallOffered, OfferWithdrawn
from cti.platform.errors import Conflict, NotFound

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ATTRS = {"menu": "9", "tier": "standard", "caller": "+8613800000001"}


def connected_core(agent: str = "a4") -> tuple[AcdCore, float]:
    """A core where call c1 (general queue) is connected to `agent`; a5 logged out."""
    core = AcdCore(basic_rules())
    now = 1.0
    core.agent_login(agent, now, AT)
    cmds = core.enqueue("c1", ATTRS, now, AT)
    ring = next(c for c in cmds if isinstance(c, RingAgent))
    assert ring.agent_id == agent
    core.offer_answered(ring.offer_id, now + 1, AT)
    return core, now + 2


def states(core: AcdCore) -> dict[str, AgentState]:
    return {a: s.state for a, s in core.agents.items()}


def of_type(cmds: list[Command], kind: type) -> list[Command]:
    return [c for c in cmds if isinstance(c, kind)]


def test_blind_transfer_to_an_agent_wraps_up_the_first_and_rings_the_second() -> None:
    core, now = connected_core("a4")
    core.agent_login("a5", now, AT)
    cmds = core.transfer("c1", ATTRS, now, AT, agent_id="a5")
    ring = of_type(cmds, RingAgent)
    assert [(r.agent_id, r.call_id) for r in ring] == [("a5", "c1")]  # type: ignore[attr-defined]
    assert of_type(cmds, HoldMusic)  # the caller hears music while the colleague rings
    offered = [c.event for c in cmds if isinstance(c, Emit) and isinstance(c.event, CallOffered)]
    assert [(e.agent_id, e.caller_number) for e in offered] == [("a5", "+8613800000001")]
    assert states(core)["a4"] is AgentState.WRAP_UP
    assert states(core)["a5"] is AgentState.RESERVED
    assert core.agent_of_call("c1") == "a5"
    answered = core.offer_answered(ring[0].offer_id, now + 1, AT)  # type: ignore[attr-defined]
    assert of_type(answered, Connect)
    assert states(core)["a5"] is AgentState.ON_CALL


def test_blind_transfer_to_a_queue_waits_there_when_nobody_is_free() -> None:
    core, now = connected_core("a4")
    cmds = core.transfer("c1", ATTRS, now, AT, queue="billing")
    assert not of_type(cmds, RingAgent)
    assert core.router.is_waiting("c1")
    assert core.router.queue_of("c1") == "billing"
    assert states(core)["a4"] is AgentState.WRAP_UP
    core.agent_login("a2", now + 1, AT)  # a billing agent comes: the call is offered
    assert core.agent_of_call("c1") == "a2"


def test_a_transferred_call_that_is_not_answered_stays_in_the_queue() -> None:
    core, now = connected_core("a4")
    core.agent_login("a5", now, AT)
    ring = of_type(core.transfer("c1", ATTRS, now, AT, agent_id="a5"), RingAgent)[0]
    core.offer_failed(ring.offer_id, now + 20, AT)  # type: ignore[attr-defined]
    assert core.router.is_waiting("c1")
    assert core.router.queue_of("c1") == "general"


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ({"agent_id": "a5"}, Conflict),  # logged out
        ({"agent_id": "a4"}, Conflict),  # the call's own agent
        ({"agent_id": "nobody"}, NotFound),
        ({"queue": "nowhere"}, NotFound),
    ],
)
def test_a_refused_transfer_changes_nothing(target: dict[str, str], error: type) -> None:
    core, now = connected_core("a4")
    before = states(core)
    with pytest.raises(error):
        core.transfer("c1", ATTRS, now, AT, **target)
    assert states(core) == before
    assert core.connected_calls() == {"c1": "a4"}


def test_consult_then_complete_hands_the_call_over() -> None:
    core, now = connected_core("a4")
    core.agent_login("a5", now, AT)
    ring = of_type(core.consult("c1", ATTRS, now, AT, agent_id="a5"), RingAgent)[0]
    assert core.agent_of_call("c1") == "a4"  # still the consulting agent's call
    assert states(core)["a4"] is AgentState.ON_CALL
    with pytest.raises(Conflict):  # one transfer at a time
        core.transfer("c1", ATTRS, now, AT, queue="general")
    core.offer_answered(ring.offer_id, now + 1, AT)  # type: ignore[attr-defined]
    assert states(core)["a5"] is AgentState.ON_CALL
    cmds = core.consult_completed("c1", now + 5, AT)
    changes = [c.event for c in cmds if isinstance(c, Emit)
               and isinstance(c.event, AgentStateChanged)]
    assert [(e.agent_id, e.new) for e in changes] == [("a4", "wrap_up")]
    assert core.connected_calls() == {"c1": "a5"}
    assert not core.is_consulting("c1")


@pytest.mark.parametrize("colleague_answered", [True, False])
def test_consult_cancelled_gives_the_call_back(colleague_answered: bool) -> None:
    core, now = connected_core("a4")
    core.agent_login("a5", now, AT)
    ring = of_type(core.consult("c1", ATTRS, now, AT, agent_id="a5"), RingAgent)[0]
    if colleague_answered:
        core.offer_answered(ring.offer_id, now + 1, AT)  # type: ignore[attr-defined]
    cmds = core.consult_cancelled("c1", now + 3, AT)
    assert core.connected_calls() == {"c1": "a4"}
    assert states(core)["a4"] is AgentState.ON_CALL
    if colleague_answered:
        assert states(core)["a5"] is AgentState.WRAP_UP
    else:
        assert of_type(cmds, StopRinging)
        assert any(isinstance(c, Emit) and isinstance(c.event, OfferWithdrawn) for c in cmds)
        assert states(core)["a5"] is AgentState.AVAILABLE
    core.call_ended("c1", now + 9, AT)  # and the call ends normally afterwards
    assert states(core)["a4"] is AgentState.WRAP_UP


def test_caller_hangup_during_a_consult_releases_both_agents() -> None:
    core, now = connected_core("a4")
    core.agent_login("a5", now, AT)
    ring = of_type(core.consult("c1", ATTRS, now, AT, agent_id="a5"), RingAgent)[0]
    core.offer_answered(ring.offer_id, now + 1, AT)  # type: ignore[attr-defined]
    core.caller_hangup("c1", now + 2, AT)
    assert states(core)["a4"] is AgentState.WRAP_UP
    assert states(core)["a5"] is AgentState.WRAP_UP
    assert core.connected_calls() == {}
