"""The ACD service's ring path: the agent's phone rings before anything else is done for the
offer, an agent leg's answer is handled only after the offer's own commands (its events keep
their order), and decisions/events reach the store in batches off the call path."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from test_router_acd_service import Events, FakeTelephony, ring_timeout_rules, write

from cti.domain.routing.decisions import Decision
from cti.domain.routing.events import (
    AgentStateChanged,
    CallConnected,
    CallOffered,
    RoutingEvent,
)
from cti.features.routing.acd import Acd
from cti.platform.clock import FakeClock

Item = tuple[datetime, Decision] | RoutingEvent


class SlowListener:
    """A listener that takes its time over the offer (a screen pop, a database write): it is
    held there until the test opens `gate`."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.items: list[RoutingEvent] = []

    async def on_routing_event(self, event: RoutingEvent) -> None:
        if isinstance(event, AgentStateChanged | CallOffered):
            await self.gate.wait()
        self.items.append(event)


class Store:
    """A DecisionSink that records how the items arrived; slow: each write waits for `gate`."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.batches: list[list[Item]] = []

    async def record_decision(self, at: datetime, decision: Decision) -> None:
        await self.record_batch([(at, decision)])

    async def record_event(self, event: RoutingEvent) -> None:
        await self.record_batch([event])

    async def record_batch(self, items: Sequence[Item]) -> None:
        await self.gate.wait()
        self.batches.append(list(items))


async def settle() -> None:
    """Turns of the event loop (no time passes): the tasks started so far run until they
    wait."""
    for _ in range(20):
        await asyncio.sleep(0)


def _acd(tmp_path: Path, **kw: object) -> tuple[Acd, FakeTelephony]:
    rules = tmp_path / "routing.yaml"
    write(rules, ring_timeout_rules(5))
    tel = FakeTelephony()
    acd = Acd.from_file(tel, rules, clock=FakeClock(), watch_s=0, **kw)
    return acd, tel


async def test_agent_phone_rings_before_hold_music_and_listeners(tmp_path: Path) -> None:
    slow = SlowListener()
    slow.gate.set()
    acd, tel = _acd(tmp_path, listeners=[slow])
    await acd.agent_login("a1")
    slow.gate.clear()
    enqueue = asyncio.create_task(acd.enqueue("c1", "chan-c1", {"menu": "1"}))
    await settle()  # the slow listener is still busy with the offer
    assert not enqueue.done()
    assert tel.names()[0] == "originate"
    slow.gate.set()
    await enqueue
    assert tel.names().index("originate") < tel.names().index("start_moh")
    await acd.aclose()


async def test_answer_during_the_offer_waits_for_it_so_events_keep_their_order(
    tmp_path: Path,
) -> None:
    slow = SlowListener()
    slow.gate.set()
    acd, tel = _acd(tmp_path, listeners=[slow])
    await acd.agent_login("a1")
    slow.gate.clear()
    enqueue = asyncio.create_task(acd.enqueue("c1", "chan-c1", {"menu": "1"}))
    await settle()  # rung, and the listener still busy: the agent answers now
    (leg,) = acd.calls.by_channel  # the channel the ACD originated for the agent
    answer = asyncio.create_task(acd.on_agent_channel_answered(leg))
    await settle()
    assert not answer.done()  # it waits for the offer's own commands
    assert "stop_moh" not in tel.names()
    slow.gate.set()
    await answer
    assert enqueue.done()  # the answer was handled after the offer's own commands
    kinds = [type(e) for e in slow.items]
    assert kinds.index(CallOffered) < kinds.index(CallConnected)
    assert tel.names().index("start_moh") < tel.names().index("stop_moh")
    assert acd.agent_status("a1").state.value == "on_call"
    await acd.aclose()


async def test_decisions_and_events_are_stored_in_batches_off_the_call_path(
    tmp_path: Path,
) -> None:
    store = Store()
    events = Events()
    acd, _tel = _acd(tmp_path, listeners=[events], sink=store)
    for agent in ("a1", "a2"):
        await acd.agent_login(agent)
    await acd.enqueue("c1", "chan-c1", {"menu": "1"})
    await settle()
    await acd.enqueue("c2", "chan-c2", {"menu": "1"})
    assert store.batches == []  # the store is slow; routing did not wait for it
    store.gate.set()
    await acd.flush_records()
    stored = [item for batch in store.batches for item in batch]
    decisions = [d for d in stored if isinstance(d, tuple)]
    assert {d.call_id for _, d in decisions} == {"c1", "c2"}
    # every event the listeners saw was stored too, in the same order
    assert [e for e in stored if not isinstance(e, tuple)] == events.items
    assert len(store.batches) < len(stored)  # some went together
    await acd.aclose()
