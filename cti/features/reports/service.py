"""Historical reports: the kept events of a period folded into the figures of docs/metrics.md,
per interval (15/30/60 minutes, day), queue and agent, in the report's time zone. The same fold
(cti/domain/stats.py) serves the live wallboard, so both give the same numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from cti.domain.stats import QueueTargets, StatsFold
from cti.features.events.store import EventLog

Interval = Literal["15m", "30m", "60m", "day", "all"]
INTERVALS: dict[str, timedelta | None] = {
    "15m": timedelta(minutes=15), "30m": timedelta(minutes=30), "60m": timedelta(hours=1),
    "day": timedelta(days=1), "all": None,
}
# The events the figures are made of (the rest are not read for a report).
STATS_EVENTS = (
    "CallQueued", "CallOffered", "CallConnected", "CallLeftQueue", "CallHeld", "CallResumed",
    "CallTransferred", "CallEnded", "OfferWithdrawn", "ProcedureStarted", "AgentStateChanged",
)
READ_BATCH = 50_000


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime
    until: datetime
    interval: str
    timezone: str
    queues: list[dict[str, Any]]  # one row per interval and queue
    agents: list[dict[str, Any]]  # one row per interval and agent


def day_start(at: datetime, tz: ZoneInfo) -> datetime:
    local = at.astimezone(tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def fold_period(
    log: EventLog, since: datetime, until: datetime, *,
    targets: Callable[[str], QueueTargets], interval: timedelta | None, origin: datetime,
) -> StatsFold:
    fold = StatsFold(targets, interval, origin)
    after: int | None = None
    while True:
        rows = await log.read(since=since, until=until, after_seq=after, types=STATS_EVENTS,
                              limit=READ_BATCH)
        for row in rows:
            fold.apply(row.event())
        if len(rows) < READ_BATCH:
            break
        after = rows[-1].seq
    return fold.close(until)


async def build_report(
    log: EventLog, since: datetime, until: datetime, *, interval: str = "60m",
    timezone: str = "UTC", targets: Callable[[str], QueueTargets] | None = None,
) -> Report:
    tz = ZoneInfo(timezone)
    step = INTERVALS[interval]
    origin = day_start(since, tz) if step is not None else since
    fold = await fold_period(
        log, since, until, targets=targets or (lambda _q: QueueTargets()), interval=step,
        origin=origin,
    )
    queues, agents = [], []
    for bucket in sorted(set(fold.queues) | set(fold.agents)):
        start = bucket.astimezone(tz).isoformat()
        for name, q in sorted(fold.queues.get(bucket, {}).items()):
            mode = (targets(name).sl_mode if targets else "sl")
            queues.append({"interval_start": start, "queue": name, **q.as_dict(mode)})
        for agent_id, a in sorted(fold.agents.get(bucket, {}).items()):
            agents.append({"interval_start": start, "agent_id": agent_id, **a.as_dict()})
    return Report(since, until, interval, timezone, queues, agents)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV; nested figures (pause by reason, procedures) as `key=value;…`."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({
            k: ";".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict)
            else (round(v, 4) if isinstance(v, float) else v)
            for k, v in row.items()
        })
    return out.getvalue()
