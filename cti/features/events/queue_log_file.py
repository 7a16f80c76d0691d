"""A queue_log file written as the events happen (the setting `queue_log_file`).

A bus subscriber: each batch of events becomes its queue_log lines (cti.features.events.
queue_log), appended to the file and flushed at once. The file is opened for each batch, so a
rotated file (logrotate's create or copytruncate) is simply written anew. A failed write (a
full disk, a missing directory, no permission) is logged; its lines are kept and written with
the next batch, in order, and the service goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

from cti.domain.routing.model import RoutingRules
from cti.events import Bus, Envelope
from cti.features.events.queue_log import QueueLog, member_queues
from cti.platform.log import get_logger

log = get_logger(__name__)

BACKLOG_MAX = 200_000  # lines kept while the file cannot be written
RETRY_S = 1.0


class QueueLogFile:
    def __init__(self, path: Path, rules: Callable[[], RoutingRules] | None = None) -> None:
        self.path = path
        self._rules = rules
        self._members: tuple[RoutingRules, dict[str, tuple[str, ...]]] | None = None
        self._converter = QueueLog(self._queues_of)
        self._backlog: list[str] = []
        self.written = 0
        self.failures = 0

    @classmethod
    def install(
        cls, bus: Bus, path: Path | None, rules: Callable[[], RoutingRules] | None = None
    ) -> QueueLogFile | None:
        """Subscribe a writer for `path` (nothing when None). `rules()` gives the routing
        rules in force: the queues each agent's member lines go to follow a reload."""
        if path is None:
            return None
        writer = cls(path, rules)
        bus.subscribe_batches("events.queue_log", writer.append)
        return writer

    def _queues_of(self, agent_id: str) -> Sequence[str]:
        if self._rules is None:
            return ()
        rules = self._rules()
        if self._members is None or self._members[0] is not rules:
            self._members = (rules, member_queues(rules))
        return self._members[1].get(agent_id, ())

    @property
    def pending(self) -> int:
        return len(self._backlog)

    async def append(self, batch: Sequence[Envelope]) -> None:
        lines = [str(line) + "\n" for e in batch for line in self._converter.feed(e.seq, e.event)]
        pending = self._backlog + lines
        self._backlog = []
        if not pending:
            return
        try:
            await asyncio.to_thread(self._write, "".join(pending))
        except OSError as exc:
            self.failures += 1
            if len(pending) > BACKLOG_MAX:  # said, never silent: the oldest go first
                log.error("queue_log.backlog_full", dropped=len(pending) - BACKLOG_MAX)
                pending = pending[-BACKLOG_MAX:]
            self._backlog = pending
            log.error("queue_log.write_failed", path=str(self.path), kept=len(pending),
                      error=f"{exc.__class__.__name__}: {exc}")
            await asyncio.sleep(RETRY_S)  # this subscriber only: the others go on
            return
        self.written += len(pending)

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        with self.path.open("ab", buffering=0) as f:  # no buffer: each write reaches the file
            start = f.tell()
            try:
                done = 0
                while done < len(data):
                    done += f.write(data[done:]) or 0
            except OSError:
                # No torn line for a reader: the whole batch is written again later.
                with contextlib.suppress(OSError):
                    f.truncate(start)
                raise
