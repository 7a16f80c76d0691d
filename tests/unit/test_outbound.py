"""Calls the agents place (pure parts): the number check before the dial string, the outcome
of a customer's cause, and the ACD core holding the agent on the call from the request on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from routing_fixtures import basic_rules

from cti.domain.agents.state import AgentState
from cti.domain.callbacks import outcome_of
from cti.domain.routing.acd import AcdCore, RingAgent, StartWrapUpTimer
from cti.features.outbound.service import dialable
from cti.platform.errors import ConfigError, IllegalTransition

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
S = AgentState


@pytest.mark.parametrize(("raw", "number"), [
    ("139 0000 0004", "+8613900000004"),
    ("+49 30 5551", "+49305551"),
    ("0086 10 1234 5678", "+861012345678"),
])
def test_phone_numbers_are_dialled_in_e164(raw: str, number: str) -> None:
    assert dialable(raw) == number


@pytest.mark.parametrize("raw", ["1234@evil", "PJSIP/1001", "1001&PJSIP/9", "", "abc",
                                 "139 0000 0004@trunk2"])
def test_a_target_that_is_not_a_phone_number_never_reaches_the_dial_string(raw: str) -> None:
    with pytest.raises(ConfigError, match="not a phone number"):
        dialable(raw)


@pytest.mark.parametrize(("cause", "outcome"), [
    (17, "busy"), (19, "no_answer"), (18, "no_answer"), (21, "no_answer"), (None, "no_answer"),
    (0, "no_answer"), (34, "failed"), (27, "failed"),
])
def test_a_customers_cause_says_how_the_attempt_went(cause: int | None, outcome: str) -> None:
    assert outcome_of(cause) == outcome


def test_an_agent_placing_a_call_gets_no_offer_until_it_ends_then_wraps_up() -> None:
    core = AcdCore(basic_rules())
    core.agent_login("a4", 1.0, AT)
    core.outbound_started("out-1", "a4", "general", 2.0, AT)
    assert core.status("a4").state is S.ON_CALL
    assert core.agent_of_call("out-1") == "a4"  # transfers find the agent
    cmds = core.enqueue("c1", {"menu": "9"}, 3.0, AT)  # a caller for the general queue
    assert not [c for c in cmds if isinstance(c, RingAgent) and c.agent_id == "a4"]
    ended = core.call_ended("out-1", 4.0, AT)
    wrap = [c for c in ended if isinstance(c, StartWrapUpTimer)]
    assert [w.agent_id for w in wrap] == ["a4"]
    assert core.status("a4").state is S.WRAP_UP


def test_a_busy_or_logged_out_agent_places_no_call() -> None:
    core = AcdCore(basic_rules())
    with pytest.raises(IllegalTransition):
        core.outbound_started("out-1", "a4", None, 1.0, AT)  # logged out
    core.agent_login("a4", 1.0, AT)
    core.outbound_started("out-1", "a4", None, 2.0, AT)
    with pytest.raises(IllegalTransition):
        core.outbound_started("out-2", "a4", None, 3.0, AT)
    assert core.agent_of_call("out-2") is None
