"""Pending call-backs across restarts and retries, on SQLite and PostgreSQL.

The store keeps, updates and forgets a row per call-back. A queue call-back: the caller
leaves (the call-back key), the service is stopped and built again on the same database (a new
process: a new monotonic clock, the wall clock a minute on), and the call-back is back in the
queue at its place, ahead of a caller who came after it. Dialled back and busy, it leaves the
ACD, comes back at its place after the retry spacing and is dialled again; busy again on the
last attempt it is given up, published as CallbackMissed, and its row is gone. A complaint
call-back between two attempts is found again by a rebuilt service with its attempts and
next attempt time.

The ACD, the queue call-backs, the bus and the database are the real ones; the PBX is a fake
that records requests (no Asterisk here: the call-back's PBX side has its e2e test), and time
is a FakeClock moved by the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cti.domain.callbacks import Callback, CallbackStatus, QueueCallbackPolicy
from cti.domain.calls import Call, CallState
from cti.events import CallbackMissed, MenuKeyPressed, QueueCallbackAttempted
from cti.features.calls.registry import CallRegistry, CallSession
from cti.features.complaint_callbacks.service import ComplaintCallbacks
from cti.features.routing.acd import Acd
from cti.features.routing.queue_callbacks import QueueCallbacks
from cti.features.routing.rules import parse_rules
from cti.platform.bus import InProcessBus
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.pending_callbacks import PendingCallback, PendingCallbackStore
from cti.platform.ports import ChannelInfo
from cti.platform.scheduler import ManualScheduler

RULES = """
skills: [general]
default_queue: general
queues:
  general:
    skills: {general: 1}
    max_wait_s: 60
    fallback: {action: voicemail}
agents:
  "1001": {skills: {general: 1}}
  "1002": {skills: {general: 1}}
rules: []
"""
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NUMBER = "+8613800000702"
POLICY = QueueCallbackPolicy(attempts=2, retry_after=timedelta(minutes=5))


class FakeTelephony:
    """Records PBX requests; originate hands back the channel asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        async def op(*args: Any, **kw: Any) -> Any:
            self.calls.append((name, (args, kw)))
            if name == "originate":
                return ChannelInfo(kw["channel_id"], args[0], "Down", "", "", "", "")
            if name == "create_bridge":
                return args[0]
            return None

        return op

    def originated(self, app_arg: str) -> list[str]:
        return [kw["channel_id"] for name, (_, kw) in self.calls
                if name == "originate" and kw["app_args"].startswith(app_arg)]


@dataclass
class Process:
    """One run of the service's routing part over the shared database."""

    clock: FakeClock
    tel: FakeTelephony
    bus: InProcessBus
    acd: Acd
    callbacks: QueueCallbacks
    registry: CallRegistry
    store: PendingCallbackStore
    seen: list[Any] = field(default_factory=list)
    closers: list[Callable[[], Any]] = field(default_factory=list)

    async def on_event(self, event: Any) -> None:
        self.seen.append(event)

    async def stop(self) -> None:
        for close in self.closers:
            await close()


@pytest.fixture
async def processes(database_url: str) -> AsyncIterator[Callable[[datetime], Any]]:
    made: list[Process] = []

    async def start(wall: datetime) -> Process:
        engine = make_engine(database_url)
        clock = FakeClock(wall, mono=1000.0 * (len(made) + 1))  # a new process's monotonic
        tel = FakeTelephony()
        bus = InProcessBus()
        acd = Acd(tel, parse_rules(RULES), clock=clock, scheduler=ManualScheduler(clock),
                  bus=bus)
        registry = CallRegistry()
        store = PendingCallbackStore(make_sessionmaker(engine))
        qcb = QueueCallbacks(acd, registry, tel, bus, clock, "5", store=store, policy=POLICY)
        p = Process(clock, tel, bus, acd, qcb, registry, store)
        bus.subscribe("test.seen", p.on_event, (QueueCallbackAttempted, CallbackMissed))
        p.closers += [acd.aclose, bus.aclose, engine.dispose]
        made.append(p)
        return p

    yield start
    for p in made:
        await p.stop()


async def waiting_caller(p: Process, call_id: str, number: str) -> None:
    p.registry.add(CallSession(call=Call(
        id=call_id, channel_id=call_id, caller_number=number, caller_name="",
        dialled_number="4000", arrived_at=p.clock.now(), state=CallState.QUEUED,
        queue="general")))
    await p.acd.enqueue(call_id, call_id, {"menu": "", "caller": number, "language": "en"})


async def take_and_dial(p: Process, agent_id: str) -> str:
    """`agent_id` becomes available, is rung for the call-back and answers; the caller is
    dialled: returns the dialling channel."""
    await p.acd.agent_login(agent_id)
    legs = p.tel.originated("acd-agent")
    await p.acd.on_agent_channel_answered(legs[-1])
    (channel,) = [c for c in p.tel.originated("queue-callback")
                  if c in p.acd.calls.callback_channels]
    await p.bus.drain()
    return channel


async def test_the_store_keeps_updates_and_forgets_a_call_back(database_url: str) -> None:
    engine = make_engine(database_url)
    store = PendingCallbackStore(make_sessionmaker(engine))
    try:
        first = PendingCallback("queue", "c1", NUMBER, "waiting", queue="general",
                                entered_at=T0, attributes={"menu": "1", "crm": {"tier": "vip"}})
        await store.save(first, T0)
        await store.save(PendingCallback("queue", "c0", "+861", "waiting",
                                         entered_at=T0 - timedelta(minutes=1)), T0)
        await store.save(PendingCallback("complaint", "7", "+862", "waiting", 1,
                                         T0 + timedelta(minutes=10), agent_id="1001"), T0)
        assert [c.key for c in await store.load("queue")] == ["c0", "c1"]  # entry order
        await store.save(PendingCallback("queue", "c1", NUMBER, "dialling", 2, None,
                                         queue="general", entered_at=T0,
                                         attributes=first.attributes), T0)
        c1 = (await store.load("queue"))[1]
        assert (c1.status, c1.attempts, c1.entered_at, c1.queue) == (
            "dialling", 2, T0, "general")
        assert c1.attributes == {"menu": "1", "crm": {"tier": "vip"}}
        [complaint] = await store.load("complaint")
        assert (complaint.key, complaint.agent_id, complaint.next_at) == (
            "7", "1001", T0 + timedelta(minutes=10))
        await store.delete("queue", "c1")
        assert [c.key for c in await store.load("queue")] == ["c0"]
    finally:
        await engine.dispose()


async def test_a_queue_call_back_survives_a_restart_at_its_place_then_is_retried_and_missed(
    processes: Any,
) -> None:
    # ----- the first process: "b" waits 20 s, then leaves for a call-back
    one: Process = await processes(T0)
    await waiting_caller(one, "b", NUMBER)
    one.clock.advance(20)
    await one.callbacks.on_key(MenuKeyPressed("b", one.clock.now(), "5"))
    assert ("hangup", (("b",), {})) in one.tel.calls  # no IVR here: the line simply ends
    [row] = await one.store.load("queue")
    assert (row.key, row.number, row.queue, row.attempts, row.entered_at) == (
        "b", NUMBER, "general", 0, T0)
    await one.stop()

    # ----- a new process a minute later: a new caller "d" is already waiting when the
    # call-back comes back; it goes ahead of "d", as having entered at T0
    two: Process = await processes(T0 + timedelta(minutes=1))
    await waiting_caller(two, "d", "+8613800000799")
    await two.callbacks.restore()
    router = two.acd.core.router
    assert [router.position("b"), router.position("d")] == [1, 2]
    assert router.waited("b", two.clock.monotonic()) == pytest.approx(60.0)

    # its turn: agent 1001 takes it, the caller is dialled, busy
    channel = await take_and_dial(two, "1001")
    assert two.callbacks.pending["b"].attempts == 1
    await two.acd.on_callback_channel_ended(channel, 17)
    await two.bus.drain()
    assert [(e.outcome, e.cause) for e in two.seen] == [("busy", 17)]
    [row] = await two.store.load("queue")
    assert (row.status, row.attempts, row.next_at) == (
        "waiting", 1, two.clock.now() + timedelta(minutes=5))
    assert router.position("b") is None  # out of the queue until its next attempt
    assert router.position("d") == 1

    # five minutes later it is back, ahead of "d" again
    two.clock.advance(299)
    await two.callbacks.run_once()
    assert router.position("b") is None
    two.clock.advance(1)
    await two.callbacks.run_once()
    assert [router.position("b"), router.position("d")] == [1, 2]

    # the last attempt, busy again: given up, published, forgotten
    channel = await take_and_dial(two, "1002")
    await two.acd.on_callback_channel_ended(channel, 19)
    await two.bus.drain()
    missed = [e for e in two.seen if isinstance(e, CallbackMissed)]
    assert [(m.kind, m.call_id, m.number, m.attempts, m.queue, m.language) for m in missed] == [
        ("queue", "b", NUMBER, 2, "general", "en")]
    assert await two.store.load("queue") == []
    assert "b" not in two.callbacks.pending
    assert router.position("b") is None


async def test_an_answered_call_back_is_forgotten(processes: Any) -> None:
    p: Process = await processes(T0)
    await waiting_caller(p, "b", NUMBER)
    await p.callbacks.on_key(MenuKeyPressed("b", p.clock.now(), "5"))
    channel = await take_and_dial(p, "1001")
    await p.acd.on_callback_answered(channel)
    await p.bus.drain()
    assert [e.outcome for e in p.seen] == ["answered"]
    assert await p.store.load("queue") == []


class Orders:
    """The work orders as the complaint call-backs see them (only `config` and `store.get` are
    read on restore)."""

    def __init__(self) -> None:
        self.config = type("Config", (), {"callback": None})()
        self.store = self


async def test_a_complaint_call_back_between_attempts_survives_a_restart(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    store = PendingCallbackStore(make_sessionmaker(engine))
    clock = FakeClock(T0)
    bus = InProcessBus()
    try:
        first = ComplaintCallbacks(Orders(), None, None, bus, clock, store=store)  # type: ignore[arg-type]
        pending = Callback(42, "1001", NUMBER, CallbackStatus.WAITING, 1,
                           T0 + timedelta(minutes=10))
        async with first._lock:
            await first._keep(pending)
        calling = Callback(43, "1002", "+8613800000703", CallbackStatus.CALLING, 2)
        async with first._lock:
            await first._keep(calling)

        again = ComplaintCallbacks(Orders(), None, None, bus, clock, store=store)  # type: ignore[arg-type]
        await again.restore()
        assert again.active[42] == pending
        # the one being dialled when the service stopped: due again now, attempt counted
        assert again.active[43] == Callback(43, "1002", "+8613800000703",
                                            CallbackStatus.WAITING, 2, T0)
        async with again._lock:
            await again._keep(Callback(42, "1001", NUMBER, CallbackStatus.CONNECTED, 2))
        assert [c.key for c in await store.load("complaint")] == ["43"]
    finally:
        await bus.aclose()
        await engine.dispose()
