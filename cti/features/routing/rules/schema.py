"""The routing-rules file as pydantic models (extra="forbid": an unknown key is an error)."""

from __future__ import annotations

from datetime import date, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from cti.domain.routing.model import MAX_PROFICIENCY, MIN_PROFICIENCY, Strategy

Level = int
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _levels(v: dict[str, int]) -> dict[str, int]:
    for skill, level in v.items():
        if not MIN_PROFICIENCY <= level <= MAX_PROFICIENCY:
            raise ValueError(
                f"proficiency of {skill!r} must be {MIN_PROFICIENCY}..{MAX_PROFICIENCY}, "
                f"got {level}"
            )
    return v


class ServiceLevel(Strict):
    percent: float = Field(default=80.0, gt=0, le=100)
    seconds: float = Field(default=20.0, gt=0)
    # sl: answered within `seconds` / answered; sl2: abandons in the denominator too, as
    # Asterisk's servicelevelperf2 (docs/metrics.md)
    mode: Literal["sl", "sl2"] = "sl"
    # callers who hang up before this are short abandons: counted apart, not against SL
    short_abandon_s: float = Field(default=5.0, ge=0, le=600)


class FallbackSpec(Strict):
    action: Literal["callback", "voicemail", "queue"]
    queue: str | None = None
    mailbox: str | None = None

    @model_validator(mode="after")
    def _queue_needed(self) -> FallbackSpec:
        if self.action == "queue" and not self.queue:
            raise ValueError("action 'queue' needs 'queue: NAME'")
        if self.action != "queue" and self.queue:
            raise ValueError(f"'queue' is only for action 'queue', not {self.action!r}")
        return self


class RelaxationSpec(Strict):
    after_s: float = Field(gt=0)
    min_proficiency: int | None = Field(default=None, ge=MIN_PROFICIENCY, le=MAX_PROFICIENCY)
    add_skill: str | None = None
    level: int = Field(default=MIN_PROFICIENCY, ge=MIN_PROFICIENCY, le=MAX_PROFICIENCY)
    add_queue: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RelaxationSpec:
        given = [
            k for k in ("min_proficiency", "add_skill", "add_queue") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "each relaxation step needs exactly one of min_proficiency, add_skill, add_queue"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class AnnounceSpec(Strict):
    """What a waiting caller hears between the hold music: position and/or estimated wait."""

    position: bool = True
    estimated_wait: bool = True
    first_after_s: float = Field(default=0.0, ge=0, le=86400)  # 0 = on joining the queue
    every_s: float = Field(default=30.0, ge=0, le=3600)  # 0 = only once

    @model_validator(mode="after")
    def _check(self) -> AnnounceSpec:
        if 0 < self.every_s < 1:
            raise ValueError(f"every_s must be 0 (once) or at least 1 s, got {self.every_s:g}")
        return self


class WallboardSpec(Strict):
    """Where the queue's wallboard tiles turn amber and red (docs/reports.md)."""

    sl_warn_points: float = Field(default=10.0, ge=0, le=100)  # amber this far below the goal
    asa_s: tuple[float, float] | None = None  # amber, red: ASA at or above
    abandonment_percent: tuple[float, float] | None = None  # amber, red
    longest_wait_s: tuple[float, float] | None = None  # amber, red: the longest wait now

    @model_validator(mode="after")
    def _check(self) -> WallboardSpec:
        for name in ("asa_s", "abandonment_percent", "longest_wait_s"):
            pair = getattr(self, name)
            if pair is not None and not 0 <= pair[0] <= pair[1]:
                raise ValueError(f"{name}: [amber, red] with 0 <= amber <= red, got {list(pair)}")
        return self


class QueueSpec(Strict):
    description: str = ""
    skills: dict[str, int] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=0, le=1000)
    strategy: Strategy = Strategy.LONGEST_IDLE
    service_level: ServiceLevel = ServiceLevel()
    max_wait_s: float = Field(default=300.0, gt=0, le=86400)
    wrap_up_s: float = Field(default=10.0, ge=0, le=3600)
    ring_timeout_s: float = Field(default=15.0, gt=0, le=300)
    relaxation: list[RelaxationSpec] = Field(default_factory=list)
    fallback: FallbackSpec = FallbackSpec(action="voicemail")
    moh_class: str = "default"
    announce: AnnounceSpec = AnnounceSpec()
    announce_position: bool | None = None  # older spelling of announce.position
    aht_s: float = Field(default=180.0, gt=0, le=86400)  # for the wait estimate, until history
    record: StrictBool = False  # record its calls, both parties, bridge-up to hang-up
    wallboard: WallboardSpec = WallboardSpec()  # tile colours
    survey: StrictBool = False  # the caller hears the satisfaction survey after the agent leaves

    @model_validator(mode="after")
    def _check(self) -> QueueSpec:
        _levels(self.skills)
        return self


class TierSpec(Strict):
    priority_boost: int = Field(ge=0, le=1000)
    description: str = ""


class AgentSpec(Strict):
    name: str = ""
    endpoint: str | None = None  # default PJSIP/<id>
    team: str = ""
    capacity: int = Field(default=1, ge=1, le=1)  # voice: one call at a time
    skills: dict[str, int] = Field(default_factory=dict)
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> AgentSpec:
        _levels(self.skills)
        return self


class TargetSpec(Strict):
    queue: str
    priority: int | None = Field(default=None, ge=0, le=1000)
    timeout_s: float | None = Field(default=None, gt=0, le=86400)
    agents: str | None = None  # agent expression, e.g. agent.team == "north"


class FilterSpec(Strict):
    name: str
    when: str | None = None  # condition on call attributes; absent = always
    targets: list[TargetSpec] = Field(min_length=1)


class OpeningSpec(Strict):
    days: list[Day] = Field(min_length=1)
    open: time
    close: time

    @model_validator(mode="after")
    def _order(self) -> OpeningSpec:
        if self.close <= self.open:
            raise ValueError(f"close {self.close} must be after open {self.open}")
        return self


class BusinessHoursSpec(Strict):
    timezone: str = "Asia/Shanghai"
    weekly: list[OpeningSpec] = Field(min_length=1)
    holidays: list[date] = Field(default_factory=list)
    after_hours: FallbackSpec = FallbackSpec(action="voicemail")


class RulesFile(Strict):
    version: Literal[1] = 1
    skills: list[str] | dict[str, str] = Field(min_length=1)
    tiers: dict[str, TierSpec] = Field(default_factory=dict)
    tier_attribute: str = "tier"
    queues: dict[str, QueueSpec] = Field(min_length=1)
    default_queue: str
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    rules: list[FilterSpec] = Field(default_factory=list)
    business_hours: BusinessHoursSpec | None = None
    max_missed_offers: int = Field(default=3, ge=1, le=100)
    occupancy_window_s: float = Field(default=1800.0, gt=0)
