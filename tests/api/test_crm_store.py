"""The customer store on both backends (SQLite, PostgreSQL): numbers, search, history, import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cti.domain.calls import Call, CallState
from cti.domain.crm import Customer, Title
from cti.features.calls.storage import CallRepository
from cti.features.crm.storage import CustomerRepository
from cti.features.desk.demo import DEMO_CUSTOMERS
from cti.platform.db.base import make_engine, make_sessionmaker

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def test_store_finds_customers_and_their_call_history(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        repo = CustomerRepository(sessions)
        outcome = await repo.import_batch(DEMO_CUSTOMERS)
        assert (outcome.added, outcome.updated, outcome.conflicts) == (4, 0, [])
        calls = CallRepository(sessions)
        # the PBX logs the same number in different spellings
        for i, (number, agent) in enumerate(
            [("+49305551", "1001"), ("0049305551", None), ("49305551", "1002"), ("+1555", None)]
        ):
            await calls.save(Call(
                id=f"c{i}", channel_id=f"ch{i}", caller_number=number, caller_name="",
                dialled_number="100", arrived_at=T0 + timedelta(minutes=i),
                state=CallState.ENDED, ended_at=T0 + timedelta(minutes=i, seconds=30),
                agent_id=agent, queue="sales"))
        await repo.record_disposition(call_id="c0", agent_id="1001", customer_id=None,
                                      outcome="complaint", note="router")
        customer, history = await repo.by_number_with_history("+49305551", 5)
        assert customer is not None
        assert (customer.name, customer.title, customer.tier) == ("王伟", Title.MR, "vip")
        assert [(h.call_id, h.outcome) for h in history] == [
            ("c2", "answered"), ("c1", "abandoned"), ("c0", "complaint")]
        assert await repo.history(customer, 1) == history[:1]
        unknown, unknown_history = await repo.by_number_with_history("+1555", 5)
        assert unknown is None
        assert [h.call_id for h in unknown_history] == ["c3"]

        assert [c.name for c in await repo.search("王")] == ["王伟"]
        assert [c.name for c in await repo.search("acme")] == ["Anna Schmidt"]
        assert [c.name for c in await repo.search("0305551")] == ["王伟"]
        assert len(await repo.search("")) == 4

        moved = Customer(id=None, numbers=("+49305552", "+49305551"), name="merged?")
        outcome = await repo.import_batch([moved])
        assert outcome.conflicts == [(0, "numbers +49305552, +49305551 belong to several "
                                          "customers")]
        updated = await repo.replace(Customer(
            id=customer.id, numbers=("+49305551", "+49305559"), name="王伟", surname="王",
            title=Title.MR, tier="vip"))
        assert updated.numbers == ("+49305551", "+49305559")
        assert (await repo.by_number("+49305559")) == updated
    finally:
        await engine.dispose()
