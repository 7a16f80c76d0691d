"""Team leads' work orders on the supervisor page, in Debian's chromium, on the product's app
(no PBX needed): a critical complaint escalates (the escalation shows on the page), the team
lead assigns an order to agent 1002 from the page, and 1002's agent page shows the
notification and the order in "my open work orders"."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from tests.api.desk_app import served
from tests.api.full_app import full_app
from tests.e2e.test_agent_page import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, csp_violations

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def test_team_lead_sees_escalations_and_assigns_from_the_supervisor_page(
    tmp_path: Path,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with full_app(tmp_path) as env, served(env.app) as base, \
            httpx.AsyncClient(base_url=base) as api, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            lead = await (await browser.new_context(viewport={"width": 1400, "height": 1000})
                          ).new_page()
            refused = csp_violations(lead)
            await lead.goto(f"{base}/desk/")
            await lead.fill("#username", "supervisor")
            await lead.fill("#password", "supervisor-pw")
            await lead.click("#login-btn")
            await lead.wait_for_url("**/supervisor.html")
            await expect(lead.locator("#connection")).to_have_text("在线")

            r = await api.post("/work-orders", headers=env.bearer("supervisor"), json={
                "type": "complaint", "severity": "critical", "description": "gas smell",
                "owner": "team:back_office"})
            assert r.status_code == 201, r.text
            oid = r.json()["id"]
            await expect(lead.get_by_test_id("escalations")).to_contain_text(
                f"#{oid} → duty_manager")
            rows = lead.get_by_test_id("team-orders")
            row = rows.locator(f"[data-order-id='{oid}']")
            await expect(row).to_contain_text("team:back_office")

            agent = await (await browser.new_context(viewport={"width": 1280, "height": 1000})
                           ).new_page()
            await agent.goto(f"{base}/desk/")
            await agent.fill("#username", "agent1002")
            await agent.fill("#password", "agent-1002")
            await agent.click("#login-btn")
            await expect(agent.get_by_test_id("connection")).to_have_text("在线")

            await row.locator("input[name=owner]").fill("1002")
            await row.locator(f"[data-assign='{oid}']").click()
            await expect(rows.locator(f"[data-order-id='{oid}']")).to_contain_text("agent:1002")
            await expect(agent.get_by_test_id("wo-notifications")).to_contain_text(f"#{oid}")
            await expect(agent.get_by_test_id("my-orders").locator(
                f"[data-order-id='{oid}']")).to_be_visible()
            stored = (await api.get(f"/work-orders/{oid}", headers=env.bearer("supervisor"))
                      ).json()
            assert stored["owner"] == "agent:1002"
            assert stored["status"] == "assigned"
            assert stored["history"][-1]["actor"] == "supervisor"
            await lead.screenshot(path=str(ARTIFACTS / "team_orders_supervisor.png"),
                                  full_page=True)
            assert refused == []
        finally:
            await browser.close()
