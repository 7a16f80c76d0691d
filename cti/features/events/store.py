"""The event log: every domain event published on the bus, appended to the database in
stream order (sequence number, time, call, agent, queue, payload), and read back in order
per call, per agent or over a time range (the call's history, statistics, replays, the
queue_log export).

Writes are batched (whatever queued up meanwhile goes in one transaction) by the bus's
subscriber task, so a database round trip never stands between a caller and an agent. A
failed write keeps its events and tries again with the next batch: nothing is lost while the
database restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.events import Bus, DomainEvent, Envelope, event_from_record, event_record
from cti.platform.db.base import read_sessions
from cti.platform.db.health import db_unavailable, describe
from cti.platform.db.tables.events import EventRow
from cti.platform.log import get_logger

log = get_logger(__name__)

BACKLOG_MAX = 200_000  # events kept in memory while the database is away (about 200 MB)
RETRY_S = 1.0
# Between two writes the log lets events gather for this long: at 20 calls/s (some 300
# events/s) batches of one or two events each paid a transaction's round trips; 20 ms more
# between an event and its row is nothing a reader notices (readers drain the bus first).
SETTLE_S = 0.02
EVENTS = cast(Table, EventRow.__table__)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    at: datetime
    type: str
    version: int
    call_id: str | None
    agent_id: str | None
    queue: str | None
    payload: dict[str, Any]

    def event(self) -> DomainEvent:
        return event_from_record(self.type, self.at, self.payload)


def _row(envelope: Envelope) -> dict[str, Any]:
    r = event_record(envelope.event)
    return {"seq": envelope.seq, "at": r.at, "type": r.type, "version": r.version,
            "call_id": r.call_id, "agent_id": r.agent_id, "queue": r.queue,
            "payload": r.payload}


class EventLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: Bus | None = None):
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md
        self._backlog: list[dict[str, Any]] = []
        self.written = 0
        self.failures = 0
        if bus is not None:
            bus.subscribe_batches("events.log", self.append, settle_s=SETTLE_S)

    async def last_seq(self) -> int:
        async with self.reads() as session:
            return int(await session.scalar(select(func.max(EventRow.seq))) or 0)

    async def append(self, batch: Sequence[Envelope]) -> None:
        rows = self._backlog + [_row(e) for e in batch]
        self._backlog = []
        try:
            async with self.sessions.begin() as session:
                # the table, not the mapped class: the ORM's bulk path cost a third more
                await session.execute(insert(EVENTS), rows)
        except Exception as exc:
            self.failures += 1
            if not db_unavailable(exc) and await self._append_untaken(rows, exc):
                return
            if len(rows) > BACKLOG_MAX:  # said, never silent: the oldest go first
                log.error("event_log.backlog_full", dropped=len(rows) - BACKLOG_MAX)
                rows = rows[-BACKLOG_MAX:]
            self._backlog = rows
            log.error("event_log.write_failed", kept=len(rows),
                      error=f"{exc.__class__.__name__}: {exc}")
            await asyncio.sleep(RETRY_S)  # this subscriber only: others go on
            return
        self.written += len(rows)

    async def _append_untaken(self, rows: list[dict[str, Any]], exc: BaseException) -> bool:
        """A batch refused for its data, not for the database being away: some numbers are
        in the log already (a batch whose commit's reply was lost, or numbers that met
        another node's after a Redis restarted empty). The others are written; the taken
        ones are said and dropped, rather than blocking the log for good."""
        seqs = [r["seq"] for r in rows]
        try:
            async with self.sessions.begin() as session:
                taken = set(await session.scalars(select(EventRow.seq).where(
                    EventRow.seq.between(min(seqs), max(seqs)))))
                fresh = [r for r in rows if r["seq"] not in taken]
                if fresh:
                    await session.execute(insert(EVENTS), fresh)
        except Exception:  # still refused: kept, as any failed batch
            return False
        self.written += len(fresh)
        if len(fresh) == len(rows):
            return True  # written whole on the second try
        log.error("event_log.numbers_taken", dropped=len(rows) - len(fresh),
                  first=min(taken & set(seqs)), error=describe(exc),
                  effect="these events are not in the log (their numbers were in use)")
        return True

    @property
    def pending(self) -> int:
        return len(self._backlog)

    async def read(
        self, *, since: datetime | None = None, until: datetime | None = None,
        after_seq: int | None = None, call_id: str | None = None, agent_id: str | None = None,
        types: Sequence[str] | None = None, limit: int | None = 1000,
    ) -> list[StoredEvent]:
        """Events in stream order, filtered; `since` inclusive, `until` exclusive."""
        query = select(EventRow).order_by(EventRow.seq)
        if since is not None:
            query = query.where(EventRow.at >= since)
        if until is not None:
            query = query.where(EventRow.at < until)
        if after_seq is not None:
            query = query.where(EventRow.seq > after_seq)
        if call_id is not None:
            query = query.where(EventRow.call_id == call_id)
        if agent_id is not None:
            query = query.where(EventRow.agent_id == agent_id)
        if types:
            query = query.where(EventRow.type.in_(list(types)))
        if limit is not None:
            query = query.limit(limit)
        async with self.reads() as session:
            rows = (await session.scalars(query)).all()
        return [StoredEvent(r.seq, r.at, r.type, r.version, r.call_id, r.agent_id, r.queue,
                            dict(r.payload)) for r in rows]
