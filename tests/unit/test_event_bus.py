"""The in-process bus: stream order per subscriber, a failing or slow subscriber stops or
delays nobody else, batches, drain, and numbering that continues after a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from cti.events import CallAnswered, CallArrived, CallEnded, Envelope, MenuKeyPressed
from cti.platform.bus import InProcessBus

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_each_subscriber_sees_its_events_in_stream_order() -> None:
    bus = InProcessBus()
    seen: list[str] = []

    async def keys(event: MenuKeyPressed) -> None:
        seen.append(event.digit)

    bus.subscribe("keys", keys, (MenuKeyPressed,))
    seqs = [bus.publish(MenuKeyPressed("c1", AT, d)) for d in "1234"]
    bus.publish(CallAnswered("c1", AT))  # not a kind it asked for
    await bus.drain()
    assert seen == ["1", "2", "3", "4"]
    assert seqs == [1, 2, 3, 4]
    assert bus.last_seq == 5


async def test_a_failing_subscriber_goes_on_while_others_get_everything() -> None:
    bus = InProcessBus()
    good: list[str] = []
    bad_calls: list[str] = []

    async def broken(event: MenuKeyPressed) -> None:
        bad_calls.append(event.digit)
        if event.digit == "1":
            raise RuntimeError("boom")

    async def fine(event: MenuKeyPressed) -> None:
        good.append(event.digit)

    bus.subscribe("broken", broken)
    bus.subscribe("fine", fine)
    for d in "123":
        bus.publish(MenuKeyPressed("c1", AT, d))
    await bus.drain()
    assert good == ["1", "2", "3"]
    assert bad_calls == ["1", "2", "3"]  # it went on after its failure


async def test_a_slow_subscriber_delays_nobody_else() -> None:
    bus = InProcessBus()
    release = asyncio.Event()
    fast: list[str] = []

    async def slow(_event: MenuKeyPressed) -> None:
        await release.wait()

    async def quick(event: MenuKeyPressed) -> None:
        fast.append(event.digit)

    bus.subscribe("slow", slow)
    bus.subscribe("quick", quick)
    for d in "12":
        bus.publish(MenuKeyPressed("c1", AT, d))
    for _ in range(5):
        await asyncio.sleep(0)
    assert fast == ["1", "2"]  # while the slow one is still on its first event
    release.set()
    await bus.drain()


async def test_batches_get_what_queued_up_meanwhile_in_order() -> None:
    bus = InProcessBus()
    batches: list[list[int]] = []

    async def store(batch: list[Envelope]) -> None:
        batches.append([e.seq for e in batch])

    bus.subscribe_batches("store", store, max_batch=3)
    for d in "12345":
        bus.publish(MenuKeyPressed("c1", AT, d))
    await bus.drain()
    assert [s for b in batches for s in b] == [1, 2, 3, 4, 5]
    assert max(len(b) for b in batches) <= 3
    assert len(batches) < 5  # batched, not one by one


async def test_a_settling_subscriber_takes_what_came_meanwhile_as_one_batch() -> None:
    bus = InProcessBus()
    batches: list[list[int]] = []

    async def store(batch: list[Envelope]) -> None:
        batches.append([e.seq for e in batch])

    bus.subscribe_batches("rollups", store, settle_s=5.0)
    bus.publish(CallArrived("c1", AT, "+1", "4000", "ch1"))
    while not batches:  # noqa: ASYNC110 (the first batch alone; then the subscriber settles)
        await asyncio.sleep(0)
    for _ in range(5):  # spread out: without settling each would be a batch of its own
        bus.publish(CallAnswered("c1", AT))
        await asyncio.sleep(0.01)
    assert batches == [[1]]  # still settling: nothing more handled yet
    async with asyncio.timeout(2):
        assert await bus.drain()  # cuts the settling short
    assert batches == [[1], [2, 3, 4, 5, 6]]  # the five as one batch
    await bus.aclose()


async def test_drain_does_not_wait_for_a_settling_subscriber() -> None:
    bus = InProcessBus()
    batches: list[list[int]] = []

    async def store(batch: list[Envelope]) -> None:
        batches.append([e.seq for e in batch])

    bus.subscribe_batches("rollups", store, settle_s=30.0)
    bus.publish(CallArrived("c1", AT, "+1", "4000", "ch1"))
    await asyncio.sleep(0.05)
    bus.publish(CallAnswered("c1", AT))
    async with asyncio.timeout(2):
        assert await bus.drain()
    assert batches == [[1], [2]]
    await bus.aclose()


async def test_numbering_continues_after_the_kept_log() -> None:
    bus = InProcessBus()
    bus.continue_after(41)
    assert bus.publish(CallEnded("c1", AT, 16, "Normal Clearing", "caller")) == 42


async def test_drain_waits_for_events_published_by_handlers() -> None:
    bus = InProcessBus()
    ended: list[str] = []

    async def answer_then_end(event: CallAnswered) -> None:
        await asyncio.sleep(0)
        bus.publish(CallEnded(event.call_id, AT, 16, None, "caller"))

    async def on_end(event: CallEnded) -> None:
        ended.append(event.call_id)

    bus.subscribe("a", answer_then_end, (CallAnswered,))
    bus.subscribe("b", on_end, (CallEnded,))
    bus.publish(CallAnswered("c9", AT))
    await bus.drain()
    assert ended == ["c9"]


async def test_after_close_nothing_is_delivered_and_no_task_is_left() -> None:
    bus = InProcessBus()
    got: list[str] = []

    async def h(event: MenuKeyPressed) -> None:
        got.append(event.digit)

    bus.subscribe("h", h)
    bus.publish(MenuKeyPressed("c1", AT, "1"))
    await bus.aclose()
    bus.publish(MenuKeyPressed("c1", AT, "2"))
    await asyncio.sleep(0)
    assert got == ["1"]
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("bus-")]


async def test_the_metrics_count_what_the_stream_says() -> None:
    from prometheus_client import REGISTRY

    from cti.features.events.metrics import EventMetrics
    from cti.platform.clock import SystemClock

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    bus = InProcessBus()
    EventMetrics(bus, SystemClock())
    started = value("cti_calls_started_total")
    normal = value("cti_calls_ended_total", cause="16")
    keys = value("cti_events_total", type="MenuKeyPressed")
    bus.publish(CallArrived("m1", AT, "m1", "+861", "100"))
    bus.publish(CallArrived("m0", AT, "m0", "+861", "100", adopted=True))  # not a new call
    bus.publish(MenuKeyPressed("m1", AT, "1"))
    bus.publish(CallEnded("m1", AT, 16, "Normal Clearing", "caller"))
    await bus.drain()
    assert value("cti_calls_started_total") == started + 1
    assert value("cti_calls_ended_total", cause="16") == normal + 1
    assert value("cti_events_total", type="MenuKeyPressed") == keys + 1


async def test_drain_gives_up_after_its_timeout_and_says_so() -> None:
    bus = InProcessBus()
    stuck = asyncio.Event()

    async def never(_event: MenuKeyPressed) -> None:
        await stuck.wait()

    bus.subscribe("stuck", never)
    bus.publish(MenuKeyPressed("c1", AT, "1"))
    assert await bus.drain(0.05) is False
    stuck.set()
    assert await bus.drain() is True


async def test_a_subscriber_now_is_called_inside_publish_and_its_failure_stops_nothing() -> None:
    bus = InProcessBus()
    seen: list[tuple[str, int]] = []
    queued: list[str] = []

    def starts(event: CallArrived) -> None:
        seen.append((event.call_id, bus.last_seq))

    def broken(event: CallArrived) -> None:
        raise RuntimeError("boom")

    async def later(event: CallArrived) -> None:
        queued.append(event.call_id)

    bus.subscribe_now("broken", broken, (CallArrived,))
    bus.subscribe_now("starts", starts, (CallArrived,))
    bus.subscribe("later", later, (CallArrived,))
    bus.publish(CallArrived("c1", AT, "ch1", "+1", "4000"))
    assert seen == [("c1", 1)]  # before publish returned, with its number given
    assert queued == []  # the queued subscriber has not run yet
    bus.publish(CallAnswered("c1", AT))  # not a kind it asked for
    await bus.drain()
    assert seen == [("c1", 1)]
    assert queued == ["c1"]
    await bus.aclose()
