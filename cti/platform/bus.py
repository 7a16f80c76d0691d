"""The in-process event bus (cti.events.Bus): numbers each event, then hands it to every
subscriber's own queue. Each subscriber runs in a task of its own and sees its events in
stream order; one that is slow or fails delays or stops nobody else (a failure is logged
with the subscriber's name and the event, and the subscriber goes on with the next).

Across several nodes (docs/cluster.md) `cti.platform.cluster.bus.ClusterBus` extends this one:
events from other nodes are delivered to the subscribers that asked for them
(`everywhere=True`, e.g. the screen pop, whose agent may be connected to any node). Inside one
process this is all there is, and `everywhere` changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cti.events import BatchHandler, DomainEvent, Envelope, Handler
from cti.platform.log import get_logger

log = get_logger(__name__)


@dataclass(eq=False)
class _Subscriber:
    name: str
    kinds: tuple[type[Any], ...] | None
    handler: Handler | None = None
    batch_handler: BatchHandler | None = None
    max_batch: int = 500
    settle_s: float = 0.0  # after a batch, let the next gather this long (unless draining)
    everywhere: bool = False  # also other nodes' events (a cluster)
    queue: asyncio.Queue[Envelope] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None

    def wants(self, event: DomainEvent) -> bool:
        return self.kinds is None or isinstance(event, self.kinds)


class InProcessBus:
    def __init__(self, first_seq: int = 1) -> None:
        self._next = first_seq
        self._subscribers: list[_Subscriber] = []
        # Event type -> the subscribers that want it: every call publishes tens of events,
        # each tested against every subscriber's kinds once per type instead of each time.
        self._wanting: dict[type[Any], list[_Subscriber]] = {}
        self._closed = False
        # subscribe_now's callbacks by event type (called inside publish)
        self._now: list[tuple[str, Callable[[Any], None], tuple[type[Any], ...]]] = []
        self._now_by_type: dict[type[Any], list[tuple[str, Callable[[Any], None]]]] = {}
        self._hurry = asyncio.Event()  # set while someone drains: nobody settles
        self._drains = 0

    @property
    def last_seq(self) -> int:
        return self._next - 1

    def continue_after(self, seq: int) -> None:
        """Number the next event after `seq` (the kept log's last, at start-up)."""
        self._next = max(self._next, seq + 1)

    # ----- cti.events.Bus ------------------------------------------------------------------

    def publish(self, event: DomainEvent) -> int:
        seq = self._next
        self._next += 1
        envelope = Envelope(seq, event)
        wanting = self._wanting.get(type(event))
        if wanting is None:
            wanting = self._wanting[type(event)] = [
                s for s in self._subscribers if s.wants(event)]
        for sub in wanting:
            sub.queue.put_nowait(envelope)
            self._ensure_running(sub)
        now = self._now_by_type.get(type(event))
        if now is None:
            now = self._now_by_type[type(event)] = [
                (name, cb) for name, cb, kinds in self._now if isinstance(event, kinds)]
        for name, callback in now:
            try:
                callback(event)
            except Exception:
                log.exception("bus.subscriber_failed", subscriber=name,
                              event_type=type(event).__name__, seq=seq)
        return seq

    def subscribe_now(
        self, name: str, callback: Callable[[Any], None], kinds: tuple[type[Any], ...],
    ) -> None:
        self._now.append((name, callback, kinds))
        self._now_by_type.clear()

    def subscribe(
        self, name: str, handler: Handler, kinds: tuple[type[Any], ...] | None = None,
        *, everywhere: bool = False,
    ) -> None:
        self._subscribers.append(_Subscriber(name, kinds, handler=handler, everywhere=everywhere))
        self._wanting.clear()

    def subscribe_batches(
        self, name: str, handler: BatchHandler, max_batch: int = 500, *,
        everywhere: bool = False, settle_s: float = 0.0,
    ) -> None:
        """`settle_s`: after each batch, wait that long before taking the next, so a handler
        whose cost is per batch (a transaction) runs at most about once per `settle_s` however
        fast events come; `drain()` cuts the wait short."""
        self._subscribers.append(
            _Subscriber(name, None, batch_handler=handler, max_batch=max_batch,
                        settle_s=settle_s, everywhere=everywhere)
        )
        self._wanting.clear()

    def deliver_remote(self, envelope: Envelope) -> None:
        """An event another node published (numbered there): to the `everywhere` subscribers
        only; the others act for this node alone (its event log rows, its calls)."""
        for sub in self._subscribers:
            if sub.everywhere and sub.wants(envelope.event):
                sub.queue.put_nowait(envelope)
                self._ensure_running(sub)

    # ----- lifecycle -----------------------------------------------------------------------

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every subscriber has handled everything published so far (tests,
        shutdown, a read that must see what just happened). Events published meanwhile by
        handlers are waited for too. False when `timeout` passed first (logged)."""
        self._drains += 1
        self._hurry.set()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    pending = [s for s in self._subscribers if s.queue._unfinished_tasks]  # type: ignore[attr-defined]
                    if not pending:
                        return True
                    for sub in pending:
                        await sub.queue.join()
        except TimeoutError:
            behind = {s.name: s.queue.qsize() for s in self._subscribers if s.queue.qsize()}
            log.warning("bus.drain_timeout", timeout_s=timeout, behind=behind)
            return False
        finally:
            self._drains -= 1
            if not self._drains:
                self._hurry.clear()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (within `timeout`), then stop the subscribers' tasks."""
        await self.drain(timeout)
        self._closed = True
        tasks = [s.task for s in self._subscribers if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sub in self._subscribers:
            sub.task = None

    def _ensure_running(self, sub: _Subscriber) -> None:
        if self._closed or (sub.task is not None and not sub.task.done()):
            return
        sub.task = asyncio.get_running_loop().create_task(
            self._run(sub), name=f"bus-{sub.name}"
        )

    async def _run(self, sub: _Subscriber) -> None:
        while True:
            first = await sub.queue.get()
            batch = [first]
            if sub.batch_handler is not None:
                while not sub.queue.empty() and len(batch) < sub.max_batch:
                    batch.append(sub.queue.get_nowait())
            try:
                if sub.batch_handler is not None:
                    await sub.batch_handler(batch)
                else:
                    assert sub.handler is not None
                    await sub.handler(first.event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus.subscriber_failed", subscriber=sub.name,
                              event_type=type(first.event).__name__, seq=first.seq,
                              batch=len(batch))
            finally:
                for _ in batch:
                    sub.queue.task_done()
            if sub.settle_s and not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(sub.settle_s):
                        await self._hurry.wait()
