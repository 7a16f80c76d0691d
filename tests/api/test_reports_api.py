"""The reports routes on the product's app: a generated day through the running service's bus,
then the figures per day, week and team, business hours only, CSV, the charts as SVG and PNG,
the wallboard's per-interval series, and the refusals (agents, bad zone, bad period)."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import httpx
from fastapi import FastAPI

from tests.api.full_app import full_app
from tests.history import HistorySpec, history

SPEC = HistorySpec(date(2026, 11, 28), 1, 120, {"billing": ["1001", "1002", "1004"],
                                                "tech_support": ["1003", "1004"]})
PERIOD = {"since": "2026-11-28T00:00:00+08:00", "until": "2026-11-29T00:00:00+08:00"}


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cti")


async def test_reports_routes(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        boss = env.bearer("supervisor")
        for day in history(SPEC):
            for event in day:
                env.service.bus.publish(event)
        await env.service.bus.drain(30)

        r = await c.get("/reports/queues", params={**PERIOD, "interval": "day"}, headers=boss)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["source"] == "rollups"
        assert body["timezone"] == "Asia/Shanghai"  # the routing rules' business hours'
        assert sum(q["offered"] for q in body["queues"]) == 120
        assert {q["interval_start"] for q in body["queues"]} == {"2026-11-28T00:00:00+08:00"}
        assert {t["team"] for t in body["teams"]} == {"north", "south"}
        billing = next(q for q in body["queues"] if q["queue"] == "billing")
        # eligible and logged in: 1001 and 1002 (1004's billing 2 is under the queue's 3;
        # 1006 never logged in)
        assert billing["agents_logged_in"] == 2
        assert billing["agents_needed"] >= 1

        events = await c.get("/reports/queues", params={**PERIOD, "interval": "day",
                                                        "source": "events"}, headers=boss)
        assert events.json()["source"] == "events"
        assert events.json()["queues"] == body["queues"]

        week = await c.get("/reports/queues", params={**PERIOD, "interval": "week"},
                           headers=boss)
        assert week.json()["queues"][0]["interval_start"] == "2026-11-23T00:00:00+08:00"

        # Saturday opens at 09:00: the 08:00-09:00 calls are not in a business-hours report
        open_only = await c.get("/reports/queues", params={**PERIOD, "interval": "60m",
                                                           "hours": "business"}, headers=boss)
        starts = {q["interval_start"][11:16] for q in open_only.json()["queues"]}
        assert "08:00" not in starts
        assert "09:00" in starts
        every = await c.get("/reports/queues", params={**PERIOD, "interval": "60m"},
                            headers=boss)
        assert "08:00" in {q["interval_start"][11:16] for q in every.json()["queues"]}

        teams = await c.get("/reports/queues", params={**PERIOD, "interval": "day",
                                                       "format": "csv", "of": "teams"},
                            headers=boss)
        assert teams.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(teams.text)))
        assert {row["team"] for row in rows} == {"north", "south"}

        svg = await c.get("/reports/queues/chart.svg", params={**PERIOD, "interval": "60m"},
                          headers=boss)
        assert svg.status_code == 200
        assert svg.headers["content-type"] == "image/svg+xml"
        assert "<svg" in svg.text
        assert "billing" in svg.text
        png = await c.get("/reports/queues/chart.png", params={
            **PERIOD, "interval": "60m", "metric": "sl", "queue": "billing"}, headers=boss)
        assert png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"

        live = await c.get("/reports/live", headers=boss)
        assert live.status_code == 200

        # refused: agents, an unknown zone, a backwards period, an unknown image type
        agent = env.bearer("agent1001")
        assert (await c.get("/reports/queues", params=PERIOD, headers=agent)).status_code == 403
        bad = await c.get("/reports/queues", params={**PERIOD, "tz": "Mars/Base"},
                          headers=boss)
        assert bad.status_code == 422
        assert "unknown time zone" in bad.json()["detail"]
        backwards = await c.get("/reports/queues", params={
            "since": PERIOD["until"], "until": PERIOD["since"]}, headers=boss)
        assert backwards.status_code == 422
        ancient = await c.get("/reports/queues/chart.svg", params={
            "since": "0001-01-01T00:00:00+08:00", "until": "0001-01-02T00:00:00+08:00"},
            headers=boss)
        assert ancient.status_code == 422
        assert "between 1970 and 9998" in ancient.json()["detail"]
        gif = await c.get("/reports/queues/chart.gif", params=PERIOD, headers=boss)
        assert gif.status_code == 422
