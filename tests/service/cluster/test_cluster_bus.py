"""The event bus across nodes on a real Redis (cti/platform/cluster/bus.py): another node's
events reach the subscribers that asked for them, in order, once, also after Redis was away;
an agent's page on node B gets the pops and state changes of node A."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from cti.events import AgentStateChanged, CallEnded, CallOffered, DomainEvent, MenuKeyPressed
from cti.features.desk.desk import AgentDesk
from cti.features.desk.hub import agent_topic
from cti.platform.cluster.bus import ClusterBus
from cti.platform.cluster.redis_store import connect
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async
from tests.service.cluster.redis_server import RedisServer

AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def key(i: int) -> MenuKeyPressed:
    return MenuKeyPressed(f"call-{i}", AT, str(i % 10))


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (polls what other tasks change)
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def nodes(redis: Redis, prefix: str, *names: str) -> AsyncIterator[list[ClusterBus]]:
    buses = [ClusterBus(redis, prefix, name) for name in names]
    for bus in buses:
        await bus.start()
    try:
        yield buses
    finally:
        for bus in buses:
            await bus.aclose()


def recorder(into: list[DomainEvent]) -> Callable[[Any], Awaitable[None]]:
    async def handler(event: Any) -> None:
        into.append(event)
    return handler


async def test_another_nodes_events_reach_only_the_subscribers_that_asked(
    redis: Redis, prefix: str
) -> None:
    async with nodes(redis, prefix, "a", "b") as (a, b):
        a_local: list[DomainEvent] = []
        a_everywhere: list[DomainEvent] = []
        b_local: list[DomainEvent] = []
        b_everywhere: list[DomainEvent] = []
        a.subscribe("local", recorder(a_local))
        a.subscribe("everywhere", recorder(a_everywhere), everywhere=True)
        b.subscribe("local", recorder(b_local))
        b.subscribe("everywhere", recorder(b_everywhere), (MenuKeyPressed,), everywhere=True)
        a.publish(key(1))
        a.publish(CallEnded("call-1", AT, 16, "normal", "caller"))
        b.publish(key(2))
        await eventually(lambda: len(b_everywhere) == 2 and len(a_everywhere) == 3)
        await a.flush()
        await b.flush()
        await asyncio.sleep(0.2)  # anything more would have come by now
        await a.drain()
        await b.drain()
        ended = CallEnded("call-1", AT, 16, "normal", "caller")
        assert a_local == [key(1), ended]  # once: not again from the stream
        assert a_everywhere == [*a_local, key(2)]
        assert b_local == [key(2)]
        assert b_everywhere == [key(2), key(1)]  # only the kinds asked for


async def test_a_node_skips_its_own_entries_without_decoding_them(
    redis: Redis, prefix: str, monkeypatch: Any
) -> None:
    from cti.platform.cluster import bus as cluster_bus

    decoded: list[str] = []
    real = cluster_bus.decode

    def counting(data: str) -> Any:
        decoded.append(json.loads(data)["o"])
        return real(data)

    monkeypatch.setattr(cluster_bus, "decode", counting)
    async with nodes(redis, prefix, "a", "b") as (a, b):
        got: list[DomainEvent] = []
        b.subscribe("everywhere", recorder(got), everywhere=True)
        for i in range(20):
            a.publish(key(i))
        await eventually(lambda: len(got) == 20 and a.stats.own == 20)
        assert decoded == ["a"] * 20  # b decoded a's; a read its own back undecoded
        assert a.stats.received == 0


async def test_events_arrive_in_the_order_their_node_published_them(
    redis: Redis, prefix: str
) -> None:
    async with nodes(redis, prefix, "a", "b") as (a, b):
        got: list[DomainEvent] = []
        b.subscribe("everywhere", recorder(got), everywhere=True)
        for i in range(1500):  # more than one batch
            a.publish(key(i))
        await eventually(lambda: len(got) == 1500)
        assert got == [key(i) for i in range(1500)]
        assert b.stats.received == 1500
        assert b.stats.gaps == 0


async def test_an_entry_sent_twice_is_delivered_once(redis: Redis, prefix: str) -> None:
    async with nodes(redis, prefix, "a", "b") as (a, b):
        got: list[DomainEvent] = []
        b.subscribe("everywhere", recorder(got), everywhere=True)
        a.publish(key(1))
        await eventually(lambda: len(got) == 1)
        # a batch sent again after a timeout whose first try had in fact arrived
        entries = await redis.xrange(a.stream)
        await redis.xadd(a.stream, entries[-1][1])
        a.publish(key(2))
        await eventually(lambda: len(got) == 2)
        assert got == [key(1), key(2)]
        assert b.stats.duplicates == 1


async def test_events_published_while_redis_is_away_arrive_once_it_is_back(
    redis_server: RedisServer, prefix: str
) -> None:
    """Node a keeps working alone (its own subscribers get everything at once) and keeps its
    events; when Redis is back, node b gets every one of them, in order, without a restart."""
    ra, rb = connect(redis_server.url), connect(redis_server.url)
    a, b = ClusterBus(ra, prefix, "a"), ClusterBus(rb, prefix, "b")
    await a.start()
    await b.start()
    try:
        a_local: list[DomainEvent] = []
        got: list[DomainEvent] = []
        a.subscribe("local", recorder(a_local))
        b.subscribe("everywhere", recorder(got), everywhere=True)
        a.publish(key(0))
        await eventually(lambda: len(got) == 1)

        await redis_server.stop()
        for i in range(1, 51):
            a.publish(key(i))
        await a.drain()
        assert a_local == [key(i) for i in range(51)]  # nothing waits for Redis locally
        await eventually(lambda: not a.stats.writer_ok and not b.stats.reader_ok)
        assert a.backlog == 50
        assert a.stats.error is not None

        await redis_server.start()
        await eventually(lambda: len(got) == 51, timeout=10.0)
        assert got == [key(i) for i in range(51)]
        await eventually(lambda: a.stats.writer_ok and b.stats.reader_ok)
        assert a.backlog == 0
        assert a.stats.error is None
    finally:
        await a.aclose()
        await b.aclose()
        await ra.aclose()
        await rb.aclose()


async def test_an_agents_page_on_node_b_gets_node_as_pops_and_state_changes(
    redis: Redis, prefix: str, tmp_path: Path
) -> None:
    """Two nodes, each with its agent desk over its cluster bus and one shared database. The
    call is offered by node a; the agent's page is connected to node b."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    await upgrade_async(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    async with nodes(redis, prefix, "a", "b") as (a, b):
        desk_a = AgentDesk.build(sessions, token_secret="x" * 32, bus=a)
        desk_b = AgentDesk.build(sessions, token_secret="x" * 32, bus=b)
        page = desk_b.hub.connect()
        desk_b.hub.subscribe(page, agent_topic("1001"))
        messages: list[dict[str, Any]] = []

        async def read() -> None:
            async for text in page:
                messages.append(json.loads(text))

        reader = asyncio.create_task(read())
        try:
            a.publish(AgentStateChanged("1001", "available", "ringing", AT, call_id="c1"))
            a.publish(CallOffered("c1", "1001", "general", 4.0, {"menu_path": ["1"]}, AT,
                                  offer_id="o1", caller_number="+8613800138000"))

            def seen(kind: str) -> list[dict[str, Any]]:
                return [m for m in messages if m.get("type") == kind]

            await eventually(lambda: bool(seen("pop")) and bool(seen("agent.state")))
            pop = seen("pop")[0]
            assert pop["call_id"] == "c1"
            assert pop["queue"] == "general"
            assert seen("agent.state")[0]["state"] == "ringing"
        finally:
            page.close()
            await reader
            await desk_a.aclose()
            await desk_b.aclose()
    await engine.dispose()


async def test_two_nodes_never_give_two_events_one_number(redis: Redis, prefix: str) -> None:
    """The shared event log is keyed by sequence number: each node numbers from blocks it
    reserves in Redis, above the log's last number, the next block reserved ahead."""
    a = ClusterBus(redis, prefix, "a", seq_block=20)
    b = ClusterBus(redis, prefix, "b", seq_block=20)
    a.continue_after(500)  # the log's last number when the nodes start
    b.continue_after(500)
    await a.start()
    await b.start()
    try:
        numbers: dict[str, list[int]] = {"a": [], "b": []}
        for i in range(200):
            bus = a if i % 3 else b
            numbers[bus.node_id].append(bus.publish(key(i)))
            await asyncio.sleep(0.01)  # a reservation's round trip, as between real events
        assert (a.stats.unreserved, b.stats.unreserved) == (0, 0)
        everything = numbers["a"] + numbers["b"]
        assert len(set(everything)) == len(everything)
        assert min(everything) > 500
        for mine in numbers.values():
            assert mine == sorted(mine)
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_counter_lost_with_an_empty_redis_never_gives_a_number_twice(
    redis: Redis, prefix: str
) -> None:
    """A Redis restarted without persistence has lost the block counter: the node's next
    block starts above every number it holds, not inside its own current block."""
    # The next block is reserved when half of the current one is used: 50 events at 10 ms
    # are the reservation's time (a block of 20 left 100 ms, too little on a loaded machine)
    a = ClusterBus(redis, prefix, "a", seq_block=100)
    a.continue_after(500)
    await a.start()
    try:
        numbers = []
        for i in range(250):
            if i == 15:
                await redis.delete(a._seq_key)  # what an empty restart leaves
            numbers.append(a.publish(key(i)))
            await asyncio.sleep(0.01)
        assert a.stats.unreserved == 0
        assert numbers == sorted(set(numbers))  # increasing, none twice
    finally:
        await a.aclose()
