"""The caller's record for routing and the IVR comes once `CustomerIdentified` (record and call
history) is published, so every later event of the call comes after it (real database, real
bus)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from cti.events import CallArrived, CallEnded, CustomerIdentified
from cti.features.crm.caller_lookup import CallerLookup
from cti.features.crm.service import CrmLookup
from cti.features.crm.storage import CustomerRepository
from cti.features.desk.demo import DEMO_CUSTOMERS
from cti.platform.bus import InProcessBus
from cti.platform.clock import SystemClock
from cti.platform.db.base import make_engine, make_sessionmaker

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_routing_gets_the_record_only_after_the_pop_has_it(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        repo = CustomerRepository(make_sessionmaker(engine))
        await repo.import_batch(DEMO_CUSTOMERS)
        history_read = asyncio.Event()
        real_history = repo._history_in

        async def history_in(*args: Any) -> Any:
            await history_read.wait()  # held: the history is still on its way
            return await real_history(*args)

        repo._history_in = history_in  # type: ignore[method-assign]
        bus = InProcessBus()
        lookup = CallerLookup(CrmLookup(repo), bus, SystemClock())
        published: list[str] = []
        identified: list[CustomerIdentified] = []

        async def pop(event: CustomerIdentified) -> None:
            identified.append(event)

        bus.subscribe("pop", pop, (CustomerIdentified,))
        real_publish = bus.publish

        def publish(event: Any) -> int:
            published.append(type(event).__name__)
            return real_publish(event)

        bus.publish = publish  # type: ignore[method-assign]
        bus.publish(CallArrived("c1", AT, "ch1", "+49305551", "4000"))
        waiter = asyncio.create_task(lookup.identity("c1", "+49305551"))
        await asyncio.sleep(0.1)
        assert not waiter.done()  # the record alone is not enough: the history is not read
        history_read.set()
        async with asyncio.timeout(5):
            customer = await waiter
        assert customer is not None
        assert customer.tier == "vip"
        assert published == ["CallArrived", "CustomerIdentified"]  # before routing went on
        await bus.drain()
        assert [e.customer.tier for e in identified if e.customer] == ["vip"]
        await lookup.aclose()
        await bus.aclose()
    finally:
        await engine.dispose()


async def test_an_unknown_caller_is_none_and_a_waiter_goes_on_when_the_call_ends(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        repo = CustomerRepository(make_sessionmaker(engine))
        bus = InProcessBus()
        lookup = CallerLookup(CrmLookup(repo), bus, SystemClock())
        bus.publish(CallArrived("c2", AT, "ch2", "+15550000", "4000"))
        async with asyncio.timeout(5):
            assert await lookup.identity("c2", "+15550000") is None

        never = asyncio.Event()
        real_owner = repo.by_number_with_history

        async def stuck(*args: Any, **kw: Any) -> Any:
            await never.wait()
            return await real_owner(*args, **kw)

        repo.by_number_with_history = stuck  # type: ignore[method-assign]
        bus.publish(CallArrived("c3", AT, "ch3", "+49305551", "4000"))
        waiter = asyncio.create_task(lookup.identity("c3", "+49305551"))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        bus.publish(CallEnded("c3", AT, None, None, "caller"))
        async with asyncio.timeout(5):
            assert await waiter is None
        await lookup.aclose()
        await bus.aclose()
    finally:
        await engine.dispose()
