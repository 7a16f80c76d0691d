"""Follow-up messages end to end through real servers started by the tests: a local SMTP server
(aiosmtpd) receives the duty manager's e-mail for an escalated complaint and the customer's
e-mail; with the SMTP server down the message waits in the outbox and arrives once the server is
back; a local HTTP SMS gateway (aiohttp) receives the customer's SMS, and one that refuses a
message for good (4xx) marks it failed without retrying; a call-back given up (CallbackMissed)
e-mails a complaint's customer, and texts a queue caller's number.

The work orders, the bus, the outbox store and its driver are the real ones, on SQLite, with the
system clock and a short backoff."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from cti.domain.crm import Customer
from cti.domain.messages import Channel, Contact
from cti.domain.work_orders import Status
from cti.events import CallbackMissed, KnowledgeGapRecorded
from cti.features.auth.service import Principal, Role
from cti.features.crm.storage import CustomerRepository
from cti.features.messages.senders import HttpSmsGateway, Sender, SmtpMailer
from cti.features.messages.service import FollowUps
from cti.features.messages.settings import (
    MessagesSettings,
    RetrySettings,
    SmsGatewaySettings,
    SmtpSettings,
)
from cti.features.messages.storage import OutboxStore
from cti.features.work_orders.config import WorkOrderRules
from cti.features.work_orders.service import WorkOrders
from cti.features.work_orders.storage import WorkOrderStore
from cti.platform.bus import InProcessBus
from cti.platform.clock import SystemClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async
from cti.platform.settings import REPO_ROOT

AGENT = Principal(1, "agent1001", Role.AGENT, "1001", "Agent", "zh")
DUTY = "duty@example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.mails.append((list(envelope.rcpt_tos), mail))
        return "250 OK"


@dataclass
class World:
    orders: WorkOrders
    messages: FollowUps
    store: OutboxStore
    bus: InProcessBus
    customers: CustomerRepository
    smtp_port: int
    closers: list[Callable[[], Any]] = field(default_factory=list)


async def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 (polls the database, not a flag)
            await asyncio.sleep(0.05)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Any]:
    async def build(sms_url: str | None = None) -> World:
        url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
        await upgrade_async(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        clock = SystemClock()
        bus = InProcessBus()
        port = free_port()
        settings = MessagesSettings(
            smtp=SmtpSettings(host="127.0.0.1", port=port, from_address="cti@example.com",
                              timeout_s=2),
            sms=SmsGatewaySettings(url=sms_url, token="s3cret") if sms_url else None,
            escalation_emails={"duty_manager": [DUTY]},
            retry=RetrySettings(first_s=0.2, factor=1.5, longest_s=0.5),
        )
        customers = CustomerRepository(sessions, clock)
        orders = WorkOrders(WorkOrderStore(sessions),
                            WorkOrderRules(REPO_ROOT / "config" / "work_orders.yaml"), bus,
                            clock, customers=customers)
        senders: dict[Channel, Sender] = {Channel.EMAIL: SmtpMailer(settings.smtp)}  # type: ignore[arg-type]
        if settings.sms is not None:
            senders[Channel.SMS] = HttpSmsGateway(settings.sms)
        store = OutboxStore(sessions)
        messages = FollowUps(settings, store, bus, clock, orders=orders.store,
                             customers=customers, senders=senders,
                             company={"zh": "示例科技", "en": "Example Tech"})
        messages.start()
        w = World(orders, messages, store, bus, customers, port)
        w.closers += [messages.aclose, bus.aclose, engine.dispose]
        made.append(w)
        return w

    made: list[World] = []
    yield build
    for w in made:
        for close in w.closers:
            await close()


def sent(w: World, order_id: int) -> Callable[[], Any]:
    async def check() -> bool:
        rows = await w.store.list(order_id=order_id)
        return bool(rows) and all(r.status == "sent" for r in rows)

    return check


def smtp_server(port: int) -> tuple[Controller, Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, inbox


async def test_an_escalated_complaint_emails_the_duty_manager(world: Any) -> None:
    w: World = await world()
    controller, inbox = smtp_server(w.smtp_port)
    try:
        order = await w.orders.create(AGENT, type_name="complaint", severity="critical",
                                      description="billing error, second time")

        async def arrived() -> bool:
            return len(inbox.mails) >= 1

        await until(arrived)
    finally:
        controller.stop()
    to, mail = inbox.mails[0]
    assert to == [DUTY]
    assert mail["Subject"] == f"升级:工单 {order.id}(complaint,critical)"
    body = mail.get_content()
    assert "critical_complaint" in body
    assert "duty_manager" in body
    await until(sent(w, order.id))  # the server took it; the outbox row follows
    [row] = await w.store.list(order_id=order.id)
    assert (row.status, row.attempts, row.recipient) == ("sent", 1, DUTY)


async def test_smtp_down_the_message_waits_and_is_sent_when_it_comes_back(world: Any) -> None:
    w: World = await world()
    order = await w.orders.create(AGENT, type_name="complaint", severity="critical",
                                  description="no server yet")

    async def retried() -> bool:
        rows = await w.store.list(order_id=order.id)
        return bool(rows) and rows[0].attempts >= 2

    await until(retried)  # refused at least twice, still pending
    [row] = await w.store.list(order_id=order.id)
    assert row.status == "pending"
    assert "SMTP 127.0.0.1" in row.last_error

    controller, inbox = smtp_server(w.smtp_port)  # the mail server comes back
    try:
        async def arrived() -> bool:
            return len(inbox.mails) == 1

        await until(arrived)
        await until(sent(w, order.id))
    finally:
        controller.stop()
    [row] = await w.store.list(order_id=order.id)
    assert row.status == "sent"
    assert row.attempts >= 3
    assert inbox.mails[0][0] == [DUTY]


class Gateway:
    """A local HTTP SMS gateway: answers each POST with the next status of `statuses`."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, Any], str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.json(), request.headers.get("Authorization", "")))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return web.json_response({"ok": status < 300}, status=status)


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[[list[int]], Any]]:
    runners: list[web.AppRunner] = []

    async def start(statuses: list[int]) -> tuple[Gateway, str]:
        gw = Gateway(statuses)
        app = web.Application()
        app.router.add_post("/sms", gw.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return gw, f"http://127.0.0.1:{port}/sms"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_the_customer_gets_an_sms_through_the_gateway_after_a_503(
    world: Any, gateway: Any
) -> None:
    gw, url = await gateway([503, 200])
    w: World = await world(sms_url=url)
    customer = await w.customers.add(Customer(None, ("+8613800138000",), name="王先生"))
    assert customer.id is not None
    await w.messages.store.set_contact(customer.id, Contact(language="en"),
                                       w.messages.clock.now())
    order = await w.orders.create(AGENT, type_name="service_request", severity="normal",
                                  customer_id=customer.id, description="router broken")

    async def sent() -> bool:
        rows = await w.store.list(order_id=order.id)
        return bool(rows) and rows[0].status == "sent"

    await until(sent)
    assert len(gw.received) == 2  # the 503, then the accepted one
    payload, auth = gw.received[-1]
    assert payload["to"] == "+8613800138000"
    assert f"request {order.id} is registered" in payload["text"]  # English, as asked
    assert auth == "Bearer s3cret"


async def test_a_gateway_refusal_fails_the_sms_without_retrying(
    world: Any, gateway: Any
) -> None:
    gw, url = await gateway([400])
    w: World = await world(sms_url=url)
    customer = await w.customers.add(Customer(None, ("+8613800138001",), name="李"))
    assert customer.id is not None
    order = await w.orders.create(AGENT, type_name="service_request", severity="normal",
                                  customer_id=customer.id)

    async def failed() -> bool:
        rows = await w.store.list(order_id=order.id, status="failed")
        return bool(rows)

    await until(failed)
    await asyncio.sleep(0.6)  # longer than the backoff: no second try comes
    assert len(gw.received) == 1
    [row] = await w.store.list(order_id=order.id)
    assert "SMS gateway 400" in row.last_error
    assert "已受理" in gw.received[0][0]["text"]  # Chinese by default


async def test_resolving_an_order_tells_the_customer_once(world: Any, gateway: Any) -> None:
    gw, url = await gateway([200])
    w: World = await world(sms_url=url)
    customer = await w.customers.add(Customer(None, ("+8613800138002",), name="张"))
    assert customer.id is not None
    order = await w.orders.create(AGENT, type_name="service_request", severity="normal",
                                  customer_id=customer.id)
    await w.orders.transition(AGENT, order.id, Status.IN_PROGRESS)
    await w.orders.transition(AGENT, order.id, Status.RESOLVED, result="已更换路由器")

    async def three() -> bool:
        return len(await w.store.list(order_id=order.id, status="sent")) == 3

    await until(three)
    texts = [p["text"] for p, _ in gw.received]
    assert any("已解决:已更换路由器" in t for t in texts)
    assert sum("已解决" in t for t in texts) == 1


async def test_a_knowledge_gap_emails_the_duty_manager(world: Any) -> None:
    w: World = await world()
    controller, inbox = smtp_server(w.smtp_port)
    try:
        w.bus.publish(KnowledgeGapRecorded(12, w.messages.clock.now(), "积分怎么兑换话费?",
                                           "agent1001", "zh", "1001", "call-9"))

        async def arrived() -> bool:
            return len(inbox.mails) == 1

        await until(arrived)
    finally:
        controller.stop()
    to, mail = inbox.mails[0]
    assert to == [DUTY]
    assert mail["Subject"] == "知识库缺口 12:请值班经理答复"
    assert "积分怎么兑换话费?" in mail.get_content()


async def test_a_missed_complaint_call_back_emails_the_customer(world: Any) -> None:
    w: World = await world()
    customer = await w.customers.add(Customer(None, ("+8613800138003",), name="赵"))
    assert customer.id is not None
    await w.messages.store.set_contact(customer.id, Contact(email="zhao@example.com"),
                                       w.messages.clock.now())
    order = await w.orders.create(AGENT, type_name="complaint", severity="normal",
                                  customer_id=customer.id, description="late refund")
    controller, inbox = smtp_server(w.smtp_port)
    try:
        w.bus.publish(CallbackMissed("complaint", w.messages.clock.now(), "+8613800138003", 3,
                                     order_id=order.id, customer_id=customer.id))

        async def arrived() -> bool:
            return any("回电未接通" in str(m["Subject"]) for _, m in inbox.mails)

        await until(arrived)
    finally:
        controller.stop()
    [(to, mail)] = [(t, m) for t, m in inbox.mails if "回电未接通" in str(m["Subject"])]
    assert to == ["zhao@example.com"]
    assert mail["Subject"] == f"示例科技:工单 {order.id} 回电未接通"
    assert "回电 3 次未能接通" in mail.get_content()
    rows = [r for r in await w.store.list(order_id=order.id) if r.kind == "callback_missed"]
    assert [(r.channel, r.recipient) for r in rows] == [("email", "zhao@example.com")]


async def test_a_missed_queue_call_back_texts_the_number_once(
    world: Any, gateway: Any
) -> None:
    gw, url = await gateway([200])
    w: World = await world(sms_url=url)
    missed = CallbackMissed("queue", w.messages.clock.now(), "+8613800000702", 2,
                            call_id="call-7", queue="general", language="en")
    w.bus.publish(missed)
    w.bus.publish(missed)  # the same event handled twice: one message

    async def sent_once() -> bool:
        rows = [r for r in await w.store.list() if r.kind == "queue_callback_missed"]
        return [(r.channel, r.status) for r in rows] == [("sms", "sent")]

    await until(sent_once)
    await w.bus.drain()
    assert len(gw.received) == 1
    payload, _ = gw.received[0]
    assert payload["to"] == "+8613800000702"
    assert payload["text"] == ("[Example Tech] We tried to call you back at +8613800000702 "
                               "(2 times) as you asked while waiting, without reaching you; "
                               "please call us again when convenient.")
