"""The live wallboard: today's figures (docs/metrics.md) per queue and agent, folded from the
event stream as it happens and pushed to the supervisors' pages within the event's own
handling (no polling). After a restart the day is folded again from the kept events first, so
the wallboard is right from the first message."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cti.domain.stats import QueueTargets, StatsFold
from cti.events import (
    Bus,
    Envelope,
)
from cti.features.events.store import EventLog
from cti.features.reports.service import STATS_EVENTS, day_start
from cti.platform.clock import Clock
from cti.platform.log import get_logger
from cti.platform.ports import Publisher

log = get_logger(__name__)

TOPIC = "supervisors"
SERIES_STEP = timedelta(minutes=15)
SERIES_EVERY_S = 1.0
# The tiles follow the events within a quarter second: a batch's events are folded together
# and each changed tile sent once, instead of once per batch of one or two events (at 20 calls/s
# the wallboard's tiles were a fifteenth of the service's CPU).
SETTLE_S = 0.25
SERIES_FIELDS = ("offered", "answered", "abandoned", "service_level", "asa_s", "aht_s",
                 "abandonment_rate")
_STATS_TYPES = frozenset(STATS_EVENTS)


class LiveStats:
    def __init__(
        self, bus: Bus, log_: EventLog, publisher: Publisher, clock: Clock,
        targets: Callable[[str], QueueTargets], timezone: str = "UTC",
    ) -> None:
        self.log = log_
        self.publisher = publisher
        self.clock = clock
        self.targets = targets
        self.tz = ZoneInfo(timezone)
        self._day = day_start(clock.now(), self.tz)
        self.fold = StatsFold(targets, None, self._day)
        self.by_interval = StatsFold(targets, SERIES_STEP, self._day)  # today's charts
        self._loaded_seq = 0
        self._series_due: set[str] = set()  # queues whose chart changed and is not sent yet
        self._series_sent: dict[str, float] = {}
        self._series_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # everywhere: a supervisor's wallboard may be served by any node of a cluster
        bus.subscribe_batches("reports.live", self._on_batch, everywhere=True,
                             settle_s=SETTLE_S)

    async def start(self) -> None:
        """Fold today's kept events (a restarted service's wallboard starts right)."""
        rows = await self.log.read(since=self._day, types=STATS_EVENTS, limit=None)
        for row in rows:
            self._apply(row.event())
            self._loaded_seq = row.seq

    async def _on_batch(self, batch: Sequence[Envelope]) -> None:
        queues: set[str] = set()
        agents: set[str] = set()
        for env in batch:
            if env.seq <= self._loaded_seq or type(env.event).__name__ not in _STATS_TYPES:
                continue
            event = env.event
            day = day_start(event.at, self.tz)
            if day > self._day:  # a new day: a new board
                self._day, self.fold = day, StatsFold(self.targets, None, day)
                self.by_interval = StatsFold(self.targets, SERIES_STEP, day)
            self._apply(event)
            queue = getattr(event, "queue", None)
            if queue:
                queues.add(queue)
            agent = getattr(event, "agent_id", None)
            if agent:
                agents.add(agent)
        if not queues and not agents:
            return
        now = self.clock.now()
        self.fold.close(now)
        for q in sorted(queues):
            await self.publisher.publish(TOPIC, self.queue_tile(q, now))
        for a in sorted(agents):
            await self.publisher.publish(TOPIC, self.agent_tile(a))
        # the charts after the tiles, at most once a second per queue: a chart's message is
        # the whole day's points, and a busy queue changes many times a second
        self._series_due |= queues
        await self._publish_series()

    async def _publish_series(self) -> None:
        now = self.clock.monotonic()
        later = []
        for q in sorted(self._series_due):
            wait = self._series_sent.get(q, -SERIES_EVERY_S) + SERIES_EVERY_S - now
            if wait > 0:
                later.append(wait)
                continue
            self._series_due.discard(q)
            self._series_sent[q] = now
            await self.publisher.publish(TOPIC, self.queue_series(q))
        if later and self._series_timer is None:
            self._series_timer = asyncio.get_running_loop().call_later(
                min(later), self._series_later)

    def _series_later(self) -> None:
        self._series_timer = None
        task = asyncio.get_running_loop().create_task(self._publish_series())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _apply(self, event: Any) -> None:
        self.fold.apply(event)
        self.by_interval.apply(event)

    def series(self, queue: str) -> list[dict[str, Any]]:
        """Today's figures per quarter hour for the queue's charts (calls, SL, ASA, AHT,
        abandonment)."""
        mode = self.targets(queue).sl_mode
        points = []
        for bucket in sorted(self.by_interval.queues):
            q = self.by_interval.queues[bucket].get(queue)
            if q is None:
                continue
            d = q.as_dict(mode)
            points.append({"t": bucket.astimezone(self.tz).isoformat(),
                           **{k: (round(d[k], 3) if isinstance(d[k], float) else d[k])
                              for k in SERIES_FIELDS}})
        return points

    def queue_series(self, queue: str) -> dict[str, Any]:
        return {"type": "wallboard.series", "key": f"wallboard:series:{queue}", "queue": queue,
                "day": self._day.isoformat(), "step_s": SERIES_STEP.total_seconds(),
                "points": self.series(queue)}

    def queue_tile(self, queue: str, now: datetime) -> dict[str, Any]:
        q = self.fold.queue(queue)
        waiting = self.fold.waiting_since(queue)
        longest = max(((now - t).total_seconds() for t in waiting), default=0.0)
        target = self.targets(queue)
        mode = target.sl_mode
        return {"type": "wallboard.queue", "key": f"wallboard:queue:{queue}", "queue": queue,
                "day": self._day.isoformat(), "waiting": len(waiting),
                "sl_goal": target.sl_goal, "sl_threshold_s": target.sl_s,
                "thresholds": dataclasses.asdict(target.thresholds),
                "longest_wait_now_s": round(longest, 1), **_rounded(q.as_dict(mode))}

    def agent_tile(self, agent_id: str) -> dict[str, Any]:
        a = self.fold.agent(agent_id)
        return {"type": "wallboard.agent", "key": f"wallboard:agent:{agent_id}",
                "agent_id": agent_id, "day": self._day.isoformat(), **_rounded(a.as_dict())}

    def snapshot(self) -> dict[str, Any]:
        now = self.clock.now()
        self.fold.close(now)
        return {
            "day": self._day.isoformat(),
            "queues": [self.queue_tile(q, now)
                       for q in sorted(self.fold.queues.get(self._day, {}))],
            "agents": [self.agent_tile(a) for a in sorted(self.fold.agents.get(self._day, {}))],
            "series": {q: self.series(q) for q in sorted(self.fold.queues.get(self._day, {}))},
        }


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


__all__ = ["LiveStats"]
