"""The queue_log lines of a time window, from the kept events (`cti export queue-log`).

The events are read in stream order, a page at a time. Reading starts `lookback` before the
window: a call that entered its queue just before `since` still has its hold time, its place
and its caller's number on the CONNECT or ABANDON inside the window. Lines before `since` are
not given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cti.domain.routing.model import RoutingRules
from cti.features.events.queue_log import QueueLog, QueueLogLine, QueuesOf, epoch
from cti.features.events.store import EventLog

PAGE = 2000
LOOKBACK = timedelta(hours=4)


@dataclass
class ExportStats:
    events: int = 0
    lines: int = 0
    unreadable: int = 0  # kept events that no longer rebuild (skipped)


async def queue_log_export(
    log: EventLog,
    since: datetime,
    until: datetime,
    members: Mapping[str, Sequence[str]] | QueuesOf | RoutingRules | None = None,
    *,
    lookback: timedelta = LOOKBACK,
    stats: ExportStats | None = None,
) -> AsyncIterator[QueueLogLine]:
    """The lines of the events in [since, until), in stream order."""
    stats = stats if stats is not None else ExportStats()
    converter = QueueLog.for_members(members)
    first = epoch(since)
    after: int | None = None
    while True:
        page = await log.read(since=since - lookback, until=until, after_seq=after, limit=PAGE)
        for stored in page:
            after = stored.seq
            try:
                event = stored.event()
            except (KeyError, TypeError, ValueError):
                stats.unreadable += 1
                continue
            stats.events += 1
            for line in converter.feed(stored.seq, event):
                if line.time >= first:
                    stats.lines += 1
                    yield line
        if len(page) < PAGE:
            return
