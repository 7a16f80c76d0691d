"""Concurrent read-then-write transactions through the service's own sessions, on a SQLite
file and on PostgreSQL (docs/storage.md): no update is lost. Deactivating a user moves their
token epoch on by one (a counter read, then written); replacing a knowledge article reads its
old postings, then takes them out of the term counts; a plain read-modify-write that locks what
it reads (FOR UPDATE, a no-op on SQLite). On SQLite: a write transaction takes the write lock
at its start, read-only sessions neither wait for it nor write."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cti.features.auth.service import NewUser, Principal, Role, UserDirectory
from cti.features.knowledge.storage import ALL, KnowledgeStore, NewArticle
from cti.platform.db.base import make_engine, make_sessionmaker, read_sessions
from cti.platform.db.tables.knowledge import PostingRow, TermRow
from cti.platform.db.tables.users import UserRow

N = 40  # concurrent transactions: more than the pool's connections (5 + 10 overflow)
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[tuple[Any, Any]]:
    engine = make_engine(database_url)
    yield engine, make_sessionmaker(engine)
    await engine.dispose()


async def test_concurrent_deactivations_each_move_the_token_epoch_on(db: Any) -> None:
    _, sessions = db
    users = UserDirectory(sessions)
    await users.create(NewUser("agent1001", "secret1", Role.AGENT, "1001"))
    await asyncio.gather(*(users.set_active("agent1001", False) for _ in range(N)))
    async with sessions() as s:
        epoch = await s.scalar(select(UserRow.token_epoch).where(UserRow.username == "agent1001"))
    assert epoch == N


async def test_a_locked_read_modify_write_loses_no_update(db: Any) -> None:
    _, sessions = db
    users = UserDirectory(sessions)
    await users.create(NewUser("agent1001", "secret1", Role.AGENT, "1001"))
    seen: list[int] = []

    async def bump() -> None:
        async with sessions.begin() as s:
            value = await s.scalar(select(UserRow.token_epoch)
                                   .where(UserRow.username == "agent1001").with_for_update())
            await asyncio.sleep(0)  # let the others run between the read and the write
            await s.execute(update(UserRow).where(UserRow.username == "agent1001")
                            .values(token_epoch=value + 1))
            seen.append(value + 1)

    await asyncio.gather(*(bump() for _ in range(N)))
    assert sorted(seen) == list(range(1, N + 1))  # N distinct values of N


async def test_concurrent_article_replacements_keep_the_term_counts(db: Any) -> None:
    _, sessions = db
    store = KnowledgeStore(sessions)
    made = await store.add(NewArticle("zh", "宽带报修", "宽带无法上网时请先重启光猫。", ()),
                           "boss", T0)
    texts = [NewArticle("zh", f"标题{i}", f"第{i}版说明文字,请按步骤{i}操作。", ())
             for i in range(N)]
    await asyncio.gather(*(store.replace(made.id, a, T0) for a in texts))
    async with sessions() as s:
        postings = Counter((await s.scalars(select(PostingRow.term))).all())
        counts = {t: n for t, n in (await s.execute(select(TermRow.term, TermRow.articles)))
                  if n and t != ALL}
        total = await s.scalar(select(func.count()).select_from(PostingRow))
    assert counts == dict(postings)
    final = await store.get(made.id)
    assert total == len(postings)
    assert set(postings.values()) == {1}  # one article: each term once
    assert final.title in {a.title for a in texts}


async def test_read_only_sessions_refuse_to_write(db: Any) -> None:
    _, sessions = db
    reads = read_sessions(sessions)
    async with reads() as s:
        with pytest.raises(RuntimeError, match="read-only"):
            await s.execute(update(UserRow).values(active=False))
    async with reads() as s:
        s.add(UserRow(username="x", password_hash="-", role="agent", display_name="x",
                      language="zh", created_at=T0))
        with pytest.raises(RuntimeError, match="read-only"):
            await s.flush()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_on_sqlite_reads_do_not_wait_for_the_writer_and_writers_queue(db: Any) -> None:
    _, sessions = db
    users = UserDirectory(sessions)
    await users.create(NewUser("agent1001", "secret1", Role.AGENT, "1001"))
    reads = read_sessions(sessions)
    async with sessions.begin() as writer:
        # a transaction holding the write lock (BEGIN IMMEDIATE), its change not committed
        await writer.execute(update(UserRow).values(token_epoch=7))
        async with asyncio.timeout(1.0), reads() as r:
            epoch = await r.scalar(select(UserRow.token_epoch))
        assert epoch == 0  # the last committed state, read at once

        async def other_writer() -> None:
            async with sessions.begin() as s:
                await s.scalar(select(UserRow.token_epoch))

        second = asyncio.create_task(other_writer())
        await asyncio.sleep(0.3)
        assert not second.done()  # its BEGIN IMMEDIATE waits for the lock, even to read
    await asyncio.wait_for(second, 5.0)


async def test_two_nodes_changing_one_work_order_lose_no_history(database_url: str) -> None:
    """Two service instances (two nodes, or the service and a second process), each with its
    own engine and in-process lock, add notes to one order at once: every note is kept, in
    positions 0..n, and the order's state is the last change's."""
    from cti.features.work_orders.config import WorkOrderRules
    from cti.features.work_orders.service import WorkOrders
    from cti.features.work_orders.storage import WorkOrderStore
    from cti.platform.bus import InProcessBus
    from cti.platform.clock import FakeClock
    from cti.platform.db.tables.work_orders import WorkOrderHistoryRow
    from cti.platform.settings import REPO_ROOT

    boss = Principal(3, "supervisor", Role.SUPERVISOR, None, "S", "zh")
    engines = [make_engine(database_url) for _ in range(2)]
    buses = [InProcessBus() for _ in range(2)]
    nodes = [WorkOrders(WorkOrderStore(make_sessionmaker(e)),
                        WorkOrderRules(REPO_ROOT / "config" / "work_orders.yaml"), b,
                        FakeClock(T0))
             for e, b in zip(engines, buses, strict=True)]
    try:
        made = await nodes[0].create(boss, type_name="service_request", severity="high")
        notes = [f"note {i}" for i in range(N)]
        await asyncio.gather(*(nodes[i % 2].add_note(boss, made.id, n)
                               for i, n in enumerate(notes)))
        got = await nodes[1].store.get(made.id)
        async with make_sessionmaker(engines[0])() as s:
            positions = sorted((await s.scalars(select(WorkOrderHistoryRow.position).where(
                WorkOrderHistoryRow.order_id == made.id))).all())
    finally:
        for b in buses:
            await b.aclose()
        for e in engines:
            await e.dispose()
    assert sorted(h.note for h in got.history if h.note in notes) == sorted(notes)
    assert positions == list(range(N + 1))  # "created", then each note once


async def test_two_nodes_acknowledging_one_handover_item_acknowledge_it_once(
    database_url: str,
) -> None:
    """Two service instances acknowledge the same handover item at once, N times over: one
    acknowledgement is kept and told, the others are refused (it was acknowledged already)."""
    from cti.domain.handover import NewItem
    from cti.features.handover.service import Handovers, InvalidHandover
    from cti.features.handover.storage import HandoverStore
    from cti.platform.bus import InProcessBus
    from cti.platform.clock import FakeClock

    writer = Principal(1, "day", Role.SUPERVISOR, None, "D", "zh")
    readers = [Principal(2 + i, f"night{i}", Role.SUPERVISOR, None, "N", "zh") for i in range(N)]
    engines = [make_engine(database_url) for _ in range(2)]
    buses = [InProcessBus() for _ in range(2)]
    nodes = [Handovers(HandoverStore(make_sessionmaker(e)), b, FakeClock(T0))
             for e, b in zip(engines, buses, strict=True)]
    try:
        entry = await nodes[0].write(writer, shift="day", next_shift="night", note="",
                                     items=[NewItem("call back Mr Wang")])
        item = entry.items[0].id
        got = await asyncio.gather(
            *(nodes[i % 2].acknowledge(who, entry.id, [item]) for i, who in enumerate(readers)),
            return_exceptions=True)
        final = await nodes[1].get(entry.id)
    finally:
        for b in buses:
            await b.aclose()
        for e in engines:
            await e.dispose()
    kept = [g for g in got if not isinstance(g, BaseException)]
    assert len(kept) == 1
    assert all(isinstance(g, InvalidHandover) for g in got if isinstance(g, BaseException))
    assert final.items[0].acknowledged_by == kept[0].items[0].acknowledged_by


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_on_sqlite_the_health_probe_does_not_wait_for_the_writer(db: Any) -> None:
    from cti.platform.clock import FakeClock
    from cti.platform.db.health import DatabaseHealth

    engine, sessions = db
    health = DatabaseHealth(engine, FakeClock(T0))
    async with sessions.begin() as writer:
        await writer.execute(update(UserRow).values(active=False))  # the write lock held
        async with asyncio.timeout(1.0):
            assert await health.probe()


async def test_concurrent_marks_of_a_call_back_keep_the_first_time(db: Any) -> None:
    """Supervisors mark one call-back request done at once (each at a later instant): every
    mark answers with the same, first, time."""
    from datetime import timedelta

    from cti.features.procedures.audit import ProcedureAudit
    from cti.platform.db.tables.fallback import CallbackRequestRow

    class Ticking:  # each reading of the clock a second later: the marks' times all differ
        def __init__(self) -> None:
            self.at = T0

        def now(self) -> datetime:
            self.at += timedelta(seconds=1)
            return self.at

        def monotonic(self) -> float:
            return (self.at - T0).total_seconds()

    _, sessions = db
    async with sessions.begin() as s:
        s.add(CallbackRequestRow(call_id="c1", caller_number="+8613800138000", lang="zh",
                                 queue=None, requested_at=T0))
    audit = ProcedureAudit(sessions, Ticking())
    marks = await asyncio.gather(*(audit.callback_done(1) for _ in range(N)))
    assert {m["done_at"] for m in marks} == {min(m["done_at"] for m in marks)}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_on_sqlite_the_frequent_reads_answer_while_a_writer_holds_the_lock(db: Any) -> None:
    """The screen pop's look-up, a token's revocation check, a user's read and a work-order
    list, each within a second while another transaction holds SQLite's write lock."""
    from cti.domain.crm import Customer
    from cti.features.auth.revocation import TokenRef, TokenRevocations
    from cti.features.crm.storage import CustomerRepository
    from cti.features.work_orders.storage import WorkOrderStore
    from cti.platform.clock import FakeClock

    _, sessions = db
    users = UserDirectory(sessions)
    await users.create(NewUser("agent1001", "secret1", Role.AGENT, "1001"))
    crm = CustomerRepository(sessions, FakeClock(T0))
    await crm.add(Customer(None, ("+8613800138000",), name="王"))
    revocations = TokenRevocations(sessions, FakeClock(T0))
    async with sessions.begin() as writer:
        await writer.execute(update(UserRow).values(display_name="x"))  # the write lock held
        async with asyncio.timeout(1.0):
            customer, _ = await crm.by_number_with_history("+8613800138000", 5)
            assert customer is not None
            assert await revocations.reason_revoked(TokenRef("jti-1", 1, 0, T0)) is None
            assert (await users.get("agent1001")).agent_id == "1001"
            assert await WorkOrderStore(sessions).search() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_writers_turn_is_given_back_and_not_waited_for_by_its_own_task(
    db: Any,
) -> None:
    """The in-process queue of writers (WriteGate): a transaction that fails gives its turn
    back; a write session opened inside another one of the same task goes ahead at once."""
    _, sessions = db
    users = UserDirectory(sessions)
    await users.create(NewUser("agent1001", "secret1", Role.AGENT, "1001"))

    async def failing() -> None:
        async with sessions.begin() as s:
            await s.execute(update(UserRow).values(token_epoch=5))
            raise RuntimeError("the transaction fails")

    with pytest.raises(RuntimeError, match="fails"):
        await failing()
    async with asyncio.timeout(2.0):
        async with sessions() as outer:
            async with sessions.begin() as inner:
                await inner.execute(update(UserRow).values(token_epoch=1))
            assert await outer.scalar(select(UserRow.token_epoch)) == 1
        await asyncio.gather(*(users.set_active("agent1001", False) for _ in range(3)))
    async with read_sessions(sessions)() as r:
        assert await r.scalar(select(UserRow.token_epoch)) == 4
