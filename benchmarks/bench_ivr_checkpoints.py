"""What keeping each live call's IVR checkpoint costs (cti.features.ivr.checkpoints).

N calls each move a step every `--period` seconds (a silent-call procedure moves about every
2.5 s: a prompt of ~2-3 s, then a 5 s wait: two checkpoints per 7.5 s; a menu less often), with
random phases, for `--seconds`. Each step is what the runner does: `snapshot` of the engine
state and `CheckpointWriter.keep` (on the call's path), then the writer's background rounds (off
it). Reported: the on-path cost per checkpoint (µs), the writes (transactions) per second and
rows per write, how many checkpoints were coalesced away, each write's latency p50/p99, and the
process CPU per checkpoint, on SQLite (a file) or PostgreSQL.

    .venv/bin/python benchmarks/bench_ivr_checkpoints.py [--db sqlite|postgresql]
        [--calls 300] [--seconds 20] [--period 2.5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from cti.domain.ivr.checkpoint import Checkpoint, PromptAt, TimerAt, snapshot
from cti.domain.ivr.engine import CallContext, CallState, Phase, ProcedureRun
from cti.features.ivr.checkpoints import CheckpointStore, CheckpointWriter
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async

PG_DSN = os.environ.get("CTI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def state_of(call_id: str, step: int) -> CallState:
    """A call in the silent-call procedure, at its `step`-th prompt or wait."""
    nodes = ("first", "wait_1", "second", "wait_2", "goodbye", "wait_3")
    ctx = CallContext(call_id, "zh", {"zh": {"company": "示例科技", "agent_id": "007"}})
    return CallState(
        ctx=ctx, flow="agent_greeting", node="conversation", lang="zh", phase=Phase.ACTIVE,
        answered_at=datetime.now(UTC), procedure=ProcedureRun(
            "silent_call", f"{call_id}-r1", "auto", nodes[step % len(nodes)]),
        playing=f"{call_id}-p{step}" if step % 2 == 0 else None, play_seq=step + 1,
        timer_gen=step, timer_live=step % 2 == 1, audio_kind="silent", audio_run=3,
        audio_detail={"kind": "silent", "level_dbfs": -71.2, "snr_db": 0.4},
        auto_starts={"silent_call": 1}, run_seq=1, agent_on_call=True,
    )


async def database(kind: str) -> tuple[str, str | None]:
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp()) / "bench.db"
        url = f"sqlite+aiosqlite:///{path}"
        await upgrade_async(url)
        return url, None
    name = f"cti_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    await upgrade_async(url)
    return url, name


async def main(args: argparse.Namespace) -> None:
    url, pg_name = await database(args.db)
    engine = make_engine(url)
    store = CheckpointStore(make_sessionmaker(engine))
    latencies: list[float] = []
    real_write = store.write

    async def timed(keep: list[Checkpoint], drop: list[str]) -> None:
        t = time.perf_counter()
        await real_write(keep, drop)
        latencies.append(time.perf_counter() - t)

    store.write = timed  # type: ignore[method-assign]
    writer = CheckpointWriter(store)
    rng = random.Random(7)
    calls = [f"bench-{i}.{rng.randint(0, 999)}" for i in range(args.calls)]
    on_path: list[float] = []
    steps = 0
    try:
        cpu0, t0 = time.process_time(), time.monotonic()
        due = {c: t0 + rng.uniform(0, args.period) for c in calls}
        step_of = dict.fromkeys(calls, 0)
        while time.monotonic() - t0 < args.seconds:
            now = time.monotonic()
            for call_id, when in due.items():
                if when > now:
                    continue
                s = step_of[call_id] = step_of[call_id] + 1
                state = state_of(call_id, s)
                at = datetime.now(UTC)
                t = time.perf_counter()
                writer.keep(snapshot(
                    state, at, TimerAt(state.timer_gen, at + timedelta(seconds=5)),
                    PromptAt(state.playing or "", at, 2.4),
                ))
                on_path.append(time.perf_counter() - t)
                steps += 1
                due[call_id] = when + args.period
            await asyncio.sleep(0.005)
        await writer.close()
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    finally:
        await engine.dispose()
        if pg_name is not None:
            admin = await asyncpg.connect(PG_DSN)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            finally:
                await admin.close()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    p = statistics.quantiles(on_path, n=100)
    print(f"{args.db}: {args.calls} calls, a step every {args.period:g} s, {elapsed:.1f} s: "
          f"{steps} checkpoints ({steps / elapsed:.0f}/s)")
    print(f"  on the call's path (snapshot + keep): p50 {p[49] * 1e6:.0f} µs, "
          f"p99 {p[98] * 1e6:.0f} µs")
    print(f"  writes: {writer.writes} ({writer.writes / elapsed:.1f}/s), "
          f"{writer.rows / max(writer.writes, 1):.1f} rows each, "
          f"{writer.coalesced} coalesced away")
    print(f"  write latency p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")
    print(f"  process CPU {cpu / elapsed * 100:.1f} % of a core "
          f"({cpu / max(steps, 1) * 1e6:.0f} µs per checkpoint, generation included); "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--period", type=float, default=2.5)
    asyncio.run(main(parser.parse_args()))
