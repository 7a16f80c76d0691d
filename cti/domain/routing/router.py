"""The pure router: which agent gets a waiting call, which call a freed agent gets.

A plain class with no I/O and no clock: every method takes `now` (monotonic seconds). It keeps
agents indexed by pool (a skill requirement plus an optional agent expression) with the set of
available members per pool, so finding candidates is a union of small sets, not a scan of all
agents. Waiting calls are kept sorted by (-priority, enqueue time).

Invariants (tested with hypothesis):
- an agent holds at most one offer, and reserving one removes the agent from every available
  set in the same call (no double offer);
- an offer goes only to an agent in a pool of the call's stage at that moment's wait;
- after every method returns, no available agent is qualified for a waiting call (except
  between ticks, when a relaxation step has come due and `tick` has not yet run).

Picking the agent does not scan the candidates: each pool keeps its available members in one
sorted list per strategy ordering its stages use (`_Ordered`, built with the pools, then kept
in step with the available sets), so the best agent is the head of a list and the runner-up
the next one (docs/routing_index.md). `Router(rules, indexed=False)` keeps the plain scan as
the reference the property tests compare against.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from itertools import chain
from typing import Any

from cti.domain.routing.decisions import Candidate, Decision, Trigger
from cti.domain.routing.expressions import lookup
from cti.domain.routing.model import (
    AgentProfile,
    CallAttributes,
    Fallback,
    Filter,
    RoutingRules,
    SkillRequirement,
    Strategy,
    Target,
)
from cti.domain.routing.relaxation import Plan, Pool, Stage, build_plan
from cti.domain.routing.strategies import AgentStats, explain, sort_key
from cti.platform.errors import Conflict, NotFound

CallKey = tuple[int, float, int]
# An index ordering: a strategy's key family ("idle", "calls", "load", "rr") or, for best
# proficiency, the requirement whose levels are scored.
Kind = str | SkillRequirement


class _Heap:
    """The available members of one pool in one strategy's order, as a binary heap of
    (key, agent_id) with lazy invalidation: an entry is live while its agent is in the pool's
    available set and `key_of` still holds that key. Becoming unavailable costs nothing here;
    stale entries are dropped when they reach the top, and the heap is compacted when stale
    ones outnumber the live (amortised O(1) per push)."""

    __slots__ = ("heap", "key_fn", "key_of")

    def __init__(self, key_fn: Callable[[str], tuple[Any, ...]]) -> None:
        self.heap: list[tuple[tuple[Any, ...], str]] = []
        self.key_of: dict[str, tuple[Any, ...]] = {}
        self.key_fn = key_fn  # the agent's key in this ordering now

    def add(self, agent_id: str, key: tuple[Any, ...], avail: set[str]) -> None:
        if self.key_of.get(agent_id) == key:
            return  # its entry is still in the heap, live again
        self.key_of[agent_id] = key
        heappush(self.heap, (key, agent_id))
        if len(self.heap) > 2 * len(avail) + 32:
            self.compact(avail)

    def discard(self, agent_id: str) -> None:
        pass  # lazy: the entry goes stale with the available set

    def compact(self, avail: set[str]) -> None:
        key_of = self.key_of
        live = {a: k for a, k in key_of.items() if a in avail}
        self.key_of = live
        self.heap = [(k, a) for a, k in live.items()]
        heapify(self.heap)

    def top(self, avail: set[str], skip: set[str], want: int = 2) -> list[str]:
        """The first `want` live agents not in `skip`, best first; the heap is left as it was
        minus stale entries."""
        heap, key_of = self.heap, self.key_of
        out: list[str] = []
        taken: list[tuple[tuple[Any, ...], str]] = []
        while heap and len(out) < want:
            key, a = heap[0]
            if a not in avail or key_of.get(a) != key:
                heappop(heap)
                if a not in avail and key_of.get(a) == key:
                    del key_of[a]
                continue
            item = heappop(heap)
            if a in out:
                continue  # a duplicate entry (same key pushed again): dropped
            taken.append(item)
            if a not in skip:
                out.append(a)
        for item in taken:
            heappush(heap, item)
        return out


class _Ordered:
    """The members of one pool in configured order (round robin, which starts anywhere): the
    key never changes while the rules stand, so members are kept sorted once and availability
    is read from the pool's available set as the list is walked from the cursor. Becoming
    (un)available costs nothing here (it used to be a sorted-list removal per pool on every
    offer); a member leaves only when its skills change."""

    __slots__ = ("agents", "key_fn", "key_of", "keys")

    def __init__(self, key_fn: Callable[[str], tuple[Any, ...]]) -> None:
        self.keys: list[tuple[Any, ...]] = []
        self.agents: list[str] = []
        self.key_of: dict[str, tuple[Any, ...]] = {}
        self.key_fn = key_fn

    def add(self, agent_id: str, key: tuple[Any, ...], avail: set[str]) -> None:
        old = self.key_of.get(agent_id)
        if old == key:
            return
        if old is not None:
            self.forget(agent_id)
        i = bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.agents.insert(i, agent_id)
        self.key_of[agent_id] = key

    def discard(self, agent_id: str) -> None:
        pass  # availability is read from the pool's set during the walk

    def forget(self, agent_id: str) -> None:
        key = self.key_of.pop(agent_id, None)
        if key is None:
            return
        i = bisect_left(self.keys, key)
        while self.agents[i] != agent_id:
            i += 1
        del self.keys[i]
        del self.agents[i]

    def first(self, rot: int, avail: set[str], skip: set[str], want: int = 2) -> list[str]:
        """The first `want` available members not in `skip` from the cursor on, wrapping."""
        agents = self.agents
        n = len(agents)
        i = bisect_left(self.keys, (rot,))
        out: list[str] = []
        for j in range(n):
            a = agents[(i + j) % n]
            if a in avail and a not in skip:
                out.append(a)
                if len(out) == want:
                    break
        return out


@dataclass(slots=True)
class WaitingCall:
    call_id: str
    attributes: CallAttributes
    plan: Plan
    pid: int  # index of `plan` in the router's plan list (groups waiting calls by plan)
    arrived_at: float  # first entered the ACD: waits are reported from here
    enqueued_at: float  # entered the current plan: relaxation counts from here
    boost: int
    seq: int
    stage_index: int = 0
    priority: int = 0
    tried: set[str] = field(default_factory=set)
    # the caller left for a call-back (docs/queue_callbacks.md): nobody on the line to send
    # to a fallback, so the max wait does not apply; the call waits until an agent takes it
    kept: bool = False

    @property
    def key(self) -> CallKey:
        return (-self.priority, self.enqueued_at, self.seq)


@dataclass(frozen=True, slots=True)
class Offer:
    offer_id: str
    call_id: str
    agent_id: str
    queue: str
    at: float
    waited_s: float
    ring_timeout_s: float
    wrap_up_s: float


@dataclass(slots=True)
class _Skills:
    yaml: Mapping[str, int]
    override: dict[str, int] | None = None

    @property
    def current(self) -> dict[str, int]:
        return dict(self.override if self.override is not None else self.yaml)


# One ordering an agent's pool has: (kind code, kind, structure); codes 0-3 for idle, calls,
# load, rr and 4 for a proficiency requirement.


class Router:
    def __init__(
        self, rules: RoutingRules, *, indexed: bool = True, index_min_members: int = 32
    ) -> None:
        self._indexed = indexed
        # Pools with fewer members than this are scanned: below ~30 agents keeping orderings
        # on every ready costs more than a scan of the pool's available set saves.
        self._index_min = index_min_members
        self._ix: dict[Pool, dict[Kind, _Heap | _Ordered]] = {}
        self._seq = 0
        self._offer_seq = 0
        self._decision_seq = 0
        self._calls: dict[str, WaitingCall] = {}  # waiting (not under offer)
        self._order: list[CallKey] = []
        self._by_key: dict[CallKey, str] = {}
        self._offered: dict[str, tuple[WaitingCall, Offer]] = {}  # call_id -> (call, offer)
        self._offer_by_id: dict[str, Offer] = {}
        self._offer_by_agent: dict[str, str] = {}
        self._available: set[str] = set()
        self._stats: dict[str, AgentStats] = {}
        self._skills: dict[str, _Skills] = {}
        self._rr: dict[str, int] = {}
        self._k_idle: dict[str, tuple[float, int]] = {}
        self._k_calls: dict[str, tuple[int, float, int]] = {}
        self._k_load: dict[str, tuple[float, float, int]] = {}
        self._install(rules)

    # ----- rules and agents -------------------------------------------------------------

    @property
    def rules(self) -> RoutingRules:
        return self._rules

    def _install(self, rules: RoutingRules) -> None:
        self._rules = rules
        default = Filter("default", None, (Target(rules.default_queue),))
        self._plans: list[Plan] = [build_plan(rules, f) for f in rules.filters]
        self._build_matcher()
        self._default_plan = build_plan(rules, default)
        self._queue_plans = {
            q: build_plan(rules, Filter(f"fallback to {q}", None, (Target(q),)))
            for q in rules.queues
        }
        self._all_plans: list[Plan] = [
            *self._plans,
            self._default_plan,
            *self._queue_plans.values(),
        ]
        self._pid_of: dict[int, int] = {id(p): i for i, p in enumerate(self._all_plans)}
        self._pool_pids: dict[Pool, set[int]] = {}
        for pid, plan in enumerate(self._all_plans):
            for pool in plan.pools:
                self._pool_pids.setdefault(pool, set()).add(pid)
        self._pools = set(self._pool_pids)
        # Pools by one skill they require (pools requiring none apply to everyone), so an agent
        # is tested only against pools that can hold them: indexing 20,000 agents against
        # 2,000 pools was 40 million requirement tests (about a minute per rules reload).
        self._pools_by_skill: dict[str, list[Pool]] = {}
        self._pools_any: list[Pool] = []
        for pool in self._pools:
            # A level of 0 or less is met without the skill: only a positive one can key.
            keyed = [skill for skill, level in pool.requirement.levels if level > 0]
            if keyed:
                self._pools_by_skill.setdefault(keyed[0], []).append(pool)
            else:
                self._pools_any.append(pool)
        # The orderings each pool needs: one per (strategy, primary) of the stages using it.
        self._kinds: dict[Pool, set[Kind]] = {}
        for plan in self._all_plans:
            for stage in plan.stages:
                kind = _kind_of(self._rules.queues[stage.queue].strategy, stage.primary)
                for pool in stage.pools:
                    self._kinds.setdefault(pool, set()).add(kind)
        self._plan_keys: list[list[CallKey]] = [[] for _ in self._all_plans]
        old_skills = self._skills
        self._skills = {}
        for agent in rules.agents.values():
            prev = old_skills.get(agent.id)
            keep = prev.override if prev is not None and prev.yaml == agent.skills else None
            self._skills[agent.id] = _Skills(dict(agent.skills), keep)
        for i, agent_id in enumerate(rules.agents):
            stats = self._stats.get(agent_id)
            if stats is None:
                stats = self._stats[agent_id] = AgentStats(order=i)
            stats.order = i
            stats.skills = self._skills[agent_id].current
        for gone in set(self._stats) - set(rules.agents):
            del self._stats[gone]
            self._available.discard(gone)
        self._rebuild_membership()

    def _rebuild_membership(self) -> None:
        self._members: dict[Pool, set[str]] = {p: set() for p in self._pools}
        self._avail: dict[Pool, set[str]] = {p: set() for p in self._pools}
        self._agent_pools: dict[str, list[Pool]] = {a: [] for a in self._rules.agents}
        self._agent_pids: dict[str, list[int]] = {a: [] for a in self._rules.agents}
        # Per agent, for each of its pools: the pool's available set and its orderings, so
        # becoming (un)available touches them without hashing a Pool.
        self._slots: dict[str, list[tuple[set[str], list[_Heap | _Ordered]]]] = {}
        self._scores: dict[SkillRequirement, dict[str, int]] = {}
        self._ix = {}
        for agent_id in self._rules.agents:
            self._index_agent(agent_id)
        if not self._indexed:
            return
        for pool, kinds in self._kinds.items():
            if len(self._members[pool]) < self._index_min:
                continue
            orderings = self._ix[pool] = {k: self._new_ordering(k) for k in kinds}
            members = self._avail[pool]
            for kind, ordered in orderings.items():
                for a in members:
                    ordered.add(a, self._index_key(kind, a), members)
        for agent_id in self._rules.agents:
            self._slots[agent_id] = self._slots_of(self._agent_pools[agent_id])

    def _index_agent(self, agent_id: str) -> None:
        profile = self._rules.agents[agent_id]
        skills = self._stats[agent_id].skills
        ctx: dict[str, Any] | None = None
        mine: list[Pool] = []
        by_skill = self._pools_by_skill
        possible = chain(self._pools_any, *(by_skill.get(s, ()) for s in skills))
        for pool in possible:
            if not pool.requirement.matches(skills):
                continue
            if pool.agents is not None:
                if ctx is None:
                    ctx = profile.expression_context()
                    ctx["agent"]["skills"] = dict(skills)
                if not pool.agents.test(ctx):
                    continue
            mine.append(pool)
            self._members[pool].add(agent_id)
            if agent_id in self._available:
                self._avail[pool].add(agent_id)
                for kind, ordered in self._ix.get(pool, {}).items():
                    ordered.add(agent_id, self._index_key(kind, agent_id), self._avail[pool])
        self._agent_pools[agent_id] = mine
        self._slots[agent_id] = self._slots_of(mine)
        self._agent_pids[agent_id] = sorted({pid for p in mine for pid in self._pool_pids[p]})
        self._scores = {}  # proficiency scores are cached per queue; skills changed

    def _slots_of(self, pools: list[Pool]) -> list[tuple[set[str], list[_Heap | _Ordered]]]:
        return [
            (self._avail[pool], list(self._ix.get(pool, {}).values()))
            for pool in pools
        ]

    def _unindex_agent(self, agent_id: str) -> None:
        for pool in self._agent_pools.get(agent_id, ()):
            self._members[pool].discard(agent_id)
            self._avail[pool].discard(agent_id)
            for ordered in self._ix.get(pool, {}).values():
                if isinstance(ordered, _Ordered):
                    ordered.forget(agent_id)
        self._agent_pools[agent_id] = []
        self._slots[agent_id] = []
        self._agent_pids[agent_id] = []

    def load_rules(self, rules: RoutingRules, now: float) -> list[Decision]:
        """Hot reload: waiting callers are re-planned under the new rules (keeping their wait)."""
        waiting = list(self._calls.values())
        self._calls.clear()
        self._order.clear()
        self._by_key.clear()
        self._install(rules)
        for call in waiting:
            call.plan, call.pid = self._plan_for(call.attributes)
            call.boost = rules.tier_boost(call.attributes)
            self._restage(call, now)
            self._list(call)
        for call, _offer in self._offered.values():
            call.plan, call.pid = self._plan_for(call.attributes)
            call.boost = rules.tier_boost(call.attributes)
        return self._match_all(now, "rules_reloaded")

    def agent(self, agent_id: str) -> AgentProfile:
        try:
            return self._rules.agents[agent_id]
        except KeyError:
            raise NotFound(f"unknown agent {agent_id!r}") from None

    def skills_of(self, agent_id: str) -> dict[str, int]:
        self.agent(agent_id)
        return dict(self._stats[agent_id].skills)

    def set_skills(self, agent_id: str, skills: Mapping[str, int], now: float) -> list[Decision]:
        """Change an agent's skills at run time (API); kept across reloads unless the YAML for
        this agent changes."""
        self.agent(agent_id)
        self._unindex_agent(agent_id)
        self._skills[agent_id].override = dict(skills)
        self._stats[agent_id].skills = dict(skills)
        self._index_agent(agent_id)
        if agent_id in self._available:
            d = self.agent_ready(agent_id, now)
            return [d] if d.outcome == "offered" else []
        return []

    def is_available(self, agent_id: str) -> bool:
        return agent_id in self._available

    def agent_ready(self, agent_id: str, now: float, *, after_call: bool = False) -> Decision:
        """The agent became available: give them the best waiting call they qualify for."""
        self.agent(agent_id)
        if agent_id in self._offer_by_agent:
            raise Conflict(f"agent {agent_id} still holds offer {self._offer_by_agent[agent_id]}")
        stats = self._stats[agent_id]
        if after_call or (agent_id not in self._available and stats.idle_since == 0.0):
            stats.idle_since = now
        self._available.add(agent_id)
        self._set_keys(agent_id, stats)
        slots = self._slots[agent_id]
        for members, _orderings in slots:
            members.add(agent_id)
        decision = self._find_call_for(agent_id, now)
        if decision.outcome != "offered":
            # Still available: into each pool's orderings. An agent offered a call at once
            # (the busy case) never enters them, saving a push per ordering.
            for members, orderings in slots:
                for ordered in orderings:
                    ordered.add(agent_id, ordered.key_fn(agent_id), members)
        return decision

    def _index_key(self, kind: Kind, agent_id: str) -> tuple[Any, ...]:
        """The key an ordering sorts by; equal to `_key_function`'s up to a rotation (round
        robin) so the head of the list is the agent `min()` over the candidates would pick."""
        if kind == "idle":
            return self._k_idle[agent_id]
        if kind == "calls":
            return self._k_calls[agent_id]
        if kind == "load":
            return self._k_load[agent_id]
        if kind == "rr":
            return (self._stats[agent_id].order,)
        assert isinstance(kind, SkillRequirement)
        skills = self._stats[agent_id].skills
        return (-sum(skills.get(s, 0) for s, _ in kind.levels), self._k_idle[agent_id])

    def _new_ordering(self, kind: Kind) -> _Heap | _Ordered:
        if kind == "rr":
            stats = self._stats
            return _Ordered(lambda a: (stats[a].order,))
        if kind == "idle":
            return _Heap(self._k_idle.__getitem__)
        if kind == "calls":
            return _Heap(self._k_calls.__getitem__)
        if kind == "load":
            return _Heap(self._k_load.__getitem__)
        return _Heap(lambda a: self._index_key(kind, a))

    def _ordered(self, pool: Pool, kind: Kind) -> _Heap | _Ordered | None:
        # Every ordering a stage needs is built with the pools in `_rebuild_membership`,
        # except for pools too small to index (None: scan them).
        orderings = self._ix.get(pool)
        return orderings[kind] if orderings is not None else None

    def _set_keys(self, agent_id: str, stats: AgentStats) -> None:
        # While an agent is available its strategy keys do not change, so they are computed
        # once here and `min()` runs over plain dict lookups. Occupancy decays at the same
        # rate for every idle agent, so log(load) + t/window orders them at any later time.
        self._k_idle[agent_id] = (stats.idle_since, stats.order)
        self._k_calls[agent_id] = (stats.calls_taken, stats.idle_since, stats.order)
        load = stats.load_at(stats.load_t, self._rules.occupancy_window_s)
        lk = (
            math.log(load) + stats.load_t / self._rules.occupancy_window_s
            if load > 0
            else -math.inf
        )
        self._k_load[agent_id] = (lk, stats.idle_since, stats.order)

    def _score_of(self, primary: SkillRequirement) -> dict[str, int]:
        scores = self._scores.get(primary)
        if scores is None:
            scores = self._scores[primary] = {
                a: sum(st.skills.get(s, 0) for s, _ in primary.levels)
                for a, st in self._stats.items()
            }
        return scores

    def agent_unready(self, agent_id: str) -> None:
        """The agent paused, logged out or is otherwise busy; offers stay as they are."""
        if agent_id not in self._available:
            return
        self._available.discard(agent_id)
        for members, _orderings in self._slots.get(agent_id, ()):
            members.discard(agent_id)  # the orderings are lazy: they read these sets

    def agent_call_started(self, agent_id: str, now: float) -> None:
        stats = self._stats.get(agent_id)
        if stats is None:  # removed by a rules reload while ringing: the call still goes on
            return
        stats.calls_taken += 1
        stats.set_busy(True, now, self._rules.occupancy_window_s)

    def agent_call_ended(self, agent_id: str, now: float) -> None:
        stats = self._stats.get(agent_id)
        if stats is not None:
            stats.set_busy(False, now, self._rules.occupancy_window_s)
            stats.idle_since = now

    def occupancy(self, agent_id: str, now: float) -> float:
        return self._stats[agent_id].load_at(now, self._rules.occupancy_window_s)

    # ----- calls ------------------------------------------------------------------------

    def _build_matcher(self) -> None:
        """Consecutive filters of the form `name == literal` on the same name become one
        dict lookup (first filter wins, as in order); others are tested one by one."""
        segments: list[tuple[str | None, Any]] = []
        for pid, flt in enumerate(self._rules.filters):
            eq = flt.condition.equality if flt.condition is not None else None
            if eq is not None and segments and segments[-1][0] == eq[0]:
                segments[-1][1].setdefault(eq[1], pid)
            elif eq is not None:
                segments.append((eq[0], {eq[1]: pid}))
            else:
                segments.append((None, pid))
        self._segments = segments

    def _plan_for(self, attributes: CallAttributes) -> tuple[Plan, int]:
        filters = self._rules.filters
        for name, item in self._segments:
            if name is None:
                cond = filters[item].condition
                if cond is None or cond.test(attributes):
                    return self._plans[item], item
                continue
            value = (
                attributes[name]
                if name in attributes
                else lookup(attributes, tuple(name.split(".")))
            )
            try:
                pid = item.get(value)
            except TypeError:  # an unhashable attribute value equals no literal
                continue
            if pid is not None:
                return self._plans[pid], pid
        return self._default_plan, len(self._plans)

    def _list(self, call: WaitingCall) -> None:
        key = call.key
        insort(self._order, key)
        insort(self._plan_keys[call.pid], key)
        self._by_key[key] = call.call_id
        self._calls[call.call_id] = call

    def _unlist(self, call: WaitingCall) -> None:
        key = call.key
        for keys in (self._order, self._plan_keys[call.pid]):
            i = bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                del keys[i]
        self._by_key.pop(key, None)
        self._calls.pop(call.call_id, None)

    def _restage(self, call: WaitingCall, now: float) -> Stage:
        idx = call.plan.stage_index(now - call.enqueued_at)
        stage = call.plan.stages[idx]
        call.stage_index = idx
        call.priority = stage.priority + call.boost
        return stage

    def enqueue(
        self, call_id: str, attributes: CallAttributes, now: float, *, since: float | None = None
    ) -> Decision:
        """A call enters the ACD at `now`; `since`: it entered earlier (an adopted call, on
        this router's clock), and takes its place and counts its wait from then."""
        if call_id in self._calls or call_id in self._offered:
            raise Conflict(f"call {call_id} is already in the ACD")
        self._seq += 1
        plan, pid = self._plan_for(attributes)
        entered = now if since is None else min(since, now)
        call = WaitingCall(
            call_id,
            dict(attributes),
            plan,
            pid,
            entered,
            entered,
            self._rules.tier_boost(attributes),
            self._seq,
        )
        self._restage(call, now)
        self._list(call)
        return self._offer_call(call, now, "call_arrived")

    def transfer(
        self, call_id: str, attributes: CallAttributes, now: float, *, queue: str,
        agent_id: str | None = None, since: float | None = None,
    ) -> Decision:
        """An agent's one-click transfer of a call that was connected: it waits in `queue` like
        a new arrival (keeping its attributes), or is offered straight to `agent_id`, who must
        be available. Should that agent not answer, the call stays waiting in `queue`.
        `since`: an adopted call's original entry (see `enqueue`)."""
        if call_id in self._calls or call_id in self._offered:
            raise Conflict(f"call {call_id} is already in the ACD")
        if queue not in self._queue_plans:
            raise NotFound(f"unknown queue {queue!r}")
        if agent_id is not None:
            self.agent(agent_id)
            if agent_id not in self._available or agent_id in self._offer_by_agent:
                raise Conflict(f"agent {agent_id} is not available")
        self._seq += 1
        plan = self._queue_plans[queue]
        entered = now if since is None else min(since, now)
        call = WaitingCall(
            call_id, dict(attributes), plan, self._pid_of[id(plan)], entered, entered,
            self._rules.tier_boost(attributes), self._seq,
        )
        self._restage(call, now)
        self._list(call)
        if agent_id is None:
            return self._offer_call(call, now, "call_arrived")
        offer = self._reserve(call, agent_id, queue, now)
        return self._decision(
            "call_arrived", "offered", call, now, agent_id=agent_id, offer_id=offer.offer_id,
            candidates=1, reason=f"transferred to agent {agent_id}",
        )

    def keep(self, call_id: str) -> bool:
        """The waiting caller left for a call-back: the call keeps its place and is exempt
        from the max-wait fallback. False when it is not waiting (offered, gone)."""
        call = self._calls.get(call_id)
        if call is None:
            return False
        call.kept = True
        return True

    def restore_kept(
        self, call_id: str, attributes: CallAttributes, queue: str | None, waited_s: float,
        now: float,
    ) -> Decision:
        """A call-back waits again (after a restart, or for its next attempt) in `queue` (the
        rules' choice when gone) as if it had entered `waited_s` ago: ahead of the callers
        who came after it, behind those before it, as when it left."""
        if call_id in self._calls or call_id in self._offered:
            raise Conflict(f"call {call_id} is already in the ACD")
        if queue is not None and queue in self._queue_plans:
            plan = self._queue_plans[queue]
            pid = self._pid_of[id(plan)]
        else:
            plan, pid = self._plan_for(attributes)
        self._seq += 1
        entered = now - max(waited_s, 0.0)
        call = WaitingCall(call_id, dict(attributes), plan, pid, entered, entered,
                           self._rules.tier_boost(attributes), self._seq, kept=True)
        self._restage(call, now)
        self._list(call)
        return self._offer_call(call, now, "call_arrived")

    def waited(self, call_id: str, now: float) -> float | None:
        """Seconds since the waiting (or offered) call entered the ACD."""
        call = self._calls.get(call_id) or (self._offered.get(call_id) or (None, None))[0]
        return None if call is None else now - call.arrived_at

    def remove_call(self, call_id: str, now: float) -> tuple[Decision | None, Offer | None]:
        """The caller hung up: drop the call; an offer in flight is cancelled and returned so the
        caller of this method can stop the ringing and release the agent."""
        call = self._calls.get(call_id)
        offer: Offer | None = None
        if call is not None:
            self._unlist(call)
        elif call_id in self._offered:
            call, offer = self._offered.pop(call_id)
            self._drop_offer(offer)
        else:
            return None, None
        return self._decision(
            "caller_hangup",
            "abandoned",
            call,
            now,
            agent_id=offer.agent_id if offer else None,
            reason="caller hung up" + (" while the agent was ringing" if offer else " waiting"),
        ), offer

    def _drop_offer(self, offer: Offer) -> None:
        self._offer_by_id.pop(offer.offer_id, None)
        if self._offer_by_agent.get(offer.agent_id) == offer.offer_id:
            del self._offer_by_agent[offer.agent_id]

    def offer(self, offer_id: str) -> Offer | None:
        return self._offer_by_id.get(offer_id)

    def offer_of_agent(self, agent_id: str) -> Offer | None:
        oid = self._offer_by_agent.get(agent_id)
        return self._offer_by_id.get(oid) if oid else None

    def offer_of_call(self, call_id: str) -> Offer | None:
        item = self._offered.get(call_id)
        return item[1] if item else None

    def offer_answered(self, offer_id: str, now: float) -> Offer:
        offer = self._offer_by_id.get(offer_id)
        if offer is None:
            raise NotFound(f"no offer {offer_id}")
        self._offered.pop(offer.call_id, None)
        self._drop_offer(offer)
        self.agent_call_started(offer.agent_id, now)
        return offer

    def offer_failed(self, offer_id: str, now: float) -> tuple[Offer, Decision]:
        """Ring-no-answer or a failed ring: the call goes back to the head of its place (its
        original wait and priority) and is offered to the next agent; the agent stays
        unavailable until `agent_ready`."""
        offer = self._offer_by_id.get(offer_id)
        if offer is None:
            raise NotFound(f"no offer {offer_id}")
        call, _ = self._offered.pop(offer.call_id)
        self._drop_offer(offer)
        call.tried.add(offer.agent_id)
        self._restage(call, now)
        self._list(call)
        return offer, self._offer_call(call, now, "offer_missed")

    def tick(self, now: float) -> list[Decision]:
        """Re-evaluate every waiting call at its current wait: relaxation steps that came due
        widen the eligible agents; calls past max wait go to their fallback."""
        out: list[Decision] = []
        changed: list[WaitingCall] = []
        for call in list(self._calls.values()):
            wait = now - call.enqueued_at
            if not call.kept and call.plan.fallback_due(wait):
                out.extend(self._fall_back(call, now))
                continue
            idx = call.plan.stage_index(wait)
            if idx != call.stage_index:
                self._unlist(call)
                self._restage(call, now)
                self._list(call)
                changed.append(call)
        for call in sorted(changed, key=lambda c: c.key):
            if call.call_id in self._calls:
                d = self._offer_call(call, now, "tick")
                if d.outcome == "offered":
                    out.append(d)
        return out

    def _fall_back(self, call: WaitingCall, now: float) -> list[Decision]:
        self._unlist(call)
        fb: Fallback = call.plan.fallback
        waited = now - call.arrived_at
        if fb.action == "queue":
            call.plan = self._queue_plans[fb.queue]
            call.pid = self._pid_of[id(call.plan)]
            call.enqueued_at = now
            self._restage(call, now)
            self._list(call)
            d = self._decision(
                "tick",
                "fallback",
                call,
                now,
                queue=fb.queue,
                reason=f"max wait {call.plan.max_wait_s:g}s reached in {fb.queue!s}: "
                f"moved to queue {fb.queue} after {waited:.0f}s",
            )
            return [d, self._offer_call(call, now, "tick")]
        target = fb.mailbox or fb.queue
        return [
            self._decision(
                "tick",
                "fallback",
                call,
                now,
                reason=f"max wait reached after {waited:.0f}s: {fb.action}"
                + (f" {target}" if target else ""),
            )
        ]

    def _match_all(self, now: float, trigger: Trigger) -> list[Decision]:
        out = []
        for key in list(self._order):
            call_id = self._by_key.get(key)
            call = self._calls.get(call_id) if call_id else None
            if call is None:
                continue
            if not call.kept and call.plan.fallback_due(now - call.enqueued_at):
                out.extend(self._fall_back(call, now))
                continue
            d = self._offer_call(call, now, trigger)
            if d.outcome == "offered":
                out.append(d)
        return out

    # ----- the two decisions ------------------------------------------------------------

    def _offer_call(self, call: WaitingCall, now: float, trigger: Trigger) -> Decision:
        """Best available agent for this call, by its queue's strategy; reserve atomically."""
        stage = call.plan.stages[call.stage_index]
        queue = self._rules.queues[stage.queue]
        stats = self._stats
        window = self._rules.occupancy_window_s
        rr = self._rr.get(queue.name, 0)
        n = len(stats)
        strategy = queue.strategy
        primary = stage.primary
        picked = (
            self._pick_indexed(call, stage, strategy, rr, n)
            if self._indexed
            else self._pick_scan(call, stage, self._key_function(strategy, primary, rr, n))
        )
        if picked is None:
            return self._decision(
                trigger, "queued", call, now, stage=stage, reason="no qualified agent available"
            )
        ranked, n_cands, excluded = picked
        chosen = ranked[0]
        considered = tuple(
            Candidate(
                a,
                k := sort_key(
                    strategy,
                    stats[a],
                    now,
                    primary=primary,
                    window_s=window,
                    rr_cursor=rr,
                    n_agents=n,
                ),
                explain(strategy, k, now),
            )
            for a in ranked
        )
        self._rr[queue.name] = stats[chosen].order + 1
        offer = self._reserve(call, chosen, queue.name, now)
        return self._decision(
            trigger,
            "offered",
            call,
            now,
            stage=stage,
            agent_id=chosen,
            offer_id=offer.offer_id,
            candidates=n_cands,
            excluded=excluded,
            considered=considered,
            strategy=strategy.value,
            reason=f"{strategy.value}: {considered[0].why} among {n_cands} qualified",
        )

    def _pick_scan(
        self, call: WaitingCall, stage: Stage, key: Callable[[str], Any]
    ) -> tuple[list[str], int, tuple[str, ...]] | None:
        """The reference: union the pools' available sets and take `min()` by the key (what
        the router did before the orderings; kept for the equivalence property test)."""
        pools = stage.pools
        if len(pools) == 1:
            cands: set[str] = self._avail[pools[0]]
        else:
            cands = set().union(*[self._avail[p] for p in pools])
        excluded: tuple[str, ...] = ()
        if call.tried and cands:
            fresh = cands - call.tried
            if fresh:
                excluded = tuple(sorted(cands & call.tried))
                cands = fresh
            else:
                call.tried.clear()  # everyone qualified has missed it: start a new round
        if not cands:
            return None
        n_cands = len(cands)
        chosen = min(cands, key=key)
        ranked = [chosen]
        if n_cands > 1:
            ranked.append(min(cands - {chosen}, key=key))
        return ranked, n_cands, excluded

    def _pick_indexed(
        self, call: WaitingCall, stage: Stage, strategy: Strategy, rr: int, n: int
    ) -> tuple[list[str], int, tuple[str, ...]] | None:
        """Same answer as `_pick_scan` without scanning: the head (and runner-up) of each
        pool's ordering for the strategy, skipping agents that already missed this call."""
        pools = stage.pools
        sets = [self._avail[p] for p in pools]
        n_union = _union_size(sets)
        if n_union == 0:
            return None
        excluded: tuple[str, ...] = ()
        skip: set[str] = set()
        tried = call.tried
        if tried:
            hit = {a for a in tried if any(a in s for s in sets)}
            if hit and len(hit) == n_union:
                tried.clear()  # everyone qualified has missed it: start a new round
            else:
                excluded = tuple(sorted(hit))
                skip = hit
        n_cands = n_union - len(skip)
        kind = _kind_of(strategy, stage.primary)
        rot = rr % n if n else 0
        best: set[str] = set()
        key = self._merge_key(strategy, stage.primary, rr, n)
        for pool in pools:
            members = self._avail[pool]
            if not members:
                continue
            ordered = self._ordered(pool, kind)
            if ordered is None:  # a small pool: its two best by a scan
                cand = members - skip if skip else members
                if cand:
                    first = min(cand, key=key)
                    best.add(first)
                    if len(cand) > 1:
                        best.add(min((a for a in cand if a != first), key=key))
                continue
            if isinstance(ordered, _Heap):
                best.update(ordered.top(members, skip))
                continue
            best.update(ordered.first(rot, members, skip))
        ranked = sorted(best, key=key)[:2]
        return ranked, n_cands, excluded

    def _merge_key(
        self, strategy: Strategy, primary: SkillRequirement, rr: int, n: int
    ) -> Callable[[str], Any]:
        if strategy is Strategy.BEST_PROFICIENCY:
            # Scores cached per requirement as they are needed (reset when skills change),
            # not for every agent at once as `_score_of` does for the scan.
            scores = self._scores.setdefault(primary, {})
            idle, stats = self._k_idle, self._stats

            def prof_key(a: str) -> tuple[Any, ...]:
                score = scores.get(a)
                if score is None:
                    skills = stats[a].skills
                    score = scores[a] = sum(skills.get(s, 0) for s, _ in primary.levels)
                return (-score, idle[a])

            return prof_key
        return self._key_function(strategy, primary, rr, n)

    def _key_function(
        self, strategy: Strategy, primary: SkillRequirement, rr: int, n: int
    ) -> Callable[[str], Any]:
        if strategy is Strategy.LONGEST_IDLE:
            return self._k_idle.__getitem__
        if strategy is Strategy.FEWEST_CALLS:
            return self._k_calls.__getitem__
        if strategy is Strategy.LEAST_OCCUPIED:
            return self._k_load.__getitem__
        idle = self._k_idle
        if strategy is Strategy.BEST_PROFICIENCY:
            scores = self._score_of(primary)
            return lambda a: (-scores[a], idle[a])
        stats = self._stats
        return lambda a: ((stats[a].order - rr) % n, idle[a])

    def _find_call_for(self, agent_id: str, now: float) -> Decision:
        """Highest-priority, then longest-waiting call this agent qualifies for right now.

        Only the plans whose pools include this agent are searched; within a plan calls are
        in (priority, wait) order, so each plan's search stops at the first call that fits or
        once it cannot beat the best found so far."""
        members = self._members
        examined = 0
        best: WaitingCall | None = None
        best_key: CallKey | None = None
        best_stage: Stage | None = None
        for pid in self._agent_pids[agent_id]:
            for key in self._plan_keys[pid]:
                if best_key is not None and key >= best_key:
                    break
                examined += 1
                call = self._calls[self._by_key[key]]
                if agent_id in call.tried:
                    continue
                stage = call.plan.stage_at(now - call.enqueued_at)
                for pool in stage.pools:
                    if agent_id in members[pool]:
                        best, best_key, best_stage = call, key, stage
                        break
                else:
                    continue
                break
        if best is not None and best_stage is not None:
            call, stage = best, best_stage
            if stage.index != call.stage_index:
                self._unlist(call)
                self._restage(call, now)
                self._list(call)
            queue = self._rules.queues[stage.queue]
            offer = self._reserve(call, agent_id, queue.name, now)
            return self._decision(
                "agent_ready",
                "offered",
                call,
                now,
                stage=stage,
                agent_id=agent_id,
                offer_id=offer.offer_id,
                calls_considered=examined,
                candidates=1,
                reason=f"highest priority ({call.priority}) then longest wait "
                f"({now - call.arrived_at:.1f}s) among {len(self._order)} waiting",
            )
        self._decision_seq += 1
        return Decision(
            self._decision_seq,
            now,
            "agent_ready",
            "no_call",
            None,
            agent_id=agent_id,
            calls_considered=examined,
            reason="no waiting call this agent qualifies for",
        )

    def _reserve(self, call: WaitingCall, agent_id: str, queue: str, now: float) -> Offer:
        if agent_id in self._offer_by_agent:  # defence in depth: the sets should prevent it
            raise Conflict(f"agent {agent_id} already holds an offer")
        self._unlist(call)
        self.agent_unready(agent_id)
        self._offer_seq += 1
        q = self._rules.queues[queue]
        offer = Offer(
            f"o{self._offer_seq}",
            call.call_id,
            agent_id,
            queue,
            now,
            now - call.arrived_at,
            q.ring_timeout_s,
            q.wrap_up_s,
        )
        self._offered[call.call_id] = (call, offer)
        self._offer_by_id[offer.offer_id] = offer
        self._offer_by_agent[agent_id] = offer.offer_id
        return offer

    def _decision(
        self,
        trigger: Trigger,
        outcome: Any,
        call: WaitingCall,
        now: float,
        *,
        stage: Stage | None = None,
        queue: str | None = None,
        **kw: Any,
    ) -> Decision:
        stage = stage or call.plan.stages[call.stage_index]
        self._decision_seq += 1
        return Decision(
            self._decision_seq,
            now,
            trigger,
            outcome,
            call.call_id,
            queue=queue or stage.queue,
            filter=call.plan.filter_name,
            waited_s=now - call.arrived_at,
            priority=call.priority,
            stage=stage.applied,
            pools=stage.described,
            **kw,
        )

    # ----- queries ----------------------------------------------------------------------

    def waiting_calls(self) -> list[WaitingCall]:
        return [self._calls[self._by_key[k]] for k in self._order]

    def waiting_count(self) -> int:
        return len(self._order)

    def is_waiting(self, call_id: str) -> bool:
        return call_id in self._calls

    def position(self, call_id: str) -> int | None:
        call = self._calls.get(call_id)
        if call is None:
            return None
        return bisect_left(self._order, call.key) + 1

    def queue_of(self, call_id: str) -> str | None:
        call = self._calls.get(call_id) or (
            self._offered[call_id][0] if call_id in self._offered else None
        )
        return call.plan.stages[call.stage_index].queue if call else None

    def attributes_of(self, call_id: str) -> CallAttributes | None:
        call = self._calls.get(call_id) or (
            self._offered[call_id][0] if call_id in self._offered else None
        )
        return call.attributes if call else None

    def available_agents(self) -> Iterable[str]:
        return iter(self._available)

    def offers(self) -> list[Offer]:
        return list(self._offer_by_id.values())

    def qualified(self, call_id: str, agent_id: str, now: float) -> bool:
        call = self._calls.get(call_id) or (
            self._offered[call_id][0] if call_id in self._offered else None
        )
        if call is None:
            return False
        stage = call.plan.stage_at(now - call.enqueued_at)
        return any(agent_id in self._members[p] for p in stage.pools)


def _kind_of(strategy: Strategy, primary: SkillRequirement) -> Kind:
    if strategy is Strategy.LONGEST_IDLE:
        return "idle"
    if strategy is Strategy.FEWEST_CALLS:
        return "calls"
    if strategy is Strategy.LEAST_OCCUPIED:
        return "load"
    if strategy is Strategy.BEST_PROFICIENCY:
        return primary
    return "rr"


def _union_size(sets: list[set[str]]) -> int:
    """Members of the union, counted without building it: the largest set, plus members of
    the others not already in a larger one (one pool, the common case, is just its size)."""
    if len(sets) == 1:
        return len(sets[0])
    ordered = sorted(sets, key=len, reverse=True)
    total = len(ordered[0])
    for i in range(1, len(ordered)):
        bigger = ordered[:i]
        total += sum(1 for a in ordered[i] if not any(a in b for b in bigger))
    return total
