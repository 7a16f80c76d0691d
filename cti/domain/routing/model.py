"""The routing model: skills, queues, agents, tiers, the rule filters, and a call's attributes.

Compiled from the YAML rules (cti.features.routing.rules); plain frozen values the router reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from enum import StrEnum
from typing import Any, Literal

from cti.domain.routing.expressions import Expression

MIN_PROFICIENCY = 1
MAX_PROFICIENCY = 5

CallAttributes = Mapping[str, Any]


class Strategy(StrEnum):
    LONGEST_IDLE = "longest_idle"
    LEAST_OCCUPIED = "least_occupied"
    FEWEST_CALLS = "fewest_calls"
    BEST_PROFICIENCY = "best_proficiency"
    ROUND_ROBIN = "round_robin"


@dataclass(frozen=True, slots=True)
class SkillRequirement:
    """Every listed skill at or above its level. Hashable: the router caches members per value."""

    levels: tuple[tuple[str, int], ...]
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash(self.levels))

    def __hash__(self) -> int:
        return self._hash

    @staticmethod
    def of(levels: Mapping[str, int]) -> SkillRequirement:
        return SkillRequirement(tuple(sorted(levels.items())))

    def matches(self, skills: Mapping[str, int]) -> bool:
        return all(skills.get(skill, 0) >= level for skill, level in self.levels)

    def lowered_to(self, floor: int) -> SkillRequirement:
        return SkillRequirement(tuple((s, min(lv, floor)) for s, lv in self.levels))

    def __str__(self) -> str:
        return "+".join(f"{s}>={lv}" for s, lv in self.levels) or "any"


RelaxKind = Literal["lower_proficiency", "add_skill", "add_queue"]


@dataclass(frozen=True, slots=True)
class RelaxationStep:
    """After `after_s` in a queue the set of eligible agents widens by this step."""

    after_s: float
    kind: RelaxKind
    min_proficiency: int = 0  # lower_proficiency: cap every required level to this
    skill: str = ""  # add_skill: agents with this skill (at `level`) also qualify
    level: int = MIN_PROFICIENCY
    queue: str = ""  # add_queue: agents qualified for this queue also qualify

    def describe(self) -> str:
        if self.kind == "lower_proficiency":
            return f"after {self.after_s:g}s: min proficiency {self.min_proficiency}"
        if self.kind == "add_skill":
            return f"after {self.after_s:g}s: add skill {self.skill}>={self.level}"
        return f"after {self.after_s:g}s: add overflow queue {self.queue}"


FallbackKind = Literal["callback", "voicemail", "queue"]


@dataclass(frozen=True, slots=True)
class Fallback:
    action: FallbackKind
    queue: str = ""  # for action == "queue"
    mailbox: str = ""  # for action == "voicemail"


@dataclass(frozen=True, slots=True)
class Announcements:
    """What a caller waiting in a queue is told over the hold music, and when: the first time
    after `first_after_s` of waiting (0 = on joining), then every `every_s` (0 = only once)."""

    position: bool = True
    estimated_wait: bool = True
    first_after_s: float = 0.0
    every_s: float = 30.0

    @property
    def enabled(self) -> bool:
        return self.position or self.estimated_wait


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where a queue's wallboard tiles turn amber and red: (amber, red) pairs, shares for
    rates; the service level is amber within `sl_warn` below its goal, red under that."""

    sl_warn: float = 0.1
    asa_s: tuple[float, float] | None = None
    abandonment: tuple[float, float] | None = None
    longest_wait_s: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    skills: SkillRequirement
    priority: int = 0
    strategy: Strategy = Strategy.LONGEST_IDLE
    service_level_percent: float = 80.0
    service_level_s: float = 20.0
    max_wait_s: float = 300.0
    fallback: Fallback = Fallback("voicemail")
    wrap_up_s: float = 10.0
    ring_timeout_s: float = 15.0
    relaxation: tuple[RelaxationStep, ...] = ()
    moh_class: str = "default"
    announce: Announcements = Announcements()
    aht_s: float = 180.0  # average handling time assumed until the queue has history
    record: bool = False  # calls answered from this queue are recorded (both parties)
    thresholds: Thresholds = Thresholds()  # the wallboard's tile colours
    survey: bool = False  # after-call satisfaction survey when the agent hangs up first
    sl_mode: Literal["sl", "sl2"] = "sl"  # how its service level is computed (docs/metrics.md)
    short_abandon_s: float = 5.0  # abandons before this are short: apart from SL and the rate

    @property
    def announce_position(self) -> bool:
        return self.announce.position


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    priority_boost: int


@dataclass(frozen=True, slots=True)
class AgentProfile:
    id: str
    endpoint: str  # what the PBX dials, e.g. "PJSIP/1001"
    skills: Mapping[str, int]
    name: str = ""
    team: str = ""
    capacity: int = 1
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def expression_context(self) -> dict[str, Any]:
        return {
            "agent": {
                "id": self.id,
                "name": self.name,
                "team": self.team,
                "skills": dict(self.skills),
                **dict(self.attributes),
            }
        }


@dataclass(frozen=True, slots=True)
class Target:
    """One step of a filter: offer the call to a queue's agents for `timeout_s` (None = until
    max wait), optionally narrowed by an agent expression, at a priority."""

    queue: str
    priority: int | None = None
    timeout_s: float | None = None
    agents: Expression | None = None


@dataclass(frozen=True, slots=True)
class Filter:
    name: str
    condition: Expression | None
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    days: frozenset[int]  # 0 = Monday
    opens: time
    closes: time


@dataclass(frozen=True, slots=True)
class BusinessHours:
    timezone: str
    weekly: tuple[WeeklyHours, ...]
    holidays: frozenset[date] = frozenset()
    after_hours: Fallback = Fallback("voicemail")


@dataclass(frozen=True, slots=True)
class RoutingRules:
    skills: tuple[str, ...]
    queues: Mapping[str, Queue]
    tiers: Mapping[str, Tier]
    agents: Mapping[str, AgentProfile]
    filters: tuple[Filter, ...]
    default_queue: str
    business_hours: BusinessHours | None = None
    max_missed_offers: int = 3
    occupancy_window_s: float = 1800.0
    tier_attribute: str = "tier"
    source: str = ""

    def tier_boost(self, attributes: CallAttributes) -> int:
        tier = self.tiers.get(str(attributes.get(self.tier_attribute, "")))
        return tier.priority_boost if tier else 0
