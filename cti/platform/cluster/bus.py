"""The event bus across nodes: this node's events go to its own subscribers at once (as on a
single box) and onto a Redis stream; the other nodes' events come off the stream to the
subscribers that asked for them (`everywhere=True`). Why a stream and not pub/sub, and what
is promised (order, replay, duplicates, memory): docs/cluster.md.

- **Writer**: publish() never waits for Redis. Encoded events wait in an outbox (bounded:
  the oldest go first, said in the log) and are appended in pipelined batches; a batch that
  failed is sent again, whole, once Redis answers — at least once, in order.
- **Reader**: one blocking XREAD loop from the last entry id it handled. After a broken
  connection it asks again from that id, so nothing in the stream is missed; the stream is
  trimmed (MAXLEN ~) and what a long outage trimmed away is counted and logged as a gap.
- **Numbers**: the nodes share one event log (table `events`, keyed by sequence number), so
  each node numbers its events from blocks it reserves in Redis (`seq`, INCRBY, never below
  the log's last number), the next block reserved when half of the current one is used. A
  node's numbers grow; two nodes' numbers never meet.
- **Once**: every entry carries its node and that node's sequence number; a reader drops its
  own node's entries (delivered locally already) and any number it has seen from that node
  (a batch sent twice), and logs a jump in a node's numbers (entries it never got).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from cti.events import DomainEvent, Envelope
from cti.platform.bus import InProcessBus
from cti.platform.cluster.codec import UnknownEvent, decode, encode
from cti.platform.cluster.redis_store import SOCKET_TIMEOUT_S, as_str, call
from cti.platform.errors import ClusterUnavailable
from cti.platform.log import get_logger

log = get_logger(__name__)

# Entries kept in Redis, each up to ENTRY_EVENTS events (a busy centre's are a few): about
# 100,000 events and 50 MB, at most 250 MB; minutes of events either way.
STREAM_MAXLEN = 20_000
ENTRY_EVENTS = 25
OUTBOX_MAX = 100_000      # events kept here while Redis is away
BATCH = 500
RETRY_S = 0.5
# A blocking read must end before the socket timeout says the connection is dead.
READ_BLOCK_MS = int(SOCKET_TIMEOUT_S * 1000 * 0.5)
SEQ_BLOCK = 10_000

# KEYS: the counter. ARGV: block size, the lowest number allowed (the log's last + 1).
_RESERVE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[2]) - 1
if cur < floor then cur = floor end
local last = cur + tonumber(ARGV[1])
redis.call('SET', KEYS[1], last)
return last
"""


@dataclass
class StreamStats:
    sent: int = 0
    received: int = 0
    own: int = 0            # this node's own entries read back, skipped without decoding
    duplicates: int = 0
    gaps: int = 0           # events another node published that this node never got
    dropped: int = 0        # this node's events dropped from a full outbox
    unreadable: int = 0     # kinds or versions this node does not know
    unreserved: int = 0     # events numbered outside a reserved block (Redis away)
    writer_ok: bool = True  # no append has failed (since the last one that succeeded)
    reader_ok: bool = False
    error: str | None = None


def _entries(replies: Any) -> list[tuple[str, dict[str, str]]]:
    """XREAD's answer, as RESP2 ([[stream, entries]]) or RESP3 ({stream: entries}) gives it."""
    if not replies:
        return []
    streams = replies.values() if isinstance(replies, dict) else (e for _, e in replies)
    return [
        (as_str(entry_id), {as_str(k): as_str(v) for k, v in fields.items()})
        for entries in streams for entry_id, fields in entries
    ]


class ClusterBus(InProcessBus):
    def __init__(
        self, redis: Redis, prefix: str, node_id: str, *, first_seq: int = 1,
        maxlen: int = STREAM_MAXLEN, outbox_max: int = OUTBOX_MAX, seq_block: int = SEQ_BLOCK,
    ) -> None:
        super().__init__(first_seq)
        self.seq_block = seq_block
        self._reserve = redis.register_script(_RESERVE)
        self._block_end = 0  # numbers below it are this node's (exclusive end)
        self._spare: tuple[int, int] | None = None  # the next block, reserved ahead
        self._reserving: asyncio.Task[None] | None = None
        self.redis = redis
        self.stream = f"{prefix}events"
        self.node_id = node_id
        self.maxlen = maxlen
        self.outbox_max = outbox_max
        self.stats = StreamStats()
        # Encoded by the writer, not in `publish`: the publisher (a call's path to the agent's
        # ring) goes on at once, and the JSON of a burst is made in one go.
        self._outbox: deque[tuple[int, DomainEvent]] = deque()
        self._wake = asyncio.Event()
        # Stopping lets a blocking read end by itself: a Redis command cancelled mid-read can
        # leave the client waiting on its connection for good.
        self._stopping = asyncio.Event()
        self._last_seen: dict[str, int] = {}  # node -> the last of its numbers handled
        # Where the reader goes on from; None until the stream's end at start is known (old
        # entries were for the nodes alive then, not pops for this node's pages now).
        self._last_id: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def backlog(self) -> int:
        """Events of this node not yet on the stream."""
        return len(self._outbox)

    def publish(self, event: DomainEvent) -> int:
        self._number_from_block()
        seq = super().publish(event)
        if len(self._outbox) >= self.outbox_max:
            self._outbox.popleft()
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 10_000 == 0:
                log.error("cluster.outbox_full", dropped=self.stats.dropped,
                          effect="other nodes' pages miss this node's oldest events")
        self._outbox.append((seq, event))
        self._wake.set()
        return seq

    # ----- numbers -------------------------------------------------------------------------

    def _number_from_block(self) -> None:
        if self._next >= self._block_end:
            if self._spare is not None:
                self._next, self._block_end = self._spare
                self._spare = None
            else:
                self.stats.unreserved += 1
                if self.stats.unreserved == 1 or self.stats.unreserved % 10_000 == 0:
                    log.error("cluster.seq_unreserved", numbered=self.stats.unreserved,
                              effect="these event numbers may meet another node's")
        remaining = self._block_end - self._next
        if (self._spare is None and remaining < self.seq_block // 2
                and (self._reserving is None or self._reserving.done())):
            self._reserving = asyncio.get_running_loop().create_task(
                self._reserve_block(), name="cluster-bus-seq")

    async def _reserve_block(self) -> None:
        try:
            # Above every number this node holds (the rest of its block too): a Redis
            # restarted empty has lost the counter, and a block from `_next` would hand this
            # node the rest of its own block a second time.
            floor = max(self._next, self._block_end)
            last = await call("seq reserve", lambda: self._reserve(
                [self._seq_key], [self.seq_block, floor]))
        except ClusterUnavailable as exc:
            log.warning("cluster.seq_reserve_failed", error=exc.message)
            return
        block = (int(last) - self.seq_block + 1, int(last) + 1)
        if self._next >= self._block_end:
            self._next, self._block_end = block
        else:
            self._spare = block

    @property
    def _seq_key(self) -> str:
        return self.stream.removesuffix("events") + "seq"

    async def start(self) -> None:
        """Read from the stream's current end (older entries were for the nodes then alive),
        then run the writer and the reader. Redis away: from its end once it is back."""
        with contextlib.suppress(ClusterUnavailable):
            self._last_id = await self._stream_end()
        await self._reserve_block()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_loop(), name="cluster-bus-writer"),
                       loop.create_task(self._read_loop(), name="cluster-bus-reader")]

    async def _stream_end(self) -> str:
        entries = await call("stream read", lambda: self.redis.xrevrange(self.stream, count=1))
        return as_str(entries[0][0]) if entries else "0-0"

    # ----- writer ---------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while not self._stopping.is_set():
            if not self._outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._outbox[i] for i in range(min(BATCH, len(self._outbox)))]
            try:
                await self._append([encode(self.node_id, seq, event) for seq, event in batch])
            except ClusterUnavailable as exc:
                self._trouble("writer", exc.message)
                await self._pause()
                continue
            for _ in batch:  # sent: only now out of the outbox (a failure sends them again)
                self._outbox.popleft()
            self.stats.sent += len(batch)
            self._ok("writer")

    async def _append(self, batch: list[str]) -> None:
        # What queued up goes as one entry, its events one per line (compact JSON has no raw
        # newline): one XADD per batch, not per event, for the writer and for every reader.
        # The origin beside it: a reader skips its own node's entries without decoding them.
        async with self.redis.pipeline(transaction=False) as pipe:
            for at in range(0, len(batch), ENTRY_EVENTS):
                pipe.xadd(self.stream, {"n": self.node_id,
                                        "b": "\n".join(batch[at : at + ENTRY_EVENTS])},
                          maxlen=self.maxlen, approximate=True)
            await call("stream append", pipe.execute)

    # ----- reader ---------------------------------------------------------------------------

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), RETRY_S)

    async def _read_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._last_id is None:  # Redis was away at start
                    self._last_id = await self._stream_end()
                streams: dict[Any, Any] = {self.stream: self._last_id}
                replies = await call("stream read", functools.partial(
                    self.redis.xread, streams, count=BATCH, block=READ_BLOCK_MS))
            except ClusterUnavailable as exc:
                self._trouble("reader", exc.message)
                await self._pause()
                continue
            except redis_errors.ResponseError as exc:  # e.g. the stream's key replaced
                self._trouble("reader", str(exc))
                await self._pause()
                continue
            self._ok("reader")
            for entry_id, fields in _entries(replies):
                self._last_id = entry_id
                events = fields.get("b")
                if fields.get("n") == self.node_id:  # ours, published here already
                    self.stats.own += events.count("\n") + 1 if events is not None else 1
                    continue
                if events is None:  # one event an entry (a node of an earlier version)
                    self._on_entry(fields.get("e", ""))
                else:
                    for data in events.split("\n"):
                        self._on_entry(data)

    def _on_entry(self, data: str) -> None:
        try:
            origin, seq, event = decode(data)
        except (UnknownEvent, ValueError, KeyError, TypeError) as exc:
            self.stats.unreadable += 1
            log.warning("cluster.event_unreadable", error=str(exc)[:200])
            return
        if origin == self.node_id:
            return
        last = self._last_seen.get(origin)
        if last is not None and seq <= last:
            self.stats.duplicates += 1
            return
        if last is not None and seq > last + 1:
            self.stats.gaps += seq - last - 1
            log.warning("cluster.events_missed", node=origin, after=last, next=seq,
                        missed=seq - last - 1)
        self._last_seen[origin] = seq
        self.stats.received += 1
        self.deliver_remote(Envelope(seq, event))

    # ----- state ----------------------------------------------------------------------------

    def _trouble(self, side: str, message: str) -> None:
        was_ok = self.stats.writer_ok if side == "writer" else self.stats.reader_ok
        if side == "writer":
            self.stats.writer_ok = False
        else:
            self.stats.reader_ok = False
        self.stats.error = message
        if was_ok:
            log.error("cluster.stream_unreachable", side=side, error=message,
                      backlog=len(self._outbox))

    def _ok(self, side: str) -> None:
        if side == "writer":
            was, self.stats.writer_ok = self.stats.writer_ok, True
        else:
            was, self.stats.reader_ok = self.stats.reader_ok, True
        if not was:
            log.info("cluster.stream_ok", side=side)
        if self.stats.writer_ok and self.stats.reader_ok:
            self.stats.error = None

    async def flush(self, timeout: float = 2.0) -> bool:
        """Wait until this node's events are on the stream; False if `timeout` passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._outbox:  # noqa: ASYNC110 (the writer sets no event per batch)
                    await asyncio.sleep(0.01)
                return True
        return False

    async def aclose(self, timeout: float = 5.0) -> None:
        await self.flush(min(timeout, 2.0))
        self._stopping.set()
        self._wake.set()
        if self._tasks:
            # The reader ends within one blocking read; cancelled only if Redis hangs.
            _, late = await asyncio.wait(self._tasks, timeout=READ_BLOCK_MS / 1000 + 2.5)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._reserving is not None:
            await asyncio.gather(self._reserving, return_exceptions=True)
        await super().aclose(timeout)
