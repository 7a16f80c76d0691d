"""`cti export queue-log`: the kept events of a time window in Asterisk's queue_log format
(registered on the main `cti` app in cti/cli.py)."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TextIO

import typer

from cti.platform.errors import CtiError

if TYPE_CHECKING:
    from cti.domain.routing.model import RoutingRules
    from cti.features.events.queue_log_export import ExportStats

export_app = typer.Typer(no_args_is_help=True, help="Export the kept events.")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (else $CTI_CONFIG_FILE)")
]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is this machine's local time."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CtiError(
            f"{option} {text!r}: not a date or time (e.g. 2026-03-01 or 2026-03-01T08:00+08:00)"
        ) from None
    if value.tzinfo is None:
        value = value.astimezone()  # local time, as `date` shows it
    return value.astimezone(UTC)


@export_app.command("queue-log")
def queue_log(
    since: Annotated[str, typer.Option(help="from (ISO date or time; inclusive)")],
    until: Annotated[
        str | None, typer.Option(help="to (ISO date or time; exclusive; default: now)")
    ] = None,
    config: ConfigOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to FILE (default: stdout)")
    ] = None,
) -> None:
    """Calls and agents between two times as Asterisk queue_log lines (docs/queue_log.md),
    for the reporting tools that read Asterisk's queue_log."""
    from cti.features.routing.rules import load_rules
    from cti.platform.settings import load_settings

    try:
        start = parse_time(since, "--since")
        end = parse_time(until, "--until") if until else datetime.now(UTC)
        if start >= end:
            raise CtiError(f"--since {since!r} is not before --until {until or 'now'!r}")
        settings = load_settings(config)
        rules = load_rules(settings.rules_file)
    except CtiError as exc:
        _fail(exc.message)
    try:
        out: TextIO = output.open("w", encoding="utf-8") if output else sys.stdout
    except OSError as exc:
        _fail(f"{output}: cannot write: {exc.strerror}")
    try:
        stats = asyncio.run(_export(settings.database_url, start, end, rules, out))
    except Exception as exc:  # an unreachable or unmigrated database: one line, no traceback
        detail = (str(exc).strip().splitlines() or [""])[0]  # SQLAlchemy adds the SQL below
        _fail(f"reading events from {settings.database_url}: {exc.__class__.__name__}: {detail}")
    finally:
        if output:
            out.close()
    if stats.unreadable:
        typer.echo(f"warning: {stats.unreadable} kept events could not be read (skipped)",
                   err=True)
    if output:
        typer.echo(f"{stats.lines} lines ({stats.events} events) written to {output}", err=True)


async def _export(
    url: str, since: datetime, until: datetime, rules: RoutingRules, out: TextIO
) -> ExportStats:
    from cti.features.events.queue_log_export import ExportStats, queue_log_export
    from cti.features.events.store import EventLog
    from cti.platform.db.base import make_engine, make_sessionmaker

    engine = make_engine(url)
    stats = ExportStats()
    try:
        async for line in queue_log_export(
            EventLog(make_sessionmaker(engine)), since, until, rules, stats=stats
        ):
            out.write(f"{line}\n")
        out.flush()
    finally:
        await engine.dispose()
    return stats


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
