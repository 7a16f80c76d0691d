"""Follow-up messages: a bus subscriber turns work-order events into messages in the outbox, and
a driver sends what is due, trying again with backoff until the mail server or SMS gateway takes
it (cti.domain.messages.RetryPolicy). Writing to the outbox comes first, so nothing is lost
while a server is down or the service restarts.

What is sent (texts in config/messages.yaml, docs/messages.md):

- the customer of an order (e-mail and/or SMS, in their language): created, progress (in
  progress / waiting for the customer), resolved;
- the escalation target's staff (`messages.escalation_emails`): every escalation, by e-mail;
- the customer of a call-back given up after its attempts (CallbackMissed): a resolved
  complaint's ("callback_missed", to the order's customer) or a queue caller's
  ("queue_callback_missed", an SMS to the number that was called).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

from cti.domain.crm import Customer
from cti.domain.messages import (
    Attempt,
    Channel,
    Contact,
    Draft,
    OrderFacts,
    RetryPolicy,
    Templates,
    after_attempt,
    contact_drafts,
    customer_drafts,
    customer_kind,
    pick_language,
    staff_drafts,
    staff_mail,
)
from cti.domain.work_orders import (
    WorkOrder,
    WorkOrderCreated,
    WorkOrderEscalated,
    WorkOrderStatusChanged,
)
from cti.events import Bus, CallbackMissed, KnowledgeGapRecorded
from cti.features.messages.senders import Sender, SendFailed
from cti.features.messages.settings import MessagesSettings
from cti.features.messages.storage import OutboxItem, OutboxStore
from cti.features.messages.templates import load_templates
from cti.features.work_orders.driver import sleep_until_woken
from cti.platform.clock import Clock
from cti.platform.errors import NotFound
from cti.platform.log import get_logger

log = get_logger(__name__)

DUTY_MANAGER = "duty_manager"  # the escalation target whose addresses hear of knowledge gaps
IDLE = timedelta(minutes=1)  # with nothing due, look again this often anyway
BATCH = 50


class OrderReader(Protocol):
    async def get(self, order_id: int, *, history: bool = True) -> WorkOrder: ...


class CustomerReader(Protocol):
    async def get(self, customer_id: int) -> Customer: ...


class Sleeper(Protocol):
    async def sleep_until(self, instant: datetime) -> None: ...


class ClockSleeper:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def sleep_until(self, instant: datetime) -> None:
        delay = (instant - self.clock.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


def retry_policy(settings: MessagesSettings) -> RetryPolicy:
    r = settings.retry
    return RetryPolicy(timedelta(seconds=r.first_s), r.factor, timedelta(seconds=r.longest_s),
                       timedelta(hours=r.give_up_after_h))


class FollowUps:
    def __init__(
        self, settings: MessagesSettings, store: OutboxStore, bus: Bus, clock: Clock, *,
        orders: OrderReader, customers: CustomerReader, senders: Mapping[Channel, Sender],
        company: Mapping[str, str], language: str = "zh", sleeper: Sleeper | None = None,
        templates: Templates | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.orders = orders
        self.customers = customers
        self.senders = dict(senders)
        self.company = dict(company)
        self.language = language
        self.templates = templates or load_templates(settings.templates_file)
        self.policy = retry_policy(settings)
        self.sleeper = sleeper or ClockSleeper(clock)
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        bus.subscribe("messages.enqueue", self.on_event,
                      (WorkOrderCreated, WorkOrderStatusChanged, WorkOrderEscalated,
                       KnowledgeGapRecorded, CallbackMissed))

    # ----- events -> outbox --------------------------------------------------------------

    async def on_event(
        self, event: WorkOrderCreated | WorkOrderStatusChanged | WorkOrderEscalated
        | KnowledgeGapRecorded | CallbackMissed,
    ) -> None:
        if isinstance(event, CallbackMissed):
            drafts = await self.missed_drafts(event)
        elif isinstance(event, KnowledgeGapRecorded):
            # a question the knowledge base could not answer: the duty manager's e-mail
            drafts = staff_mail(
                self.templates, "knowledge_gap",
                self.settings.escalation_emails.get(DUTY_MANAGER, []),
                {"gap_id": event.gap_id, "question": event.question,
                 "asked_by": event.asked_by, "company": self.company.get(self.language, "")},
                language=self.language, key=f"gap:{event.gap_id}",
            )
        else:
            drafts = await self.drafts_for(event)
        drafts = [d for d in drafts if d.channel in self.senders]
        if drafts:
            added = await self.store.enqueue(drafts, self.clock.now())
            log.info("messages.queued", added=added, kinds=sorted({d.kind for d in drafts}))
            self.wake.set()

    async def drafts_for(
        self, event: WorkOrderCreated | WorkOrderStatusChanged | WorkOrderEscalated
    ) -> list[Draft]:
        try:
            order = await self.orders.get(event.order_id, history=False)
        except NotFound:
            return []
        if isinstance(event, WorkOrderEscalated):
            addresses = self.settings.escalation_emails.get(event.target, [])
            return staff_drafts(
                self.templates, "order_escalated", addresses, _facts(order, ""),
                company=self.company, language=self.language,
                key=f"escalated:{order.id}:{event.rule}",
                extra={"rule": event.rule, "reason": event.reason, "target": event.target,
                       "team": event.team, "owner": event.owner},
            )
        if isinstance(event, WorkOrderCreated):
            kind: str | None = "order_created"
            key = f"created:{order.id}"
        else:
            kind = customer_kind(event.from_status, event.to_status)
            key = f"status:{order.id}:{event.to_status}:{event.at.isoformat()}"
        if kind is None or order.customer_id is None:
            return []
        contact, name = await self._contact(order.customer_id)
        if contact is None:
            return []
        return customer_drafts(self.templates, kind, contact, _facts(order, name),
                               company=self.company, default_language=self.language, key=key)

    async def missed_drafts(self, event: CallbackMissed) -> list[Draft]:
        """The customer of a call-back given up: a complaint's through the order's customer
        (their e-mail and SMS), a queue caller's by SMS to the number that was called."""
        key = f"callback_missed:{event.kind}:{event.order_id or event.call_id}"
        if event.kind == "complaint" and event.order_id is not None:
            try:
                order = await self.orders.get(event.order_id, history=False)
            except NotFound:
                return []
            contact, name = (await self._contact(order.customer_id)
                             if order.customer_id is not None else (None, ""))
            if contact is None:
                contact = Contact(phone=event.number)
            return customer_drafts(
                self.templates, "callback_missed", contact, _facts(order, name),
                company=self.company, default_language=self.language, key=key,
                extra={"attempts": event.attempts})
        language = pick_language(event.language, self.language)
        values = {"company": self.company.get(language, ""), "number": event.number,
                  "queue": event.queue or "", "attempts": event.attempts}
        return contact_drafts(self.templates, "queue_callback_missed",
                              Contact(phone=event.number), values, language=language, key=key)

    async def _contact(self, customer_id: int) -> tuple[Contact | None, str]:
        """The stored contact; the SMS number defaults to the customer's main phone number."""
        try:
            customer: Customer | None = await self.customers.get(customer_id)
        except NotFound:
            customer = None
        stored = await self.store.contact(customer_id) or Contact()
        phone = stored.phone or (customer.numbers[0] if customer and customer.numbers else None)
        name = (customer.name or customer.surname) if customer else ""
        if not (stored.email or phone):
            return None, name
        return Contact(stored.email, phone, stored.language), name

    # ----- outbox -> the servers -------------------------------------------------------

    async def send_due(self) -> int:
        """One pass: every message due now is tried once. Returns how many were tried."""
        tried = 0
        while True:
            items = await self.store.due(self.clock.now(), BATCH)
            if not items:
                return tried
            for item in items:
                await self._send(item)
                tried += 1
            if len(items) < BATCH:
                return tried

    async def _send(self, item: OutboxItem) -> None:
        sender = self.senders.get(Channel(item.channel))
        error: str | None
        permanent = False
        if sender is None:
            error = f"no {item.channel} sender configured"
        else:
            try:
                await sender.send(item.recipient, item.subject, item.body)
                error = None
            except SendFailed as exc:
                error, permanent = exc.reason, exc.permanent
        now = self.clock.now()
        outcome = after_attempt(self.policy, Attempt(item.created_at, item.attempts), now,
                                error=error, permanent=permanent)
        await self.store.record(item.id, outcome)
        if error is None:
            log.info("messages.sent", id=item.id, channel=item.channel, kind=item.kind,
                     attempts=outcome.attempts)
        else:
            log.warning("messages.send_failed", id=item.id, channel=item.channel,
                        error=error, status=outcome.status.value, attempts=outcome.attempts,
                        next_attempt_at=outcome.next_attempt_at)

    async def run_once(self) -> datetime:
        now = self.clock.now()
        try:
            await self.send_due()
            earliest = await self.store.earliest()
        except Exception:  # the database away: look again later, the rows are kept
            log.exception("messages.outbox_failed")
            earliest = None
        later = self.clock.now() + IDLE
        return min(earliest, later) if earliest is not None and earliest > now else later

    async def run(self) -> None:
        while True:
            self.wake.clear()
            wake_at = await self.run_once()
            if wake_at <= self.clock.now():
                continue
            await sleep_until_woken(self.sleeper, wake_at, self.wake)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="messages-outbox")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sender in self.senders.values():
            close = getattr(sender, "aclose", None)
            if close is not None:
                await close()


def _facts(order: WorkOrder, customer_name: str) -> OrderFacts:
    return OrderFacts(order.id, order.type, order.severity, order.status.value,
                      order.due_at.strftime("%Y-%m-%d %H:%M UTC"), order.result, customer_name)


def make_senders(settings: MessagesSettings) -> dict[Channel, Sender]:
    from cti.features.messages.senders import HttpSmsGateway, SmtpMailer

    senders: dict[Channel, Sender] = {}
    if settings.smtp is not None:
        senders[Channel.EMAIL] = SmtpMailer(settings.smtp)
    if settings.sms is not None:
        senders[Channel.SMS] = HttpSmsGateway(settings.sms)
    return senders
