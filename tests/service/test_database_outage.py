"""A PostgreSQL of the test's own stopped and started again: the call log and the routing
decisions keep what the database refused and write it when it is back; /health's database
part says unreachable, since when, and what is kept (docs/cluster.md, "Failure behaviour")."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cti.domain.calls import Call, CallState, answered, ended
from cti.domain.routing.events import AgentStateChanged
from cti.features.auth.revocation import TokenRef, TokenRevocations
from cti.features.calls.storage import CallRepository
from cti.features.routing.decision_log import DecisionLog
from cti.features.routing.storage import RoutingLog
from cti.platform.clock import FakeClock, SystemClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.health import DatabaseHealth
from cti.platform.db.migrate import upgrade_async
from cti.platform.db.tables.routing import AgentStateEventRow
from cti.platform.db.tables.users import UserRow
from cti.platform.errors import DatabaseUnavailable
from tests.service.private_pg import PrivatePostgres

T0 = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    """One server for the module (initdb costs seconds); each test leaves it running."""
    server = PrivatePostgres(_free_port())

    async def up() -> None:
        await server.start()
        await upgrade_async(server.url)

    try:
        asyncio.run(up())
        yield server
    finally:
        asyncio.run(server.remove())


async def _until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_call_log_and_decisions_refused_while_the_database_is_down_are_written_after(
    pg: PrivatePostgres,
) -> None:
    engine = make_engine(pg.url)
    sessions = make_sessionmaker(engine)
    repo = CallRepository(sessions, retry_s=0.1)
    decisions = DecisionLog(RoutingLog(sessions))
    decisions.retry_s = 0.1
    health = DatabaseHealth(engine, SystemClock())
    health.keeps("call_log", lambda: repo.pending)
    health.keeps("routing_decisions", lambda: decisions.pending)
    try:
        assert await health.probe() is True
        call = Call(id="9.1", channel_id="9.1", caller_number="+8613800000009",
                    caller_name="", dialled_number="4000", arrived_at=T0)
        await repo.save(call)

        await pg.stop_server()
        assert await health.probe() is False
        down_since = health.since
        assert health.health().reachable is False
        assert health.health().error
        # neither raises: the call's task goes on
        call = answered(call, T0 + timedelta(seconds=1))
        await repo.save(call)
        call = ended(call, T0 + timedelta(seconds=30), 16, "Normal Clearing", "caller")
        await repo.save(call)
        decisions.record(AgentStateChanged(
            agent_id="1001", old="logged_out", new="available", at=T0))
        await _until(lambda: decisions.pending == 1 and repo.pending == 1, "both kept")
        assert health.health().pending_writes == {"call_log": 1, "routing_decisions": 1}
        assert health.health().limits

        await pg.start_server()
        await _until(lambda: repo.pending == 0 and decisions.pending == 0, "written when back")
        assert await health.probe() is True
        assert health.since is not None
        assert down_since is not None
        assert health.since > down_since
        assert health.health().pending_writes == {}
        assert not health.health().limits
        stored = await repo.get("9.1")
        assert stored is not None
        assert stored.state is CallState.ENDED  # the latest state, not an older one
        assert stored.answered_at == T0 + timedelta(seconds=1)
        async with sessions() as s:
            agents = (await s.scalars(select(AgentStateEventRow.agent_id))).all()
        assert agents == ["1001"]
    finally:
        await decisions.aclose()
        await repo.aclose()
        await engine.dispose()


async def test_a_token_checked_before_still_opens_the_api_while_the_database_restarts(
    pg: PrivatePostgres,
) -> None:
    """A database restart must not log every agent out; a token never checked cannot be
    vouched for and is answered 503 with the reason."""
    engine = make_engine(pg.url)
    sessions = make_sessionmaker(engine)
    clock = FakeClock()
    revocations = TokenRevocations(sessions, clock, cache_s=5.0)  # type: ignore[arg-type]
    try:
        async with sessions.begin() as s:
            s.add(UserRow(username="agent7", password_hash="x", role="agent", agent_id="7",
                          created_at=datetime.now(UTC)))
        async with sessions() as s:
            user_id = (await s.scalars(select(UserRow.id))).one()
        expires = datetime.now(UTC) + timedelta(hours=1)
        known = TokenRef("jti-known", user_id, 0, expires)
        assert await revocations.reason_revoked(known) is None
        await pg.stop_server()
        try:
            clock.advance(6)  # the cached answer is stale: the database is asked, and is away
            assert await revocations.reason_revoked(known) is None
            with pytest.raises(DatabaseUnavailable, match="database is unreachable"):
                await revocations.reason_revoked(TokenRef("jti-new", user_id, 0, expires))
        finally:
            await pg.start_server()
    finally:
        await engine.dispose()
