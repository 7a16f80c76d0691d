"""The shift handover section of the agent page, in Debian's chromium, on the product's app
(no PBX needed): agent 1001 hands over with an item linked to a work order; agent 1002 (on
shift) sees it, is reminded on the desk when nobody picked it up, and picks it up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.api.desk_app import served
from tests.api.full_app import full_app
from tests.e2e.test_agent_page import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, csp_violations

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def _log_in(page: Page, base: str, agent: str) -> None:
    await page.goto(f"{base}/desk/")
    await page.fill("#username", f"agent{agent}")
    await page.fill("#password", f"agent-{agent}")
    await page.click("#login-btn")
    await expect(page.get_by_test_id("connection")).to_have_text("在线")


async def test_handover_written_reminded_and_picked_up_from_the_page(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with full_app(tmp_path) as env, served(env.app) as base, \
            httpx.AsyncClient(base_url=base) as api, async_playwright() as pw:
        r = await api.post("/work-orders", headers=env.bearer("agent1001"), json={
            "type": "complaint", "severity": "high", "description": "billed twice"})
        oid = r.json()["id"]
        await env.service.acd.agent_login("1002", available=False)  # on shift
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            day = await (await browser.new_context(viewport={"width": 1280, "height": 1000})
                         ).new_page()
            refused = csp_violations(day)
            await _log_in(day, base, "1001")
            await expect(day.get_by_test_id("handover-panel").locator("h2")).to_have_text(
                "交接班")
            form = day.get_by_test_id("handover-form")
            await form.locator("input[name=shift]").fill("12-01 白班")
            await form.locator("input[name=next_shift]").fill("12-01 夜班")
            await form.locator("textarea[name=note]").fill("下午来电较多")
            await form.locator("textarea[name=items]").fill(
                f"#{oid} 回电客户说明退款\n2楼打印机坏了")
            await form.locator("button[type=submit]").click()
            await expect(day.get_by_test_id("handover-status")).to_contain_text("已交班")
            entries = (await api.get("/handovers", headers=env.bearer("supervisor"),
                                     params={"open": "true"})).json()
            assert len(entries) == 1
            entry = entries[0]
            assert (entry["shift"], entry["next_shift"], entry["written_by"], entry["note"]) == (
                "12-01 白班", "12-01 夜班", "agent1001", "下午来电较多")
            assert [(i["text"], i["work_order_id"]) for i in entry["items"]] == [
                ("回电客户说明退款", oid), ("2楼打印机坏了", None)]

            night = await (await browser.new_context(viewport={"width": 1280, "height": 1000})
                           ).new_page()
            await _log_in(night, base, "1002")
            listed = night.get_by_test_id("handover-list")
            await expect(listed.locator(f"[data-entry-id='{entry['id']}']")).to_be_visible()
            await expect(listed).to_contain_text(f"#{oid} 回电客户说明退款")

            # nobody picked it up: the reminder comes to the agents on shift
            now = env.service.clock.now()
            assert await env.service.handovers.run_reminders(now + timedelta(minutes=31)) == 2
            await expect(night.get_by_test_id("wo-notifications")).to_contain_text(
                "交接事项未接手")
            await expect(listed).to_contain_text("已提醒 1 次")
            await night.screenshot(path=str(ARTIFACTS / "handover_reminded.png"), full_page=True)

            first = entry["items"][0]["id"]
            await listed.locator(f"[data-ack-item='{first}']").click()
            await expect(listed).to_contain_text("agent1002 已接手")
            stored = (await api.get(f"/handovers/{entry['id']}",
                                    headers=env.bearer("supervisor"))).json()
            assert stored["items"][0]["acknowledged_by"] == "agent1002"
            assert stored["items"][1]["acknowledged_by"] is None
            assert stored["open_items"] == 1
            await night.screenshot(path=str(ARTIFACTS / "handover_picked_up.png"),
                                   full_page=True)
            assert refused == []
        finally:
            await browser.close()
