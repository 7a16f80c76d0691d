"""Property-based tests of the router (hypothesis stateful): random arrivals, agents coming and
going, answers, misses, hang-ups and time passing, checked against an independent oracle of
who qualifies for what, written here from the rules by hand."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from routing_fixtures import basic_rules

from cti.domain.routing.decisions import Decision
from cti.domain.routing.router import Router

AGENTS = ["a1", "a2", "a3", "a4", "a5"]
SKILLS = {
    "a1": {"billing": 5, "general": 1},
    "a2": {"billing": 3},
    "a3": {"billing": 1, "tech": 4},
    "a4": {"general": 3},
    "a5": {"tech": 2, "general": 2},
}


def oracle_qualified(menu: str, queue_wait: float, moved_to_general: bool, agent: str) -> bool:
    """Who may take a call, straight from BASIC's YAML."""
    s = SKILLS[agent]
    if moved_to_general or menu not in ("1", "2"):
        return s.get("general", 0) >= 1
    if menu == "1":
        if queue_wait >= 60:
            return s.get("billing", 0) >= 1 or s.get("general", 0) >= 1
        if queue_wait >= 30:
            return s.get("billing", 0) >= 1
        return s.get("billing", 0) >= 3
    return s.get("tech", 0) >= 2


class RouterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.r = Router(basic_rules())
        self.now = 0.0
        self.n = 0
        self.calls: dict[str, dict[str, Any]] = {}  # call_id -> attributes + bookkeeping
        self.outcome: dict[str, str] = {}
        self.busy: set[str] = set()  # on a call (answered)
        self.unready: set[str] = set(AGENTS)  # not available and not holding an offer

    # ----- bookkeeping --------------------------------------------------------------

    def _qualified_now(self, call_id: str, agent: str) -> bool:
        c = self.calls[call_id]
        return oracle_qualified(c["menu"], self.now - c["entered"], c["general"], agent)

    def _apply(self, d: Decision | None) -> None:
        if d is None:
            return
        if d.outcome == "offered":
            assert d.call_id is not None
            assert d.agent_id is not None
            assert self._qualified_now(d.call_id, d.agent_id), (
                f"{d.call_id} offered to unqualified {d.agent_id}: {d}"
            )
            if d.trigger == "agent_ready":
                self._check_priority_choice(d)
        elif d.outcome == "fallback":
            assert d.call_id is not None
            if self.calls[d.call_id]["menu"] == "2" and not self.calls[d.call_id]["general"]:
                self.calls[d.call_id]["general"] = True
                self.calls[d.call_id]["entered"] = self.now
            else:
                self.outcome[d.call_id] = "fallback"

    def _check_priority_choice(self, d: Decision) -> None:
        chosen = self.calls[d.call_id or ""]
        for other in self.r.waiting_calls():
            o = self.calls[other.call_id]
            if o["tier"] == "vip" and chosen["tier"] != "vip" and d.agent_id not in other.tried:
                assert not self._qualified_now(other.call_id, d.agent_id or ""), (
                    f"standard call {d.call_id} chosen over qualified VIP {other.call_id}"
                )

    # ----- rules --------------------------------------------------------------------

    @rule(menu=st.sampled_from(["1", "2", "9"]), vip=st.booleans())
    def arrive(self, menu: str, vip: bool) -> None:
        self.n += 1
        cid = f"c{self.n}"
        tier = "vip" if vip else "standard"
        self.calls[cid] = {"menu": menu, "tier": tier, "entered": self.now, "general": False}
        self._apply(self.r.enqueue(cid, {"menu": menu, "tier": tier}, self.now))

    @rule(agent=st.sampled_from(AGENTS))
    def agent_ready(self, agent: str) -> None:
        if agent not in self.unready:
            return
        self.unready.discard(agent)
        self._apply(self.r.agent_ready(agent, self.now, after_call=True))

    @rule(agent=st.sampled_from(AGENTS))
    def agent_pause(self, agent: str) -> None:
        if self.r.is_available(agent):
            self.r.agent_unready(agent)
            self.unready.add(agent)

    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        offers = self.r.offers()
        if not offers:
            return
        o = data.draw(st.sampled_from(sorted(offers, key=lambda x: x.offer_id)))
        self.r.offer_answered(o.offer_id, self.now)
        self.outcome[o.call_id] = "assigned"
        self.busy.add(o.agent_id)

    @rule(data=st.data())
    def ring_no_answer(self, data: st.DataObject) -> None:
        offers = self.r.offers()
        if not offers:
            return
        o = data.draw(st.sampled_from(sorted(offers, key=lambda x: x.offer_id)))
        _, d = self.r.offer_failed(o.offer_id, self.now)
        self.unready.add(o.agent_id)
        self._apply(d)

    @rule(agent=st.sampled_from(AGENTS))
    def hang_up_after_talking(self, agent: str) -> None:
        if agent in self.busy:
            self.busy.discard(agent)
            self.r.agent_call_ended(agent, self.now)
            self.unready.add(agent)

    @rule(data=st.data())
    def caller_hangs_up(self, data: st.DataObject) -> None:
        live = sorted(c for c in self.calls if c not in self.outcome)
        if not live:
            return
        cid = data.draw(st.sampled_from(live))
        d, offer = self.r.remove_call(cid, self.now)
        assert d is not None
        self.outcome[cid] = "abandoned"
        if offer is not None:
            self.unready.add(offer.agent_id)

    @rule(dt=st.sampled_from([0.5, 5.0, 29.0, 31.0, 61.0, 150.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        for d in self.r.tick(self.now):
            self._apply(d)

    # ----- invariants ---------------------------------------------------------------

    @invariant()
    def no_agent_holds_two_offers(self) -> None:
        agents = [o.agent_id for o in self.r.offers()]
        calls = [o.call_id for o in self.r.offers()]
        assert len(agents) == len(set(agents))
        assert len(calls) == len(set(calls))
        assert not set(agents) & set(self.r.available_agents())

    @invariant()
    def no_available_agent_is_qualified_for_a_waiting_call(self) -> None:
        # Holds after every step because time only moves together with a tick here.
        for call in self.r.waiting_calls():
            for agent in self.r.available_agents():
                if agent in call.tried:
                    continue
                assert not self._qualified_now(call.call_id, agent), (
                    f"{agent} available and qualified while {call.call_id} waits"
                )

    @precondition(lambda self: self.n > 0)
    @invariant()
    def every_call_is_accounted_for(self) -> None:
        waiting = {c.call_id for c in self.r.waiting_calls()}
        offered = {o.call_id for o in self.r.offers()}
        for cid in self.calls:
            states = [cid in waiting, cid in offered, cid in self.outcome]
            assert sum(states) == 1, (cid, states)

    def teardown(self) -> None:
        # Everyone stops; every offer times out; time runs past every max wait.
        for a in AGENTS:
            self.r.agent_unready(a)
        for o in self.r.offers():
            _, d = self.r.offer_failed(o.offer_id, self.now)
            self._apply(d)
        for _ in range(4):
            self.now += 400.0
            for d in self.r.tick(self.now):
                self._apply(d)
        assert self.r.waiting_count() == 0
        for cid in self.calls:
            assert self.outcome.get(cid) in ("assigned", "abandoned", "fallback"), cid


RouterMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_router_state_machine = RouterMachine.TestCase
