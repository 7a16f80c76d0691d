"""Report roll-ups: the figures of every quarter hour, per queue and agent, kept in the
database as the events happen (a bus subscriber running the same fold as the wallboard and the
reports), so a report over a month or a year adds up a few thousand kept quarter hours instead
of folding millions of events. What a quarter hour holds is exactly what folding the events
gives (tested): the fold's figures add up, and the roll-up adds each batch's share to what is
kept.

Agent time still running (an agent on a call now) is added when the state ends; a report up to
now adds that open part from the fold in memory. After a restart the fold's state (calls in
progress, agents' states) is folded again from a day of kept events before where the roll-ups
stopped, then the events after it are rolled up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.stats import AgentFigures, QueueFigures, QueueTargets, StatsFold
from cti.events import Bus, DomainEvent, Envelope
from cti.features.events.store import EventLog
from cti.features.reports.service import (
    READ_BATCH,
    STATS_EVENTS,
    WARM_UP,
    Quarter,
    Quarters,
    quarter_hours,
    quarters_of,
)
from cti.platform.db.tables.report_rollups import ReportRollupRow, ReportRollupState
from cti.platform.log import get_logger

log = get_logger(__name__)
_STATS_TYPES = frozenset(STATS_EVENTS)


def _queue(record: dict[str, Any]) -> QueueFigures:
    return QueueFigures(**record)


def _agent(record: dict[str, Any]) -> AgentFigures:
    return AgentFigures(**record)


class Rollups:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], log_: EventLog,
        targets: Callable[[str], QueueTargets], bus: Bus | None = None,
    ) -> None:
        self.sessions, self.log, self.targets = sessions, log_, targets
        self.fold = StatsFold(targets, periods=quarter_hours())
        self.seq = 0  # the last event folded
        self.at: datetime | None = None
        self.failures = 0
        if bus is not None:
            bus.subscribe_batches("reports.rollups", self._on_batch)

    # ----- keeping ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Where the roll-ups stopped: fold the day before it again (states only), then roll up
        the kept events after it."""
        async with self.sessions() as session:
            state = await session.get(ReportRollupState, 1)
        if state is not None:
            self.seq, self.at = state.seq, state.at
            after: int | None = None
            while True:
                rows = await self.log.read(since=state.at - WARM_UP, after_seq=after,
                                           types=STATS_EVENTS, limit=READ_BATCH)
                rows = [r for r in rows if r.seq <= state.seq]
                for row in rows:
                    self.fold.apply(row.event())
                if len(rows) < READ_BATCH:
                    break
                after = rows[-1].seq
            self.fold.take()  # already kept
        await self.catch_up()

    async def catch_up(self) -> None:
        """Roll up the kept events after the last one rolled up."""
        while True:
            rows = await self.log.read(after_seq=self.seq, types=STATS_EVENTS, limit=READ_BATCH)
            for row in rows:
                self.fold.apply(row.event())
            if rows:
                await self.flush(rows[-1].seq, rows[-1].at)
            if len(rows) < READ_BATCH:
                return

    async def rebuild(self) -> None:
        """Forget the roll-ups and make them again from every kept event."""
        async with self.sessions.begin() as session:
            await session.execute(delete(ReportRollupRow))
            await session.execute(delete(ReportRollupState))
        self.fold = StatsFold(self.targets, periods=quarter_hours())
        self.seq, self.at = 0, None
        await self.catch_up()

    async def _on_batch(self, batch: Sequence[Envelope]) -> None:
        last: Envelope | None = None
        for env in batch:
            if env.seq <= self.seq:
                continue
            if type(env.event).__name__ in _STATS_TYPES:
                self.fold.apply(env.event)
            last = env
        if last is not None:
            await self.flush(last.seq, last.event.at)

    async def add(self, events: Sequence[tuple[int, DomainEvent]]) -> None:
        """Roll up events already numbered (a bulk load of history, like the benchmark's)."""
        for seq, event in events:
            if seq > self.seq and type(event).__name__ in _STATS_TYPES:
                self.fold.apply(event)
        if events:
            await self.flush(events[-1][0], events[-1][1].at)

    async def flush(self, seq: int, at: datetime) -> None:
        """Add the figures folded since the last flush to the kept quarter hours. A failed
        write keeps them in the fold for the next one (nothing lost, nothing counted twice)."""
        queues, agents = self.fold.take()
        deltas: dict[tuple[datetime, str, str], QueueFigures | AgentFigures] = {}
        for bucket, figures in queues.items():
            for name, q in figures.items():
                deltas[(bucket, "q", name)] = q
        for bucket, agent_figures in agents.items():
            for agent_id, a in agent_figures.items():
                deltas[(bucket, "a", agent_id)] = a
        try:
            await self._write(deltas, seq, at)
        except Exception as exc:
            self.failures += 1
            for bucket, figures in queues.items():
                for name, q in figures.items():
                    self.fold.queue(name, bucket).add(q)
            for bucket, agent_figures in agents.items():
                for agent_id, a in agent_figures.items():
                    self.fold.agent(agent_id, bucket).add(a)
            log.error("report_rollups.write_failed", error=f"{exc.__class__.__name__}: {exc}")
            return
        self.seq, self.at = seq, at

    async def _write(self, deltas: dict[tuple[datetime, str, str], Any], seq: int,
                     at: datetime) -> None:
        async with self.sessions.begin() as session:
            if deltas:
                buckets = [k[0] for k in deltas]
                kept = (await session.execute(select(ReportRollupRow).where(and_(
                    ReportRollupRow.bucket >= min(buckets),
                    ReportRollupRow.bucket <= max(buckets))))).scalars().all()
                changed = []
                for row in kept:
                    delta = deltas.pop((row.bucket, row.kind, row.key), None)
                    if delta is not None:
                        base = _queue(row.figures) if row.kind == "q" else _agent(row.figures)
                        changed.append({"b_bucket": row.bucket, "b_kind": row.kind,
                                        "b_key": row.key,
                                        "figures": base.add(delta).record()})
                if changed:
                    table = cast(Table, ReportRollupRow.__table__)
                    await session.execute(
                        update(table).where(and_(
                            table.c.bucket == bindparam("b_bucket"),
                            table.c.kind == bindparam("b_kind"),
                            table.c.key == bindparam("b_key")))
                        .values(figures=bindparam("figures")),
                        changed)
                if deltas:
                    await session.execute(insert(ReportRollupRow), [
                        {"bucket": b, "kind": k, "key": key, "figures": f.record()}
                        for (b, k, key), f in deltas.items()])
            state = await session.get(ReportRollupState, 1)
            if state is None:
                session.add(ReportRollupState(id=1, seq=seq, at=at))
            else:
                state.seq, state.at = seq, at

    # ----- reading ----------------------------------------------------------------------------

    async def quarters(self, since: datetime, until: datetime) -> Quarters:
        """The kept quarter hours of [since, until), with what is still open up to `until`."""
        async with self.sessions() as session:
            rows = (await session.execute(
                select(ReportRollupRow.bucket, ReportRollupRow.kind, ReportRollupRow.key,
                       ReportRollupRow.figures)
                .where(ReportRollupRow.bucket >= since, ReportRollupRow.bucket < until))).all()
        out: Quarters = {}
        for bucket, kind, key, figures in rows:
            quarter = out.get(bucket)
            if quarter is None:
                quarter = out[bucket] = Quarter()
            if kind == "q":
                quarter.queues[key] = _queue(figures)
            else:
                quarter.agents[key] = _agent(figures)
        # not yet kept: states still open, and figures a failed write left in the fold
        pending = list(quarters_of(self.fold.open_part(until), since, until).items())
        pending += quarters_of(self.fold, since, until).items()
        for bucket, extra in pending:
            quarter = out.setdefault(bucket, Quarter())
            for name, q in extra.queues.items():
                quarter.queues.setdefault(name, QueueFigures()).add(q)
            for agent_id, a in extra.agents.items():
                quarter.agents.setdefault(agent_id, AgentFigures()).add(a)
        return out


__all__ = ["Rollups"]
