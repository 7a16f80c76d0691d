"""The pure router: strategies, priority, relaxation over time, offers, reload, explanations."""

from __future__ import annotations

import pytest
from routing_fixtures import BASIC, basic_rules

from cti.domain.routing.router import Router
from cti.features.routing.rules import parse_rules
from cti.platform.errors import Conflict


def ready(router: Router, *agents: str, now: float = 0.0) -> None:
    for a in agents:
        router.agent_ready(a, now)


def test_call_goes_to_the_only_qualified_available_agent() -> None:
    r = Router(basic_rules())
    ready(r, "a4", "a5")  # neither has billing
    d = r.enqueue("c1", {"menu": "1"}, 1.0)
    assert d.outcome == "queued"
    d = r.agent_ready("a2", 2.0)
    assert (d.outcome, d.call_id, d.agent_id) == ("offered", "c1", "a2")


@pytest.mark.parametrize(
    ("strategy", "setup", "expected"),
    [
        # longest idle: a2 became idle first
        ("longest_idle", [("a2", 1.0), ("a1", 2.0)], "a2"),
        # best proficiency: a1 has billing 5
        ("best_proficiency", [("a2", 1.0), ("a1", 2.0)], "a1"),
        # fewest calls: a2 took a call earlier, a1 none
        ("fewest_calls", [("a2", 1.0), ("a1", 2.0)], "a1"),
        # least occupied: a2 was on a call recently
        ("least_occupied", [("a2", 1.0), ("a1", 2.0)], "a1"),
    ],
)
def test_strategy_picks_the_expected_agent(
    strategy: str, setup: list[tuple[str, float]], expected: str
) -> None:
    r = Router(basic_rules(strategy))
    # a2 took and finished one call before, so it has a call count and recent occupancy.
    r.agent_call_started("a2", -100.0)
    r.agent_call_ended("a2", -10.0)
    for agent, t in setup:
        r.agent_ready(agent, t, after_call=True)
    d = r.enqueue("c1", {"menu": "1"}, 5.0)
    assert d.agent_id == expected, d.reason
    assert d.strategy == strategy
    assert d.candidates == 2


def test_round_robin_rotates_through_agents_in_configured_order() -> None:
    r = Router(basic_rules("round_robin"))
    chosen = []
    for i in range(4):
        if i == 0:
            ready(r, "a1", "a2")
        d = r.enqueue(f"c{i}", {"menu": "1"}, float(i))
        assert d.agent_id is not None
        chosen.append(d.agent_id)
        r.offer_answered(d.offer_id or "", float(i))
        r.agent_call_ended(d.agent_id, float(i))
        r.agent_ready(d.agent_id, float(i) + 0.5, after_call=True)
    assert chosen == ["a1", "a2", "a1", "a2"]


def test_freed_agent_takes_highest_priority_then_longest_waiting_call() -> None:
    r = Router(basic_rules())
    r.enqueue("std-old", {"menu": "1", "tier": "standard"}, 0.0)
    r.enqueue("vip-new", {"menu": "1", "tier": "vip"}, 5.0)
    r.enqueue("std-new", {"menu": "1"}, 6.0)
    assert r.agent_ready("a1", 7.0).call_id == "vip-new"
    assert r.agent_ready("a2", 8.0).call_id == "std-old"
    assert r.agent_ready("a3", 40.0).call_id == "std-new"  # a3 (billing 1) after relaxation


def test_relaxation_lowers_proficiency_only_after_its_step() -> None:
    r = Router(basic_rules())
    ready(r, "a3")  # billing 1; queue needs 3 until 30 s
    assert r.enqueue("c1", {"menu": "1"}, 0.0).outcome == "queued"
    assert r.tick(29.9) == []
    [d] = r.tick(30.0)
    assert (d.agent_id, d.trigger) == ("a3", "tick")
    assert "billing: after 30s: min proficiency 1" in d.stage


def test_relaxation_adds_overflow_queue_agents_after_its_step() -> None:
    r = Router(basic_rules())
    ready(r, "a4")  # general only
    r.enqueue("c1", {"menu": "1"}, 0.0)
    assert r.tick(59.0) == []
    [d] = r.tick(60.0)
    assert d.agent_id == "a4"
    assert "general>=1" in d.pools


def test_relaxation_is_recomputed_live_for_a_freed_agent_without_a_tick() -> None:
    r = Router(basic_rules())
    r.enqueue("c1", {"menu": "1"}, 0.0)
    assert r.agent_ready("a4", 10.0).outcome == "no_call"
    r.agent_unready("a4")
    assert r.agent_ready("a4", 61.0).call_id == "c1"


def test_max_wait_sends_call_to_fallback() -> None:
    r = Router(basic_rules())
    r.enqueue("c1", {"menu": "1"}, 0.0)
    [d] = r.tick(120.0)
    assert (d.outcome, d.call_id) == ("fallback", "c1")
    assert "callback" in d.reason
    assert not r.is_waiting("c1")


def test_fallback_to_queue_moves_the_call_and_keeps_it_waiting() -> None:
    r = Router(basic_rules())
    r.enqueue("c1", {"menu": "2"}, 0.0)
    ds = r.tick(100.0)
    assert ds[0].outcome == "fallback"
    assert r.queue_of("c1") == "general"
    assert r.agent_ready("a4", 101.0).call_id == "c1"


def test_agent_holds_one_offer_and_is_not_offered_a_second_call() -> None:
    r = Router(basic_rules())
    ready(r, "a1")
    d1 = r.enqueue("c1", {"menu": "1"}, 0.0)
    d2 = r.enqueue("c2", {"menu": "1"}, 0.1)
    assert d1.agent_id == "a1"
    assert d2.outcome == "queued"
    with pytest.raises(Conflict):
        r.agent_ready("a1", 1.0)


def test_missed_offer_returns_call_to_head_and_tries_the_next_agent() -> None:
    r = Router(basic_rules())
    ready(r, "a1", "a2")
    r.enqueue("c0", {"menu": "1"}, 0.0)  # takes a1 (longest idle tie -> configured order)
    r.enqueue("c1", {"menu": "1"}, 1.0)  # takes a2
    offer1 = r.offer_of_call("c1")
    assert offer1 is not None
    r.enqueue("c2", {"menu": "1"}, 2.0)  # waits
    _offer, d = r.offer_failed(offer1.offer_id, 16.0)
    assert d.outcome == "queued"
    assert r.position("c1") == 1  # back at the head, ahead of c2
    # a2 is ready again: c1 skips a2 (it just missed) -> a2 gets c2
    assert r.agent_ready("a2", 16.0).call_id == "c2"


def test_missed_offer_retries_the_same_agent_when_no_one_else_qualifies() -> None:
    r = Router(basic_rules())
    ready(r, "a2")
    d = r.enqueue("c1", {"menu": "1"}, 0.0)
    _, d2 = r.offer_failed(d.offer_id or "", 15.0)
    assert d2.outcome == "queued"  # a2 is not available until the agent machine says so
    r.agent_ready("a2", 15.0)  # ready again: c1 skipped (tried) -> no call
    [d3] = r.tick(31.0)  # relaxation step widens the stage; a2 is still the only one
    assert d3.agent_id == "a2"


def test_caller_hangup_during_offer_returns_the_offer_to_cancel() -> None:
    r = Router(basic_rules())
    ready(r, "a1")
    r.enqueue("c1", {"menu": "1"}, 0.0)
    d, offer = r.remove_call("c1", 3.0)
    assert d is not None
    assert d.outcome == "abandoned"
    assert offer is not None
    assert offer.agent_id == "a1"
    assert r.offer_of_agent("a1") is None


def test_reload_changes_routing_for_waiting_callers() -> None:
    r = Router(basic_rules())
    ready(r, "a5")  # tech + general
    r.enqueue("c1", {"menu": "1"}, 0.0)
    changed = BASIC.replace("{strategy}", "longest_idle").replace(
        'when: menu == "1"\n    targets: [{queue: billing}]',
        'when: menu == "1"\n    targets: [{queue: tech}]',
    )
    [d] = r.load_rules(parse_rules(changed, "new.yaml"), 5.0)
    assert (d.call_id, d.agent_id, d.trigger) == ("c1", "a5", "rules_reloaded")


def test_set_skills_makes_an_agent_qualify_and_take_a_waiting_call() -> None:
    r = Router(basic_rules())
    ready(r, "a4")
    r.enqueue("c1", {"menu": "1"}, 0.0)
    [d] = r.set_skills("a4", {"billing": 4}, 1.0)
    assert d.call_id == "c1"


def test_agent_expression_narrows_a_target() -> None:
    rules = parse_rules(
        """
skills: [general, english]
default_queue: general
queues: {general: {skills: {general: 1}}}
agents:
  a1: {skills: {general: 5}}
  a2: {skills: {general: 1, english: 4}}
rules:
  - name: en
    when: language == "en"
    targets:
      - {queue: general, agents: agent.skills.english >= 3, timeout_s: 20}
      - {queue: general}
""",
        "t.yaml",
    )
    r = Router(rules)
    r.agent_ready("a1", 0.0)
    assert r.enqueue("c1", {"language": "en"}, 0.0).outcome == "queued"
    assert r.enqueue("c2", {"language": "zh"}, 0.0).agent_id == "a1"
    assert r.agent_ready("a2", 1.0).call_id == "c1"


def test_decision_explains_candidates_and_choice() -> None:
    r = Router(basic_rules())
    ready(r, "a1", "a2")
    d = r.enqueue("c1", {"menu": "1", "tier": "vip"}, 3.0)
    assert d.filter == "billing"
    assert d.queue == "billing"
    assert d.priority == 100
    assert [c.agent_id for c in d.considered] == ["a1", "a2"]
    assert "longest idle" in d.reason
    assert "2 qualified" in d.reason
    assert d.pools == ("billing>=3",)
    assert d.to_dict()["considered"][0]["agent_id"] == "a1"


def test_unmatched_call_goes_to_default_queue() -> None:
    r = Router(basic_rules())
    ready(r, "a4")
    d = r.enqueue("c1", {"menu": "9"}, 0.0)
    assert (d.filter, d.queue, d.agent_id) == ("default", "general", "a4")


def test_filters_match_in_order_whether_indexed_or_tested() -> None:
    rules = parse_rules(
        """
skills: [general]
default_queue: q0
queues:
  q0: {skills: {general: 1}}
  q1: {skills: {general: 1}}
  q2: {skills: {general: 1}}
  q3: {skills: {general: 1}}
agents: {a1: {skills: {general: 1}}}
rules:
  - {name: r1, when: menu == "1", targets: [{queue: q1}]}
  - {name: r2, when: menu == "2", targets: [{queue: q2}]}
  - {name: r3, when: tier == "vip" or menu == "1", targets: [{queue: q3}]}
  - {name: r4, when: menu == "3", targets: [{queue: q1}]}
  - {name: r5, when: crm.segment == "x", targets: [{queue: q2}]}
""",
        "m.yaml",
    )
    r = Router(rules)
    cases = [
        ({"menu": "1", "tier": "vip"}, "r1"),
        ({"menu": "2"}, "r2"),
        ({"menu": "3", "tier": "vip"}, "r3"),
        ({"menu": "3"}, "r4"),
        ({"crm": {"segment": "x"}}, "r5"),
        ({"crm.segment": "x"}, "r5"),
        ({"menu": ["unhashable"]}, "default"),
        ({}, "default"),
    ]
    for i, (attrs, expected) in enumerate(cases):
        assert r.enqueue(f"c{i}", attrs, 0.0).filter == expected, attrs
