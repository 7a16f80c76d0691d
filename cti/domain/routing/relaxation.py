"""Relaxation over time: which agents a call may go to after a given wait, recomputed live.

A filter's targets and each target queue's relaxation steps become a `Plan`: the breakpoints
(waits at which the eligible set widens) and, for each interval, a `Stage` (pools of agents,
priority, the steps applied). `plan.stage_at(wait)` is a bisect, so the router can re-evaluate
every waiting call on each tick from its current wait instead of freezing the rules at join.
Targets accumulate: when a target's timeout passes the next target's agents are added, like
an overflow, and the earlier ones stay eligible.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from cti.domain.routing.expressions import Expression
from cti.domain.routing.model import Fallback, Filter, RoutingRules, SkillRequirement


@dataclass(frozen=True, slots=True)
class Pool:
    """Agents meeting `requirement` (and the target's agent expression, if any)."""

    requirement: SkillRequirement
    agents: Expression | None = None
    # Pools key the router's dicts on every ready and decision: the hash is computed once.
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.requirement, self.agents)))

    def __hash__(self) -> int:
        return self._hash

    def describe(self) -> str:
        return f"{self.requirement}" + (f" where {self.agents}" if self.agents else "")


@dataclass(frozen=True, slots=True)
class Stage:
    index: int
    pools: tuple[Pool, ...]
    queue: str  # the latest active target's queue: strategy, wrap-up, ring timeout come from it
    primary: SkillRequirement  # the queue's own skills, for proficiency scoring
    priority: int
    applied: tuple[str, ...]  # targets and relaxation steps in force, human-readable
    starts_at_s: float
    # The pools as text, for every decision's record: made once with the plan.
    described: tuple[str, ...] = field(init=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "described", tuple(p.describe() for p in self.pools))


@dataclass(frozen=True, slots=True)
class Plan:
    filter_name: str
    breakpoints: tuple[float, ...]  # breakpoints[i] = wait at which stages[i] begins
    stages: tuple[Stage, ...]
    max_wait_s: float
    fallback: Fallback
    fallback_queue: str  # the queue whose fallback applies

    def stage_index(self, wait_s: float) -> int:
        return max(bisect_right(self.breakpoints, wait_s) - 1, 0)

    def stage_at(self, wait_s: float) -> Stage:
        return self.stages[self.stage_index(wait_s)]

    def fallback_due(self, wait_s: float) -> bool:
        return wait_s >= self.max_wait_s

    @property
    def pools(self) -> set[Pool]:
        return {p for s in self.stages for p in s.pools}


def build_plan(rules: RoutingRules, flt: Filter) -> Plan:
    starts: list[float] = []
    t = 0.0
    for target in flt.targets:
        starts.append(t)
        t += target.timeout_s if target.timeout_s is not None else 0.0
    last = flt.targets[-1]
    last_queue = rules.queues[last.queue]
    if last.timeout_s is not None:
        max_wait = starts[-1] + last.timeout_s
    else:
        max_wait = starts[-1] + last_queue.max_wait_s
    points = set(starts)
    for start, target in zip(starts, flt.targets, strict=True):
        for step in rules.queues[target.queue].relaxation:
            points.add(start + step.after_s)
    breakpoints = tuple(sorted(p for p in points if p < max_wait))
    stages = tuple(_stage_at(rules, flt, starts, i, b) for i, b in enumerate(breakpoints))
    return Plan(flt.name, breakpoints, stages, max_wait, last_queue.fallback, last_queue.name)


def _stage_at(
    rules: RoutingRules, flt: Filter, starts: list[float], index: int, wait: float
) -> Stage:
    pools: list[Pool] = []
    applied: list[str] = []
    priority: int | None = None
    current = flt.targets[0]
    for start, target in zip(starts, flt.targets, strict=True):
        if start > wait:
            break
        current = target
        queue = rules.queues[target.queue]
        applied.append(f"target {target.queue}" + (f" ({target.agents})" if target.agents else ""))
        prio = target.priority if target.priority is not None else queue.priority
        priority = prio if priority is None else max(priority, prio)
        floor: int | None = None
        extra: list[Pool] = []
        for step in queue.relaxation:
            if start + step.after_s > wait:
                continue
            applied.append(f"{queue.name}: {step.describe()}")
            if step.kind == "lower_proficiency":
                floor = step.min_proficiency if floor is None else min(floor, step.min_proficiency)
            elif step.kind == "add_skill":
                extra.append(Pool(SkillRequirement.of({step.skill: step.level}), target.agents))
            else:
                extra.append(Pool(rules.queues[step.queue].skills, target.agents))
        base = queue.skills if floor is None else queue.skills.lowered_to(floor)
        for pool in (Pool(base, target.agents), *extra):
            if pool not in pools:
                pools.append(pool)
    queue = rules.queues[current.queue]
    return Stage(index, tuple(pools), queue.name, queue.skills, priority or 0, tuple(applied), wait)
