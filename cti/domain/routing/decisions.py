"""Explainable routing: a record of every decision — what was considered, what applied, why."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Trigger = Literal[
    "call_arrived",
    "agent_ready",
    "tick",
    "offer_missed",
    "rules_reloaded",
    "caller_hangup",
    "closed",
]
Outcome = Literal["offered", "queued", "fallback", "no_call", "abandoned", "after_hours"]


@dataclass(frozen=True, slots=True)
class Candidate:
    agent_id: str
    key: tuple[float, ...]
    why: str


@dataclass(frozen=True, slots=True)
class Decision:
    seq: int
    at: float  # router time (monotonic seconds); the service stamps wall time when storing
    trigger: Trigger
    outcome: Outcome
    call_id: str | None
    agent_id: str | None = None
    offer_id: str | None = None
    queue: str = ""
    filter: str = ""
    strategy: str = ""
    waited_s: float = 0.0
    priority: int = 0
    stage: tuple[str, ...] = ()  # targets and relaxation steps in force
    pools: tuple[str, ...] = ()  # the skill filters those produce
    candidates: int = 0  # qualified agents available at decision time
    excluded: tuple[str, ...] = ()  # qualified but skipped (e.g. already missed this call)
    considered: tuple[Candidate, ...] = ()  # the best few, in rank order
    calls_considered: int = 0  # for an agent freed: waiting calls examined
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
