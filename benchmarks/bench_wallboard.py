"""Event to wallboard tile: from an event published on the bus to the queue's tile received by
every supervisor's socket, with C calls in progress and S supervisor sockets.

Two processes, so the sockets do not share the server's event loop: this script starts itself
with `--serve` (the desk socket on uvicorn, the live wallboard, the event log and the report
roll-ups on one bus over a migrated SQLite DB, as the service runs them), then opens the
supervisors' sockets and measures. The server puts C calls in progress (queued and answered,
over 5 queues), then publishes at R events/s: every other one a new call joining the measured
queue, whose tile's `offered` count names it, the others holds and resumes of calls in
progress. It writes when it published each measured event (CLOCK_MONOTONIC, one clock for all
processes on Linux); each socket notes when the tile with that count arrived.

    .venv/bin/python benchmarks/bench_wallboard.py [--sockets 100] [--calls 200] [--rate 20] \
        [--seconds 20]

Target (issue 10): p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECRET = "bench-secret-0123456789abcdef-0123456789"
FIRST_USER = 5000
QUEUES = ("billing", "tech", "complaints", "general", "vip")
MEASURED = "bench"
TARGET_MS = 100.0


def _principal(user_id: int):  # type: ignore[no-untyped-def]
    from cti.features.auth.service import Principal, Role

    return Principal(user_id, f"boss{user_id}", Role.SUPERVISOR, None, "", "zh")


async def serve(port: int, sockets: int, calls: int, rate: float, seconds: float,
                out: Path) -> None:
    import uvicorn
    from fastapi import FastAPI

    from cti.domain.stats import QueueTargets
    from cti.events import (
        AgentStateChanged,
        CallConnected,
        CallHeld,
        CallQueued,
        CallResumed,
    )
    from cti.features.desk.desk import AgentDesk
    from cti.features.desk.http import install_agent_desk
    from cti.features.events.store import EventLog
    from cti.features.reports.live import LiveStats
    from cti.features.reports.rollups import Rollups
    from cti.platform.clock import SystemClock
    from cti.platform.db.base import make_engine, make_sessionmaker
    from cti.platform.db.migrate import upgrade_async
    from cti.platform.db.tables.users import UserRow

    db = Path(tempfile.mkdtemp()) / "bench.db"
    url = f"sqlite+aiosqlite:///{db}"
    await upgrade_async(url, "heads")
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    async with sessions() as s:
        for i in range(sockets):
            s.add(UserRow(id=FIRST_USER + i, username=f"boss{FIRST_USER + i}",
                          password_hash="!", role="supervisor", agent_id=None,
                          created_at=datetime.now(UTC)))
        await s.commit()
    desk = AgentDesk.build(sessions, token_secret=SECRET)
    bus = desk.bus
    log = EventLog(sessions, bus)  # the kept stream and the roll-ups, as in the service

    def targets(_q: str) -> QueueTargets:
        return QueueTargets()

    Rollups(sessions, log, targets, bus)
    live = LiveStats(bus, log, desk.hub, SystemClock(), targets, "Asia/Shanghai")
    await live.start()
    app = FastAPI()
    install_agent_desk(app, desk, ui=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    print("ready", flush=True)
    while desk.hub.connections("supervisors") < sockets:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    print(f"connected {sockets}", flush=True)

    now = datetime.now(UTC)
    for i in range(calls):  # calls in progress: queued, answered, on an agent
        queue, agent = QUEUES[i % len(QUEUES)], f"a{i}"
        bus.publish(AgentStateChanged(agent, "logged_out", "available", now))
        bus.publish(CallQueued(f"p{i}", queue, 0, 1, now))
        bus.publish(AgentStateChanged(agent, "available", "on_call", now, call_id=f"p{i}"))
        bus.publish(CallConnected(f"p{i}", agent, queue, 5.0, now))
    await bus.drain(60)
    await asyncio.sleep(1.0)
    print(f"in progress {calls}", flush=True)

    interval = 1.0 / rate
    total = int(seconds * rate)
    cpu = time.process_time()
    start = time.monotonic()
    published: dict[int, float] = {}
    held: set[int] = set()
    k = 0
    for i in range(total):
        await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
        at = datetime.now(UTC)
        if i % 2 == 0:
            k += 1
            published[k] = time.monotonic()
            bus.publish(CallQueued(f"m{k}", MEASURED, 0, 1, at))
        else:
            c = (i // 2) % calls
            if c in held:
                held.discard(c)
                bus.publish(CallResumed(f"p{c}", at, f"a{c}"))
            else:
                held.add(c)
                bus.publish(CallHeld(f"p{c}", at, f"a{c}"))
    await bus.drain(30)
    await asyncio.sleep(0.5)  # the sockets' senders finish
    used = time.process_time() - cpu
    print(f"server CPU: {used:.2f} s for {total} events = {used / total * 1000:.1f} ms per "
          f"event ({used / (time.monotonic() - start):.0%} of a core)", flush=True)
    await asyncio.to_thread(out.write_text, json.dumps(published))
    print(f"published {k}", flush=True)
    await asyncio.sleep(1.0)
    server.should_exit = True
    await task
    await bus.aclose()
    await engine.dispose()


async def measure(port: int, sockets: int, proc: subprocess.Popen[str], out: Path) -> None:
    from websockets.asyncio.client import connect

    from cti.features.auth.service import Tokens

    tokens = Tokens(SECRET)
    received: list[dict[int, float]] = [{} for _ in range(sockets)]
    stop = asyncio.Event()

    async def supervisor_socket(n: int) -> None:
        token = tokens.issue(_principal(FIRST_USER + n)).token
        seen = received[n]
        async with connect(f"ws://127.0.0.1:{port}/ws/desk", max_queue=None,
                           open_timeout=60) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                now = time.monotonic()
                if '"wallboard.queue"' not in raw:  # the client reads only what it measures
                    continue
                msg = json.loads(raw)
                if msg.get("type") == "wallboard.queue" and msg.get("queue") == MEASURED:
                    seen.setdefault(int(msg["offered"]), now)

    tasks = []
    for i in range(sockets):
        tasks.append(asyncio.create_task(supervisor_socket(i)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    print(await loop.run_in_executor(None, _wait_line, proc, "server CPU"))
    await loop.run_in_executor(None, _wait_line, proc, "published")
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    text = await asyncio.to_thread(out.read_text)
    published = {int(k): v for k, v in json.loads(text).items()}
    latencies = [(t - published[k]) * 1000 for seen in received for k, t in seen.items()
                 if k in published]
    expected = len(published) * sockets
    if not latencies:
        print("no tiles received")
        sys.exit(1)
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    load = os.getloadavg()[0]
    print(f"tiles received: {len(latencies)} of {expected} (a socket may get two events' "
          "counts in one tile)")
    print(f"event -> tile latency ms: p50 {pct(50):.1f}  p90 {pct(90):.1f}  p99 {pct(99):.1f}  "
          f"max {ordered[-1]:.1f}  mean {statistics.fmean(latencies):.1f}")
    print(f"target p99 <= {TARGET_MS:.0f} ms: ratio {pct(99) / TARGET_MS:.2f}x "
          f"({'met' if pct(99) <= TARGET_MS else 'NOT met'}); load average {load:.1f} "
          f"on {os.cpu_count()} cores")


def _wait_line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise RuntimeError(f"server ended before printing {prefix!r} (exit {proc.wait()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.sockets, args.calls, args.rate, args.seconds,
                          args.out))
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = Path(tempfile.mkdtemp()) / "published.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--sockets", str(args.sockets),
         "--calls", str(args.calls), "--rate", str(args.rate), "--seconds", str(args.seconds),
         "--out", str(out)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        _wait_line(proc, "ready")
        print(f"{args.sockets} supervisor sockets, {args.calls} calls in progress, "
              f"{args.rate:g} events/s for {args.seconds:g} s")
        asyncio.run(measure(port, args.sockets, proc, out))
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()


if __name__ == "__main__":
    main()
