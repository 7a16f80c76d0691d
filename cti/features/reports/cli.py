"""`cti report`: the historical figures of a period (docs/metrics.md) from the kept events."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from cti.platform.errors import CtiError


def report(
    since: Annotated[str, typer.Option(help="start, ISO 8601 (2026-12-01, 2026-12-01T08:00)")],
    until: Annotated[str | None, typer.Option(help="end (exclusive); default now")] = None,
    interval: Annotated[str, typer.Option(
        help="15m, 30m, 60m, day, week, month or all")] = "60m",
    tz: Annotated[str, typer.Option(help="time zone of the intervals and of dates given")] = "UTC",
    of: Annotated[str, typer.Option(help="queues, agents or teams")] = "queues",
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    hours: Annotated[str, typer.Option(
        help="all, or business (the routing rules' business hours and holidays only)")] = "all",
    source: Annotated[str, typer.Option(
        help="events (fold the kept events) or rollups (the quarter hours the service keeps; "
             "fast over months)")] = "events",
    chart: Annotated[Path | None, typer.Option(
        help="also draw the queues' charts into this .svg or .png file")] = None,
    metric: Annotated[str, typer.Option(
        help="the chart: all, calls, sl, asa, aht, abandonment, csat_speed, csat_attitude, "
             "csat_resolved or csat_response")] = "all",
    config: Annotated[Path | None, typer.Option("-c", "--config", help="config YAML")] = None,
) -> None:
    """Figures per interval and queue, agent or team (with Erlang C staffing per queue) from
    the kept event stream; optionally the charts as an image."""
    from cti.domain.stats import QueueTargets
    from cti.features.events.store import EventLog
    from cti.features.reports.charts import METRICS, render
    from cti.features.reports.rollups import Rollups
    from cti.features.reports.service import INTERVALS, build_report, to_csv
    from cti.features.routing.rules import load_rules
    from cti.features.surveys.storage import SurveyStore
    from cti.platform.db.base import make_engine, make_sessionmaker
    from cti.platform.settings import load_settings

    def fail(message: str) -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2)

    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"unknown time zone {tz!r}")
    if interval not in INTERVALS:
        fail(f"--interval must be one of {', '.join(INTERVALS)}")
    if of not in ("queues", "agents", "teams") or fmt not in ("csv", "json"):
        fail("--of must be queues, agents or teams, --format csv or json")
    if hours not in ("all", "business") or source not in ("events", "rollups"):
        fail("--hours must be all or business, --source events or rollups")
    if metric != "all" and metric not in METRICS:
        fail(f"--metric must be all, {', '.join(METRICS)}")
    if chart is not None and chart.suffix not in (".svg", ".png"):
        fail("--chart must name a .svg or .png file")

    def when(text: str, name: str) -> datetime:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            fail(f"--{name} {text!r} is not an ISO 8601 date or time")
        return value if value.tzinfo else value.replace(tzinfo=zone)

    start = when(since, "since")
    end = when(until, "until") if until else datetime.now(UTC)
    if end <= start:
        fail("--until must be after --since")
    try:
        settings = load_settings(config)
        rules = load_rules(settings.rules_file)
    except CtiError as exc:
        fail(exc.message)

    def targets(queue: str) -> QueueTargets:
        q = rules.queues.get(queue)
        return QueueTargets(sl_s=q.service_level_s, sl_goal=q.service_level_percent / 100,
                            aht_s=q.aht_s, thresholds=q.thresholds) if q else QueueTargets()

    async def run() -> str:
        engine = make_engine(settings.database_url)
        try:
            sessions = make_sessionmaker(engine)
            log = EventLog(sessions)
            # read only: the service alone adds to the roll-ups
            kept = Rollups(sessions, log, targets) if source == "rollups" else None
            rep = await build_report(log, start, end, interval=interval, timezone=tz,
                                     targets=targets, rules=rules,
                                     business_hours_only=hours == "business", source=kept,
                                     surveys=SurveyStore(sessions))
        finally:
            await engine.dispose()
        if chart is not None:
            goals = {r["queue"]: targets(r["queue"]).sl_goal for r in rep.queues}
            chart.write_bytes(render(rep.queues, metric=metric,  # type: ignore[arg-type]
                                     fmt="svg" if chart.suffix == ".svg" else "png",
                                     title=f"{start.date()} – {end.date()} · {interval} · {tz}",
                                     goals=goals))
        rows = {"queues": rep.queues, "agents": rep.agents, "teams": rep.teams}[of]
        return to_csv(rows) if fmt == "csv" else json.dumps(rows, ensure_ascii=False, indent=1)

    try:
        typer.echo(asyncio.run(run()), nl=False)
    except Exception as exc:  # an unreachable or unmigrated database: one line, no traceback
        fail(f"database {settings.database_url}: {exc.__class__.__name__}: {exc}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)


__all__ = ["register"]
