"""ARI round trips through our client against the sandbox Asterisk.

    .venv/bin/python benchmarks/bench_ari.py [--n 300]

Starts its own sandbox instance (scripts/pbx) and stops it at the end. Prints p50/p99 of:
GET /asterisk/info; originate (a Local channel into our Stasis app); originate -> StasisStart
on the event socket; answer; play; create bridge; add a channel to a bridge.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cti.platform.ari.client import AriClient
from cti.platform.ari.events import AriEvent, StasisStart
from cti.platform.ari.telephony import AriTelephony
from cti.platform.settings import AriSettings
from tests.e2e.pbx import Pbx


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, ms: list[float]) -> None:
    print(f"  {name:34} n={len(ms):4}  p50 {pct(ms, .5):7.2f} ms  p99 {pct(ms, .99):7.2f} ms"
          f"  mean {statistics.fmean(ms):7.2f} ms")


async def bench(pbx: Pbx, n: int) -> None:
    started: dict[str, asyncio.Future[float]] = {}

    async def on_event(event: AriEvent) -> None:
        if isinstance(event, StasisStart):
            fut = started.get(event.channel.id)
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())

    client = AriClient(AriSettings(url=pbx.ari_url), on_event=on_event)
    tel = AriTelephony(client)
    runner = asyncio.create_task(client.run())
    await asyncio.wait_for(client.connected.wait(), 10)
    info, orig, to_start, answer, play, bridge, add = ([] for _ in range(7))
    try:
        for _ in range(n):
            t = time.perf_counter()
            await client.request("GET", "asterisk/info")
            info.append((time.perf_counter() - t) * 1000)
        for _ in range(max(20, n // 5)):
            cid = uuid.uuid4().hex
            started[cid] = asyncio.get_running_loop().create_future()
            t = time.perf_counter()
            await tel.originate("Local/echo@test-sources", app_args="bench", channel_id=cid,
                                formats="ulaw")
            orig.append((time.perf_counter() - t) * 1000)
            at = await asyncio.wait_for(started[cid], 5)
            to_start.append((at - t) * 1000)
            t = time.perf_counter()
            await tel.answer(cid)
            answer.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            pid = await tel.play(cid, ["sound:silence/1"])
            play.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            bid = await tel.create_bridge(None, "mixing")
            bridge.append((time.perf_counter() - t) * 1000)
            # a playback holds addChannel until it ends (docs/ari.md#playback-blocks): stop it first
            await tel.stop_playback(pid)
            t = time.perf_counter()
            await tel.add_to_bridge(bid, [cid])
            add.append((time.perf_counter() - t) * 1000)
            await tel.hangup(cid)
            await tel.destroy_bridge(bid)
    finally:
        await client.close()
        runner.cancel()
    print(f"ARI round trips on the sandbox ({pbx.ari_url}):")
    line("GET /asterisk/info", info)
    line("originate (Local, ulaw)", orig)
    line("originate -> StasisStart event", to_start)
    line("answer", answer)
    line("play", play)
    line("create bridge", bridge)
    line("add channel to bridge", add)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="GET round trips to time")
    args = parser.parse_args()
    with Pbx("bench-ari") as pbx:
        asyncio.run(bench(pbx, args.n))


if __name__ == "__main__":
    main()
