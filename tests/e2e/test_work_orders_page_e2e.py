"""Work orders on the agent page during a real call: the real service on the sandbox Asterisk,
sipp as the caller (the demo VIP) and as agent 1001's phone, the page in Debian's chromium.

The VIP already has an open service request (made over the API before the call): it shows on
the pop card. While connected, the agent opens a complaint from the card; it is stored linked
to the call and the caller's CRM record (read back over the API) and appears in "my open
orders". There the agent moves it to in progress, adds a note and hands it over to 1002; 1002's
page shows the notification and the order. Screenshots: artifacts/work_orders_*.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from cti.app import create_app
from tests.api.desk_app import served
from tests.e2e.pbx import Pbx, register_agent
from tests.e2e.test_agent_desk_e2e import (
    ARTIFACTS,
    VIP_NUMBER,
    _agent_page,
    _call,
    _caller_channel,
    _go_available,
    _running_service,
    browser,  # noqa: F401  (the fixture)
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def _token(base: str, user: str, password: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base) as client:
        r = await client.post("/auth/login", json={"username": user, "password": password})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_agent_opens_a_complaint_from_the_page_during_a_real_call(
    pbx: Pbx, tmp_path: Path, browser: Browser  # noqa: F811
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    service, _log, _offers = await _running_service(pbx, tmp_path)
    try:
        async with (
            served(create_app(service)) as base,
            httpx.AsyncClient(base_url=base) as api,
            await register_agent(pbx, "1001", ring_ms=1500),
        ):
            supervisor = await _token(base, "supervisor", "supervisor-pw")
            agent = await _token(base, "agent1001", "agent-1001")
            vip = (await api.get("/crm/customers", params={"q": "王伟"}, headers=agent)).json()
            vip_id = vip[0]["id"]
            r = await api.post("/work-orders", headers=supervisor, json={
                "customer_id": vip_id, "type": "service_request", "severity": "high",
                "description": "replacement card requested",
            })
            assert r.status_code == 201, r.text
            earlier = r.json()["id"]

            page = await _agent_page(browser, base, "1001")
            await _go_available(page)
            call = _call(VIP_NUMBER, pbx)
            card = page.get_by_test_id("pop-card")
            await expect(card.get_by_test_id("customer-name")).to_have_text("王伟", timeout=15000)
            # the caller's open order is on the card
            await expect(card.get_by_test_id("caller-orders").locator("li")).to_have_count(1)
            await expect(card.get_by_test_id("caller-orders")).to_contain_text(f"#{earlier}")
            await expect(card.get_by_test_id("caller-orders")).to_contain_text(
                "replacement card requested")
            await expect(card).to_have_attribute("data-state", "connected", timeout=10000)
            call_id = await _caller_channel(service, VIP_NUMBER)

            # the agent opens a complaint from the card
            form = card.get_by_test_id("wo-create")
            await form.locator("select[name=type]").select_option("complaint")
            await form.locator("select[name=severity]").select_option("high")
            await form.locator("textarea[name=description]").fill("billed twice for March")
            await form.locator("button[type=submit]").click()
            status = card.get_by_test_id("wo-create-status")
            await expect(status).to_have_attribute("data-order-id", re.compile(r"^\d+$"),
                                                   timeout=5000)
            order_id = int(await status.get_attribute("data-order-id") or 0)
            await page.screenshot(path=str(ARTIFACTS / "work_orders_created_in_call.png"),
                                  full_page=True)

            # stored, linked to the call and the caller's record, owned by the agent
            stored = (await api.get(f"/work-orders/{order_id}", headers=supervisor)).json()
            assert stored["type"] == "complaint"
            assert stored["complaint"] is True
            assert stored["severity"] == "high"
            assert stored["description"] == "billed twice for March"
            assert stored["call_id"] == call_id
            assert stored["customer_id"] == vip_id
            assert stored["owner"] == "agent:1001"
            assert stored["created_by"] == "agent1001"
            assert stored["ack_due_at"] is not None

            # "my open orders": move it, note it, hand it over to 1002
            mine = page.get_by_test_id("my-orders")
            row = mine.locator(f"[data-order-id='{order_id}']")
            await expect(row).to_be_visible()
            await row.locator("select[name=to]").select_option("in_progress")
            await row.locator("button[value=move]").click()
            row = mine.locator(f"[data-order-id='{order_id}']")
            await expect(row).to_have_attribute("data-status", "in_progress")
            await row.locator("input[name=note]").fill("customer sends the statement")
            await row.locator("button[value=note]").click()
            await expect(page.get_by_test_id("wo-notifications")).to_contain_text(
                f"#{order_id}")  # the created / status news came over the desk socket
            await page.screenshot(path=str(ARTIFACTS / "work_orders_my_orders.png"),
                                  full_page=True)
            page_1002 = await _agent_page(browser, base, "1002")
            row = mine.locator(f"[data-order-id='{order_id}']")
            await row.locator("input[name=owner]").fill("1002")
            await row.locator("button[value=handover]").click()
            await expect(mine.locator(f"[data-order-id='{order_id}']")).to_have_count(0)
            await expect(page_1002.get_by_test_id("wo-notifications")).to_contain_text(
                f"#{order_id}")
            await expect(page_1002.get_by_test_id("my-orders").locator(
                f"[data-order-id='{order_id}']")).to_be_visible()
            await page_1002.screenshot(path=str(ARTIFACTS / "work_orders_handed_over.png"),
                                       full_page=True)

            detail = (await api.get(f"/work-orders/{order_id}", headers=supervisor)).json()
            assert detail["owner"] == "agent:1002"
            actions = [(h["actor"], h["action"]) for h in detail["history"]]
            assert actions == [("agent1001", "created"), ("agent1001", "status"),
                               ("agent1001", "note"), ("agent1001", "reassigned")], actions
            assert detail["history"][2]["note"] == "customer sends the statement"

            await card.locator("[data-call=hangup]").click()
            result = await call
            assert result.ok, result.describe()
    finally:
        await service.stop()
