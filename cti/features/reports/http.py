"""Reports over HTTP, for supervisors: the historical figures of a period (JSON or CSV) and the
live wallboard's current tiles (the same figures, pushed on the supervisors' socket as they
change)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from cti.events import Bus
from cti.features.auth.http import require_role
from cti.features.auth.service import Principal, Role
from cti.features.events.store import EventLog
from cti.features.reports.live import LiveStats
from cti.features.reports.service import build_report, to_csv
from cti.platform.bus import InProcessBus
from cti.platform.errors import ConfigError
from cti.platform.provide import provide

router = APIRouter(prefix="/reports", tags=["reports"])
Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]
MAX_PERIOD = timedelta(days=400)


class ReportOut(BaseModel):
    since: datetime
    until: datetime
    interval: str
    timezone: str
    queues: list[dict[str, Any]]
    agents: list[dict[str, Any]]


class WallboardOut(BaseModel):
    day: str
    queues: list[dict[str, Any]]
    agents: list[dict[str, Any]]


@router.get("/queues", response_model=None)
async def queue_report(
    who: Supervisor,
    log: Annotated[EventLog, Depends(provide(EventLog))],
    live: Annotated[LiveStats, Depends(provide(LiveStats))],
    bus: Annotated[InProcessBus, Depends(provide(InProcessBus))],
    since: datetime,
    until: datetime | None = None,
    interval: Literal["15m", "30m", "60m", "day", "all"] = "60m",
    tz: Annotated[str | None, Query(max_length=64)] = None,
    format: Literal["json", "csv"] = "json",
    of: Literal["queues", "agents"] = "queues",
) -> ReportOut | Response:
    """Figures per interval, queue and agent (docs/metrics.md) for `since` .. `until`
    (default: now), in the time zone `tz` (default: the routing rules' business hours')."""
    timezone = tz or live.tz.key
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {timezone!r}") from None
    since = since if since.tzinfo else since.replace(tzinfo=ZoneInfo(timezone))
    end = until or datetime.now(UTC)
    end = end if end.tzinfo else end.replace(tzinfo=ZoneInfo(timezone))
    if end <= since or end - since > MAX_PERIOD:
        raise ConfigError("the period must be positive and at most 400 days")
    await _settled(bus)
    report = await build_report(log, since, end, interval=interval, timezone=timezone,
                                targets=live.targets)
    if format == "csv":
        rows = report.queues if of == "queues" else report.agents
        return Response(to_csv(rows), media_type="text/csv; charset=utf-8")
    return ReportOut(since=report.since, until=report.until, interval=report.interval,
                     timezone=report.timezone, queues=report.queues, agents=report.agents)


@router.get("/live")
async def wallboard(
    who: Supervisor, live: Annotated[LiveStats, Depends(provide(LiveStats))],
    bus: Annotated[InProcessBus, Depends(provide(InProcessBus))],
) -> WallboardOut:
    """Today's tiles, as the supervisors' socket shows them."""
    await _settled(bus)
    snap = live.snapshot()
    return WallboardOut(day=snap["day"], queues=snap["queues"], agents=snap["agents"])


async def _settled(bus: Bus) -> None:
    await bus.drain(5.0)
