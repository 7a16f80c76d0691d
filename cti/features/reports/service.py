"""Historical reports: the kept events of a period folded into the figures of docs/metrics.md,
per interval (15/30/60 minutes), day, week or month, per queue, agent and team, in the
report's time zone, all hours or business hours only, with the staffing Erlang C asks for
beside the agents who were there, and the callers' satisfaction (surveys) per row. The same
fold (cti/domain/stats.py) serves the live wallboard, so both give the same numbers.

Every report is made from quarter hours (UTC-aligned, so they fit any time zone's hours): the
fold's figures add up (docs/metrics.md), so a quarter hour kept in the roll-ups
(`rollups.py`) or folded from the events just now sums into the same day or month.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from cti.domain.periods import CalendarPeriods, FixedPeriods, Periods, WholePeriod
from cti.domain.routing.hours import is_open
from cti.domain.routing.model import RoutingRules
from cti.domain.staffing import staffing_for_interval
from cti.domain.stats import AgentFigures, QueueFigures, QueueTargets, StatsFold
from cti.domain.survey import SatisfactionByKey, SurveyFact, SurveyFigures, satisfaction
from cti.features.events.store import EventLog

Interval = Literal["15m", "30m", "60m", "day", "week", "month", "all"]
INTERVALS: dict[str, timedelta | None] = {
    "15m": timedelta(minutes=15), "30m": timedelta(minutes=30), "60m": timedelta(hours=1),
    "day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=31),
    "all": None,
}
Of = Literal["queues", "agents", "teams"]
# The events the figures are made of (the rest are not read for a report).
STATS_EVENTS = (
    "CallQueued", "CallOffered", "CallConnected", "CallLeftQueue", "CallHeld", "CallResumed",
    "CallTransferred", "CallEnded", "OfferWithdrawn", "ProcedureStarted", "AgentStateChanged",
    "OutboundCallPlaced",  # calls agents placed: the agents' figures, not the queues'
)
READ_BATCH = 50_000
QUARTER = timedelta(minutes=15)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # quarter hours are counted from here
# Events read before a period's start, so a call offered just before it is known as such (and
# not counted again as answered in the period) and agents' states are known at its start.
WARM_UP = timedelta(days=1)


def quarter_hours() -> FixedPeriods:
    return FixedPeriods(QUARTER, EPOCH)


@dataclass
class Quarter:
    """One quarter hour's figures per queue and agent."""

    queues: dict[str, QueueFigures] = field(default_factory=dict)
    agents: dict[str, AgentFigures] = field(default_factory=dict)


Quarters = dict[datetime, Quarter]


class QuarterSource(Protocol):
    async def quarters(self, since: datetime, until: datetime) -> Quarters:
        """The quarter hours starting in [since, until)."""
        ...


@runtime_checkable
class PeriodSource(Protocol):
    async def period_sums(self, ranges: Sequence[tuple[datetime, datetime]],
                          ) -> dict[datetime, Quarter]:
        """Each range's figures, keyed by its start."""
        ...


class SatisfactionSource(Protocol):
    async def survey_facts(self, since: datetime, until: datetime) -> Sequence[SurveyFact]:
        """The surveys offered and stored in [since, until) (cti/features/surveys/)."""
        ...


def period_ranges(periods: Periods, since: datetime, until: datetime,
                  ) -> list[tuple[datetime, datetime]]:
    """The report's periods cut to [since, until) (the quarter hours before `since` in a first
    period are not in the report)."""
    out = []
    start = periods.start(since)
    while start < until:
        nxt = periods.next(start)
        out.append((max(start, since), min(nxt, until)))
        start = nxt
    return out


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime
    until: datetime
    interval: str
    timezone: str
    queues: list[dict[str, Any]]  # one row per interval and queue
    agents: list[dict[str, Any]]  # one row per interval and agent
    teams: list[dict[str, Any]] = field(default_factory=list)  # per interval and team
    business_hours_only: bool = False
    source: str = "events"


def day_start(at: datetime, tz: ZoneInfo) -> datetime:
    local = at.astimezone(tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def periods_for(interval: str, since: datetime, tz: ZoneInfo) -> Periods:
    if interval in ("day", "week", "month"):
        return CalendarPeriods(interval, tz)  # type: ignore[arg-type]
    step = INTERVALS[interval]
    if step is None:
        return WholePeriod(since)
    return FixedPeriods(step, day_start(since, tz))


async def fold_period(
    log: EventLog, since: datetime, until: datetime, *,
    targets: Callable[[str], QueueTargets], interval: timedelta | None = None,
    origin: datetime | None = None, periods: Periods | None = None,
) -> StatsFold:
    fold = StatsFold(targets, interval, origin or since, periods)
    after: int | None = None
    while True:
        rows = await log.read(since=since, until=until, after_seq=after, types=STATS_EVENTS,
                              limit=READ_BATCH)
        for row in rows:
            fold.apply(row.event())
        if len(rows) < READ_BATCH:
            break
        after = rows[-1].seq
    return fold.close(until)


class EventQuarters:
    """Quarter hours folded from the kept events just now (a day of warm-up before)."""

    def __init__(self, log: EventLog, targets: Callable[[str], QueueTargets]) -> None:
        self.log, self.targets = log, targets

    async def quarters(self, since: datetime, until: datetime) -> Quarters:
        # Quarters counted from `since` (the same as the kept ones when it is on a quarter
        # hour): a period starting inside a quarter counts from its start, not from the
        # quarter's, and loses nothing after it.
        fold = await fold_period(self.log, since - WARM_UP, until, targets=self.targets,
                                 periods=FixedPeriods(QUARTER, since))
        return quarters_of(fold, since, until)


def quarters_of(fold: StatsFold, since: datetime, until: datetime) -> Quarters:
    out: Quarters = {}
    for bucket in set(fold.queues) | set(fold.agents):
        if since <= bucket < until:
            out[bucket] = Quarter(dict(fold.queues.get(bucket, {})),
                                  dict(fold.agents.get(bucket, {})))
    return out


def _sum_into(quarters: Iterable[tuple[datetime, Quarter]], periods: Periods,
              ) -> dict[datetime, Quarter]:
    out: dict[datetime, Quarter] = defaultdict(Quarter)
    for bucket, quarter in sorted(quarters, key=lambda kv: kv[0]):
        into = out[periods.start(bucket)]
        for name, q in quarter.queues.items():
            into.queues.setdefault(name, QueueFigures()).add(q)
        for agent_id, a in quarter.agents.items():
            into.agents.setdefault(agent_id, AgentFigures()).add(a)
    return out


def _open_quarter(rules: RoutingRules | None, bucket: datetime) -> bool:
    return is_open(rules.business_hours if rules else None, bucket)


async def build_report(
    log: EventLog | None, since: datetime, until: datetime, *, interval: str = "60m",
    timezone: str = "UTC", targets: Callable[[str], QueueTargets] | None = None,
    rules: RoutingRules | None = None, business_hours_only: bool = False,
    source: QuarterSource | None = None, surveys: SatisfactionSource | None = None,
) -> Report:
    """The figures of [since, until) per `interval`; `source` the quarter hours' (default:
    fold the kept events now); `surveys` adds the satisfaction columns. Business hours and
    holidays, the agents' teams and the queues' eligible agents come from `rules`."""
    tz = ZoneInfo(timezone)
    targets = targets or (lambda _q: QueueTargets())
    if source is None:
        if log is None:
            raise ValueError("a report needs the event log or a source of quarter hours")
        source = EventQuarters(log, targets)
    periods = periods_for(interval, since, tz)
    if isinstance(source, PeriodSource) and not business_hours_only \
            and interval in ("day", "week", "month", "all"):
        # long periods: the database adds the kept quarter hours up
        summed = await source.period_sums(period_ranges(periods, since, until))
        grouped = {periods.start(lo): g for lo, g in summed.items() if g.queues or g.agents}
    else:
        quarters = await source.quarters(since, until)
        if business_hours_only:
            quarters = {b: q for b, q in quarters.items() if _open_quarter(rules, b)}
        grouped = _sum_into(quarters.items(), periods)
    csat_queues: SatisfactionByKey = {}
    csat_agents: SatisfactionByKey = {}
    if surveys is not None:
        def period_of(at: datetime) -> datetime | None:
            if business_hours_only and not _open_quarter(rules, quarter_hours().start(at)):
                return None
            return periods.start(at)

        csat_queues, csat_agents = satisfaction(await surveys.survey_facts(since, until),
                                                period_of)
    teams_of = {a.id: a.team or "-" for a in rules.agents.values()} if rules else {}
    step = INTERVALS[interval]
    queues, agents, teams = [], [], []
    no_csat = SurveyFigures()
    for bucket in sorted(set(grouped) | set(csat_queues) | set(csat_agents)):
        g = grouped.get(bucket, Quarter())
        cq, ca = csat_queues.get(bucket, {}), csat_agents.get(bucket, {})
        start = bucket.astimezone(tz).isoformat()
        end = min(periods.next(bucket), until) if step is not None else until
        length = (end - max(bucket, since)).total_seconds()
        for name in sorted(set(g.queues) | set(cq)):
            q, target = g.queues.get(name, QueueFigures()), targets(name)
            row: dict[str, Any] = {"interval_start": start, "queue": name,
                                   **q.as_dict(target.sl_mode)}
            row.update(_staffing(name, q, g.agents, length, target, rules))
            if surveys is not None:
                row.update(cq.get(name, no_csat).as_dict())
            queues.append(row)
        by_team: dict[str, AgentFigures] = {}
        team_csat: dict[str, SurveyFigures] = defaultdict(SurveyFigures)
        members: dict[str, int] = defaultdict(int)
        for agent_id in sorted(set(g.agents) | set(ca)):
            a = g.agents.get(agent_id, AgentFigures())
            team = teams_of.get(agent_id, "-")
            row = {"interval_start": start, "agent_id": agent_id, "team": team, **a.as_dict()}
            if surveys is not None:
                row.update(ca.get(agent_id, no_csat).as_dict())
                team_csat[team].add(ca.get(agent_id, no_csat))
            agents.append(row)
            by_team.setdefault(team, AgentFigures()).add(a)
            members[team] += a.logged_in_s > 0
        for team, a in sorted(by_team.items()):
            row = {"interval_start": start, "team": team, "agents_logged_in": members[team],
                   **a.as_dict()}
            if surveys is not None:
                row.update(team_csat[team].as_dict())
            teams.append(row)
    kind = "rollups" if not isinstance(source, EventQuarters) else "events"
    return Report(since, until, interval, timezone, queues, agents, teams, business_hours_only,
                  kind)


def _staffing(
    queue: str, q: QueueFigures, agents: dict[str, AgentFigures], length_s: float,
    target: QueueTargets, rules: RoutingRules | None,
) -> dict[str, Any]:
    """Erlang C's agents for the queue's goal from the interval's arrivals and AHT (the
    queue's configured AHT where no call was handled), beside its eligible agents who were
    logged in (how many, and their logged-in time as agents present on average)."""
    spec = rules.queues.get(queue) if rules else None
    eligible = [a for a in rules.agents.values() if spec is not None and spec.skills.matches(
        a.skills)] if rules else []
    present = [agents[a.id] for a in eligible if a.id in agents and agents[a.id].logged_in_s > 0]
    aht = q.aht_s or target.aht_s
    need = staffing_for_interval(q.offered, length_s, aht, target.sl_s, target.sl_goal) \
        if length_s > 0 else None
    return {
        "traffic_erlangs": need.traffic_erlangs if need else None,
        "agents_needed": need.agents_needed if need else None,
        "agents_logged_in": len(present),
        "agents_present_avg": (sum(a.logged_in_s for a in present) / length_s
                               if length_s > 0 else None),
    }


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV; nested figures (pause by reason, procedures) as `key=value;…`."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({
            k: ";".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict)
            else (round(v, 4) if isinstance(v, float) else v)
            for k, v in row.items()
        })
    return out.getvalue()
