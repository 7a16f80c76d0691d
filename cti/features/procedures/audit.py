"""Stores what the IVR engine audits: procedure runs with their timeline, script departures,
and call-back requests (the `callback` node).

Writes go through a background queue so a slow database never delays a prompt or a timer;
what queued up meanwhile is written in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import desc, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.ivr.commands import Audit
from cti.events import Bus, IvrNoted, ProcedureEnded, ProcedureStarted, ProcedureStepped
from cti.platform.clock import Clock, SystemClock
from cti.platform.db.base import read_sessions
from cti.platform.db.health import db_unavailable
from cti.platform.db.tables.fallback import CallbackRequestRow
from cti.platform.db.tables.ivr import ProcedureRunRow, ProcedureStepRow, ScriptDepartureRow
from cti.platform.errors import NotFound
from cti.platform.log import get_logger

log = get_logger(__name__)
RETRY_S = 1.0  # the database away: the same entries again after this
BATCH_MAX = 500  # entries per transaction
TIMELINE_KINDS = frozenset({
    "prompt_started", "prompt_finished", "wait_started", "wait_finished", "trigger", "hangup",
    "volume_raised", "routed",
})


class UnknownCallback(NotFound):
    error_id = "unknown_callback"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    call_id: str
    audit: Audit
    at: datetime
    mono: float


@dataclass(frozen=True, slots=True)
class _Plan:
    """One entry's write: which table ("run", "run_end", "callback", "departure", "step")
    and the values."""

    what: str
    values: dict[str, Any]


_TABLES: dict[str, Any] = {
    "run": ProcedureRunRow, "callback": CallbackRequestRow, "departure": ScriptDepartureRow,
    "step": ProcedureStepRow,
}


async def _write(session: AsyncSession, plans: list[_Plan | None]) -> None:
    """The plans' rows, in their order (a run's row before its steps and its end): runs of
    inserts into one table go in one statement."""
    pending: list[dict[str, Any]] = []
    table: str | None = None

    async def insert_pending() -> None:
        if pending:
            # the table, not the mapped class: the ORM's bulk path cost a third more
            await session.execute(insert(_TABLES[str(table)].__table__), list(pending))
            pending.clear()

    for plan in plans:
        if plan is None:
            continue
        if plan.what == "run_end":
            await insert_pending()
            v = plan.values
            await session.execute(
                update(ProcedureRunRow).where(ProcedureRunRow.id == v["id"]).values(
                    ended_at=v["ended_at"], end_reason=v["end_reason"], hung_up=v["hung_up"],
                )
            )
            continue
        if plan.what != table:
            await insert_pending()
            table = plan.what
        pending.append(plan.values)
    await insert_pending()


class ProcedureAudit:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock | None = None,
        bus: Bus | None = None,
    ) -> None:
        self.sessions = sessions
        self.reads = read_sessions(sessions)  # docs/storage.md
        self.bus = bus
        if bus is not None:  # the IVR's facts arrive as events (cti.features.procedures.events)
            bus.subscribe("procedures.audit", self._on_event,
                          (ProcedureStarted, ProcedureStepped, ProcedureEnded, IvrNoted))
        self.clock: Clock = clock or SystemClock()  # stamps a call-back marked done
        self._queue: asyncio.Queue[AuditEntry | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._run_start: dict[str, float] = {}
        self._seq: dict[str, int] = {}
        self._holding = 0  # an entry the database refused, held for the next try

    # -- writing ------------------------------------------------------------------------------

    def submit(self, entry: AuditEntry) -> None:
        """Queue an entry; the writer task stores it (started on first use)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._writer())
        self._queue.put_nowait(entry)

    async def _on_event(
        self, event: ProcedureStarted | ProcedureStepped | ProcedureEnded | IvrNoted
    ) -> None:
        if isinstance(event, IvrNoted) and event.kind not in ("callback_requested", "departure") \
                and not (event.run_id and event.kind in TIMELINE_KINDS):
            return  # not stored here (e.g. the IVR path's nodes, kept in the event log only)
        self.submit(AuditEntry(
            event.call_id, Audit(event.kind, event.run_id, event.procedure, dict(event.detail)),
            event.at, event.mono,
        ))

    async def flush(self) -> None:
        """Wait until everything submitted (or published) so far is stored."""
        if self.bus is not None:
            await self.bus.drain()
        if self._task is not None and not self._task.done():
            await self._queue.join()

    async def close(self) -> None:
        if self._task is not None:
            await self.flush()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _writer(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < BATCH_MAX:
                batch.append(self._queue.get_nowait())
            try:
                await self._write_batch([e for e in batch if e is not None])
            finally:
                self._holding = 0
                for _ in batch:
                    self._queue.task_done()

    async def _write_batch(self, entries: list[AuditEntry]) -> None:
        """Whatever queued up meanwhile, in one transaction (one per entry cost the node more
        than the entries: a BEGIN, a ping and a COMMIT each). The database away: the same
        batch again, in order. Refused for its data: entry by entry, so one bad entry loses
        only itself."""
        if not entries:
            return
        plans = [self._plan(entry) for entry in entries]  # once: the timeline's numbering
        while True:
            try:
                async with self.sessions.begin() as session:
                    await _write(session, plans)
                return
            except Exception as exc:
                if not db_unavailable(exc):
                    break
                log.error("audit_write_failed", call_id=entries[0].call_id,
                          error=f"{exc.__class__.__name__}: {exc}", kept=True,
                          entries=len(entries), queued=self._queue.qsize())
            self._holding = len(entries)
            await asyncio.sleep(RETRY_S)
        for entry, plan in zip(entries, plans, strict=True):
            while True:
                try:
                    async with self.sessions.begin() as session:
                        await _write(session, [plan])
                    break
                except Exception as exc:  # one bad write must not stop the audit trail
                    log.error("audit_write_failed", call_id=entry.call_id,
                              error=f"{exc.__class__.__name__}: {exc}",
                              kept=db_unavailable(exc), queued=self._queue.qsize())
                    if not db_unavailable(exc):
                        break
                self._holding = 1
                await asyncio.sleep(RETRY_S)

    @property
    def pending(self) -> int:
        """Entries not yet stored (queued, or held while the database is away)."""
        return self._queue.qsize() + self._holding

    async def record(self, entry: AuditEntry) -> None:
        """Store one entry now (its own transaction)."""
        async with self.sessions.begin() as session:
            await _write(session, [self._plan(entry)])

    def _plan(self, entry: AuditEntry) -> _Plan | None:
        """What `entry` stores: a table and its values (None: nothing). The run's timeline
        numbering moves on here, once per entry, however often the write is tried."""
        a = entry.audit
        if a.kind == "procedure_started" and a.run_id:
            self._run_start[a.run_id] = entry.mono
            self._seq[a.run_id] = 0
            return _Plan("run", {
                "id": a.run_id, "call_id": entry.call_id, "procedure": a.procedure or "",
                "started_by": str(a.detail.get("started_by", "agent")),
                "agent_id": a.detail.get("agent_id"), "started_at": entry.at,
                "ended_at": None, "end_reason": None, "hung_up": False,
            })
        if a.kind == "procedure_ended" and a.run_id:
            self._run_start.pop(a.run_id, None)
            self._seq.pop(a.run_id, None)
            return _Plan("run_end", {
                "id": a.run_id, "ended_at": entry.at,
                "end_reason": str(a.detail.get("reason", "")),
                "hung_up": a.detail.get("reason") == "hangup",
            })
        if a.kind == "callback_requested":
            return _Plan("callback", {
                "call_id": entry.call_id, "caller_number": str(a.detail.get("number", "")),
                "lang": str(a.detail.get("lang", "")), "queue": a.detail.get("queue") or None,
                "requested_at": entry.at,
            })
        if a.kind == "departure":
            return _Plan("departure", {
                "call_id": entry.call_id, "run_id": a.run_id, "at": entry.at,
                "what": str(a.detail.get("what", "")), "agent_id": a.detail.get("agent_id"),
                "detail": dict(a.detail),
            })
        if a.run_id and a.kind in TIMELINE_KINDS:
            seq = self._seq.get(a.run_id, 0) + 1
            self._seq[a.run_id] = seq
            start = self._run_start.get(a.run_id, entry.mono)
            return _Plan("step", {
                "run_id": a.run_id, "seq": seq, "at": entry.at,
                "offset_ms": round((entry.mono - start) * 1000), "kind": a.kind,
                "detail": dict(a.detail),
            })
        return None

    # -- reading ------------------------------------------------------------------------------

    async def runs_for_call(self, call_id: str) -> dict[str, Any]:
        async with self.reads() as session:
            runs = (await session.scalars(
                select(ProcedureRunRow).where(ProcedureRunRow.call_id == call_id)
                .order_by(ProcedureRunRow.started_at, ProcedureRunRow.id)
            )).all()
            steps = (await session.scalars(
                select(ProcedureStepRow).where(ProcedureStepRow.run_id.in_([r.id for r in runs]))
                .order_by(ProcedureStepRow.run_id, ProcedureStepRow.seq)
            )).all()
            departures = (await session.scalars(
                select(ScriptDepartureRow).where(ScriptDepartureRow.call_id == call_id)
                .order_by(ScriptDepartureRow.at, ScriptDepartureRow.id)
            )).all()
        by_run: dict[str, list[dict[str, Any]]] = {}
        for s in steps:
            by_run.setdefault(s.run_id, []).append(
                {"seq": s.seq, "at": s.at.isoformat(), "offset_ms": s.offset_ms, "kind": s.kind,
                 "detail": s.detail}
            )
        return {
            "call_id": call_id,
            "runs": [
                {"run_id": r.id, "procedure": r.procedure, "started_by": r.started_by,
                 "agent_id": r.agent_id, "started_at": r.started_at.isoformat(),
                 "ended_at": r.ended_at.isoformat() if r.ended_at else None,
                 "end_reason": r.end_reason, "hung_up": r.hung_up,
                 "timeline": by_run.get(r.id, [])}
                for r in runs
            ],
            "departures": [
                {"at": d.at.isoformat(), "what": d.what, "agent_id": d.agent_id,
                 "run_id": d.run_id, "detail": d.detail}
                for d in departures
            ],
        }

    async def callbacks(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest call-back requests, newest first (supervisors follow them up)."""
        async with self.reads() as session:
            rows = (await session.scalars(
                select(CallbackRequestRow)
                .order_by(desc(CallbackRequestRow.requested_at), desc(CallbackRequestRow.id))
                .limit(limit)
            )).all()
        return [self._callback_json(r) for r in rows]

    async def callback_done(self, callback_id: int) -> dict[str, Any]:
        """Mark a call-back request done (a supervisor called back); marking it again keeps the
        first time."""
        async with self.sessions.begin() as session:
            # locked: of two marks at once the first time stays (read committed would let
            # both see it open)
            row = await session.get(CallbackRequestRow, callback_id, with_for_update=True)
            if row is None:
                raise UnknownCallback(f"no call-back request {callback_id}")
            if row.done_at is None:
                row.done_at = self.clock.now()
            return self._callback_json(row)

    @staticmethod
    def _callback_json(r: CallbackRequestRow) -> dict[str, Any]:
        return {
            "id": r.id, "call_id": r.call_id, "caller_number": r.caller_number,
            "lang": r.lang, "queue": r.queue, "requested_at": r.requested_at.isoformat(),
            "done_at": r.done_at.isoformat() if r.done_at else None,
        }
