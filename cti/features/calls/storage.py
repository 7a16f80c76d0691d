"""Persistence of the call log (SQLAlchemy async).

A save the database refuses because it is away (a restart, a failover) does not fail the
call: the call's latest state is kept and written again every second until the database
takes it (docs/cluster.md, "Failure behaviour"). Each save writes the whole row, so the
latest state of a call is all that needs keeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.domain.calls import Call, CallState
from cti.platform.db.base import read_sessions
from cti.platform.db.health import db_unavailable, describe
from cti.platform.db.tables.calls import CallRow
from cti.platform.db.upsert import upsert
from cti.platform.log import get_logger

log = get_logger(__name__)

RETRY_S = 1.0


def _row_values(call: Call) -> dict[str, Any]:
    return {
        "channel_id": call.channel_id,
        "caller_number": call.caller_number or None,
        "caller_name": call.caller_name or None,
        "dialled_number": call.dialled_number or None,
        "state": call.state.value,
        "arrived_at": call.arrived_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "hangup_cause": call.hangup_cause,
        "hangup_cause_text": call.hangup_cause_text,
        "ended_by": call.ended_by,
        "greeting_played": call.greeting_played,
        "agent_id": call.agent_id,
        "queue": call.queue,
        "attributes": dict(call.attributes) or None,
        "queued_at": call.queued_at,
    }


def _from_row(row: CallRow) -> Call:
    return Call(
        id=row.id,
        channel_id=row.channel_id,
        caller_number=row.caller_number or "",
        caller_name=row.caller_name or "",
        dialled_number=row.dialled_number or "",
        arrived_at=row.arrived_at,
        state=CallState(row.state),
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        hangup_cause=row.hangup_cause,
        hangup_cause_text=row.hangup_cause_text,
        ended_by=row.ended_by,
        greeting_played=row.greeting_played,
        agent_id=row.agent_id,
        queue=row.queue,
        attributes=dict(row.attributes or {}),
        queued_at=row.queued_at,
    )


# The columns a save writes: all but the key and `direction` (set once by whoever made the
# row); _row_values gives exactly these (tested).
SAVED_COLUMNS = tuple(
    c.name for c in CallRow.__table__.columns if c.name not in ("id", "direction")
)


class CallRepository:
    """Saves go through one writer that writes whatever saves queued up meanwhile in one
    transaction (group commit): a call is saved four times or more and every transaction is
    round trips and CPU on the event loop every call shares; under load the saves of many
    calls share one. A save still returns only once its row is written (or kept)."""

    def __init__(self, sessions: async_sessionmaker[Any], *, retry_s: float = RETRY_S) -> None:
        self._sessions = sessions
        self._reads = read_sessions(sessions)  # docs/storage.md
        self.retry_s = retry_s
        # The latest state of each call to write next, and who waits for it. One call saved
        # twice before the writer gets to it is written once, in its latest state: each save
        # writes the whole row.
        self._pending: dict[str, Call] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._writer: asyncio.Task[None] | None = None
        # One batch at a time (the writer, the retry loop): a later batch holds later states.
        self._writing = asyncio.Lock()
        # The latest state of each call whose save the database refused (it was away).
        self._kept: dict[str, Call] = {}
        self._retry: asyncio.Task[None] | None = None
        self.transactions = 0

    @property
    def pending(self) -> int:
        """Calls whose latest state is not in the database yet (kept for the next try)."""
        return len(self._kept)

    async def save(self, call: Call) -> None:
        """Insert or update the row for this call. The database away: the call's state is
        kept and written again later (never raised to the call's task)."""
        if self._kept:
            # The database is known to be away: no call task waits on it (a server cut off by
            # the network may take the connect timeout to refuse); the retry loop writes this
            # state with the others.
            self._pending.pop(call.id, None)
            self._kept[call.id] = call
            return
        self._pending[call.id] = call
        done = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(call.id, []).append(done)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_pending(), name="call-log-writer")
        await done

    async def _write_pending(self) -> None:
        while self._pending:
            async with self._writing:
                batch, self._pending = self._pending, {}
                waiters = {cid: self._waiters.pop(cid, []) for cid in batch}
                failed = await self._write_batch(list(batch.values()))
            for cid, futures in waiters.items():
                exc = failed.get(cid)
                for fut in futures:
                    if fut.done():
                        continue
                    if exc is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(exc)

    async def _write_batch(self, calls: list[Call]) -> dict[str, BaseException]:
        """Write `calls` (the database away: keep them); the errors of calls that could not be
        written for another reason (their saves raise it)."""
        try:
            await self._write(calls)
        except Exception as exc:
            if db_unavailable(exc):
                for call in calls:
                    if call.id not in self._pending:  # a newer state is already queued
                        self._keep(call, exc)
                return {}
            if len(calls) == 1:
                return {calls[0].id: exc}
            # One bad row must not fail the others' saves: each on its own.
            failed: dict[str, BaseException] = {}
            for call in calls:
                failed |= await self._write_batch([call])
            return failed
        for call in calls:
            if self._kept.get(call.id) is call:
                self._kept.pop(call.id, None)
        return {}

    async def _write(self, calls: list[Call]) -> None:
        async with self._sessions() as session, session.begin():
            # One upsert statement, executed with every row's values: the ORM's
            # select-then-flush cost twice the round trips and most of the CPU of a call.
            stmt = upsert(CallRow, session.bind.dialect.name, "id", SAVED_COLUMNS)
            await session.execute(stmt, [{"id": c.id, **_row_values(c)} for c in calls])
        self.transactions += 1

    def _keep(self, call: Call, exc: BaseException) -> None:
        self._kept[call.id] = call
        log.error("call_log.write_failed", call_id=call.id, state=call.state.value,
                  kept=len(self._kept), error=describe(exc),
                  effect="the call goes on; its row is written when the database is back")
        if self._retry is None or self._retry.done():
            self._retry = asyncio.get_running_loop().create_task(
                self._retry_loop(), name="call-log-retry")

    async def _retry_loop(self) -> None:
        """Every `retry_s`, each kept call's latest state, until none is left."""
        while self._kept:
            await asyncio.sleep(self.retry_s)
            async with self._writing:
                kept = list(self._kept.values())
                try:
                    await self._write(kept)
                except Exception as exc:
                    if db_unavailable(exc):
                        continue  # still away: the next round
                    # a row the database refuses for good: the others one by one
                    for call in kept:
                        try:
                            await self._write([call])
                        except Exception as one:
                            if db_unavailable(one):
                                break
                            log.error("call_log.write_dropped", call_id=call.id,
                                      error=describe(one))
                        if self._kept.get(call.id) is call:
                            self._kept.pop(call.id, None)
                    continue
                for call in kept:
                    if self._kept.get(call.id) is call:  # not saved again meanwhile
                        self._kept.pop(call.id, None)
        log.warning("call_log.caught_up")

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every save asked and every kept state is written (shutdown; the database
        may be back)."""
        busy = [t for t in (self._writer, self._retry) if t is not None and not t.done()]
        if not busy:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.gather(*busy)), timeout)

    async def aclose(self) -> None:
        await self.flush(timeout=2.0)
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            if self._kept:
                log.error("call_log.lost_at_stop", calls=sorted(self._kept),
                          effect="these calls' rows miss their last state")

    async def get(self, call_id: str) -> Call | None:
        async with self._reads() as session:
            row = await session.get(CallRow, call_id)
            return _from_row(row) if row is not None else None

    async def open_calls(self) -> list[Call]:
        async with self._reads() as session:
            rows = await session.scalars(select(CallRow).where(CallRow.state != "ended"))
            return [_from_row(r) for r in rows]

    async def recent(self, limit: int = 100) -> list[Call]:
        async with self._reads() as session:
            rows = await session.scalars(
                select(CallRow).order_by(CallRow.arrived_at.desc()).limit(limit)
            )
            return [_from_row(r) for r in rows]
