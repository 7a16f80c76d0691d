"""The reports page and the wallboard's live charts in a real browser (Debian's chromium,
headless) against the real service and a sandbox Asterisk.

A generated history (three days of calls through the running service's event stream, kept
and rolled up as they are appended) is asked for on the reports page: the five charts are the
server's SVG images, the table holds the figures with Erlang C's staffing, and the period,
interval and grouping change them. Then calls happening now draw today's live charts on the
supervisor page. Screenshots are kept under artifacts/.
    CTI_E2E_INSTANCE_SUFFIX=me .venv/bin/pytest tests/e2e/test_reports_page_e2e.py
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from cti.app import create_app
from cti.events import CallConnected, CallQueued
from cti.features.auth.service import NewUser, Role
from cti.runtime import Service
from tests.api.desk_app import served
from tests.e2e.conftest import service_settings
from tests.e2e.pbx import Pbx
from tests.e2e.test_agent_page import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, csp_violations
from tests.history import HistorySpec, history

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SPEC = HistorySpec(date(2026, 11, 25), 3, 300, {"billing": ["1001", "1002", "1006"],
                                                "tech_support": ["1003", "1004", "1008"],
                                                "complaints": ["1005", "1007"]})
CHARTS = ("calls", "sl", "asa", "aht", "abandonment")


async def _log_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/desk/")
    await page.fill("#username", "boss")
    await page.fill("#password", "boss-e2e-pw")
    await page.click("#login-btn")
    await page.wait_for_url("**/supervisor.html")


async def test_reports_page_shows_charts_of_a_generated_history(pbx: Pbx, tmp_path: Path,
                                                                ) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    service = Service.build(service_settings(pbx, f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"))
    await service.start()
    try:
        await service.desk.auth.users.create(NewUser("boss", "boss-e2e-pw", Role.SUPERVISOR))
        offered = 0
        for day in history(SPEC):
            for event in day:
                service.bus.publish(event)
                offered += isinstance(event, CallQueued)
            await service.bus.drain(60)
        async with served(create_app(service)) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                refused = csp_violations(page)
                await _log_in(page, base)
                await page.click("#reports-link")
                await page.wait_for_url("**/reports.html")
                await page.fill("#since", "2026-11-25")
                await page.fill("#until", "2026-11-28")
                await page.select_option("#interval", "60m")
                await page.click("#show")
                for name in CHARTS:
                    chart = page.get_by_test_id(f"chart-{name}")
                    await expect(chart).to_have_attribute("data-loaded", "1", timeout=30000)
                    size = await chart.evaluate("i => [i.naturalWidth, i.naturalHeight]")
                    assert size[0] > 300, (name, size)  # a drawn chart, not a broken image
                    assert (await chart.get_attribute("src") or "").startswith("blob:")
                rows = page.get_by_test_id("report-row")
                assert await rows.count() > 30  # three days of hours, three queues
                summary = page.get_by_test_id("report-summary")
                await expect(summary).to_contain_text(f"呼入 {offered}")
                # the staffing columns: Erlang C's agents beside the agents logged in
                head = await page.locator("#report-head th").all_text_contents()
                assert "需要坐席" in head
                assert "在线坐席" in head
                assert "服务态度" in head  # the satisfaction column group
                needed = head.index("需要坐席")
                values = await page.locator(
                    f"#report-rows tr td:nth-child({needed + 1})").all_text_contents()
                assert any(v not in ("0", "–") for v in values)
                await page.screenshot(path=str(ARTIFACTS / "reports_page.png"), full_page=True)

                # per day and team, in English
                await page.click("#lang-toggle")
                await page.select_option("#interval", "day")
                await page.select_option("#of", "teams")
                await page.click("#show")
                await expect(rows).to_have_count(3 * 3)  # 3 days × north, south, vip
                await expect(page.locator("#report-head th").first).to_have_text("Interval")
                teams = await page.locator("#report-rows tr td:nth-child(2)").all_text_contents()
                assert set(teams) == {"north", "south", "vip"}
                await page.screenshot(path=str(ARTIFACTS / "reports_page_teams_en.png"),
                                      full_page=True)
                assert refused == []
            finally:
                await browser.close()
    finally:
        await service.stop()


async def test_the_wallboard_draws_todays_charts_live(pbx: Pbx, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    service = Service.build(service_settings(pbx, f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"))
    await service.start()
    try:
        await service.desk.auth.users.create(NewUser("boss", "boss-e2e-pw", Role.SUPERVISOR))
        async with served(create_app(service)) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                refused = csp_violations(page)
                await _log_in(page, base)
                now = datetime.now(UTC)
                service.bus.publish(CallQueued("lc-1", "general", 0, 1, now))
                service.bus.publish(CallConnected("lc-1", "1001", "general", 8.0, now))
                bars = page.locator("#live-calls rect.bar")
                await expect(bars).to_have_count(1, timeout=4000)
                await expect(bars.first).to_have_attribute("data-value", "1")
                await expect(page.locator("#live-sl circle.dot").first).to_have_attribute(
                    "data-value", "100")
                await expect(page.get_by_test_id("chart-queue")).to_have_value("general")
                # a second call in the same quarter hour: the bar grows where it is (charts are
                # sent at most once a second)
                service.bus.publish(CallQueued("lc-2", "general", 0, 1, now))
                await expect(bars.first).to_have_attribute("data-value", "2", timeout=4000)
                await expect(page.locator("#live-asa circle.dot").first).to_have_attribute(
                    "data-value", "8")
                await page.screenshot(path=str(ARTIFACTS / "supervisor_live_charts.png"),
                                      full_page=True)
                assert refused == []
            finally:
                await browser.close()
    finally:
        await service.stop()
