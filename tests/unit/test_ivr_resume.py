"""A call adopted after a restart goes on in its flow: idle at the route (queued callers) or
watching the caller again in the conversation (talking with an agent), never from the top."""

from __future__ import annotations

from ivr_sim import OPEN, SLOTS, SimCall, machine

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.engine import CallContext, Phase

CTX = CallContext("call1", "zh", SLOTS, False, "13800000000")


def resumed(flow: str, kind: str) -> SimCall:
    m = machine()
    state = m.resumed_call(CTX, flow, kind, OPEN)  # type: ignore[arg-type]
    assert state is not None
    sim = SimCall(m, state)
    sim.feed(e.Answered(OPEN))
    return sim


def test_a_queued_call_idles_at_its_route_and_hears_no_menu_again() -> None:
    sim = resumed("main_menu", "route")
    assert sim.state.phase is Phase.ACTIVE
    assert sim.timeline == []  # no welcome, no menu, no second route
    sim.run_until(60)
    assert sim.plays() == []
    assert not sim.of(c.RouteToQueue)


def test_a_connected_call_is_watched_again_without_a_second_greeting() -> None:
    sim = resumed("agent_greeting", "listen")
    sim.run_until(30)  # the caller says nothing: the silent-call procedure, not the greeting
    phrases = [p for _, p in sim.plays()]
    assert "greeting_answer" not in " ".join(phrases)
    assert any("silent_call_first" in p for p in phrases)


def test_a_connected_call_is_with_its_agent() -> None:
    sim = resumed("agent_greeting", "listen")
    assert sim.state.agent_on_call
    sim.run_until(6.0)  # the silent-call procedure has started; the caller speaks
    sim.feed(e.SpeechStarted())
    assert sim.state.procedure is None
    assert sim.state.node == "conversation"  # back with the agent, not to the queue
    assert not sim.of(c.RouteToQueue)


def test_a_flow_without_such_a_node_is_none() -> None:
    assert machine().resumed_call(CTX, "queue_voicemail", "route", OPEN) is None
    assert machine().resumed_call(CTX, "main_menu", "listen", OPEN) is None
