"""Cross-node event latency: from `publish` on node a to the `everywhere` subscriber on node b,
through a real Redis stream, at R events/s (both nodes in this process; two Redis clients).
Also the local delivery on node a, for the ratio (what the stream adds).

    .venv/bin/python benchmarks/bench_cluster_bus.py [--rate 200] [--seconds 10]
        [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from cti.events import MenuKeyPressed
from cti.platform.cluster.bus import ClusterBus
from cti.platform.cluster.redis_store import connect


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def run(url: str, rate: float, seconds: float) -> None:
    prefix = f"bench-cluster-{uuid.uuid4().hex[:8]}:"
    ra, rb = connect(url), connect(url)
    a, b = ClusterBus(ra, prefix, "a"), ClusterBus(rb, prefix, "b")
    await a.start()
    await b.start()
    sent: dict[str, float] = {}
    remote: list[float] = []
    local: list[float] = []

    async def on_remote(event: Any) -> None:
        remote.append(time.perf_counter() - sent[event.call_id])

    async def on_local(event: Any) -> None:
        local.append(time.perf_counter() - sent[event.call_id])

    b.subscribe("bench.remote", on_remote, everywhere=True)
    a.subscribe("bench.local", on_local)
    n = int(rate * seconds)
    start = time.perf_counter()
    try:
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            call_id = f"c{i}"
            sent[call_id] = time.perf_counter()
            a.publish(MenuKeyPressed(call_id, datetime.now(UTC), "1"))
        async with asyncio.timeout(30):
            while len(remote) < n:  # noqa: ASYNC110 (a benchmark polling its counter)
                await asyncio.sleep(0.01)
    finally:
        await a.aclose()
        await b.aclose()
        keys = [k async for k in ra.scan_iter(match=f"{prefix}*")]
        if keys:
            await ra.delete(*keys)
        await ra.aclose()
        await rb.aclose()
    ms = [x * 1000 for x in remote]
    lms = [x * 1000 for x in local]
    print(f"events: {n} at {rate:g}/s; duplicates {b.stats.duplicates}, missed {b.stats.gaps}")
    print(f"node a -> node b (Redis stream): p50 {pct(ms, 50):.2f} ms  p99 {pct(ms, 99):.2f} ms"
          f"  max {max(ms):.2f} ms")
    print(f"node a -> node a (in process):   p50 {pct(lms, 50):.3f} ms  p99 {pct(lms, 99):.3f} ms")
    print(f"ratio remote/local p99: {pct(ms, 99) / pct(lms, 99):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    asyncio.run(run(args.redis, args.rate, args.seconds))


if __name__ == "__main__":
    main()
