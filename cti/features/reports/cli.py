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
    interval: Annotated[str, typer.Option(help="15m, 30m, 60m, day or all")] = "60m",
    tz: Annotated[str, typer.Option(help="time zone of the intervals and of dates given")] = "UTC",
    of: Annotated[str, typer.Option(help="queues or agents")] = "queues",
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    config: Annotated[Path | None, typer.Option("-c", "--config", help="config YAML")] = None,
) -> None:
    """Figures per interval and queue (or agent) from the kept event stream."""
    from cti.features.events.store import EventLog
    from cti.features.reports.service import INTERVALS, build_report, to_csv
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
    if of not in ("queues", "agents") or fmt not in ("csv", "json"):
        fail("--of must be queues or agents, --format csv or json")

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
    except CtiError as exc:
        fail(exc.message)

    async def run() -> str:
        engine = make_engine(settings.database_url)
        try:
            rep = await build_report(EventLog(make_sessionmaker(engine)), start, end,
                                     interval=interval, timezone=tz)
        finally:
            await engine.dispose()
        rows = rep.queues if of == "queues" else rep.agents
        return to_csv(rows) if fmt == "csv" else json.dumps(rows, ensure_ascii=False, indent=1)

    try:
        typer.echo(asyncio.run(run()), nl=False)
    except Exception as exc:  # an unreachable or unmigrated database: one line, no traceback
        fail(f"database {settings.database_url}: {exc.__class__.__name__}: {exc}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)


__all__ = ["register"]
