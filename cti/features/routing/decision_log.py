"""The ACD's decisions and agent-state events on their way to storage (a DecisionSink, e.g.
cti.features.routing.storage.RoutingLog): written by one background task, in order, in
batches. A database round trip must never stand between a caller and the agent's phone
ringing, so recording only queues the item.

A class of its own (the ACD owns one): its state, the queue and the writer task, is shared
with nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from cti.domain.routing.decisions import Decision
from cti.domain.routing.events import RoutingEvent
from cti.platform.db.health import db_unavailable, describe
from cti.platform.log import get_logger

log = get_logger(__name__)

RECORD_BATCH_MAX = 500
RETRY_S = 1.0  # the database away: the same batch again after this

Record = tuple[datetime, Decision] | RoutingEvent


class DecisionSink(Protocol):
    """Where decisions and agent-state events are stored (cti.features.routing.storage)."""

    async def record_decision(self, at: datetime, decision: Decision) -> None: ...
    async def record_event(self, event: RoutingEvent) -> None: ...
    async def record_batch(self, items: Sequence[Record]) -> None: ...


class DecisionLog:
    def __init__(self, sink: DecisionSink | None) -> None:
        self._sink = sink  # None: nothing is kept
        self._records: asyncio.Queue[Record] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.retry_s = RETRY_S
        self._held = 0  # items of a batch the database refused, held for the next try

    @property
    def pending(self) -> int:
        """Items not yet in the sink: queued, or held while the database is away."""
        return self._records.qsize() + self._held

    def record(self, item: Record) -> None:
        if self._sink is None:
            return
        self._records.put_nowait(item)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(self._sink), name="acd-recorder")

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every item so far is in the sink (tests, shutdown)."""
        if self._writer is None or self._writer.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._records.join(), timeout)

    async def aclose(self) -> None:
        """Flush, then stop the writer."""
        await self.flush()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _write_loop(self, sink: DecisionSink) -> None:
        while True:
            # Whatever queued up meanwhile goes in one transaction: at 20 calls a second that
            # is one write where there would be a hundred.
            batch = [await self._records.get()]
            while not self._records.empty() and len(batch) < RECORD_BATCH_MAX:
                batch.append(self._records.get_nowait())
            try:
                await self._write(sink, batch)
            finally:
                for _ in batch:
                    self._records.task_done()

    async def _write(self, sink: DecisionSink, batch: list[Record]) -> None:
        """The batch, again every `retry_s` while the database is away (agents' states are
        restored from these rows at a takeover: none may go missing)."""
        self._held = len(batch)
        try:
            while True:
                try:
                    await sink.record_batch(batch)
                    return
                except Exception as exc:
                    if not db_unavailable(exc):
                        log.exception("routing_record_failed", items=len(batch))
                        return
                    log.error("routing_record_kept", items=len(batch), error=describe(exc),
                              queued=self._records.qsize())
                await asyncio.sleep(self.retry_s)
        finally:
            self._held = 0
