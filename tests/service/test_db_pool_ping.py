"""The PostgreSQL pool pings a connection before use only after it sat idle, and a connection that
died while idle is replaced without the caller seeing an error (the real server)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from cti.platform.db import base
from tests.conftest import PG_DSN

PG_URL = PG_DSN.replace("postgresql://", "postgresql+asyncpg://")


def _count_pings(engine: Any) -> list[int]:
    pings = [0]
    real = engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        pings[0] += 1
        return bool(real(dbapi_conn))

    engine.dialect.do_ping = counted
    return pings


async def _pid(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _kill(pid: int) -> None:
    """End the server's side of a pooled connection, and wait until it is gone (the signal is
    asynchronous)."""
    admin = await asyncpg.connect(PG_DSN)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        async with asyncio.timeout(10):
            while await admin.fetchval(  # noqa: ASYNC110 (polls the server)
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                await asyncio.sleep(0.01)
    finally:
        await admin.close()


async def test_a_connection_used_a_moment_ago_is_not_pinged_again() -> None:
    engine = base.make_engine(PG_URL)
    pings = _count_pings(engine)
    try:
        await _pid(engine)  # a new connection: pinged once (nothing known of it)
        first = pings[0]
        for _ in range(5):
            await _pid(engine)
        assert first == 1
        assert pings[0] == first  # five checkouts within the idle time: no round trip each
    finally:
        await engine.dispose()


async def test_an_idle_connection_is_pinged_and_a_dead_one_replaced_unseen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base, "PING_AFTER_IDLE_S", 0.2)
    engine = base.make_engine(PG_URL)
    pings = _count_pings(engine)
    try:
        pid = await _pid(engine)
        await _kill(pid)  # the server drops it while it sits in the pool
        await asyncio.sleep(0.3)
        before = pings[0]
        assert await _pid(engine) != pid  # no error: the ping found it dead, a new one served
        assert pings[0] > before
    finally:
        await engine.dispose()


async def test_a_connection_that_died_just_after_use_fails_once_then_the_pool_recovers() -> None:
    # The trade the idle limit makes: no ping within it, so one statement sees the dead
    # connection; SQLAlchemy then invalidates the pool and the next checkout is a new one.
    engine = base.make_engine(PG_URL)
    try:
        pid = await _pid(engine)
        await _kill(pid)
        with pytest.raises(DBAPIError) as failed:
            await _pid(engine)
        assert failed.value.connection_invalidated
        assert await _pid(engine) != pid
    finally:
        await engine.dispose()
