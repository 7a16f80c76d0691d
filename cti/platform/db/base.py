"""SQLAlchemy declarative base and async engine factory (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, TypeDecorator, event
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from cti.platform.errors import ConfigError

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# PostgreSQL connections kept open: each call writes its log row, routing decisions and
# audit, and reads the caller's CRM record; at 20 calls a second SQLAlchemy's default 5 (+10
# overflow, closed after use) meant opening a connection (~30 ms) in the middle of a call.
PG_POOL_SIZE = 20
PG_MAX_OVERFLOW = 30
# A pooled PostgreSQL connection is pinged before use only when it sat idle this long: a ping
# is a round trip, and a busy service checks a connection out several times per call (about a
# tenth of its CPU at 20 calls/s went into pings of connections used a moment before). One used
# within this time that died since (a server restart) fails its statement once; SQLAlchemy then
# invalidates the pool, and the writers keep and retry what failed.
PING_AFTER_IDLE_S = 2.0


def make_engine(url: str) -> AsyncEngine:
    pool: dict[str, Any] = (
        {"pool_size": PG_POOL_SIZE, "max_overflow": PG_MAX_OVERFLOW}
        if url.startswith("postgresql") else {}
    )
    try:
        engine = create_async_engine(url, **pool)
    except SQLAlchemyError as exc:  # unparsable URL, unknown dialect, a driver that is not async
        raise ConfigError(describe_db_error(url, exc)) from None
    if engine.dialect.name != "sqlite":  # a file: nothing to ping
        _ping_when_idle(engine)
    if engine.dialect.name == "sqlite":
        _check_sqlite_dir(url, engine.url.database)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    # Keyed by the DBAPI connection itself: a record that reconnected has a new one.
    last_used: dict[int, float] = {}
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_conn: Any, _record: Any) -> None:
        if dbapi_conn is not None:
            last_used[id(dbapi_conn)] = time.monotonic()

    @event.listens_for(engine.sync_engine, "close")
    def _closed(dbapi_conn: Any, _record: Any) -> None:
        last_used.pop(id(dbapi_conn), None)

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        used = last_used.get(id(dbapi_conn))
        if used is not None and time.monotonic() - used < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # As pool_pre_ping does: a dead connection after a pause means the server went
            # away, so every pooled one is replaced; the pool retries with a new connection.
            raise InvalidatePoolError(f"ping failed: {exc}") from exc


def _check_sqlite_dir(url: str, database: str | None) -> None:
    # Said before connecting: aiosqlite's failed connect can also print a worker thread's
    # traceback ("Event loop is closed") after the error, a race on every such run.
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).parent
    if not folder.is_dir():
        raise ConfigError(f"database {shown_url(url)}: directory {folder} does not exist")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def warm_up(engine: AsyncEngine, connections: int = 8) -> None:
    """Open pool connections before the first call needs them (a burst right after start
    would otherwise wait on connection set-up)."""
    if engine.dialect.name != "postgresql":
        return
    opened = [await engine.connect() for _ in range(connections)]
    for conn in opened:
        await conn.close()  # back to the pool, kept open


def shown_url(url: str) -> str:
    """The database URL fit for a message: its password masked."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def describe_db_error(url: str, exc: BaseException) -> str:
    """One line for a database failure (SQLAlchemy's own messages span lines and end in a link):
    which database, the driver's reason, and what to do when the schema is missing."""
    detail = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    first = next((line.strip() for line in detail.splitlines() if line.strip()), "")
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    hint = ""
    if "no such table" in first or ("relation" in first and "does not exist" in first):
        hint = " (the schema is missing: run `cti migrate`)"
    return f"database {shown_url(url)}: {reason}{hint}"
