"""`cti report`: the kept events of a period as CSV, with the callers' satisfaction; bad input
is one line and exit 2."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti.cli import app
from cti.domain.survey import Answers
from cti.features.events.store import EventLog
from cti.features.surveys.storage import SurveyStore
from cti.platform.bus import InProcessBus
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async
from tests.unit.test_stats import scripted_day

runner = CliRunner()


def _seeded(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"

    async def seed() -> None:
        await upgrade_async(url)
        engine = make_engine(url)
        bus = InProcessBus()
        EventLog(make_sessionmaker(engine), bus)
        for event in scripted_day():
            bus.publish(event)
        await bus.drain()
        await engine.dispose()

    asyncio.run(seed())
    return url


def test_report_prints_the_periods_figures_as_csv(tmp_path: Path) -> None:
    url = _seeded(tmp_path)
    result = runner.invoke(app, ["report", "--since", "2026-12-01T08:00", "--until",
                                 "2026-12-01T10:00", "--interval", "day"],
                           env={"CTI_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    header, row = result.output.strip().splitlines()
    figures = dict(zip(header.split(","), row.split(","), strict=True))
    assert figures["queue"] == "sales"
    assert (figures["offered"], figures["answered"], figures["short_abandoned"]) == ("5", "2", "1")
    assert figures["asa_s"] == "17.5"


@pytest.mark.parametrize(("args", "says"), [
    (["--since", "yesterday"], "is not an ISO 8601 date"),
    (["--since", "2026-12-01", "--tz", "Mars/Base"], "unknown time zone"),
    (["--since", "2026-12-01", "--interval", "7m"], "--interval must be one of"),
    (["--since", "2026-12-02", "--until", "2026-12-01"], "--until must be after --since"),
])
def test_bad_report_input_is_one_line(args: list[str], says: str) -> None:
    result = runner.invoke(app, ["report", *args])
    assert result.exit_code == 2
    assert says in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_report_by_team_with_a_chart_image(tmp_path: Path) -> None:
    url = _seeded(tmp_path)
    png, svg = tmp_path / "day.png", tmp_path / "day.svg"
    base = ["report", "--since", "2026-12-01T08:00", "--until", "2026-12-01T10:00",
            "--interval", "60m"]
    result = runner.invoke(app, [*base, "--of", "teams", "--chart", str(png)],
                           env={"CTI_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    header, *rows = result.output.strip().splitlines()
    assert header.startswith("interval_start,team,agents_logged_in,calls")
    teams = {row.split(",")[1] for row in rows}
    assert teams == {"north"}  # 1001 and 1002 are both in team north (config/routing.yaml)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(app, [*base, "--chart", str(svg), "--metric", "sl"],
                           env={"CTI_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml")
    assert "<svg" in text
    assert "Service level" in text
    assert "agents_needed" in result.output.splitlines()[0]


@pytest.mark.parametrize(("args", "says"), [
    (["--of", "floors"], "--of must be queues, agents or teams"),
    (["--hours", "nights"], "--hours must be all or business"),
    (["--chart", "out.gif"], "--chart must name a .svg or .png file"),
    (["--metric", "mood"], "--metric must be"),
])
def test_bad_new_report_options_are_one_line(args: list[str], says: str) -> None:
    result = runner.invoke(app, ["report", "--since", "2026-12-01", *args])
    assert result.exit_code == 2
    assert says in result.output


def test_report_has_the_satisfaction_columns_and_chart(tmp_path: Path) -> None:
    url = _seeded(tmp_path)

    async def surveyed() -> None:
        engine = make_engine(url)
        store = SurveyStore(make_sessionmaker(engine))
        offered = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
        for call_id in ("s1", "s2"):
            await store.add_offer(at=offered, call_id=call_id, agent_id="1001", queue="sales")
        await store.add(at=offered, channel="ivr", call_id="s1", agent_id="1001",
                        queue="sales", work_order_id=None, answers=Answers(5, True, 3),
                        offered_at=offered)
        await engine.dispose()

    asyncio.run(surveyed())
    svg = tmp_path / "csat.svg"
    result = runner.invoke(app, ["report", "--since", "2026-12-01T08:00", "--until",
                                 "2026-12-01T10:00", "--interval", "day", "--chart", str(svg),
                                 "--metric", "csat_attitude"],
                           env={"CTI_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    header, row = result.output.strip().splitlines()
    figures = dict(zip(header.split(","), row.split(","), strict=True))
    assert (figures["csat_surveys"], figures["csat_offered"], figures["csat_response_rate"],
            figures["csat_speed"], figures["csat_attitude"], figures["csat_resolved_rate"]) == (
        "1", "2", "0.5", "5.0", "3.0", "1.0")
    assert "Satisfaction: attitude" in svg.read_text()
