"""The indexed router (per-pool sorted orderings) against the plain scan it replaced
(`Router(rules, indexed=False)`): for random populations, rules and event sequences both must
make exactly the same decisions, record for record, and end in the same state."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.domain.routing.decisions import Decision
from cti.domain.routing.expressions import compile_expression
from cti.domain.routing.model import (
    AgentProfile,
    Fallback,
    Filter,
    Queue,
    RelaxationStep,
    RoutingRules,
    SkillRequirement,
    Strategy,
    Target,
)
from cti.domain.routing.router import Router
from cti.platform.errors import Conflict, NotFound

SKILLS = ("s0", "s1", "s2", "s3")


@st.composite
def rules_st(draw: st.DrawFn) -> RoutingRules:
    n_queues = draw(st.integers(1, 4))
    names = [f"q{i}" for i in range(n_queues)]
    queues = {}
    for name in names:
        req = draw(
            st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), min_size=1, max_size=2)
        )
        steps: list[RelaxationStep] = []
        if draw(st.booleans()):
            steps.append(RelaxationStep(draw(st.sampled_from([5.0, 20.0])), "lower_proficiency",
                                        min_proficiency=draw(st.integers(1, 3))))
        if draw(st.booleans()):
            steps.append(RelaxationStep(draw(st.sampled_from([10.0, 40.0])), "add_skill",
                                        skill=draw(st.sampled_from(SKILLS)),
                                        level=draw(st.integers(1, 4))))
        if draw(st.booleans()):
            steps.append(RelaxationStep(draw(st.sampled_from([15.0, 50.0])), "add_queue",
                                        queue=draw(st.sampled_from(names))))
        queues[name] = Queue(
            name,
            SkillRequirement.of(req),
            priority=draw(st.integers(0, 3)),
            strategy=draw(st.sampled_from(list(Strategy))),
            max_wait_s=draw(st.sampled_from([80.0, 1e9])),
            fallback=draw(st.sampled_from([Fallback("voicemail"), Fallback("queue", names[0])])),
            relaxation=tuple(steps),
        )
    n_agents = draw(st.integers(1, 12))
    agents = {}
    for i in range(n_agents):
        skills = draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=3))
        agents[f"a{i}"] = AgentProfile(f"a{i}", f"PJSIP/{i}", skills, team=f"t{i % 2}")
    filters = []
    for i, name in enumerate(names):
        targets = [Target(name)]
        if draw(st.booleans()):
            targets = [
                Target(name, timeout_s=25.0, agents=compile_expression('agent.team == "t0"')),
                Target(draw(st.sampled_from(names))),
            ]
        filters.append(Filter(f"f{i}", compile_expression(f'menu == "{i}"'), tuple(targets)))
    tiers: dict[str, Any] = {}
    return RoutingRules(SKILLS, queues, tiers, agents, tuple(filters), names[0])


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["arrive", "ready", "ready", "unready", "answer", "miss", "end", "hangup", "tick",
             "skills"]
        ),
        st.integers(0, 15),  # which agent / call / queue
        st.floats(0.0, 12.0),  # time passing before the event
        st.integers(0, 5),  # a skill level, a menu choice
    ),
    max_size=60,
)


def _dicts(ds: list[Decision] | Decision | None) -> list[dict[str, Any]]:
    if ds is None:
        return []
    return [d.to_dict() for d in (ds if isinstance(ds, list) else [ds])]


def _step(r: Router, op: tuple[str, int, float, int], now: float, k: int) -> list[Any]:
    kind, i, _dt, level = op
    agents = list(r.rules.agents)
    agent = agents[i % len(agents)]
    try:
        if kind == "arrive":
            return _dicts(r.enqueue(f"c{k}", {"menu": str(level % 5)}, now))
        if kind == "ready":
            if r.offer_of_agent(agent) is not None:
                return ["holds offer"]
            return _dicts(r.agent_ready(agent, now, after_call=bool(level % 2)))
        if kind == "unready":
            r.agent_unready(agent)
            return []
        offers = sorted(r.offers(), key=lambda o: o.offer_id)
        if kind in ("answer", "miss"):
            if not offers:
                return []
            offer = offers[i % len(offers)]
            if kind == "answer":
                return [r.offer_answered(offer.offer_id, now)]
            o, d = r.offer_failed(offer.offer_id, now)
            return [o, *_dicts(d)]
        if kind == "end":
            r.agent_call_ended(agent, now)
            return []
        if kind == "hangup":
            waiting = [c.call_id for c in r.waiting_calls()]
            if not waiting:
                return []
            d, o = r.remove_call(waiting[i % len(waiting)], now)
            return [*_dicts(d), o]
        if kind == "tick":
            return _dicts(r.tick(now))
        skills = {SKILLS[i % len(SKILLS)]: max(level, 1), SKILLS[(i + level) % len(SKILLS)]: 2}
        return _dicts(r.set_skills(agent, skills, now))
    except (Conflict, NotFound, KeyError) as e:
        # KeyError: answering an offer whose agent a reload removed (the scan does the same)
        return [type(e).__name__, str(e)]


def _state(r: Router) -> tuple[Any, ...]:
    return (
        [(c.call_id, c.key, c.stage_index) for c in r.waiting_calls()],
        sorted(r.available_agents()),
        sorted((o.offer_id, o.call_id, o.agent_id) for o in r.offers()),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rules_st(), ready=st.lists(st.integers(0, 15), max_size=12), ops=OPS)
def test_indexed_router_decides_like_the_scan(
    rules: RoutingRules, ready: list[int], ops: list[Any]
) -> None:
    # every pool indexed; pools of 4+ members indexed, smaller ones scanned; the scan
    indexed, mixed = Router(rules, index_min_members=0), Router(rules, index_min_members=4)
    scan = Router(rules, indexed=False)
    agents = list(rules.agents)
    for j, i in enumerate(ready):  # many available at once: the orderings have depth
        for r in (indexed, mixed, scan):
            r.agent_ready(agents[i % len(agents)], float(j))
    now = float(len(ready))
    for k, op in enumerate(ops):
        now += op[2]
        expected = _step(scan, op, now, k)
        assert _step(indexed, op, now, k) == expected, (k, op)
        assert _step(mixed, op, now, k) == expected, (k, op)
        assert _state(indexed) == _state(mixed) == _state(scan), (k, op)


@settings(max_examples=50, deadline=None)
@given(rules=rules_st(), other=rules_st(), ops=OPS)
def test_indexed_router_decides_like_the_scan_across_a_reload(
    rules: RoutingRules, other: RoutingRules, ops: list[Any]
) -> None:
    indexed, scan = Router(rules, index_min_members=0), Router(rules, indexed=False)
    now = 0.0
    half = len(ops) // 2
    for k, op in enumerate(ops):
        if k == half:
            assert _dicts(indexed.load_rules(other, now)) == _dicts(scan.load_rules(other, now))
        now += op[2]
        assert _step(indexed, op, now, k) == _step(scan, op, now, k), (k, op)
        assert _state(indexed) == _state(scan), (k, op)


def test_round_robin_resumes_after_the_cursor_with_earlier_agents_back() -> None:
    """Agents before the cursor coming back must not jump the turn: the ordering starts at
    the cursor and wraps, as the scan's key (order - cursor) mod n does."""
    agents = {f"a{i}": AgentProfile(f"a{i}", f"PJSIP/{i}", {"s0": 3}) for i in range(6)}
    q = Queue("q0", SkillRequirement.of({"s0": 1}), strategy=Strategy.ROUND_ROBIN)
    flt = Filter("f0", None, (Target("q0"),))
    rules = RoutingRules(SKILLS, {"q0": q}, {}, agents, (flt,), "q0")
    chosen: list[list[str | None]] = []
    for r in (Router(rules, index_min_members=0), Router(rules, indexed=False)):
        for i in range(6):
            r.agent_ready(f"a{i}", float(i))
        picks = []
        for k in range(3):
            d = r.enqueue(f"c{k}", {}, 10.0 + k)
            assert d.offer_id is not None
            assert d.agent_id is not None
            r.offer_answered(d.offer_id, 10.0 + k)
            picks.append(d.agent_id)
        for a in ("a0", "a1"):
            r.agent_call_ended(a, 20.0)
            r.agent_ready(a, 20.0, after_call=True)
        picks += [r.enqueue(f"c{k}", {}, 30.0 + k).agent_id for k in range(3, 7)]
        chosen.append(picks)
    assert chosen[0] == chosen[1] == ["a0", "a1", "a2", "a3", "a4", "a5", "a0"]
