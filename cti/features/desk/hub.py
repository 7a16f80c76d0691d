"""Fan-out of desk messages to WebSocket connections, by topic (`agent:<id>`, `supervisors`).

Every message on a topic carries the topic's next sequence number. A message with a `key` is
state: the hub keeps the last message per key (or drops the key when `op` is "remove"), so a
connection that (re)subscribes gets a snapshot of the topic (`seq` = the last number included)
followed by the deltas after it, and never shows stale state. A page that sees a gap in `seq`
asks for a resync. A connection too slow to drain its queue is given a fresh snapshot instead of
an unbounded backlog.

Implements cti.platform.ports.Publisher. Publishing is synchronous inside (no await between
numbering,
storing and enqueueing), so subscribe-with-snapshot is atomic with respect to publishes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cti.platform.clock import Clock, SystemClock

SUPERVISORS = "supervisors"
QUEUE_LIMIT = 1000


def agent_topic(agent_id: str) -> str:
    return f"agent:{agent_id}"


@dataclass
class _Topic:
    name: str
    seq: int = 0
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscribers: set[Subscription] = field(default_factory=set)

    def snapshot(self) -> str:
        return _dumps(
            {"type": "snapshot", "topic": self.name, "seq": self.seq,
             "items": list(self.items.values())}
        )


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str)


class Subscription:
    """One connection's view: the topics it follows and the queue its writer drains."""

    def __init__(self, hub: AgentHub, limit: int = QUEUE_LIMIT) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._limit = limit
        self.topics: set[str] = set()
        self.closed = False
        self.resyncs = 0

    def _push(self, text: str) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self._limit:
            # Too slow: drop the backlog and send the current state of every topic instead.
            self.resyncs += 1
            while not self._queue.empty():
                self._queue.get_nowait()
            for name in sorted(self.topics):
                self._queue.put_nowait(self._hub._topic(name).snapshot())
            return
        self._queue.put_nowait(text)

    def send(self, message: Mapping[str, Any]) -> None:
        """A message for this connection only (hello, pong, errors); no sequence number."""
        self._push(_dumps(message))

    def close(self) -> None:
        if not self.closed:
            self._hub.unsubscribe(self)
            self.closed = True
            self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[str]:
        while True:
            text = await self._queue.get()
            if text is None:
                return
            yield text

    def pending(self) -> int:
        return self._queue.qsize()


class AgentHub:
    """The topics and their subscribers; one per service process."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._topics: dict[str, _Topic] = {}
        self._clock = clock or SystemClock()
        self.published = 0

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(name)
        return topic

    def connect(self) -> Subscription:
        return Subscription(self)

    def subscribe(self, sub: Subscription, topic_name: str) -> None:
        """Follow `topic_name`: its snapshot is queued now, its deltas after it."""
        topic = self._topic(topic_name)
        sub.topics.add(topic_name)
        topic.subscribers.add(sub)
        sub._push(topic.snapshot())

    def resync(self, sub: Subscription, topic_name: str) -> None:
        if topic_name in sub.topics:
            sub._push(self._topic(topic_name).snapshot())

    def unsubscribe(self, sub: Subscription) -> None:
        for name in sub.topics:
            topic = self._topics.get(name)
            if topic is not None:
                topic.subscribers.discard(sub)

    def publish_now(self, topic_name: str, message: Mapping[str, Any]) -> int:
        """Number, store (when keyed) and fan out a message; returns its sequence number."""
        topic = self._topic(topic_name)
        topic.seq += 1
        body = dict(message)
        body["topic"] = topic_name
        body["seq"] = topic.seq
        body.setdefault("at", self._clock.now().isoformat())
        key = body.get("key")
        if key is not None:
            if body.get("op") == "remove":
                topic.items.pop(str(key), None)
            else:
                topic.items[str(key)] = body
        if topic.subscribers:  # nobody watching (a wallboard closed): nothing to encode
            text = _dumps(body)
            for sub in tuple(topic.subscribers):
                sub._push(text)
        self.published += 1
        return topic.seq

    async def publish(self, topic: str, message: Mapping[str, Any]) -> None:
        """cti.platform.ports.Publisher."""
        self.publish_now(topic, message)

    def state(self, topic_name: str) -> dict[str, dict[str, Any]]:
        """The keyed state of a topic (copies), e.g. for the REST view of an agent's desk."""
        topic = self._topics.get(topic_name)
        return {k: dict(v) for k, v in topic.items.items()} if topic else {}

    def item(self, topic_name: str, key: str) -> dict[str, Any] | None:
        topic = self._topics.get(topic_name)
        return topic.items.get(key) if topic else None

    def keys(self, topic_name: str, prefix: str = "") -> list[str]:
        topic = self._topics.get(topic_name)
        return [k for k in topic.items if k.startswith(prefix)] if topic else []

    def connections(self, topic_name: str) -> int:
        topic = self._topics.get(topic_name)
        return len(topic.subscribers) if topic else 0


async def drain_to(sub: Subscription, send: Any) -> None:
    """Write every queued message with `send(text)` until the subscription closes."""
    async for text in sub:
        await send(text)
