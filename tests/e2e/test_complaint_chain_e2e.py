"""The whole complaint chain as one story on one call (issue 11), on PostgreSQL, the sandbox
Asterisk, chromium and sipp:

1. The demo VIP (王伟, +49305551) calls; the ACD connects him to agent 1001's sipp phone; on the
   agent's page in chromium the pop card shows him and the agent opens a complaint from it.
2. The complaint is not acknowledged within its (test) deadline of a few seconds: the
   `not_acknowledged` escalation fires and the duty manager's e-mail goes to the outbox. The
   SMTP server (aiosmtpd, started by the test) is down then: the message waits, is retried on a
   short spacing, and arrives once the server is started.
3. The agent's phone hangs up first; the caller, still on the line, hears the survey and answers
   it with RFC 2833 keys 5, 1, 3; the survey is stored linked to the call, agent, queue and the
   complaint, and the supervisors' report shows it (offered 1, answered 1).
4. The duty manager resolves the complaint over the API; the system rings agent 1001's phone
   (Ready again), then the customer (a sipp phone answering for the trunk, endpoint 1004), and
   bridges them.

Run with an instance of your own:
  CTI_E2E_INSTANCE_SUFFIX=csat .venv/bin/pytest tests/e2e/test_complaint_chain_e2e.py -q
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller
from playwright.async_api import async_playwright, expect

from cti.app import create_app
from cti.domain.ivr.config import DetectionSettings
from cti.events import OutboundCallOutcome, SurveyAnswered, WorkOrderEscalated
from cti.features.desk.demo import seed_demo_desk
from cti.features.messages.settings import MessagesSettings, RetrySettings, SmtpSettings
from cti.platform.db.migrate import upgrade_async
from cti.platform.settings import REPO_ROOT, OutboundSettings
from cti.runtime import Service
from tests.api.desk_app import served
from tests.conftest import PG_DSN
from tests.e2e import media
from tests.e2e.conftest import DATA, REPO_FLOWS, service_settings, wait_until
from tests.e2e.pbx import Pbx, register_agent, run_sipp
from tests.e2e.test_agent_desk_e2e import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIP_NUMBER,
    _agent_page,
    _bridge_of,
    _caller_channel,
    _go_available,
)
from tests.e2e.test_work_orders_page_e2e import _token

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

DUTY = "duty@example.com"
ACK_WITHIN_S = 6  # the test's complaint acknowledgement deadline
TALK_MS = 12_000  # the agent's phone hangs up this long after answering
KEYS_AFTER_MS = TALK_MS + 5_000  # the caller's first survey key, from the call's answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """aiosmtpd handler: every message it accepts."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.mails.append((list(envelope.rcpt_tos), mail))
        return "250 OK"


class Seen:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def note(self, event: Any) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class Chain:
    service: Service
    smtp_port: int
    seen: Seen


def _work_orders(tmp: Path) -> Path:
    text = (REPO_ROOT / "config" / "work_orders.yaml").read_text(encoding="utf-8")
    short = text.replace(
        "high: {resolve_within_h: 24, priority: 2, reminders_before_min: [120], "
        "acknowledge_within_min: 60}",
        "high: {resolve_within_h: 24, priority: 2, reminders_before_min: [120], "
        f"acknowledge_within_min: {ACK_WITHIN_S / 60}}}",
    ).replace("  attempts: 3\n  retry_after_min: 10\n",
              "  attempts: 3\n  retry_after_min: 0.1\n  agent_poll_min: 0.02\n")
    assert f"acknowledge_within_min: {ACK_WITHIN_S / 60}" in short
    assert "agent_poll_min: 0.02" in short
    path = tmp / "work_orders.yaml"
    path.write_text(short, encoding="utf-8")
    return path


def _rules(tmp: Path) -> Path:
    """The desk's rules (open around the clock) with the survey on the general queue."""
    text = (DATA / "desk_routing.yaml").read_text(encoding="utf-8")
    text = text.replace("  general:\n    skills: {general: 1}\n",
                        "  general:\n    skills: {general: 1}\n    survey: true\n")
    assert "survey: true" in text
    path = tmp / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _flows(tmp: Path) -> Path:
    flows = tmp / "flows"
    shutil.copytree(DATA / "desk_flows", flows)
    shutil.copy(REPO_FLOWS / "queue_survey.yaml", flows)
    return flows


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chain(pbx: Pbx, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chain]:
    tmp = tmp_path_factory.mktemp("chain")
    name = f"cti_chain_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    smtp_port = _free_port()  # nothing listens there until the test starts the server
    service: Service | None = None
    try:
        await upgrade_async(url)
        settings = service_settings(
            pbx, url, inbound_flow="desk_inbound", flows_dir=_flows(tmp),
            rules_file=_rules(tmp), work_orders_file=_work_orders(tmp),
            detection=DetectionSettings(auto_start=False),
            outbound=OutboundSettings(dial="PJSIP/{number}@1004", caller_id="+864001234567",
                                      customer_ring_s=10),
            messages=MessagesSettings(
                smtp=SmtpSettings(host="127.0.0.1", port=smtp_port,
                                  from_address="cti@example.com", timeout_s=2),
                escalation_emails={"duty_manager": [DUTY]},
                retry=RetrySettings(first_s=1, factor=1, longest_s=1)),
        )
        service = Service.build(settings)
        seen = Seen()
        service.bus.subscribe("test.chain", seen.note,
                              (WorkOrderEscalated, SurveyAnswered, OutboundCallOutcome))
        await service.start()
        await seed_demo_desk(service.sessions)
        yield Chain(service, smtp_port, seen)
    finally:
        if service is not None:
            await service.stop()
        admin = await asyncpg.connect(PG_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_a_complaint_from_call_to_escalation_mail_survey_and_call_back(
    pbx: Pbx, chain: Chain, tmp_path: Path
) -> None:
    service, seen = chain.service, chain.seen
    keys = tmp_path / "survey-keys.pcap"
    media.write_dtmf_pcap(keys, "513", gap_ms=4000)  # speed fast, resolved yes, attitude 3
    smtp: Controller | None = None
    caller: asyncio.Task[Any] | None = None
    async with (
        served(create_app(service)) as base,
        httpx.AsyncClient(base_url=base) as api,
        async_playwright() as pw,
        await register_agent(pbx, "1001", mode="answer_bye", ring_ms=500,
                             talk_ms=TALK_MS) as agent_phone,
    ):
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            manager = await _token(base, "supervisor", "supervisor-pw")
            page = await _agent_page(browser, base, "1001")
            await _go_available(page)

            # 1. the VIP calls; the agent opens a complaint from the pop card
            caller = asyncio.create_task(run_sipp(
                pbx, "caller_dtmf_wait_bye", service="4000", caller=VIP_NUMBER,
                caller_name="Customer", pcap=pbx.media("silence"), dtmf_pcap=keys,
                variables={"dtmf_delay_ms": KEYS_AFTER_MS}, max_wait_s=90, timeout=100))
            card = page.get_by_test_id("pop-card")
            await expect(card.get_by_test_id("customer-name")).to_have_text("王伟",
                                                                            timeout=15000)
            await expect(card).to_have_attribute("data-state", "connected", timeout=10000)
            call_id = await _caller_channel(service, VIP_NUMBER)
            form = card.get_by_test_id("wo-create")
            await form.locator("select[name=type]").select_option("complaint")
            await form.locator("select[name=severity]").select_option("high")
            await form.locator("textarea[name=description]").fill("billed twice for March")
            await form.locator("button[type=submit]").click()
            status = card.get_by_test_id("wo-create-status")
            await expect(status).to_have_attribute("data-order-id", re.compile(r"^\d+$"),
                                                   timeout=5000)
            order_id = int(await status.get_attribute("data-order-id") or 0)
            order = (await api.get(f"/work-orders/{order_id}", headers=manager)).json()
            assert (order["complaint"], order["call_id"], order["owner"]) == (
                True, call_id, "agent:1001")

            # 2. the acknowledgement deadline passes: escalated, the mail waits for the server
            await wait_until(lambda: bool(seen.of(WorkOrderEscalated)), ACK_WITHIN_S + 10,
                             "the escalation")
            (escalated,) = seen.of(WorkOrderEscalated)
            assert (escalated.order_id, escalated.rule) == (order_id, "not_acknowledged")

            async def duty_mail() -> dict[str, Any] | None:
                r = await api.get("/messages/outbox", params={"order_id": order_id},
                                  headers=manager)
                assert r.status_code == 200, r.text
                return next((m for m in r.json() if m["recipient"] == DUTY), None)

            refused = None
            for _ in range(200):  # the first attempt finds no server
                refused = await duty_mail()
                if refused and refused["attempts"] >= 1:
                    break
                await asyncio.sleep(0.05)
            assert refused is not None, "no e-mail to the duty manager in the outbox"
            assert refused["status"] == "pending", refused
            assert "127.0.0.1" in (refused["last_error"] or ""), refused

            inbox = Inbox()
            smtp = Controller(inbox, hostname="127.0.0.1", port=chain.smtp_port)
            smtp.start()  # the mail server comes back
            await wait_until(lambda: any(to == [DUTY] for to, _ in inbox.mails), 10,
                             "the duty manager's e-mail")
            (mail,) = [m for to, m in inbox.mails if to == [DUTY]]
            assert str(order_id) in mail["Subject"]
            assert "not_acknowledged" in mail.get_content()

            # 3. the agent's phone hangs up; the caller answers the survey by keypad
            await wait_until(lambda: bool(seen.of(SurveyAnswered)), 45, "the survey")
            result = await caller
            caller = None
            assert result.ok, result.describe()
            (survey,) = (await api.get(f"/calls/{call_id}/surveys", headers=manager)).json()
            assert (survey["channel"], survey["agent_id"], survey["queue"],
                    survey["work_order_id"]) == ("ivr", "1001", "general", order_id)
            assert (survey["speed"], survey["resolved"], survey["attitude"]) == (5, True, 3)
            # ... and in the supervisors' report: offered once, answered once
            r = await api.get("/reports/queues", headers=manager, params={
                "since": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "interval": "all", "tz": "UTC"})
            assert r.status_code == 200, r.text
            (row,) = [a for a in r.json()["agents"] if a["agent_id"] == "1001"]
            assert (row["calls"], row["csat_surveys"], row["csat_offered"],
                    row["csat_response_rate"], row["csat_speed"], row["csat_attitude"],
                    row["csat_resolved_rate"]) == (1, 1, 1, 1.0, 5.0, 3.0, 1.0)

            # 4. resolved by the duty manager: the agent's phone, then the customer, bridged
            async with await register_agent(pbx, "1004", ring_ms=500) as customer:
                for body in ({"to": "in_progress"},
                             {"to": "resolved", "result": "refunded the second charge"}):
                    r = await api.post(f"/work-orders/{order_id}/transition",
                                       headers=manager, json=body)
                    assert r.status_code == 200, r.text
                await wait_until(lambda: bool(seen.of(OutboundCallOutcome)), 30,
                                 "the call-back's outcome")
                (outcome,) = seen.of(OutboundCallOutcome)
                assert (outcome.outcome, outcome.agent_id, outcome.work_order_id) == (
                    "connected", "1001", order_id)
                bridge = await _bridge_of(service, outcome.call_id)
                assert bridge is not None
                assert len(bridge.channels) == 2
                (invite,) = customer.invites()
                assert invite.first_line.startswith(f"INVITE sip:{VIP_NUMBER}@")
                assert len(agent_phone.invites()) == 2  # the call, then the call-back
                await service.telephony.hangup(outcome.call_id)
            detail = (await api.get(f"/work-orders/{order_id}", headers=manager)).json()
            notes = [h["note"] for h in detail["history"] if h["action"] == "callback"]
            assert notes[-1] == f"call-back attempt 1: connected, agent 1001 with {VIP_NUMBER}"
        finally:
            if caller is not None:
                caller.cancel()
                await asyncio.gather(caller, return_exceptions=True)
            if smtp is not None:
                smtp.stop()
            await browser.close()
