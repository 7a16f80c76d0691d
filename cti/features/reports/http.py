"""Reports over HTTP, for supervisors: the historical figures of a period (JSON or CSV) and the
live wallboard's current tiles (the same figures, pushed on the supervisors' socket as they
change)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from cti.events import Bus
from cti.features.auth.http import require_role
from cti.features.auth.service import Principal, Role
from cti.features.events.store import EventLog
from cti.features.reports.charts import MEDIA, Metric, render
from cti.features.reports.live import LiveStats
from cti.features.reports.rollups import Rollups
from cti.features.reports.service import QuarterSource, Report, build_report, to_csv
from cti.features.routing.acd import Acd
from cti.features.surveys.service import Surveys
from cti.platform.bus import InProcessBus
from cti.platform.errors import ConfigError
from cti.platform.http_guards import error_responses
from cti.platform.provide import ServiceMissing, provide

# 422 also for a period or time zone the report cannot take (config_invalid)
router = APIRouter(prefix="/reports", tags=["reports"], responses=error_responses(401, 403, 422))
Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]
MAX_PERIOD = timedelta(days=400)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 1, 1, tzinfo=UTC)


class ReportOut(BaseModel):
    since: datetime
    until: datetime
    interval: str
    timezone: str
    business_hours_only: bool = False
    source: str = "events"
    queues: list[dict[str, Any]]
    agents: list[dict[str, Any]]
    teams: list[dict[str, Any]] = []


class WallboardOut(BaseModel):
    day: str
    queues: list[dict[str, Any]]
    agents: list[dict[str, Any]]
    series: dict[str, list[dict[str, Any]]] = {}


IntervalQ = Literal["15m", "30m", "60m", "day", "week", "month", "all"]


async def _report(
    log: EventLog, live: LiveStats, bus: InProcessBus, conn: HTTPConnection,
    since: datetime, until: datetime | None, interval: str, tz: str | None, hours: str,
    source: str,
) -> Report:
    timezone = tz or live.tz.key
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {timezone!r}") from None
    since = since if since.tzinfo else since.replace(tzinfo=ZoneInfo(timezone))
    now = datetime.now(UTC)
    end = until or now
    end = end if end.tzinfo else end.replace(tzinfo=ZoneInfo(timezone))
    if end <= since or end - since > MAX_PERIOD:
        raise ConfigError("the period must be positive and at most 400 days")
    if since < EARLIEST or end > LATEST:  # a day of warm-up before, a month after: no overflow
        raise ConfigError("the period must lie between 1970 and 9998")
    await _settled(bus)
    rules = None
    with contextlib.suppress(ServiceMissing):
        rules = provide(Acd)(conn).core.rules
    surveys = None
    with contextlib.suppress(ServiceMissing):
        surveys = provide(Surveys)(conn).store
    quarters: QuarterSource | None = None
    if source == "auto" and not (_on_quarter(since) and (_on_quarter(end) or end >= now)):
        # the kept quarter hours would count a whole quarter for a period starting or ending
        # inside it: such a period is folded from the events, exactly
        source = "events"
    if source != "events":
        try:
            quarters = provide(Rollups)(conn)
        except ServiceMissing:
            if source == "rollups":
                raise
    return await build_report(log, since, end, interval=interval, timezone=timezone,
                              targets=live.targets, rules=rules,
                              business_hours_only=hours == "business", source=quarters,
                              surveys=surveys)


def _on_quarter(t: datetime) -> bool:
    u = t.astimezone(UTC)
    return u.minute % 15 == 0 and u.second == 0 and u.microsecond == 0


Hours = Annotated[Literal["all", "business"], Query(
    description="all hours, or only the business hours and days of the routing rules")]
Source = Annotated[Literal["auto", "rollups", "events"], Query(
    description="kept quarter hours (fast), or fold the events now; the same figures. auto: "
    "the quarter hours when the period starts and ends on quarter hours (or ends now)")]


@router.get(
    "/queues", response_model=None,
    responses={200: {
        "description": "The figures: JSON (`format=json`), or the rows as CSV (`format=csv`)",
        "model": ReportOut, "content": {"text/csv": {"schema": {"type": "string"}}},
    }},
)
async def queue_report(
    who: Supervisor,
    request: Request,
    log: Annotated[EventLog, Depends(provide(EventLog))],
    live: Annotated[LiveStats, Depends(provide(LiveStats))],
    bus: Annotated[InProcessBus, Depends(provide(InProcessBus))],
    since: datetime,
    until: datetime | None = None,
    interval: IntervalQ = "60m",
    tz: Annotated[str | None, Query(max_length=64)] = None,
    format: Literal["json", "csv"] = "json",
    of: Literal["queues", "agents", "teams"] = "queues",
    hours: Hours = "all",
    source: Source = "auto",
) -> ReportOut | Response:
    """Figures per interval (15/30/60 minutes, day, week, month) and queue, agent and team
    (docs/metrics.md, docs/reports.md) for `since` .. `until` (default: now), in the time zone
    `tz` (default: the routing rules' business hours'), with Erlang C's staffing per queue."""
    report = await _report(log, live, bus, request, since, until, interval, tz, hours, source)
    if format == "csv":
        rows = {"queues": report.queues, "agents": report.agents, "teams": report.teams}[of]
        return Response(to_csv(rows), media_type="text/csv; charset=utf-8")
    return ReportOut(since=report.since, until=report.until, interval=report.interval,
                     timezone=report.timezone, business_hours_only=report.business_hours_only,
                     source=report.source, queues=report.queues, agents=report.agents,
                     teams=report.teams)


@router.get(
    "/queues/chart.{ext}", response_model=None,
    responses={200: {"description": "The report's charts as an image",
                     "content": {"image/svg+xml": {}, "image/png": {}}}},
)
async def queue_chart(
    who: Supervisor,
    request: Request,
    ext: Literal["svg", "png"],
    log: Annotated[EventLog, Depends(provide(EventLog))],
    live: Annotated[LiveStats, Depends(provide(LiveStats))],
    bus: Annotated[InProcessBus, Depends(provide(InProcessBus))],
    since: datetime,
    until: datetime | None = None,
    interval: IntervalQ = "60m",
    tz: Annotated[str | None, Query(max_length=64)] = None,
    metric: Metric = "all",
    queue: Annotated[str | None, Query(max_length=64)] = None,
    hours: Hours = "all",
    source: Source = "auto",
) -> Response:
    """Calls per interval, service level (with each queue's goal), ASA, AHT and abandonment,
    one line per queue (or only `queue`), as SVG or PNG; or one of them, or one of the
    satisfaction figures (`csat_speed`, `csat_attitude`, `csat_resolved`, `csat_response`)."""
    report = await _report(log, live, bus, request, since, until, interval, tz, hours, source)
    rows = [r for r in report.queues if queue is None or r["queue"] == queue]
    goals = {r["queue"]: live.targets(r["queue"]).sl_goal for r in rows}
    title = (f"{queue or 'all queues'} · {report.since.date()} – {report.until.date()} · "
             f"{interval} · {report.timezone}")
    image = await asyncio.to_thread(render, rows, metric=metric, fmt=ext, title=title,
                                    goals=goals)
    return Response(image, media_type=MEDIA[ext])


@router.get("/live")
async def wallboard(
    who: Supervisor, live: Annotated[LiveStats, Depends(provide(LiveStats))],
    bus: Annotated[InProcessBus, Depends(provide(InProcessBus))],
) -> WallboardOut:
    """Today's tiles, as the supervisors' socket shows them."""
    await _settled(bus)
    snap = live.snapshot()
    return WallboardOut(day=snap["day"], queues=snap["queues"], agents=snap["agents"],
                        series=snap.get("series", {}))


async def _settled(bus: Bus) -> None:
    await bus.drain(5.0)
