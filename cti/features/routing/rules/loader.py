"""Load, validate and compile routing rules. Every error names file:line:col and the reason.

Checks beyond the schema: every queue and skill referenced exists; expressions parse and read
only what they may (conditions: call attributes; agent expressions: `agent.*`); only the last
target may run without a timeout; relaxation steps come in time order, before max wait, and
actually widen something; fallback queues do not loop; every queue can be served by at least
one configured agent (after its relaxation steps); agent endpoints are unique.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cti.domain.routing.expressions import Expression, ExpressionError, compile_expression
from cti.domain.routing.model import (
    AgentProfile,
    Announcements,
    BusinessHours,
    Fallback,
    Filter,
    Queue,
    RelaxationStep,
    RoutingRules,
    SkillRequirement,
    Target,
    Thresholds,
    Tier,
    WeeklyHours,
)
from cti.features.routing.rules.schema import DAYS, FallbackSpec, QueueSpec, RulesFile
from cti.platform.errors import ConfigError
from cti.platform.yaml_source import load_yaml, parse_yaml, position_of, validate_yaml

Loc = Sequence[int | str]


class _Errors:
    def __init__(self, tree: Any, source: str) -> None:
        self.tree = tree
        self.source = source
        self.items: list[tuple[int, int, str]] = []

    def add(self, loc: Loc, reason: str, *, value: bool = False, column_offset: int = 0) -> None:
        pos = _value_position(self.tree, loc) if value else position_of(self.tree, loc)
        line, col = pos or (1, 1)
        path = ".".join(str(p) for p in loc)
        self.items.append((line, col + column_offset, f"{path}: {reason}"))

    def raise_if_any(self) -> None:
        if self.items:
            self.items.sort()
            raise ConfigError(
                "\n".join(f"{self.source}:{line}:{col}: {msg}" for line, col, msg in self.items)
            )


def _value_position(root: Any, loc: Loc) -> tuple[int, int] | None:
    """Position of the value at `loc` (for a string, of its first character inside quotes)."""
    parent = root
    for key in loc[:-1]:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return position_of(root, loc)
    last = loc[-1]
    try:
        if isinstance(parent, CommentedMap) and last in parent:
            line, col = parent.lc.value(last)
        elif isinstance(parent, CommentedSeq) and isinstance(last, int):
            line, col = parent.lc.item(last)
        else:
            return position_of(root, loc)
        value = parent[last]
    except (KeyError, IndexError, TypeError):
        return position_of(root, loc)
    quoted = type(value).__name__ in ("SingleQuotedScalarString", "DoubleQuotedScalarString")
    return line + 1, col + 1 + (1 if quoted else 0)


def load_rules(path: Path) -> RoutingRules:
    tree = load_yaml(path)
    return _compile(tree, str(path))


def parse_rules(text: str, source: str = "<rules>") -> RoutingRules:
    return _compile(parse_yaml(text, source), source)


def _compile(tree: Any, source: str) -> RoutingRules:
    if tree is not None and not isinstance(tree, dict):
        raise ConfigError(f"{source}:1:1: expected a mapping at the top level")
    spec = validate_yaml(RulesFile, tree, source)
    errors = _Errors(tree, source)
    skills = tuple(spec.skills)  # a list, or a mapping of skill -> description
    known = set(skills)

    def check_skills(levels: dict[str, int], loc: Loc) -> None:
        for skill in levels:
            if skill not in known:
                errors.add([*loc, skill], f"unknown skill {skill!r} (known: {', '.join(skills)})")

    def check_queue_ref(name: str | None, loc: Loc, *, value: bool = True) -> None:
        if name is not None and name not in spec.queues:
            errors.add(
                loc, f"unknown queue {name!r} (known: {', '.join(spec.queues)})", value=value
            )

    if spec.default_queue not in spec.queues:
        check_queue_ref(spec.default_queue, ["default_queue"])

    for qname, q in spec.queues.items():
        qloc: list[int | str] = ["queues", qname]
        check_skills(q.skills, [*qloc, "skills"])
        _check_relaxation(spec, qname, q, qloc, errors, known)
        _check_fallback(q.fallback, [*qloc, "fallback"], errors, spec)
        _check_announce(q, qloc, errors)
    _check_fallback_cycles(spec, errors)

    endpoints: dict[str, str] = {}
    for aid, a in spec.agents.items():
        check_skills(a.skills, ["agents", aid, "skills"])
        endpoint = a.endpoint or f"PJSIP/{aid}"
        if endpoint in endpoints:
            errors.add(
                ["agents", aid], f"endpoint {endpoint} already used by agent {endpoints[endpoint]}"
            )
        endpoints[endpoint] = aid

    filters: list[Filter] = []
    for i, f in enumerate(spec.rules):
        floc: list[int | str] = ["rules", i]
        cond = _expression(f.when, [*floc, "when"], errors, agent_side=False)
        targets: list[Target] = []
        for j, t in enumerate(f.targets):
            tloc = [*floc, "targets", j]
            check_queue_ref(t.queue, [*tloc, "queue"])
            if t.timeout_s is None and j < len(f.targets) - 1:
                errors.add(
                    tloc,
                    "only the last target may omit timeout_s (later targets would never be tried)",
                )
            who = _expression(t.agents, [*tloc, "agents"], errors, agent_side=True)
            targets.append(Target(t.queue, t.priority, t.timeout_s, who))
        filters.append(Filter(f.name, cond, tuple(targets)))
    names = [f.name for f in spec.rules]
    for i, name in enumerate(names):
        if name in names[:i]:
            errors.add(["rules", i, "name"], f"duplicate rule name {name!r}", value=True)

    hours = _business_hours(spec, errors)
    errors.raise_if_any()

    queues = {name: _queue(name, q) for name, q in spec.queues.items()}
    agents = {
        aid: AgentProfile(
            aid,
            a.endpoint or f"PJSIP/{aid}",
            dict(a.skills),
            a.name,
            a.team,
            a.capacity,
            dict(a.attributes),
        )
        for aid, a in spec.agents.items()
    }
    rules = RoutingRules(
        skills=skills,
        queues=queues,
        tiers={n: Tier(n, t.priority_boost) for n, t in spec.tiers.items()},
        agents=agents,
        filters=tuple(filters),
        default_queue=spec.default_queue,
        business_hours=hours,
        max_missed_offers=spec.max_missed_offers,
        occupancy_window_s=spec.occupancy_window_s,
        tier_attribute=spec.tier_attribute,
        source=source,
    )
    _check_servable(rules, errors)
    errors.raise_if_any()
    return rules


def _expression(
    text: str | None, loc: Loc, errors: _Errors, *, agent_side: bool
) -> Expression | None:
    if text is None:
        return None
    try:
        expr = compile_expression(text)
    except ExpressionError as exc:
        errors.add(loc, f"{exc.message} in {text!r}", value=True, column_offset=exc.column - 1)
        return None
    for name in sorted(expr.names):
        root = name.split(".")[0]
        if agent_side and root != "agent":
            errors.add(loc, f"an agent expression reads only agent.* (found {name!r})", value=True)
        if not agent_side and root == "agent":
            errors.add(
                loc, f"a call condition cannot read {name!r}; use the target's 'agents'", value=True
            )
    return expr


def _check_relaxation(
    spec: RulesFile,
    qname: str,
    q: QueueSpec,
    qloc: list[int | str],
    errors: _Errors,
    known: set[str],
) -> None:
    prev = 0.0
    for k, step in enumerate(q.relaxation):
        sloc = [*qloc, "relaxation", k]
        if step.after_s < prev:
            errors.add(
                [*sloc, "after_s"], f"steps must be in time order ({step.after_s:g} < {prev:g})"
            )
        prev = step.after_s
        if step.after_s >= q.max_wait_s:
            errors.add(
                [*sloc, "after_s"],
                f"after_s {step.after_s:g} is not before max_wait_s "
                f"{q.max_wait_s:g}: the step could never apply",
            )
        if step.min_proficiency is not None:
            if not q.skills:
                errors.add(sloc, "min_proficiency on a queue without skills lowers nothing")
            elif all(level <= step.min_proficiency for level in q.skills.values()):
                errors.add(
                    [*sloc, "min_proficiency"],
                    f"min_proficiency {step.min_proficiency} "
                    f"lowers nothing (queue levels: {q.skills})",
                )
        if step.add_skill is not None and step.add_skill not in known:
            errors.add([*sloc, "add_skill"], f"unknown skill {step.add_skill!r}", value=True)
        if step.add_queue is not None:
            if step.add_queue not in spec.queues:
                errors.add([*sloc, "add_queue"], f"unknown queue {step.add_queue!r}", value=True)
            elif step.add_queue == qname:
                errors.add([*sloc, "add_queue"], "a queue cannot overflow into itself", value=True)


def _check_announce(q: QueueSpec, qloc: list[int | str], errors: _Errors) -> None:
    a = q.announce
    if q.announce_position is not None and "position" in a.model_fields_set:
        errors.add(
            [*qloc, "announce_position"],
            "give announce.position only (announce_position is its older spelling)",
        )
    if (a.position or a.estimated_wait) and a.first_after_s >= q.max_wait_s:
        errors.add(
            [*qloc, "announce", "first_after_s"],
            f"first_after_s {a.first_after_s:g} is not before max_wait_s {q.max_wait_s:g}: "
            "the caller would never hear it",
        )


def _check_fallback(fb: FallbackSpec, loc: Loc, errors: _Errors, spec: RulesFile) -> None:
    if fb.queue is not None and fb.queue not in spec.queues:
        errors.add([*loc, "queue"], f"unknown queue {fb.queue!r}", value=True)


def _check_fallback_cycles(spec: RulesFile, errors: _Errors) -> None:
    for start in spec.queues:
        seen = [start]
        q = spec.queues[start]
        while q.fallback.action == "queue" and q.fallback.queue in spec.queues:
            nxt = q.fallback.queue
            if nxt in seen:
                errors.add(
                    ["queues", start, "fallback", "queue"],
                    "fallback queues loop: " + " -> ".join([*seen, nxt]),
                    value=True,
                )
                break
            seen.append(nxt)
            q = spec.queues[nxt]


def _business_hours(spec: RulesFile, errors: _Errors) -> BusinessHours | None:
    bh = spec.business_hours
    if bh is None:
        return None
    try:
        ZoneInfo(bh.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.add(["business_hours", "timezone"], f"unknown time zone {bh.timezone!r}", value=True)
    _check_fallback(bh.after_hours, ["business_hours", "after_hours"], errors, spec)
    weekly = tuple(
        WeeklyHours(frozenset(DAYS.index(d) for d in o.days), o.open, o.close) for o in bh.weekly
    )
    return BusinessHours(bh.timezone, weekly, frozenset(bh.holidays), _fallback(bh.after_hours))


def _fallback(fb: FallbackSpec) -> Fallback:
    return Fallback(fb.action, fb.queue or "", fb.mailbox or "")


def _queue(name: str, q: QueueSpec) -> Queue:
    steps = tuple(
        RelaxationStep(s.after_s, "lower_proficiency", min_proficiency=s.min_proficiency)
        if s.min_proficiency is not None
        else RelaxationStep(s.after_s, "add_skill", skill=s.add_skill, level=s.level)
        if s.add_skill is not None
        else RelaxationStep(s.after_s, "add_queue", queue=s.add_queue or "")
        for s in q.relaxation
    )
    return Queue(
        name,
        SkillRequirement.of(q.skills),
        q.priority,
        q.strategy,
        q.service_level.percent,
        q.service_level.seconds,
        q.max_wait_s,
        _fallback(q.fallback),
        q.wrap_up_s,
        q.ring_timeout_s,
        steps,
        q.moh_class,
        Announcements(
            q.announce.position if q.announce_position is None else q.announce_position,
            q.announce.estimated_wait,
            q.announce.first_after_s,
            q.announce.every_s,
        ),
        q.aht_s,
        q.record,
        Thresholds(
            q.wallboard.sl_warn_points / 100, q.wallboard.asa_s,
            None if q.wallboard.abandonment_percent is None else (
                q.wallboard.abandonment_percent[0] / 100,
                q.wallboard.abandonment_percent[1] / 100),
            q.wallboard.longest_wait_s,
        ),
        q.survey,
        q.service_level.mode,
        q.service_level.short_abandon_s,
    )


def _check_servable(rules: RoutingRules, errors: _Errors) -> None:
    """A queue no configured agent can ever serve is an impossible rule (when agents are listed)."""
    if not rules.agents:
        return
    for q in rules.queues.values():
        reqs = [q.skills]
        for step in q.relaxation:
            if step.kind == "lower_proficiency":
                reqs.append(q.skills.lowered_to(step.min_proficiency))
            elif step.kind == "add_skill":
                reqs.append(SkillRequirement.of({step.skill: step.level}))
            else:
                reqs.append(rules.queues[step.queue].skills)
        if not any(r.matches(a.skills) for r in reqs for a in rules.agents.values()):
            errors.add(
                ["queues", q.name, "skills"],
                f"no agent can ever serve queue {q.name!r} (needs {q.skills}; "
                "check agents' skills or add a relaxation step)",
            )


def summarize(rules: RoutingRules) -> str:
    lines = [
        f"{rules.source}: ok",
        f"  {len(rules.skills)} skills, {len(rules.queues)} queues, {len(rules.agents)} agents, "
        f"{len(rules.tiers)} tiers, {len(rules.filters)} rules "
        f"(default queue {rules.default_queue})",
    ]
    for q in rules.queues.values():
        qualified = sum(1 for a in rules.agents.values() if q.skills.matches(a.skills))
        fb = q.fallback.action + (f" {q.fallback.queue}" if q.fallback.queue else "")
        lines.append(
            f"  queue {q.name}: needs {q.skills}, {q.strategy.value}, priority {q.priority}, "
            f"SL {q.service_level_percent:g}% in {q.service_level_s:g}s, max wait "
            f"{q.max_wait_s:g}s -> {fb}, {len(q.relaxation)} relaxation steps, "
            f"{qualified} agents qualified, {_announce_summary(q.announce)}"
        )
    for f in rules.filters:
        chain = " -> ".join(
            t.queue + (f"({t.timeout_s:g}s)" if t.timeout_s else "") for t in f.targets
        )
        lines.append(f"  rule {f.name!r}: when {f.condition or 'always'}: {chain}")
    if rules.tiers:
        lines.append(
            "  tiers: " + ", ".join(f"{t.name}+{t.priority_boost}" for t in rules.tiers.values())
        )
    if rules.business_hours:
        bh = rules.business_hours
        lines.append(
            f"  business hours ({bh.timezone}): "
            + "; ".join(
                f"{'/'.join(DAYS[d] for d in sorted(w.days))} {_hm(w.opens)}-{_hm(w.closes)}"
                for w in bh.weekly
            )
            + f"; {len(bh.holidays)} holidays; after hours -> {bh.after_hours.action}"
        )
    return "\n".join(lines)


def _announce_summary(a: Announcements) -> str:
    said = [w for w, on in (("position", a.position), ("wait", a.estimated_wait)) if on]
    if not said:
        return "no announcements"
    when = f"after {a.first_after_s:g}s" if a.first_after_s else "on joining"
    again = f", every {a.every_s:g}s" if a.every_s else ""
    return f"announces {'+'.join(said)} {when}{again}"


def _hm(t: time) -> str:
    return t.strftime("%H:%M")
