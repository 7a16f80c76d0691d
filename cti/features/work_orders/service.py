"""Work orders: create (from the agent page during a call, with the caller's CRM record and the
call linked), read, list, move through the status flow, assign / reassign / hand over,
acknowledge complaints; and the timers (reminders, the overdue alert, escalations).

Every change goes through the pure state machine (cti/domain/work_orders.py), is written with
its history entries, and is published on the bus. Who may do what:

- agents create orders, and read, move and hand over the orders they own or created;
- supervisors (team leads, duty managers) assign and reassign, and read and move any order.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from cti.domain.crm import Customer
from cti.domain.work_orders import (
    DONE,
    OPEN,
    SYSTEM,
    Acknowledge,
    AddNote,
    Assign,
    Command,
    InvalidCommand,
    Owner,
    Status,
    Tick,
    Transition,
    WorkOrder,
    WorkOrderConfig,
    WorkOrderEvent,
    create,
    next_timer,
    step,
)
from cti.events import Bus, CallEnded, CustomerIdentified
from cti.features.auth.service import Principal, Role
from cti.features.work_orders.config import WorkOrderRules
from cti.features.work_orders.storage import WorkOrderStore
from cti.platform.clock import Clock
from cti.platform.errors import Conflict, Forbidden, NotFound
from cti.platform.log import get_logger

log = get_logger(__name__)

CALLS_REMEMBERED = 10_000  # call id -> the caller's customer id, for orders made during a call


class InvalidWorkOrder(Conflict):
    """The command does not apply to the order as it is (an illegal move, say)."""

    error_id = "work_order_invalid"


class Customers(Protocol):
    async def get(self, customer_id: int) -> Customer:
        """The customer; NotFound when there is none."""
        ...


class WorkOrders:
    def __init__(
        self, store: WorkOrderStore, rules: WorkOrderRules, bus: Bus, clock: Clock,
        customers: Customers | None = None,
    ) -> None:
        self.store = store
        self.customers = customers
        self.rules = rules
        self.bus = bus
        self.clock = clock
        self._callers: OrderedDict[str, int | None] = OrderedDict()
        self.timers_changed = asyncio.Event()  # the driver re-reads the earliest timer
        bus.subscribe("work_orders.callers", self.on_call_event, (CustomerIdentified, CallEnded))

    @property
    def config(self) -> WorkOrderConfig:
        return self.rules.config

    # ----- the caller of a call ------------------------------------------------------------

    async def on_call_event(self, event: CustomerIdentified | CallEnded) -> None:
        """Remember the caller's customer id per call (kept a while after the call ends: the
        order is often written during wrap-up)."""
        if isinstance(event, CustomerIdentified):
            self._callers[event.call_id] = event.customer.id if event.customer else None
            while len(self._callers) > CALLS_REMEMBERED:
                self._callers.popitem(last=False)

    def caller_of(self, call_id: str) -> int | None:
        return self._callers.get(call_id)

    # ----- commands ------------------------------------------------------------------------

    async def create(
        self, who: Principal, *, type_name: str, severity: str, description: str = "",
        call_id: str | None = None, customer_id: int | None = None, owner: Owner | None = None,
    ) -> WorkOrder:
        if owner is not None and owner.kind == "agent" and owner.id != who.agent_id:
            _require_supervisor(who, "assign a new order to another agent")
        if owner is None and who.agent_id is not None:
            owner = Owner("agent", who.agent_id)
        if customer_id is None and call_id is not None:
            customer_id = self.caller_of(call_id)
        elif customer_id is not None and self.customers is not None:
            await self.customers.get(customer_id)  # NotFound: no such customer
        config = self.config
        if owner is not None and owner.kind == "team" and owner.id not in config.teams:
            raise InvalidWorkOrder(f"unknown team {owner.id!r}")
        now = self.clock.now()
        prior: list[datetime] = []
        kind = config.types.get(type_name)
        if kind is not None and kind.complaint and customer_id is not None:
            windows = [r.repeat_within for r in config.escalations if r.repeat_count]
            since = now - max((w for w in windows if w), default=timedelta(days=3650))
            prior = await self.store.complaints_since(customer_id, since)

        def build(order_id: int) -> tuple[WorkOrder, list[WorkOrderEvent]]:
            try:
                return create(
                    config, order_id=order_id, type_name=type_name, severity=severity, at=now,
                    actor=who.username, description=description, owner=owner,
                    call_id=call_id, customer_id=customer_id, prior_complaints=prior,
                )
            except InvalidCommand as exc:
                raise InvalidWorkOrder(str(exc)) from None

        order, events = await self.store.create(build, lambda o: next_timer(config, o))
        self._publish(events)
        log.info("work_order.created", order_id=order.id, type=type_name, severity=severity,
                 owner=str(order.owner), by=who.username)
        return order

    async def transition(
        self, who: Principal, order_id: int, to: Status, note: str = "",
        result: str | None = None,
    ) -> WorkOrder:
        return await self._apply(who, order_id, Transition(to, note, result))

    async def assign(
        self, who: Principal, order_id: int, owner: Owner, note: str = ""
    ) -> WorkOrder:
        """Supervisors assign and reassign any order; an agent hands over an order they own."""
        if owner.kind == "team" and owner.id not in self.config.teams:
            raise InvalidWorkOrder(f"unknown team {owner.id!r} (known: "
                                   f"{', '.join(sorted(self.config.teams))})")
        return await self._apply(who, order_id, Assign(owner, note), handover=True)

    async def acknowledge(self, who: Principal, order_id: int, note: str = "") -> WorkOrder:
        return await self._apply(who, order_id, Acknowledge(note))

    async def add_note(self, who: Principal, order_id: int, note: str) -> WorkOrder:
        return await self._apply(who, order_id, AddNote(note))

    async def record(self, order_id: int, action: str, note: str) -> WorkOrder:
        """A history line written by the system (e.g. a call-back attempt), no user asked."""
        def change(order: WorkOrder) -> tuple[WorkOrder, datetime | None, list[WorkOrderEvent]]:
            new, events = self._step(order, AddNote(note, action), self.clock.now(), SYSTEM)
            return new, next_timer(self.config, new), events

        new, events = await self.store.update(order_id, change)
        self._publish(events)
        return new

    async def _apply(
        self, who: Principal, order_id: int, command: Command, *, handover: bool = False
    ) -> WorkOrder:
        def change(order: WorkOrder) -> tuple[WorkOrder, datetime | None, list[WorkOrderEvent]]:
            if handover:
                if not (who.may(Role.SUPERVISOR) or _owns(who, order)):
                    raise Forbidden("only supervisors assign; an agent hands over their own "
                                    "orders")
            else:
                self._require_update(who, order)
            new, events = self._step(order, command, self.clock.now(), who.username)
            return new, next_timer(self.config, new), events

        # read, checked, stepped and written in one transaction (docs/storage.md)
        new, events = await self.store.update(order_id, change)
        self._publish(events)
        return new

    def _step(self, order: WorkOrder, command: Command, at: datetime, actor: str
              ) -> tuple[WorkOrder, list[WorkOrderEvent]]:
        try:
            return step(self.config, order, command, at, actor)
        except InvalidCommand as exc:
            raise InvalidWorkOrder(str(exc)) from None

    # ----- reading -------------------------------------------------------------------------

    async def get(self, who: Principal, order_id: int) -> WorkOrder:
        order = await self.store.get(order_id)
        if not _may_read(who, order):
            # Not 403: an agent learns nothing about orders that are not theirs.
            raise NotFound(f"no work order {order_id}")
        return order

    async def search(
        self, who: Principal, *, owner: str = "me", status: str = "open",
        customer_id: int | None = None, limit: int = 100,
    ) -> list[WorkOrder]:
        """`owner`: me | any | agent:ID | team:NAME; `status`: open | done | all | a status."""
        owners: list[str] | None
        if owner == "me":
            owners = [f"agent:{who.agent_id}"] if who.agent_id else []
        elif owner == "any":
            owners = None
        else:
            try:
                owners = [str(Owner.parse(owner))]
            except ValueError as exc:
                raise InvalidWorkOrder(str(exc)) from None
        statuses = _statuses(status)
        mine = owners == [f"agent:{who.agent_id}"]
        if not who.may(Role.SUPERVISOR) and customer_id is None and not mine:
            raise Forbidden("agents list their own orders (owner=me)")
        orders = await self.store.search(owners=owners, statuses=statuses,
                                         customer_id=customer_id, limit=limit)
        return orders

    # ----- timers --------------------------------------------------------------------------

    async def run_timers(self, now: datetime) -> int:
        """Tick every order whose next timer is due at `now`; returns how many were ticked."""
        ids = await self.store.due(now)
        def tick(order: WorkOrder) -> tuple[WorkOrder, datetime | None, list[WorkOrderEvent]]:
            new, events = step(self.config, order, Tick(), now, SYSTEM)
            timer = next_timer(self.config, new)
            if timer is not None and timer <= now:  # a Tick handles all that is due
                log.error("work_order.timer_stuck", order_id=order.id, timer=timer)
                timer = now + timedelta(minutes=1)
            return new, timer, events

        for order_id in ids:
            try:
                _, events = await self.store.update(order_id, tick)
            except NotFound:
                continue
            self._publish(events)
        return len(ids)

    async def earliest_timer(self) -> datetime | None:
        return await self.store.earliest_timer()

    def _publish(self, events: Sequence[WorkOrderEvent]) -> None:
        for event in events:
            self.bus.publish(event)
        self.timers_changed.set()

    def _require_update(self, who: Principal, order: WorkOrder) -> None:
        if not (who.may(Role.SUPERVISOR) or _owns(who, order)):
            raise Forbidden("an agent updates only the orders they own")


def _owns(who: Principal, order: WorkOrder) -> bool:
    return who.agent_id is not None and order.owner == Owner("agent", who.agent_id)


def _may_read(who: Principal, order: WorkOrder) -> bool:
    return who.may(Role.SUPERVISOR) or _owns(who, order) or order.created_by == who.username


def _require_supervisor(who: Principal, what: str) -> None:
    if not who.may(Role.SUPERVISOR):
        raise Forbidden(f"only supervisors {what}")


def _statuses(status: str) -> list[Status] | None:
    if status == "open":
        return sorted(OPEN)
    if status == "done":
        return sorted(DONE)
    if status == "all":
        return None
    try:
        return [Status(status)]
    except ValueError:
        raise InvalidWorkOrder(
            f"status is open, done, all or one of {', '.join(s.value for s in Status)}"
        ) from None
