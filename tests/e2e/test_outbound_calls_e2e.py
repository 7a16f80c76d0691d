"""Agents place calls from the page, on the real path: the service on the sandbox Asterisk,
sipp as agent 1001's phone and as the customer (endpoint 1004 stands in for the trunk: the
outbound dial pattern "PJSIP/{number}@1004" sends the customer's number as the request-URI
user), the page in Debian's chromium.

The agent types the number on the dial pad: their phone rings first and answers; then the
customer's phone rings, with the center's caller id, and answers; the two are in one ARI
bridge with audio both ways; the call pops on the agent's card as connected, its call-log row
says outbound, and the customer hanging up ends the agent's leg and brings the wrap-up. Then a
customer who does not answer: the outcome says so and the agent is released. A target that is
not a phone number is refused before anything is dialled.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from cti.app import create_app
from cti.domain.agents.state import AgentState
from cti.events import OutboundCallOutcome, OutboundCallPlaced
from cti.platform.settings import OutboundSettings
from cti.runtime import Service
from tests.api.desk_app import served
from tests.e2e.conftest import EventLog, wait_until
from tests.e2e.pbx import AgentPhone, Pbx, register_agent
from tests.e2e.test_agent_desk_e2e import (
    ARTIFACTS,
    Offers,
    _agent_page,
    _bridge_of,
    _go_available,
    _long_speech,
    _rtp_counts,
    _running_service,
    browser,  # noqa: F401  (the fixture)
)
from tests.e2e.test_work_orders_page_e2e import _token

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CENTER_ID = "+864001234567"
CUSTOMER = "+8613900000004"


class Seen:
    def __init__(self) -> None:
        self.events: list[object] = []

    async def on_event(self, event: object) -> None:
        self.events.append(event)

    def outcomes(self) -> list[str]:
        return [e.outcome for e in self.events if isinstance(e, OutboundCallOutcome)]


def _answered(phone: AgentPhone) -> int:
    return sum(1 for m in phone.messages()
               if m.direction == "sent" and m.method_or_status == "200"
               and "INVITE" in m.text.split("CSeq:", 1)[-1].split("\n", 1)[0])


def _got_bye(phone: AgentPhone) -> bool:
    return any(m.direction == "received" and m.method_or_status == "BYE"
               for m in phone.messages())


async def _service(pbx: Pbx, tmp_path: Path) -> tuple[Service, EventLog, Offers]:
    return await _running_service(pbx, tmp_path, outbound=OutboundSettings(
        dial="PJSIP/{number}@1004", caller_id=CENTER_ID, customer_ring_s=6,
    ))


async def test_agent_dials_from_the_page_and_is_bridged_with_the_customer(
    pbx: Pbx, tmp_path: Path, browser: Browser  # noqa: F811
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    service, _log, _offers = await _service(pbx, tmp_path)
    seen = Seen()
    service.bus.subscribe("test.outbound", seen.on_event,
                          (OutboundCallPlaced, OutboundCallOutcome))
    try:
        async with (
            served(create_app(service)) as base,
            httpx.AsyncClient(base_url=base) as api,
            await register_agent(pbx, "1001", ring_ms=500) as agent_phone,
            # the customer talks; the agent's phone echoes it: audio both ways
            await register_agent(pbx, "1004", ring_ms=800,
                                 pcap=_long_speech(pbx)) as customer_phone,
        ):
            page = await _agent_page(browser, base, "1001")
            await _go_available(page)
            agent = await _token(base, "agent1001", "agent-1001")
            r = await api.post("/calls/outbound", headers=agent, json={"number": "1234@evil"})
            assert r.status_code == 422, r.text
            assert "not a phone number" in r.text
            assert agent_phone.invites() == []

            await page.fill("#dial-number", "139 0000 0004")
            await page.click("#dial-form button[type=submit]")
            status = page.get_by_test_id("dial-status")
            await expect(status).to_contain_text(CUSTOMER)
            call_id = await status.get_attribute("data-call-id")
            assert call_id is not None
            assert call_id.startswith("out-")

            card = page.get_by_test_id("pop-card")
            await expect(card).to_have_attribute("data-state", "connected", timeout=15000)
            await expect(card).to_have_attribute("data-direction", "outbound")
            await expect(card.locator(".call-state")).to_contain_text("外呼")
            # the agent's phone first (showing whom it calls), then the customer's
            (agent_invite,) = agent_phone.invites()
            (customer_invite,) = customer_phone.invites()
            assert agent_invite.first_line.startswith("INVITE sip:1001@"), agent_invite.first_line
            assert CUSTOMER in agent_invite.text.split("From:", 1)[1].split("\n", 1)[0]
            assert customer_invite.first_line.startswith(f"INVITE sip:{CUSTOMER}@")
            assert CENTER_ID in customer_invite.text.split("From:", 1)[1].split("\n", 1)[0]
            assert _answered(agent_phone) == 1
            assert _answered(customer_phone) == 1

            bridge = await _bridge_of(service, call_id)
            assert bridge is not None
            agent_leg = next(c for c in bridge.channels if c != call_id)
            assert sorted(bridge.channels) == sorted([call_id, agent_leg])
            assert agent_leg.startswith("outa-")
            before = await _rtp_counts(service, [call_id, agent_leg])
            await asyncio.sleep(1.0)
            after = await _rtp_counts(service, [call_id, agent_leg])
            for ch in (call_id, agent_leg):  # 50 packets/s each way
                assert after[ch][0] - before[ch][0] > 25, (ch, before, after)
                assert after[ch][1] - before[ch][1] > 25, (ch, before, after)
            assert service.acd.agent_status("1001").state is AgentState.ON_CALL
            assert service.acd.core.agent_of_call(call_id) == "1001"  # transferable
            await expect(page.get_by_test_id("agent-state")).to_have_attribute(
                "data-state", "on_call")
            await page.screenshot(path=str(ARTIFACTS / "outbound_connected.png"),
                                  full_page=True)

            row = (await api.get(f"/calls/{call_id}", headers=await _token(
                base, "supervisor", "supervisor-pw"))).json()
            assert row["state"] == "connected", row
            assert row["agent_id"] == "1001"
            assert row["direction"] == "outbound"
            assert row["caller_number"] == CUSTOMER

            # the customer hangs up: the agent's leg goes, the agent wraps up
            await service.telephony.hangup(call_id)
            await wait_until(lambda: _got_bye(agent_phone), what="the agent's leg hung up")
            await expect(card).to_have_attribute("data-state", "ended", timeout=5000)
            await wait_until(
                lambda: service.acd.agent_status("1001").state is AgentState.AVAILABLE,
                timeout=10, what="wrap-up over")
            assert seen.outcomes() == ["connected"]
            ended = await service.calls_repo.get(call_id)
            assert ended is not None
            assert ended.state.value == "ended"
            assert ended.answered_at is not None

        # a customer who does not answer: the outcome says so, the agent is released
        async with (
            served(create_app(service)) as base,
            httpx.AsyncClient(base_url=base) as api,
            await register_agent(pbx, "1001", ring_ms=300),
            await register_agent(pbx, "1004", mode="noanswer") as silent,
        ):
            agent = await _token(base, "agent1001", "agent-1001")
            r = await api.post("/calls/outbound", headers=agent, json={"number": CUSTOMER})
            assert r.status_code == 201, r.text
            r2 = await api.post("/calls/outbound", headers=agent, json={"number": CUSTOMER})
            assert r2.status_code == 409, r2.text  # already on a call
            await wait_until(lambda: len(seen.outcomes()) == 2, timeout=20,
                             what="the no-answer outcome")
            assert seen.outcomes()[-1] == "no_answer"
            assert len(silent.invites()) == 1
            await wait_until(
                lambda: service.acd.agent_status("1001").state is AgentState.AVAILABLE,
                timeout=10, what="the agent released")
    finally:
        await service.stop()
