"""SQLite (the embedded default database) under concurrent read-then-write transactions:
updates kept, and read latency while they run (docs/storage.md).

Writers: rounds of N concurrent deactivations of one user through the service's own path
(`UserDirectory.set_active`: read the user, move the token epoch on by one, commit). Each
returns the epoch it wrote: N distinct epochs of N is no update lost. Readers, meanwhile: a
few tasks each looping over the screen pop's lookup (`CustomerRepository.by_number_with_history`,
the read on every arriving call's path) and a token check's user read; their latency p50/p99.

Four ways of running the same workload, each on a fresh database file:
  legacy      the driver's own transaction handling (no BEGIN before a SELECT): how the
              service ran before (reads never wait, updates are lost)
  immediate   every transaction BEGIN IMMEDIATE, reads included, one pool (the lost first
              fix: no update lost, reads queue behind the writers)
  nogate      writes BEGIN IMMEDIATE, reads through the read-only sessions on their own pool,
              writers waiting in SQLite's busy handler
  split       the same, writers queued in the process first (the WriteGate): the service now

    .venv/bin/python benchmarks/bench_sqlite_writes.py [--n 160] [--rounds 5] [--readers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

import cti.features.auth.service as auth_service
import cti.features.crm.storage as crm_storage
from cti.domain.crm import Customer
from cti.features.auth.service import NewUser, Role, UserDirectory
from cti.features.crm.storage import CustomerRepository
from cti.platform.db.base import make_engine, make_sessionmaker, read_sessions, sqlite_pragmas
from cti.platform.db.migrate import upgrade_async
from cti.platform.db.tables.users import UserRow

MODES = ("legacy", "immediate", "nogate", "split")
CUSTOMERS = 200


def legacy_engine(url: str) -> AsyncEngine:
    """The engine as it was: the pragmas, the driver's own BEGIN."""
    engine = create_async_engine(url, pool_pre_ping=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        sqlite_pragmas(dbapi_conn)  # the same pragmas; the driver's BEGIN left as it was

    return engine


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


async def run(mode: str, n: int, rounds: int, readers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as folder:
        return await _run(f"sqlite+aiosqlite:///{folder}/cti.db", mode, n, rounds, readers)


async def _run(url: str, mode: str, n: int, rounds: int, readers: int) -> dict[str, Any]:
    await upgrade_async(url)
    engine = legacy_engine(url) if mode == "legacy" else make_engine(url)
    # the WriteGate comes with make_sessionmaker on SQLite; a plain sessionmaker has none
    sessions = (make_sessionmaker(engine) if mode == "split"
                else async_sessionmaker(engine, expire_on_commit=False))
    # `immediate`: the stores' reads through the write sessions, as in the lost first fix
    pick = (lambda s: s) if mode == "immediate" else read_sessions
    crm_storage.read_sessions = pick  # type: ignore[attr-defined]
    auth_service.read_sessions = pick  # type: ignore[attr-defined]
    users = UserDirectory(sessions)
    crm = CustomerRepository(sessions)
    reads = pick(sessions)
    try:
        await users.create(NewUser("agent1001", "secret1", Role.AGENT, "1001"))
        for i in range(CUSTOMERS):
            await crm.add(Customer(None, (f"+86138{i:08d}",), name=f"C{i}"))

        latencies: list[float] = []
        stop = asyncio.Event()

        async def reader(k: int) -> None:
            i = k
            while not stop.is_set():
                t0 = time.perf_counter()
                await crm.by_number_with_history(f"+86138{i % CUSTOMERS:08d}", 5)
                async with reads() as s:  # a token check's read of its user
                    await s.scalar(select(UserRow.token_epoch).where(UserRow.id == 1))
                latencies.append((time.perf_counter() - t0) * 1000)
                i += readers
                await asyncio.sleep(0.005)

        distinct: list[int] = []
        errors = 0
        tasks = [asyncio.create_task(reader(k)) for k in range(readers)]
        t0 = time.perf_counter()
        for _ in range(rounds):
            got = await asyncio.gather(
                *(users.set_active("agent1001", False) for _ in range(n)),
                return_exceptions=True)
            epochs = [g[1] for g in got if not isinstance(g, BaseException)]
            errors += len(got) - len(epochs)
            distinct.append(len(set(epochs)))
        elapsed = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(*tasks)
        async with sessions() as s:
            final = await s.scalar(select(UserRow.token_epoch).where(UserRow.id == 1))
    finally:
        crm_storage.read_sessions = read_sessions  # type: ignore[attr-defined]
        auth_service.read_sessions = read_sessions  # type: ignore[attr-defined]
        await engine.dispose()
    return {
        "mode": mode, "n": n, "rounds": rounds,
        "distinct_per_round": distinct, "errors": errors,
        "final_epoch": final, "expected_epoch": n * rounds,
        "writes_per_s": round(n * rounds / elapsed, 1),
        "reads": len(latencies),
        "read_p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "read_p99_ms": round(pct(latencies, 0.99), 2),
        "read_max_ms": round(max(latencies), 2) if latencies else None,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=160, help="concurrent updates per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for mode in args.modes.split(","):
        r = await run(mode, args.n, args.rounds, args.readers)
        print(json.dumps(r), flush=True)
        print(f"{mode:>9}: distinct {min(r['distinct_per_round'])}..{max(r['distinct_per_round'])}"
              f" of {args.n} per round, epoch {r['final_epoch']} of {r['expected_epoch']}, "
              f"{r['errors']} errors, {r['writes_per_s']} writes/s; "
              f"reads p50 {r['read_p50_ms']} ms p99 {r['read_p99_ms']} ms "
              f"({r['reads']} reads)", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
