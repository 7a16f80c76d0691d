"""SQLAlchemy declarative base and async engine factory (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import DateTime, Engine, MetaData, TypeDecorator, event
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, UOWTransaction

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
        _sqlite_transactions(engine)
        db = engine.url.database
        if db and db != ":memory:" and "mode=memory" not in db:  # another pool: another db
            _sqlite_reader(url, engine)
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


# The execution option marking a read-only engine (`make_read_sessionmaker`): on SQLite its
# transactions start no BEGIN; on PostgreSQL it changes nothing.
READ_ONLY = "cti_read_only"


def sqlite_pragmas(dbapi_conn: Any) -> None:
    """What every SQLite connection is opened with: foreign keys enforced, WAL (readers do not
    wait for the writer)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def _sqlite_transactions(engine: AsyncEngine) -> None:
    """Every write transaction on SQLite takes the write lock at its start (BEGIN IMMEDIATE).

    The driver's own (legacy) transaction handling sends no BEGIN before a SELECT and a plain
    deferred BEGIN before the first INSERT/UPDATE/DELETE: a transaction that reads a row and
    then writes what it computed from it read outside any transaction, so two of them at once
    both read the old value and one update is lost (docs/storage.md). SQLAlchemy's recipe:
    switch the driver's BEGIN off and send our own from the `begin` event. Read-only sessions
    send none: each of their statements reads the last committed state without waiting (WAL
    readers do not wait for the writer), as every SELECT did before."""

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
        sqlite_pragmas(dbapi_conn)
        dbapi_conn.isolation_level = None  # no BEGIN from the driver: `_sqlite_begin` sends it

    @event.listens_for(engine.sync_engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        if not conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


# SQLite: each engine's read-only twin, with a pool of its own (see `_sqlite_reader`)
_READERS: WeakKeyDictionary[Engine, AsyncEngine] = WeakKeyDictionary()


def _sqlite_reader(url: str, engine: AsyncEngine) -> None:
    """The engine the read-only sessions use, on a pool of its own: writers waiting for the
    write lock each hold a connection, and a burst of them would take all of a shared pool's,
    so a read would wait for a writer after all. Disposed with `engine`."""
    base = create_async_engine(url)  # a file: nothing to ping
    _sqlite_transactions(base)
    _READERS[engine.sync_engine] = base.execution_options(**{READ_ONLY: True})

    @event.listens_for(engine.sync_engine, "engine_disposed")
    def _dispose_reader(_engine: Any) -> None:
        base.sync_engine.dispose()  # runs inside AsyncEngine.dispose's greenlet


def _check_sqlite_dir(url: str, database: str | None) -> None:
    # Said before connecting: aiosqlite's failed connect can also print a worker thread's
    # traceback ("Event loop is closed") after the error, a race on every such run.
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).parent
    if not folder.is_dir():
        raise ConfigError(f"database {shown_url(url)}: directory {folder} does not exist")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    """Sessions for transactions that write (and may read first): on SQLite each takes the
    write lock at its start, so the transactions writing run one at a time — and, entered with
    `async with`, each waits its turn among this process's writers first (`WriteGate`)."""
    if engine.dialect.name != "sqlite":
        return async_sessionmaker(engine, expire_on_commit=False)
    gated = type("GatedSession", (GatedSession,), {"gate": WriteGate()})
    return _GatedSessions(engine, class_=gated, expire_on_commit=False)


# How long a writer waits for its turn before leaving it to SQLite's own busy wait: long
# enough for a burst's queue (160 at once), bounded so that a writer awaiting another task
# that wants to write too fails (SQLite's "database is locked") rather than hangs.
GATE_WAIT_S = 30.0


class WriteGate:
    """One write session at a time per SQLite database in this process, queued in order.

    SQLite serializes writers anyway (BEGIN IMMEDIATE), but one that finds the lock taken
    waits in the driver's busy handler, which sleeps 1, 2, 5 ... up to 100 ms between tries:
    the lock sat idle between holders (20 concurrent read-then-write updates: 25 a second).
    Queued here, the next writer starts the moment the last one is done. Other processes
    still meet the busy handler. A session opened inside another's, in the task holding the
    turn, goes ahead (it would otherwise wait for itself)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None

    async def acquire(self) -> bool:
        """Wait for the turn: True when taken (give it back with `release`); False for a
        session nested in the holder's task, or when it did not come within GATE_WAIT_S."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # an engine used from another loop (tests): a fresh lock
            self._loop, self._lock, self._holder = loop, asyncio.Lock(), None
        task = asyncio.current_task()
        if self._holder is not None and self._holder is task:
            return False
        try:
            await asyncio.wait_for(self._lock.acquire(), GATE_WAIT_S)
        except TimeoutError:
            return False
        self._holder = task
        return True

    def release(self) -> None:
        self._holder = None
        self._lock.release()


class GatedSession(AsyncSession):
    """A write session on SQLite: `async with` waits for its turn (`WriteGate`) and gives it
    up when the session closes."""

    gate: WriteGate
    _turn = False

    async def take_turn(self) -> None:
        if not self._turn:
            self._turn = await self.gate.acquire()

    def end_turn(self) -> None:
        if self._turn:
            self._turn = False
            self.gate.release()

    async def __aenter__(self) -> GatedSession:
        await self.take_turn()
        return self

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        try:
            await super().__aexit__(type_, value, traceback)
        finally:
            self.end_turn()


class _GatedBegin:
    """`sessions.begin()` for gated sessions: the turn, then the transaction (committed or
    rolled back at the end), then the session closed and the turn given up."""

    def __init__(self, session: GatedSession) -> None:
        self.session = session

    async def __aenter__(self) -> GatedSession:
        await self.session.take_turn()
        try:
            self.trans = self.session.begin()
            await self.trans.__aenter__()
        except BaseException:
            self.session.end_turn()
            raise
        return self.session

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        try:
            await self.trans.__aexit__(type_, value, traceback)
        finally:
            await self.session.__aexit__(type_, value, traceback)


class _GatedSessions(async_sessionmaker[Any]):
    def begin(self) -> Any:
        return _GatedBegin(self())


class ReadOnlySession(Session):
    """A session of `make_read_sessionmaker`: it refuses to write (on SQLite its statements
    run outside a transaction, so a write there would be neither atomic nor serialized)."""


@event.listens_for(ReadOnlySession, "do_orm_execute")
def _refuse_dml(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise RuntimeError("a read-only session does not write: use the write sessions")


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a read-only session does not write: use the write sessions")


def make_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that only read (auth checks, lists, lookups, reports): on SQLite they never
    wait for the write lock (nor for a pool connection held by a waiting writer); their
    statements each see the last committed state (no snapshot across statements). On
    PostgreSQL likewise: each statement is its own transaction (AUTOCOMMIT)."""
    return async_sessionmaker(
        read_only_engine(engine), expire_on_commit=False, sync_session_class=ReadOnlySession,
    )


def read_sessions(sessions: async_sessionmaker[Any]) -> async_sessionmaker[AsyncSession]:
    """The read-only sessions on the engine of the write sessions `sessions`."""
    bind = sessions.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise TypeError("read_sessions needs a sessionmaker bound to an AsyncEngine")
    return make_read_sessionmaker(bind)


def read_only_engine(engine: AsyncEngine) -> AsyncEngine:
    """`engine` for connections that only read (the health probe, the read-only sessions)."""
    reader = _READERS.get(engine.sync_engine)
    if reader is not None:
        return reader
    if engine.dialect.name == "postgresql":
        # Each read its own, as on SQLite: no BEGIN and ROLLBACK round trips around a lookup
        # on every arriving call's path (each waits its turn in a busy event loop).
        return engine.execution_options(isolation_level="AUTOCOMMIT", **{READ_ONLY: True})
    return engine.execution_options(**{READ_ONLY: True})


async def warm_up(engine: AsyncEngine, connections: int = 8) -> None:
    """Open pool connections before the first call needs them (a burst right after start
    would otherwise wait on connection set-up). On SQLite, the read-only sessions' pool: the
    first screen pop otherwise opened it (a thread and a connection: 0.1-0.25 s under load)."""
    if engine.dialect.name == "sqlite":
        reader = _READERS.get(engine.sync_engine)
        if reader is not None:
            async with reader.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        return
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
