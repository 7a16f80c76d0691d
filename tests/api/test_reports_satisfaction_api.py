"""The callers' satisfaction in the supervisors' reports, on SQLite and PostgreSQL: offers and
surveys kept by the survey feature's store, a call through the service's bus; the report per
hour, quarter hour and day, per queue, agent and team, business hours only, as CSV, and the
satisfaction chart; a chart metric that does not exist is refused."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from cti.domain.routing.events import CallConnected, CallQueued
from cti.domain.survey import Answers
from tests.api.full_app import full_app

DAY = {"since": "2026-11-28T00:00:00Z", "until": "2026-11-29T00:00:00Z", "tz": "UTC"}
CSAT = ("csat_surveys", "csat_offered", "csat_response_rate", "csat_speed", "csat_attitude",
        "csat_resolved_rate")


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cti")


def at(hh_mm_ss: str) -> datetime:
    return datetime.fromisoformat(f"2026-11-28T{hh_mm_ss}+00:00")


def csat(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in CSAT)


async def test_satisfaction_per_period_queue_agent_and_team(
        tmp_path: Path, database_url: str) -> None:
    async with full_app(tmp_path, database_url=database_url) as env, client(env.app) as c:
        boss = env.bearer("supervisor")
        store = env.service.surveys.store
        env.service.bus.publish(CallQueued("c1", "billing", 0, 1, at("09:04:00")))
        env.service.bus.publish(CallConnected("c1", "1001", "billing", 30.0, at("09:04:30")))
        await env.service.bus.drain(10)
        # Saturday 2026-11-28, open 09:00-18:00 Asia/Shanghai (01:00-10:00 UTC)
        await store.add_offer(at=at("00:30:00"), call_id="c0", agent_id="1001",
                              queue="billing")  # before the opening
        await store.add_offer(at=at("09:05:00"), call_id="c1", agent_id="1001", queue="billing")
        await store.add(at=at("09:06:00"), channel="ivr", call_id="c1", agent_id="1001",
                        queue="billing", work_order_id=None, answers=Answers(5, True, 5),
                        offered_at=at("09:05:00"))
        # offered before a quarter's end, stored after it: counted where it was offered
        await store.add_offer(at=at("09:14:30"), call_id="c3", agent_id="1002", queue="billing")
        await store.add(at=at("09:15:20"), channel="ivr", call_id="c3", agent_id="1002",
                        queue="billing", work_order_id=None, answers=Answers(3, False, 1),
                        offered_at=at("09:14:30"))
        await store.add_offer(at=at("09:20:00"), call_id="c2", agent_id="1001",
                              queue="billing")  # the caller hung up: no survey
        await store.add(at=at("10:10:00"), channel="callback", call_id=None, agent_id="1002",
                        queue=None, work_order_id=None, answers=Answers(1, None, 3),
                        recorded_by="agent1002")  # after closing time

        r = await c.get("/reports/queues", params={**DAY, "interval": "60m"}, headers=boss)
        assert r.status_code == 200, r.text
        body = r.json()
        (billing,) = [q for q in body["queues"]
                      if q["interval_start"] == "2026-11-28T09:00:00+00:00"]
        assert billing["offered"] == 1  # the call, beside its surveys
        assert csat(billing) == (2, 3, round(2 / 3, 4), 4.0, 3.0, 0.5)
        night = next(q for q in body["queues"] if q["interval_start"].endswith("T00:00:00+00:00"))
        assert night["offered"] == 0  # a row for the survey offer alone
        assert csat(night) == (0, 1, 0.0, None, None, None)
        agents = {(a["interval_start"][11:16], a["agent_id"]): a for a in body["agents"]}
        assert csat(agents["09:00", "1001"]) == (1, 2, 0.5, 5.0, 5.0, 1.0)
        assert csat(agents["09:00", "1002"]) == (1, 1, 1.0, 3.0, 1.0, 0.0)
        assert csat(agents["10:00", "1002"]) == (1, 0, None, 1.0, 3.0, None)  # the call-back
        assert not any(q["interval_start"][11:16] == "10:00" for q in body["queues"])
        (north,) = [t for t in body["teams"] if t["interval_start"][11:16] == "09:00"]
        assert north["team"] == "north"
        assert csat(north) == (2, 3, round(2 / 3, 4), 4.0, 3.0, 0.5)

        quarters = await c.get("/reports/queues", params={**DAY, "interval": "15m"},
                               headers=boss)
        by_start = {q["interval_start"][11:16]: q for q in quarters.json()["queues"]}
        assert csat(by_start["09:00"])[:3] == (2, 2, 1.0)
        assert csat(by_start["09:15"])[:3] == (0, 1, 0.0)

        day = await c.get("/reports/queues", params={**DAY, "interval": "day"}, headers=boss)
        (whole,) = day.json()["queues"]
        assert csat(whole)[:3] == (2, 4, 0.5)
        open_only = await c.get("/reports/queues", params={
            **DAY, "interval": "day", "hours": "business"}, headers=boss)
        (open_day,) = open_only.json()["queues"]
        assert csat(open_day)[:3] == (2, 3, round(2 / 3, 4))
        (agent_day,) = [a for a in open_only.json()["agents"] if a["agent_id"] == "1002"]
        assert agent_day["csat_surveys"] == 1  # the call-back after closing time is left out

        teams = await c.get("/reports/queues", params={
            **DAY, "interval": "day", "format": "csv", "of": "teams"}, headers=boss)
        (row,) = list(csv.DictReader(io.StringIO(teams.text)))
        assert (row["team"], row["csat_surveys"], row["csat_offered"], row["csat_speed"]) == (
            "north", "3", "4", "3.0")

        chart = await c.get("/reports/queues/chart.svg", params={
            **DAY, "interval": "60m", "metric": "csat_attitude"}, headers=boss)
        assert chart.status_code == 200, chart.text
        assert "attitude" in chart.text
        assert "billing" in chart.text
        bad = await c.get("/reports/queues/chart.svg", params={**DAY, "metric": "csat"},
                          headers=boss)
        assert bad.status_code == 422
        assert "metric" in bad.text
