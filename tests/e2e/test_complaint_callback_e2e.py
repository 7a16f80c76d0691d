"""A resolved complaint's call-back on the real path: the service on the sandbox Asterisk, sipp
as agent 1001's phone and as the customer (endpoint 1004 stands in for the trunk).

Agent 1001 takes a complaint from the demo VIP (王伟, +49305551); the duty manager resolves it;
the system rings 1001's phone (1001 is Ready), which answers, then the customer, who does not
answer: the attempt is noted and retried after the configured interval (a few seconds here);
the second time the customer answers and is bridged with the agent. Every attempt and its
outcome is on the order's history.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from cti.app import create_app
from cti.domain.agents.state import AgentState
from cti.events import OutboundCallOutcome
from cti.platform.settings import REPO_ROOT, OutboundSettings
from tests.api.desk_app import served
from tests.e2e.conftest import wait_until
from tests.e2e.pbx import AgentPhone, Pbx, register_agent
from tests.e2e.test_agent_desk_e2e import _bridge_of, _long_speech, _running_service
from tests.e2e.test_work_orders_page_e2e import _token

pytestmark = [pytest.mark.e2e]

VIP = "+49305551"
RETRY_S = 6


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[OutboundCallOutcome] = []

    async def on_event(self, event: OutboundCallOutcome) -> None:
        self.seen.append(event)


def _invited(phone: AgentPhone) -> int:
    return len(phone.invites())


async def test_resolved_complaint_calls_the_customer_back_through_the_agent_with_a_retry(
    pbx: Pbx, tmp_path: Path
) -> None:
    orders_file = tmp_path / "work_orders.yaml"
    shutil.copy(REPO_ROOT / "config" / "work_orders.yaml", orders_file)
    text = orders_file.read_text().replace(
        "  attempts: 3\n  retry_after_min: 10\n",
        f"  attempts: 3\n  retry_after_min: {RETRY_S / 60}\n  agent_poll_min: 0.02\n")
    assert f"retry_after_min: {RETRY_S / 60}" in text
    orders_file.write_text(text)
    service, _log, _offers = await _running_service(
        pbx, tmp_path, work_orders_file=orders_file,
        outbound=OutboundSettings(dial="PJSIP/{number}@1004", caller_id="+864001234567",
                                  customer_ring_s=5),
    )
    outcomes = Outcomes()
    service.bus.subscribe("test.outcomes", outcomes.on_event, (OutboundCallOutcome,))
    try:
        async with (
            served(create_app(service)) as base,
            httpx.AsyncClient(base_url=base) as api,
            await register_agent(pbx, "1001", ring_ms=500) as agent_phone,
        ):
            agent = await _token(base, "agent1001", "agent-1001")
            manager = await _token(base, "supervisor", "supervisor-pw")
            r = await api.post("/agents/me/state", headers=agent, json={"state": "available"})
            assert r.status_code == 200, r.text
            vip = (await api.get("/crm/customers", params={"q": "王伟"}, headers=agent)).json()
            r = await api.post("/work-orders", headers=agent, json={
                "customer_id": vip[0]["id"], "type": "complaint", "severity": "high",
                "description": "billed twice for March"})
            assert r.status_code == 201, r.text
            order_id = r.json()["id"]
            for body in ({"to": "in_progress"},
                         {"to": "resolved", "result": "refunded the second charge"}):
                r = await api.post(f"/work-orders/{order_id}/transition", headers=manager,
                                   json=body)
                assert r.status_code == 200, r.text

            # attempt 1: the agent answers, the customer does not
            async with await register_agent(pbx, "1004", mode="noanswer") as silent:
                await wait_until(lambda: len(outcomes.seen) == 1, timeout=30,
                                 what="the first attempt's outcome")
                assert _invited(silent) == 1
            assert outcomes.seen[0].outcome == "no_answer"
            assert outcomes.seen[0].work_order_id == order_id
            assert _invited(agent_phone) == 1  # the agent's phone first

            # attempt 2 after the interval: the customer answers, bridged with the agent
            async with await register_agent(pbx, "1004", ring_ms=500,
                                            pcap=_long_speech(pbx)) as customer:
                await wait_until(lambda: len(outcomes.seen) == 2, timeout=RETRY_S + 30,
                                 what="the second attempt's outcome")
                second = outcomes.seen[1]
                assert second.outcome == "connected", outcomes.seen
                assert second.agent_id == "1001"
                gap = (second.at - outcomes.seen[0].at).total_seconds()
                assert gap >= RETRY_S, gap  # not before the configured interval
                (invite,) = customer.invites()
                assert invite.first_line.startswith(f"INVITE sip:{VIP}@"), invite.first_line
                bridge = await _bridge_of(service, second.call_id)
                assert bridge is not None
                assert len(bridge.channels) == 2
                agent_leg = next(c for c in bridge.channels if c != second.call_id)
                assert agent_leg.startswith("outa-")
                assert _invited(agent_phone) == 2
                assert service.acd.agent_status("1001").state is AgentState.ON_CALL
                await service.telephony.hangup(second.call_id)

            detail = (await api.get(f"/work-orders/{order_id}", headers=manager)).json()
            notes = [h["note"] for h in detail["history"] if h["action"] == "callback"]
            assert notes[0] == f"call-back scheduled: agent 1001 first, then {VIP}"
            assert notes[1] == "call-back attempt 1 of 3: ringing agent 1001"
            assert notes[2].startswith("call-back attempt 1: no_answer")
            assert "next attempt at" in notes[2]
            assert "call-back attempt 2 of 3: ringing agent 1001" in notes
            assert notes[-1] == f"call-back attempt 2: connected, agent 1001 with {VIP}"
            assert all(h["actor"] == "system" for h in detail["history"]
                       if h["action"] == "callback")
            # the second attempt's call, in the kept event stream like any call
            kept = (await api.get(f"/calls/{second.call_id}/events", headers=manager)).json()
            types = [e["type"] for e in kept]
            for expected in ("OutboundCallPlaced", "CallOffered", "CallConnected",
                             "OutboundCallOutcome", "CallEnded"):
                assert expected in types, types
            placed = next(e for e in kept if e["type"] == "OutboundCallPlaced")
            assert placed["payload"]["purpose"] == "callback"
            assert placed["payload"]["work_order_id"] == order_id
            await wait_until(lambda: order_id not in service.complaint_callbacks.active,
                             what="the call-back finished")
    finally:
        await service.stop()
