"""The work orders' timer driver on a real (SQLite) store with a fake clock and an injected
sleeper: reminders, the overdue alert and escalations are published at their instants, and no
test sleeps."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cti.events import WorkOrderEscalated, WorkOrderReminded
from cti.features.auth.service import Principal, Role
from cti.features.work_orders.config import WorkOrderRules
from cti.features.work_orders.driver import WorkOrderDriver
from cti.features.work_orders.service import WorkOrders
from cti.features.work_orders.storage import WorkOrderStore
from cti.platform.bus import InProcessBus
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async
from cti.platform.settings import REPO_ROOT

AGENT = Principal(1, "agent1001", Role.AGENT, "1001", "Agent", "zh")


class FakeSleeper:
    """Sleeping moves the fake clock to the instant at once; records every wake-up asked."""

    def __init__(self, clock: FakeClock, limit: int) -> None:
        self.clock = clock
        self.asked: list[datetime] = []
        self.limit = limit
        self.done = asyncio.Event()

    async def sleep_until(self, instant: datetime) -> None:
        self.asked.append(instant)
        if len(self.asked) >= self.limit:
            self.done.set()
            await asyncio.Event().wait()  # park: the test stops the driver
        delta = (instant - self.clock.now()).total_seconds()
        self.clock.advance(max(delta, 0.0))


async def setup(tmp_path: Path) -> tuple[Any, WorkOrders, FakeClock, InProcessBus, list[Any]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    await upgrade_async(url)
    engine = make_engine(url)
    clock = FakeClock()
    bus = InProcessBus()
    seen: list[Any] = []

    async def record(event: Any) -> None:
        seen.append(event)

    bus.subscribe("test", record, (WorkOrderReminded, WorkOrderEscalated))
    orders = WorkOrders(WorkOrderStore(make_sessionmaker(engine)),
                        WorkOrderRules(REPO_ROOT / "config" / "work_orders.yaml"), bus, clock)
    return engine, orders, clock, bus, seen


async def test_run_once_fires_what_is_due_and_says_when_to_come_back(tmp_path: Path) -> None:
    engine, orders, clock, bus, seen = await setup(tmp_path)
    try:
        t0 = clock.now()
        order = await orders.create(AGENT, type_name="service_request", severity="high")
        driver = WorkOrderDriver(orders, clock, idle=timedelta(days=1))
        assert await driver.run_once() == t0 + timedelta(hours=7)  # 60 min before due
        clock.advance(7 * 3600)
        assert await driver.run_once() == t0 + timedelta(hours=7, minutes=45)
        clock.advance(45 * 60 + 15 * 60)
        assert await driver.run_once() == clock.now() + timedelta(days=1)  # nothing pending
        await bus.drain()
        assert [(e.order_id, e.overdue) for e in seen] == [
            (order.id, False), (order.id, True)]  # the second reminder was skipped: late
        stored = await orders.store.get(order.id)
        assert [h.action for h in stored.history] == ["created", "reminded", "overdue"]
    finally:
        await bus.aclose()
        await engine.dispose()


async def test_the_driver_task_sleeps_on_the_injected_sleeper(tmp_path: Path) -> None:
    engine, orders, clock, bus, seen = await setup(tmp_path)
    try:
        t0 = clock.now()
        await orders.create(AGENT, type_name="complaint", severity="high")  # ack in 60 min
        sleeper = FakeSleeper(clock, limit=4)
        driver = WorkOrderDriver(orders, clock, sleeper, idle=timedelta(days=30))
        driver.start()
        await asyncio.wait_for(sleeper.done.wait(), 5)
        await driver.aclose()
        await bus.drain()
        due = t0 + timedelta(hours=24)
        assert sleeper.asked[:3] == [t0 + timedelta(minutes=60), due - timedelta(minutes=120),
                                     due]
        # At the due time the order is overdue, and 24 h without progress: "stalled".
        assert [(type(e).__name__, getattr(e, "rule", None)) for e in seen] == [
            ("WorkOrderEscalated", "not_acknowledged"), ("WorkOrderReminded", None),
            ("WorkOrderReminded", None), ("WorkOrderEscalated", "stalled")]
        assert seen[2].overdue
        assert seen[3].team == "back_office"
    finally:
        await bus.aclose()
        await engine.dispose()
