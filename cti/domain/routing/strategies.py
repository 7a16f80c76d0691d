"""Agent-selection strategies: each turns an agent's routing stats into a sort key; lowest wins.

Ties always fall back to longest idle, then the agent's configured order, so a decision is
deterministic and explainable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cti.domain.routing.model import SkillRequirement, Strategy


@dataclass(slots=True)
class AgentStats:
    """What the strategies read about an agent; the router updates it from injected times."""

    order: int
    idle_since: float = 0.0
    calls_taken: int = 0
    load: float = 0.0  # exponentially weighted share of recent time on calls
    load_t: float = 0.0
    busy: bool = False
    skills: dict[str, int] = field(default_factory=dict)

    def load_at(self, now: float, window_s: float) -> float:
        target = 1.0 if self.busy else 0.0
        dt = max(now - self.load_t, 0.0)
        return target + (self.load - target) * math.exp(-dt / window_s)

    def set_busy(self, busy: bool, now: float, window_s: float) -> None:
        self.load = self.load_at(now, window_s)
        self.load_t = now
        self.busy = busy


SortKey = tuple[float, float, float]


def sort_key(
    strategy: Strategy,
    stats: AgentStats,
    now: float,
    *,
    primary: SkillRequirement,
    window_s: float,
    rr_cursor: int,
    n_agents: int,
) -> SortKey:
    if strategy is Strategy.LONGEST_IDLE:
        return (stats.idle_since, stats.order, 0.0)
    if strategy is Strategy.LEAST_OCCUPIED:
        return (round(stats.load_at(now, window_s), 9), stats.idle_since, stats.order)
    if strategy is Strategy.FEWEST_CALLS:
        return (stats.calls_taken, stats.idle_since, stats.order)
    if strategy is Strategy.BEST_PROFICIENCY:
        score = sum(stats.skills.get(s, 0) for s, _ in primary.levels)
        return (-score, stats.idle_since, stats.order)
    # Round robin: the next agent in configured order after the last one this queue chose.
    return ((stats.order - rr_cursor) % max(n_agents, 1), 0.0, 0.0)


def explain(strategy: Strategy, key: SortKey, now: float) -> str:
    if strategy is Strategy.LONGEST_IDLE:
        return f"longest idle ({now - key[0]:.1f}s)"
    if strategy is Strategy.LEAST_OCCUPIED:
        return f"least occupied ({key[0]:.0%} recent occupancy)"
    if strategy is Strategy.FEWEST_CALLS:
        return f"fewest calls ({key[0]:g})"
    if strategy is Strategy.BEST_PROFICIENCY:
        return f"best proficiency (score {-key[0]:g}), then longest idle ({now - key[1]:.1f}s)"
    return f"round robin (position {key[0]:g} after the last chosen)"
