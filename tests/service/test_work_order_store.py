"""The work orders' storage on SQLite and PostgreSQL, through the service (the real state
machine and config): an order and its history written and read back, changes appended, the
open-orders list by owner and status (most urgent first), a customer's orders, the timers' due
list and earliest instant, and a customer's earlier complaints (repeat escalation)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from cti.domain.crm import Customer
from cti.domain.work_orders import Owner, Status
from cti.events import WorkOrderEscalated
from cti.features.auth.service import Principal, Role
from cti.features.crm.storage import CustomerRepository
from cti.features.work_orders.config import WorkOrderRules
from cti.features.work_orders.service import WorkOrders
from cti.features.work_orders.storage import WorkOrderStore
from cti.platform.bus import InProcessBus
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.settings import REPO_ROOT

A1 = Principal(1, "agent1001", Role.AGENT, "1001", "A", "zh")
A2 = Principal(2, "agent1002", Role.AGENT, "1002", "B", "zh")
BOSS = Principal(3, "supervisor", Role.SUPERVISOR, None, "S", "zh")


@pytest.fixture
async def env(database_url: str) -> AsyncIterator[tuple[WorkOrders, FakeClock, Any, Any]]:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    clock = FakeClock()
    bus = InProcessBus()
    customers = CustomerRepository(sessions, clock)
    orders = WorkOrders(WorkOrderStore(sessions),
                        WorkOrderRules(REPO_ROOT / "config" / "work_orders.yaml"), bus, clock,
                        customers=customers)
    yield orders, clock, customers, bus
    await bus.aclose()
    await engine.dispose()


async def test_an_order_and_its_history_round_trip(env: Any) -> None:
    orders, clock, customers, _ = env
    c = await customers.add(Customer(None, ("+8613800138000",), name="王"))
    made = await orders.create(A1, type_name="service_request", severity="high",
                               description="路由器坏了", call_id="call-1", customer_id=c.id)
    clock.advance(60)
    await orders.transition(A1, made.id, Status.IN_PROGRESS, note="看一下")
    clock.advance(60)
    await orders.transition(A1, made.id, Status.RESOLVED, result="已更换")
    got = await orders.store.get(made.id)
    assert (got.status, got.owner, got.result, got.customer_id, got.call_id) == (
        Status.RESOLVED, Owner("agent", "1001"), "已更换", c.id, "call-1")
    assert got.due_at == made.created_at + timedelta(hours=8)
    assert got.created_at.tzinfo is not None
    assert [h.action for h in got.history] == ["created", "status", "status"]
    assert got.history[1].note == "看一下"
    assert got.history[2].at == made.created_at + timedelta(seconds=120)
    assert ("status", "in_progress", "resolved") in [
        (ch.field, ch.old, ch.new) for ch in got.history[2].changes]


async def test_open_orders_by_owner_most_urgent_first(env: Any) -> None:
    orders, _clock, _, _ = env
    low = await orders.create(A1, type_name="service_request", severity="low")
    crit = await orders.create(A1, type_name="service_request", severity="critical")
    normal = await orders.create(A1, type_name="service_request", severity="normal")
    other = await orders.create(A2, type_name="service_request", severity="critical")
    done = await orders.create(A1, type_name="service_request", severity="high")
    await orders.transition(A1, done.id, Status.IN_PROGRESS)
    await orders.transition(A1, done.id, Status.RESOLVED, result="ok")
    mine = await orders.search(A1, owner="me", status="open")
    assert [o.id for o in mine] == [crit.id, normal.id, low.id]
    assert other.id not in [o.id for o in mine]
    assert [o.id for o in await orders.search(BOSS, owner="agent:1001", status="done")] == [
        done.id]
    assert {o.id for o in await orders.search(BOSS, owner="any", status="all")} == {
        low.id, crit.id, normal.id, other.id, done.id}
    await orders.assign(A1, low.id, Owner("agent", "1002"), note="hand over")
    assert [o.id for o in await orders.search(A2, owner="me")] == [other.id, low.id]


async def test_timers_due_and_earliest(env: Any) -> None:
    orders, clock, _, _ = env
    crit = await orders.create(A1, type_name="service_request", severity="critical")
    await orders.create(A1, type_name="service_request", severity="low")
    earliest = await orders.store.earliest_timer()
    # critical: 2 h SLA, first reminder 30 min before due
    assert earliest == crit.created_at + timedelta(hours=2) - timedelta(minutes=30)
    assert await orders.store.due(earliest - timedelta(seconds=1)) == []
    assert await orders.store.due(earliest) == [crit.id]
    clock.advance((earliest - clock.now()).total_seconds())
    assert await orders.run_timers(clock.now()) == 1
    assert (await orders.store.get(crit.id)).reminders_sent == 1
    assert await orders.store.earliest_timer() == crit.created_at + timedelta(
        hours=2) - timedelta(minutes=10)


async def test_a_customers_third_complaint_is_escalated(env: Any) -> None:
    orders, clock, customers, bus = env
    seen: list[Any] = []

    async def record(e: Any) -> None:
        seen.append(e)

    bus.subscribe("t", record, (WorkOrderEscalated,))
    c = await customers.add(Customer(None, ("+8613800138009",), name="李"))
    for _ in range(3):
        await orders.create(A1, type_name="complaint", severity="normal", customer_id=c.id)
        clock.advance(3600)
    await bus.drain()
    assert len(await orders.store.complaints_since(c.id, clock.now() - timedelta(days=1))) == 3
    assert [e.rule for e in seen] == ["repeat_customer"]
    theirs = await orders.search(A1, owner="any", status="open", customer_id=c.id)
    assert len(theirs) == 3
