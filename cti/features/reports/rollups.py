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

import bisect
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, delete, func, insert, select, update
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
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.report_rollups import (
    AGENT_COUNTS,
    AGENT_TIMES,
    QUEUE_COUNTS,
    QUEUE_MAX,
    QUEUE_TIMES,
    AgentQuarterRow,
    QueueQuarterRow,
    ReportRollupState,
)
from cti.platform.log import get_logger

log = get_logger(__name__)
_STATS_TYPES = frozenset(STATS_EVENTS)


# Roll-ups are written at most about once a second, however fast events come: each write is a
# transaction of several statements, and at 20 calls/s one per bus batch took a tenth of the
# service's CPU. Nothing waits on them: a report drains the bus first, and a restart rolls up
# again from the kept event log whatever was folded but not yet written.
SETTLE_S = 1.0

_Q_COLUMNS = QUEUE_COUNTS + QUEUE_TIMES + QUEUE_MAX
_A_COLUMNS = AGENT_COUNTS + AGENT_TIMES


def _queue(values: dict[str, Any], extras: dict[str, Any] | None) -> QueueFigures:
    q = QueueFigures(**{c: values[c] for c in _Q_COLUMNS})
    if extras:
        q.procedures = dict(extras.get("procedures", {}))
    return q


def _agent(values: dict[str, Any], extras: dict[str, Any] | None) -> AgentFigures:
    a = AgentFigures(**{c: values[c] for c in _A_COLUMNS})
    if extras:
        a.pause_s = dict(extras.get("pause_s", {}))
        a.procedures = dict(extras.get("procedures", {}))
    return a


def _queue_row(q: QueueFigures) -> dict[str, Any]:
    row = {c: getattr(q, c) for c in _Q_COLUMNS}
    row["extras"] = {"procedures": q.procedures} if q.procedures else None
    return row


def _agent_row(a: AgentFigures) -> dict[str, Any]:
    row = {c: getattr(a, c) for c in _A_COLUMNS}
    extras = {k: v for k, v in (("pause_s", a.pause_s), ("procedures", a.procedures)) if v}
    row["extras"] = extras or None
    return row


_TABLES: dict[str, tuple[Any, str, Callable[..., Any], Callable[..., dict[str, Any]]]] = {
    "q": (QueueQuarterRow, "queue", _queue, _queue_row),
           "a": (AgentQuarterRow, "agent_id", _agent, _agent_row)}


class Rollups:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], log_: EventLog,
        targets: Callable[[str], QueueTargets], bus: Bus | None = None,
    ) -> None:
        self.sessions, self.log, self.targets = sessions, log_, targets
        self.reads = read_sessions(sessions)  # docs/storage.md
        self.fold = StatsFold(targets, periods=quarter_hours())
        self.seq = 0  # the last event folded
        self.at: datetime | None = None
        self.failures = 0
        self.unwritten = False  # figures a failed write left in the fold
        self.transactions = 0
        if bus is not None:
            bus.subscribe_batches("reports.rollups", self._on_batch, settle_s=SETTLE_S)

    # ----- keeping ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Where the roll-ups stopped: fold the day before it again (states only), then roll up
        the kept events after it."""
        async with self.reads() as session:
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
            await session.execute(delete(QueueQuarterRow))
            await session.execute(delete(AgentQuarterRow))
            await session.execute(delete(ReportRollupState))
        self.fold = StatsFold(self.targets, periods=quarter_hours())
        self.seq, self.at = 0, None
        await self.catch_up()

    async def _on_batch(self, batch: Sequence[Envelope]) -> None:
        last: Envelope | None = None
        folded = False
        for env in batch:
            if env.seq <= self.seq:
                continue
            if type(env.event).__name__ in _STATS_TYPES:
                self.fold.apply(env.event)
                folded = True
            last = env
        if last is None:
            return
        if folded or self.unwritten:
            await self.flush(last.seq, last.event.at)
        else:
            # Nothing to roll up (a call's IVR steps, say: most batches): no transaction. The
            # kept position stays at the last batch that had figures, which a restart's
            # catch-up (stats events only) finds the same as this one.
            self.seq, self.at = last.seq, last.event.at

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
            self.unwritten = True
            return
        self.unwritten = False
        self.transactions += 1
        self.seq, self.at = seq, at

    async def _write(self, deltas: dict[tuple[datetime, str, str], Any], seq: int,
                     at: datetime) -> None:
        async with self.sessions.begin() as session:
            for kind, (model, key_name, load, dump) in _TABLES.items():
                mine = {(b, key): f for (b, k, key), f in deltas.items() if k == kind}
                if not mine:
                    continue
                buckets = [b for b, _ in mine]
                key_col = getattr(model, key_name)
                kept = (await session.execute(select(model).where(and_(
                    model.bucket >= min(buckets), model.bucket <= max(buckets),
                    key_col.in_({key for _, key in mine}))))).scalars().all()
                changed = []
                for row in kept:
                    delta = mine.pop((row.bucket, getattr(row, key_name)), None)
                    if delta is not None:
                        values = {c.key: getattr(row, c.key) for c in model.__table__.columns}
                        merged = load(values, row.extras).add(delta)
                        changed.append({"b_bucket": row.bucket, "b_key": getattr(row, key_name),
                                        **dump(merged)})
                if changed:
                    table = cast(Table, model.__table__)
                    names = [c for c in changed[0] if not c.startswith("b_")]
                    await session.execute(
                        update(table).where(and_(
                            table.c.bucket == bindparam("b_bucket"),
                            table.c[key_name] == bindparam("b_key")))
                        .values({n: bindparam(n) for n in names}),
                        changed)
                if mine:
                    await session.execute(insert(model), [
                        {"bucket": b, key_name: key, **dump(f)} for (b, key), f in mine.items()])
            state = await session.get(ReportRollupState, 1)
            if state is None:
                session.add(ReportRollupState(id=1, seq=seq, at=at))
            else:
                state.seq, state.at = seq, at

    # ----- reading ----------------------------------------------------------------------------

    async def quarters(self, since: datetime, until: datetime) -> Quarters:
        """The kept quarter hours of [since, until), with what is still open up to `until`."""
        out: Quarters = {}
        async with self.reads() as session:
            for kind, (model, key_name, load, _dump) in _TABLES.items():
                result = await session.execute(select(model.__table__).where(
                    model.bucket >= since, model.bucket < until))
                for values in result.mappings():
                    quarter = out.get(values["bucket"])
                    if quarter is None:
                        quarter = out[values["bucket"]] = Quarter()
                    into = quarter.queues if kind == "q" else quarter.agents
                    into[values[key_name]] = load(dict(values), values["extras"])
        self._add_pending(out, since, until, lambda b: b)
        return out

    async def period_sums(self, ranges: Sequence[tuple[datetime, datetime]],
                          ) -> dict[datetime, Quarter]:
        """Each range's figures (keyed by its start; the ranges follow each other), summed by
        the database from the kept quarter hours: one query per table, the counts and times
        added, the longest wait the longest; the per-reason figures added here from the few
        rows that have them."""
        out: dict[datetime, Quarter] = {start: Quarter() for start, _ in ranges}
        if not ranges:
            return out
        async with self.reads() as session:
            for kind, (model, key_name, load, _dump) in _TABLES.items():
                key_col = getattr(model, key_name)
                summed = [func.sum(getattr(model, c)).label(c) for c in (
                    QUEUE_COUNTS + QUEUE_TIMES if kind == "q" else _A_COLUMNS)]
                if kind == "q":
                    summed += [func.max(getattr(model, c)).label(c) for c in QUEUE_MAX]
                # the ranges follow each other: one query, each row's range by a CASE
                which = case(*[(model.bucket < end, i) for i, (_s, end) in enumerate(ranges)],
                             else_=-1).label("which")
                result = await session.execute(
                    select(which, key_col.label("key"), *summed)
                    .where(model.bucket >= ranges[0][0], model.bucket < ranges[-1][1])
                    .group_by(which, key_col))
                for values in result.mappings():
                    if values["which"] < 0:
                        continue
                    start = ranges[values["which"]][0]
                    into = out[start].queues if kind == "q" else out[start].agents
                    into[values["key"]] = load(  # sums come back as numbers of any kind
                        {k: (int(v) if k in QUEUE_COUNTS + AGENT_COUNTS else float(v))
                         for k, v in values.items() if k not in ("key", "which")}, None)
                lo, hi = ranges[0][0], ranges[-1][1]
                extras = await session.execute(
                    select(model.bucket, key_col, model.extras)
                    .where(model.bucket >= lo, model.bucket < hi, model.extras.is_not(None)))
                for bucket, key, extra in extras:
                    first = _range_of(ranges, bucket)
                    if first is None or not extra:
                        continue
                    into = out[first].queues if kind == "q" else out[first].agents
                    figures = into.get(key)
                    if figures is not None:
                        for name, values in extra.items():
                            mine = getattr(figures, name)
                            for k, v in values.items():
                                mine[k] = mine.get(k, 0) + v
        self._add_pending(out, ranges[0][0], ranges[-1][1],
                          lambda b: _range_of(ranges, b))
        return out

    def _add_pending(self, out: dict[datetime, Quarter], since: datetime, until: datetime,
                     where: Callable[[datetime], datetime | None]) -> None:
        """What is not kept yet: states still open, and figures a failed write left in the
        fold."""
        pending = list(quarters_of(self.fold.open_part(until), since, until).items())
        pending += quarters_of(self.fold, since, until).items()
        for bucket, extra in pending:
            key = where(bucket)
            if key is None:
                continue
            quarter = out.setdefault(key, Quarter())
            for name, q in extra.queues.items():
                quarter.queues.setdefault(name, QueueFigures()).add(q)
            for agent_id, a in extra.agents.items():
                quarter.agents.setdefault(agent_id, AgentFigures()).add(a)


def _range_of(ranges: Sequence[tuple[datetime, datetime]], at: datetime) -> datetime | None:
    i = bisect.bisect_right([start for start, _ in ranges], at) - 1
    return ranges[i][0] if i >= 0 and at < ranges[i][1] else None


__all__ = ["Rollups"]
