"""A month's daily report per queue and agent over a year of history, on PostgreSQL.

Puts a year of calls (about 2 million) into the kept events table of a fresh PostgreSQL
database with their quarter-hour roll-ups, then times the report of one month per day, per
queue, per agent and per team from the roll-ups, and compares it field by field with folding
the month's events themselves (the fast figures must be the fold's).

The first week is generated (seeded: tests/history.py) and rolled up by the service's own code
as it is appended (cti/features/reports/rollups.py, batch by batch); the other 51 weeks are
that week copied by the database with shifted sequence numbers and times (events and roll-ups
alike): folding 12 million events in Python takes longer than a benchmark should, and the
comparison with the fold proves the copied roll-ups as much as the generated ones. A day's
calls all end that day and every agent logs out at night, so each copied week stands alone.

    .venv/bin/python benchmarks/bench_reports.py [--calls-per-day 5480] [--days 364] \
        [--generated-days 7] [--check-days 31] [--keep] [--reuse]

`--keep` leaves the database (cti_bench_reports) for another run; `--reuse` measures on it
without generating again. Target (issue 10): <= 1 s for the month's report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PG_DSN = os.environ.get("CTI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
DB = "cti_bench_reports"
TZ = "Asia/Shanghai"
TARGET_S = 1.0
QUEUES = ("billing", "tech", "complaints", "general", "vip")
AGENTS_PER_QUEUE = 8


def spec(days: int, calls_per_day: int):  # type: ignore[no-untyped-def]
    from tests.history import HistorySpec

    queues = {q: [f"{i + 1:02d}{j:02d}" for j in range(AGENTS_PER_QUEUE)]
              for i, q in enumerate(QUEUES)}
    return HistorySpec(date(2025, 12, 1), days, calls_per_day, queues, tz=TZ, seed=2026)


def rules():  # type: ignore[no-untyped-def]
    """Teams for the bench agents: one per queue."""
    from cti.domain.routing.model import AgentProfile, Queue, RoutingRules, SkillRequirement

    agents = {f"{i + 1:02d}{j:02d}": AgentProfile(f"{i + 1:02d}{j:02d}", "", {q: 1},
                                                   team=f"team_{q}")
              for i, q in enumerate(QUEUES) for j in range(AGENTS_PER_QUEUE)}
    queues = {q: Queue(q, SkillRequirement.of({q: 1})) for q in QUEUES}
    return RoutingRules((), queues, {}, agents, (), "general")


async def generate(url: str, days: int, calls_per_day: int) -> int:
    import asyncpg

    from cti.domain.stats import QueueTargets
    from cti.events import CallQueued
    from cti.features.events.store import EventLog
    from cti.features.reports.rollups import Rollups
    from cti.platform.db.base import make_engine, make_sessionmaker
    from tests.history import history

    engine = make_engine(url)
    rollups = Rollups(make_sessionmaker(engine), EventLog(make_sessionmaker(engine)),
                      lambda _q: QueueTargets())
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    seq, calls, started = 0, 0, time.perf_counter()
    try:
        for n, day in enumerate(history(spec(days, calls_per_day))):
            rows, numbered = [], []
            for event in day:
                seq += 1
                rows.append(_row(seq, event))
                numbered.append((seq, event))
                calls += type(event) is CallQueued
            await conn.copy_records_to_table(
                "events", records=rows,
                columns=["seq", "at", "type", "version", "call_id", "agent_id", "queue",
                         "payload"])
            await rollups.add(numbered)  # as the service's subscriber does, batch by batch
            if n % 30 == 29:
                print(f"  day {n + 1}: {calls:,} calls, {seq:,} events, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
    finally:
        await conn.close()
        await engine.dispose()
    print(f"generated {calls:,} calls, {seq:,} events in {time.perf_counter() - started:.0f} s")
    await asyncio.sleep(0)
    return calls


_FIELDS: dict[type, tuple[str, ...]] = {}


def _row(seq: int, event: Any) -> tuple[Any, ...]:
    """The kept row of `event`, as cti.events.event_record makes it (checked on the first of
    each type), without its general conversion: generating a year takes minutes, not an hour."""
    from cti.events import VERSIONS, event_record

    kind = type(event)
    fields = _FIELDS.get(kind)
    if fields is None:
        fields = _FIELDS[kind] = tuple(f for f in kind.__dataclass_fields__ if f != "at")
        r = event_record(event)
        assert r.payload == _payload(event, fields), kind
    name = kind.__name__
    return (seq, event.at, name, VERSIONS[name], getattr(event, "call_id", None),
            getattr(event, "agent_id", None), getattr(event, "queue", None),
            json.dumps(_payload(event, fields), ensure_ascii=False))


def _payload(event: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    out = {f: getattr(event, f) for f in fields}
    if "extra" in out:
        out["extra"] = dict(out["extra"])
    return out


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int:
    """Fields that differ (numbers beyond 1e-9 relative)."""
    bad = 0
    if len(a) != len(b):
        return max(len(a), len(b))
    for x, y in zip(a, b, strict=True):
        for k in x:
            u, v = x[k], y.get(k)
            if isinstance(u, float) or isinstance(v, float):
                if u is None or v is None or abs(u - v) > 1e-9 * max(1.0, abs(u), abs(v)):
                    bad += 1
            elif u != v:
                bad += 1
    return bad


async def replicate(dsn: str, block_days: int, copies: int) -> None:
    """The generated block copied `copies - 1` times after itself, by the database."""
    import asyncpg

    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        n = await conn.fetchval("SELECT max(seq) FROM events")
        q_cols = [r["attname"] for r in await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'report_queue_quarters'::regclass"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
        a_cols = [r["attname"] for r in await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'report_agent_quarters'::regclass"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
        for k in range(1, copies):
            shift = f"interval '{k * block_days} days'"
            async with conn.transaction():
                await conn.execute(
                    f"INSERT INTO events SELECT seq + {k * n}, at + {shift}, type, version, "
                    f"call_id, agent_id, queue, payload FROM events WHERE seq <= {n}")
                for table, cols in (("report_queue_quarters", q_cols),
                                    ("report_agent_quarters", a_cols)):
                    rest = ", ".join(c for c in cols if c != "bucket")
                    await conn.execute(
                        f"INSERT INTO {table} (bucket, {rest}) SELECT bucket + {shift}, {rest} "
                        f"FROM {table} WHERE bucket < (SELECT min(bucket) FROM {table}) "
                        f"+ interval '{block_days} days'")
            if k % 10 == 0:
                print(f"  copied {k} of {copies - 1} in {time.perf_counter() - started:.0f} s",
                      flush=True)
        await conn.execute(
            "UPDATE report_rollup_state SET seq = (SELECT max(seq) FROM events), "
            "at = (SELECT max(at) FROM events)")
        total = await conn.fetchval("SELECT count(*) FROM events")
        print(f"copied to {total:,} events in {time.perf_counter() - started:.0f} s")
    finally:
        await conn.close()


async def measure(url: str, runs: int, check_days: int, days: int) -> None:
    from cti.domain.stats import QueueTargets
    from cti.features.events.store import EventLog
    from cti.features.reports.rollups import Rollups
    from cti.features.reports.service import build_report
    from cti.platform.db.base import make_engine, make_sessionmaker

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    log = EventLog(sessions)
    rollups = Rollups(sessions, log, lambda _q: QueueTargets())
    started = time.perf_counter()
    await rollups.start()  # as after a restart: a day folded again for the states
    print(f"roll-ups started (caught up) in {time.perf_counter() - started:.2f} s")
    # the last whole month of the history
    end = spec(days, 1).start + timedelta(days=days)
    last = date(end.year, end.month, 1) - timedelta(days=1)
    since = datetime(last.year, last.month, 1, tzinfo=ZoneInfo(TZ))
    until = datetime(end.year, end.month, 1, tzinfo=ZoneInfo(TZ))
    the_rules = rules()
    times = []
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            report = await build_report(log, since, until, interval="day", timezone=TZ,
                                        rules=the_rules, source=rollups)
            times.append(time.perf_counter() - t0)
        offered = sum(r["offered"] for r in report.queues)
        print(f"month {since.date()}..{until.date()} per day: {len(report.queues)} queue rows, "
              f"{len(report.agents)} agent rows, {len(report.teams)} team rows, "
              f"{offered:,} calls offered")
        p50, worst = statistics.median(times), max(times)
        load = os.getloadavg()[0]
        print(f"machine: {os.cpu_count()} cores, load average {load:.1f} (a loaded machine "
              "stretches every figure)")
        print(f"from the roll-ups: median {p50 * 1000:.0f} ms, worst {worst * 1000:.0f} ms "
              f"over {runs} runs; target {TARGET_S * 1000:.0f} ms: ratio {p50 / TARGET_S:.2f}x "
              f"(worst {worst / TARGET_S:.2f}x)")
        if check_days:
            t0 = time.perf_counter()
            part = min(until, since + timedelta(days=check_days))
            folded = await build_report(log, since, part, interval="day", timezone=TZ,
                                        rules=the_rules)
            slow = time.perf_counter() - t0
            report = await build_report(log, since, part, interval="day", timezone=TZ,
                                        rules=the_rules, source=rollups)
            print(f"compared with the fold: {since.date()}..{part.date()}")
            bad = (_same(report.queues, folded.queues) + _same(report.agents, folded.agents)
                   + _same(report.teams, folded.teams))
            print(f"folding those days' events instead: {slow:.1f} s; "
                  f"fields differing: {bad} of {len(report.queues) + len(report.agents)} rows")
            if bad:
                raise SystemExit("the roll-ups' figures differ from the fold's")
    finally:
        await engine.dispose()


async def main() -> None:
    import asyncpg

    from cti.platform.db.migrate import upgrade_async

    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=364, help="a whole number of weeks")
    parser.add_argument("--generated-days", type=int, default=7,
                        help="days generated and rolled up in Python; the rest are copies")
    parser.add_argument("--check-days", type=int, default=31,
                        help="days of the month compared with the fold (0: none)")
    parser.add_argument("--calls-per-day", type=int, default=5480)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the database")
    parser.add_argument("--reuse", action="store_true", help="measure the kept database")
    args = parser.parse_args()
    base = PG_DSN.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{DB}"
    admin = await asyncpg.connect(PG_DSN)
    try:
        if not args.reuse:
            await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await admin.close()
    try:
        if not args.reuse:
            await upgrade_async(url)
            block = args.generated_days
            calls = await generate(url, block, args.calls_per_day)
            await replicate(f"{base}/{DB}", block, args.days // block)
            print(f"{calls * (args.days // block):,} calls in the year")
            conn = await asyncpg.connect(f"{base}/{DB}")
            try:
                await conn.execute("ANALYZE")
            finally:
                await conn.close()
        await measure(url, args.runs, args.check_days, args.days)
    finally:
        if not args.keep:
            admin = await asyncpg.connect(PG_DSN)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
            finally:
                await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
