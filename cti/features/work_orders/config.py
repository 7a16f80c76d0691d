"""config/work_orders.yaml: types, severities, SLAs, the status flow and the escalation rules.

Validated like the routing rules: pydantic with extra="forbid" (an unknown key is an error),
then the references (a severity, team or escalation target that is not declared, a flow that
lacks the reopen moves); every error names file:line:col. `WorkOrderRules` keeps the running
config when a reload finds a broken file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cti.domain.callbacks import CallbackPolicy
from cti.domain.work_orders import (
    REQUIRED_MOVES,
    EscalationRule,
    OrderType,
    Sla,
    Status,
    WorkOrderConfig,
)
from cti.features.routing.rules.loader import _Errors
from cti.platform.errors import ConfigError
from cti.platform.log import get_logger
from cti.platform.yaml_source import load_yaml, parse_yaml, validate_yaml

log = get_logger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlaSpec(_Strict):
    resolve_within_h: float = Field(gt=0, le=24 * 365)
    priority: int = Field(ge=1, le=9)
    reminders_before_min: list[float] = Field(default_factory=list, max_length=10)
    acknowledge_within_min: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _reminders(self) -> SlaSpec:
        for m in self.reminders_before_min:
            if m <= 0 or m >= self.resolve_within_h * 60:
                raise ValueError(
                    f"a reminder {m} min before due must be > 0 and within the "
                    f"{self.resolve_within_h} h SLA"
                )
        return self


class TypeSpec(_Strict):
    team: str
    complaint: bool = False
    sla: dict[str, SlaSpec] = Field(min_length=1)


class EscalationSpec(_Strict):
    name: str = Field(min_length=1, max_length=64)
    to: str
    types: list[str] = Field(default_factory=list)
    severities: list[str] | None = None
    no_progress_for_h: float | None = Field(default=None, gt=0)
    repeat_complaints: int | None = Field(default=None, ge=2)
    within_days: float | None = Field(default=None, gt=0)
    not_acknowledged: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EscalationSpec:
        given = [k for k in ("severities", "no_progress_for_h", "repeat_complaints",
                             "not_acknowledged") if getattr(self, k) not in (None, False)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one condition of severities, no_progress_for_h, "
                f"repeat_complaints, not_acknowledged (got: {', '.join(given) or 'none'})"
            )
        if self.within_days is not None and self.repeat_complaints is None:
            raise ValueError("within_days goes with repeat_complaints")
        return self


class CallbackSpec(_Strict):
    """A resolved complaint's call-back: attempts in all, and the wait between them."""

    attempts: int = Field(default=3, ge=1, le=10)
    retry_after_min: float = Field(default=10, gt=0, le=24 * 60)
    agent_poll_min: float = Field(default=1, gt=0, le=60)


class WorkOrdersFile(_Strict):
    severities: list[str] = Field(min_length=1)
    teams: list[str] = Field(min_length=1)
    escalation_targets: dict[str, str] = Field(default_factory=dict)
    types: dict[str, TypeSpec] = Field(min_length=1)
    flow: dict[Status, list[Status]] | None = None
    escalations: list[EscalationSpec] = Field(default_factory=list)
    callback: CallbackSpec | None = None


def load_work_orders(path: Path) -> WorkOrderConfig:
    return _compile(load_yaml(path), str(path))


def parse_work_orders(text: str, source: str = "<work_orders>") -> WorkOrderConfig:
    return _compile(parse_yaml(text, source), source)


def _compile(tree: Any, source: str) -> WorkOrderConfig:
    if tree is not None and not isinstance(tree, dict):
        raise ConfigError(f"{source}:1:1: expected a mapping at the top level")
    spec = validate_yaml(WorkOrdersFile, tree, source)
    errors = _Errors(tree, source)
    severities, teams = spec.severities, set(spec.teams)

    def known(kind: str, name: str, among: Any, loc: list[int | str], *, value: bool = True
              ) -> None:
        if name not in among:
            errors.add(loc, f"unknown {kind} {name!r} (known: {', '.join(among)})", value=value)

    for target, team in spec.escalation_targets.items():
        known("team", team, spec.teams, ["escalation_targets", target])
    types: dict[str, OrderType] = {}
    for tname, t in spec.types.items():
        known("team", t.team, spec.teams, ["types", tname, "team"])
        for sev, s in t.sla.items():
            known("severity", sev, severities, ["types", tname, "sla", sev], value=False)
            if s.acknowledge_within_min is not None and not t.complaint:
                errors.add(["types", tname, "sla", sev, "acknowledge_within_min"],
                           "an acknowledgement deadline is for complaint types only")
        types[tname] = OrderType(tname, t.complaint, t.team, {
            sev: Sla(
                resolve_within=timedelta(hours=s.resolve_within_h), priority=s.priority,
                reminders_before=tuple(timedelta(minutes=m) for m in s.reminders_before_min),
                acknowledge_within=(timedelta(minutes=s.acknowledge_within_min)
                                    if s.acknowledge_within_min is not None else None),
            ) for sev, s in t.sla.items()
        })
    flow = None
    if spec.flow is not None:
        flow = {st: frozenset(spec.flow.get(st, [])) for st in Status}
        for a, b in REQUIRED_MOVES:
            if b not in flow[a]:
                errors.add(["flow", a.value] if a.value in spec.flow else ["flow"],
                           f"the flow must allow {a.value} -> {b.value}")
    rules: list[EscalationRule] = []
    names: set[str] = set()
    complaint_types = [n for n, t in spec.types.items() if t.complaint]
    for i, e in enumerate(spec.escalations):
        loc: list[int | str] = ["escalations", i]
        if e.name in names:
            errors.add([*loc, "name"], f"duplicate rule name {e.name!r}", value=True)
        names.add(e.name)
        known("escalation target", e.to, spec.escalation_targets, [*loc, "to"])
        for j, tn in enumerate(e.types):
            if tn not in complaint_types:
                errors.add([*loc, "types", j],
                           f"{tn!r} is not a complaint type (complaint types: "
                           f"{', '.join(complaint_types) or 'none'})", value=True)
        for j, sev in enumerate(e.severities or []):
            known("severity", sev, severities, [*loc, "severities", j])
        rules.append(EscalationRule(
            name=e.name, target=e.to, types=frozenset(e.types),
            severities=frozenset(e.severities or ()),
            no_progress_for=(timedelta(hours=e.no_progress_for_h)
                             if e.no_progress_for_h is not None else None),
            repeat_count=e.repeat_complaints,
            repeat_within=timedelta(days=e.within_days) if e.within_days is not None else None,
            not_acknowledged=bool(e.not_acknowledged),
        ))
    if spec.escalations and not complaint_types:
        errors.add(["escalations"], "escalation rules need at least one complaint type")
    errors.raise_if_any()
    cb = spec.callback
    config = WorkOrderConfig(
        types=types, severities=tuple(severities), teams=frozenset(teams),
        targets=dict(spec.escalation_targets), escalations=tuple(rules),
        callback=CallbackPolicy(
            attempts=cb.attempts, retry_after=timedelta(minutes=cb.retry_after_min),
            agent_poll=timedelta(minutes=cb.agent_poll_min),
        ) if cb is not None else None,
    )
    return config if flow is None else _with_flow(config, flow)


def _with_flow(config: WorkOrderConfig, flow: dict[Status, frozenset[Status]]
               ) -> WorkOrderConfig:
    from dataclasses import replace

    return replace(config, flow=flow)


def summarize(config: WorkOrderConfig) -> str:
    lines = [f"{len(config.types)} types, {len(config.severities)} severities "
             f"({', '.join(config.severities)}), {len(config.escalations)} escalation rules"]
    for t in config.types.values():
        slas = ", ".join(f"{sev} {s.resolve_within.total_seconds() / 3600:g} h P{s.priority}"
                         for sev, s in t.sla.items())
        kind = "complaint" if t.complaint else "request"
        lines.append(f"  {t.name} ({kind}, team {t.team}): {slas}")
    for r in config.escalations:
        lines.append(f"  escalation {r.name} -> {r.target} ({config.targets[r.target]})")
    if config.callback is not None:
        c = config.callback
        lines.append(f"  complaint call-back: {c.attempts} attempts, "
                     f"{c.retry_after.total_seconds() / 60:g} min apart")
    return "\n".join(lines)


class WorkOrderRules:
    """The running config; `reload()` swaps in a good file and keeps the old on a bad one."""

    def __init__(self, path: Path, config: WorkOrderConfig | None = None) -> None:
        self.path = path
        self.config = config if config is not None else load_work_orders(path)

    def reload(self) -> tuple[bool, str]:
        try:
            self.config = load_work_orders(self.path)
        except ConfigError as exc:
            log.warning("work_orders.reload_rejected", path=str(self.path), error=exc.message)
            return False, exc.message
        return True, summarize(self.config)
