"""Where an arriving call's time goes inside the service, stage by stage (bench_acd_vs_queue.py
--stages): the moments each call's events were published on the bus, measured from the
StasisStart's arrival in the service, and every ARI request's time by kind.

Monkeypatches the running service's bus and ARI client for the length of a bench phase; the
product is unchanged. The figures are p50/p99 over the phase's calls, in ms.
"""

from __future__ import annotations

import asyncio
import re
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from cti.features.calls.dispatch import StasisDispatcher
from cti.platform.ari.client import AriClient
from cti.platform.ari.events import AriEvent, StasisStart

STAGES = ("CallArrived", "CallAnswered", "CustomerIdentified", "CallRouted", "CallQueued",
          "CallOffered")
_ID = re.compile(r"/[^/]*[0-9][^/]*(?=/|$)")  # ids in request paths -> "/*"


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


class StageTrace:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}  # call id -> StasisStart handed to the dispatcher
        self.stages: dict[str, dict[str, float]] = defaultdict(dict)
        self.requests: dict[str, list[float]] = defaultdict(list)
        self._undo: list[Callable[[], None]] = []
        self.lags: list[float] = []  # how late a 10 ms sleep of the service's loop woke, s
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self.cpu_share = 0.0  # the process's CPU over the phase / its wall time

    async def _sample_lag(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            self.lags.append(time.monotonic() - t0 - 0.01)

    @staticmethod
    def _cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def install(self, bus: Any) -> None:
        self._cpu0, self._wall0 = self._cpu(), time.monotonic()
        lag = asyncio.get_running_loop().create_task(self._sample_lag())

        def stop_lag() -> None:
            lag.cancel()
            self.cpu_share = (self._cpu() - self._cpu0) / (time.monotonic() - self._wall0)

        self._undo.append(stop_lag)
        publish = bus.publish

        def traced_publish(event: Any) -> int:
            name = type(event).__name__
            call_id = getattr(event, "call_id", None)
            if name in STAGES and call_id and name not in self.stages[call_id]:
                self.stages[call_id][name] = time.monotonic()
            return int(publish(event))

        bus.publish = traced_publish
        self._undo.append(lambda: delattr(bus, "publish"))

        dispatch = StasisDispatcher.dispatch

        async def traced_dispatch(this: StasisDispatcher, event: AriEvent) -> None:
            if isinstance(event, StasisStart) and event.args[:1] in ([], ["inbound"]):
                self.arrived.setdefault(event.channel.id, time.monotonic())
            await dispatch(this, event)

        StasisDispatcher.dispatch = traced_dispatch  # type: ignore[method-assign]
        self._undo.append(lambda: setattr(StasisDispatcher, "dispatch", dispatch))

        request = AriClient.request

        async def traced_request(this: AriClient, method: str, path: str, **kw: Any) -> Any:
            t0 = time.monotonic()
            try:
                return await request(this, method, path, **kw)
            finally:
                self.requests[f"{method} {_ID.sub('/*', path)}"].append(time.monotonic() - t0)

        AriClient.request = traced_request  # type: ignore[method-assign]
        self._undo.append(lambda: setattr(AriClient, "request", request))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def report(self) -> str:
        lines = [f"  bench process CPU {self.cpu_share:.0%} of a core (service, sipp parsing "
                 f"aside); loop lag p50 {_pct(self.lags, 50) * 1000:.1f} ms p99 "
                 f"{_pct(self.lags, 99) * 1000:.1f} ms"] if self.lags else []
        lines += ["  stage (from StasisStart in the service)   calls   p50 ms   p99 ms"]
        for name in STAGES:
            deltas = [
                (marks[name] - self.arrived[cid]) * 1000
                for cid, marks in self.stages.items()
                if name in marks and cid in self.arrived
            ]
            if deltas:
                lines.append(f"  {name:<40} {len(deltas):>5} {_pct(deltas, 50):>8.1f} "
                             f"{_pct(deltas, 99):>8.1f}")
        lines.append("  ARI request                               count   p50 ms   p99 ms")
        for kind, secs in sorted(self.requests.items(), key=lambda kv: -len(kv[1])):
            ms = [s * 1000 for s in secs]
            lines.append(f"  {kind:<40} {len(ms):>5} {_pct(ms, 50):>8.1f} {_pct(ms, 99):>8.1f}")
        return "\n".join(lines)
