"""The ACD service's wiring against a fake PBX: ring, answer, bridge, no-answer, hang-up,
wrap-up, hot reload (good and bad file). Time passes on a ManualScheduler, not the wall."""

from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hostile_yaml import BOMB, BOMB_ERROR, GBK, GBK_ERROR
from routing_fixtures import BASIC

from cti.domain.routing.events import CallConnected, CallOffered, OfferWithdrawn, RoutingEvent
from cti.events import RulesReloaded
from cti.features.routing.acd import Acd
from cti.platform.clock import FakeClock
from cti.platform.ports import ChannelInfo
from cti.platform.scheduler import ManualScheduler


class FakeTelephony:
    """Records PBX requests; this is a unit test of the service's wiring, not of the PBX."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        async def op(*args: Any, **kw: Any) -> Any:
            self.calls.append((name, args or kw))
            if name == "originate":
                return ChannelInfo(kw["channel_id"], args[0], "Down", "", "", "", "")
            if name == "create_bridge":
                return args[0]
            return None

        return op

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]


class Events:
    def __init__(self) -> None:
        self.items: list[RoutingEvent] = []

    async def on_routing_event(self, event: RoutingEvent) -> None:
        self.items.append(event)


def ring_timeout_rules(seconds: float) -> str:
    return BASIC.replace("{strategy}", "longest_idle").replace(
        "    skills: {billing: 3}\n",
        f"    skills: {{billing: 3}}\n    ring_timeout_s: {seconds}\n    wrap_up_s: 0.05\n",
    )


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")  # sync on purpose: a tiny test fixture file


def edit(path: Path, text: str, later_s: float) -> None:
    """Rewrite the file, its mtime `later_s` past what it was (however coarse the filesystem's
    timestamps)."""
    mtime = path.stat().st_mtime
    write(path, text)
    os.utime(path, (mtime + later_s, mtime + later_s))
def write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    p = tmp_path / "routing.yaml"
    write(p, ring_timeout_rules(0.05))
    return p


async def make(rules_file: Path) -> tuple[Acd, FakeTelephony, Events, ManualScheduler]:
    tel = FakeTelephony()
    ev = Events()
    clock = FakeClock()
    scheduler = ManualScheduler(clock)
    acd = Acd.from_file(
        tel, rules_file, clock=clock, scheduler=scheduler, listeners=[ev], watch_s=0
    )
    return acd, tel, ev, scheduler


async def test_offer_rings_agent_then_answer_bridges_caller_and_agent(rules_file: Path) -> None:
    acd, tel, ev, _ = await make(rules_file)
    await acd.agent_login("a1")
    await acd.enqueue("c1", "chan-c1", {"menu": "1"})
    assert ("start_moh", ("chan-c1", "default")) in tel.calls
    [offered] = [e for e in ev.items if isinstance(e, CallOffered)]
    assert (offered.agent_id, offered.queue) == ("a1", "billing")
    leg = next(iter(acd.calls.by_channel))
    await acd.on_agent_channel_answered(leg)
    assert "create_bridge" in tel.names()
    assert ("add_to_bridge", ("acd-c1", ["chan-c1", leg])) in tel.calls
    assert any(isinstance(e, CallConnected) for e in ev.items)
    assert acd.agent_status("a1").state.value == "on_call"
    await acd.aclose()


async def test_ring_no_answer_offers_the_call_to_the_next_agent(rules_file: Path) -> None:
    acd, _tel, ev, scheduler = await make(rules_file)
    await acd.agent_login("a1")
    await acd.agent_login("a2")
    await acd.enqueue("c1", "chan-c1", {"menu": "1"})
    await scheduler.pass_time(0.04)
    assert not [e for e in ev.items if isinstance(e, OfferWithdrawn)]
    await scheduler.pass_time(0.01)  # ring timeout 0.05 s
    withdrawn = [e for e in ev.items if isinstance(e, OfferWithdrawn)]
    assert [(e.agent_id, e.reason) for e in withdrawn] == [("a1", "no_answer")]
    offered = [e.agent_id for e in ev.items if isinstance(e, CallOffered)]
    assert offered == ["a1", "a2"]
    await acd.aclose()


async def test_caller_hangup_while_ringing_cancels_the_offer_and_frees_agent(
    rules_file: Path,
) -> None:
    acd, tel, ev, _ = await make(rules_file)
    await acd.agent_login("a1")
    await acd.enqueue("c1", "chan-c1", {"menu": "1"})
    leg = next(iter(acd.calls.by_channel))
    await acd.on_caller_hangup("c1")
    assert ("hangup", (leg,)) in tel.calls
    assert [e.reason for e in ev.items if isinstance(e, OfferWithdrawn)] == ["caller_hangup"]
    assert acd.agent_status("a1").state.value == "available"
    await acd.aclose()


async def test_agent_hangup_puts_agent_in_wrap_up_then_available(rules_file: Path) -> None:
    acd, tel, _ev, scheduler = await make(rules_file)
    await acd.agent_login("a1")
    await acd.enqueue("c1", "chan-c1", {"menu": "1"})
    leg = next(iter(acd.calls.by_channel))
    await acd.on_agent_channel_answered(leg)
    await acd.on_agent_channel_ended(leg)
    assert acd.agent_status("a1").state.value == "wrap_up"
    assert ("hangup", ("chan-c1",)) in tel.calls
    await scheduler.pass_time(0.04)
    assert acd.agent_status("a1").state.value == "wrap_up"
    await scheduler.pass_time(0.01)  # wrap-up 0.05 s
    assert acd.agent_status("a1").state.value == "available"
    await acd.aclose()


async def test_reload_keeps_old_rules_on_a_bad_file_and_applies_a_good_one(
    rules_file: Path,
) -> None:
    acd, _tel, _ev, _ = await make(rules_file)
    write(rules_file, "queues: [oops")
    st = await acd.reload()
    assert st.last_error is not None
    assert str(rules_file) in st.last_error
    assert acd.core.rules.queues["billing"].ring_timeout_s == 0.05
    write(rules_file, ring_timeout_rules(7))
    st = await acd.reload()
    assert st.last_error is None
    assert acd.core.rules.queues["billing"].ring_timeout_s == 7
    await acd.aclose()


class ReloadBus:
    """Keeps what the ACD publishes; `reloaded` is set by each RulesReloaded."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.reloaded = asyncio.Event()

    def publish(self, event: Any) -> int:
        self.events.append(event)
        if isinstance(event, RulesReloaded):
            self.reloaded.set()
        return len(self.events)


async def test_an_edited_rules_file_is_noticed_on_the_next_watch(rules_file: Path) -> None:
    bus = ReloadBus()
    clock = FakeClock()
    scheduler = ManualScheduler(clock)
    acd = Acd.from_file(FakeTelephony(), rules_file, clock=clock, scheduler=scheduler, bus=bus,
                        watch_s=2)
    await acd.start()
    edit(rules_file, ring_timeout_rules(7), later_s=1)
    await scheduler.pass_time(1.9)
    assert not bus.reloaded.is_set()
    await scheduler.pass_time(0.1)
    await asyncio.wait_for(bus.reloaded.wait(), 5)  # the file is read in a thread
    [good] = [e for e in bus.events if isinstance(e, RulesReloaded)]
    assert good.ok
    assert acd.core.rules.queues["billing"].ring_timeout_s == 7

    bus.reloaded.clear()
    edit(rules_file, "queues: [oops", later_s=2)
    await scheduler.pass_time(2)  # the next check: 2 s after the last one ended
    await asyncio.wait_for(bus.reloaded.wait(), 5)
    bad = [e for e in bus.events if isinstance(e, RulesReloaded)][-1]
    assert not bad.ok
    assert acd.rules_status.last_error == bad.error
    assert acd.core.rules.queues["billing"].ring_timeout_s == 7  # still in force
async def test_hot_reload_refuses_an_alias_bomb_and_keeps_serving(
    rules_file: Path,
) -> None:
    tel = FakeTelephony()
    ev = Events()
    acd = Acd.from_file(tel, rules_file, clock=FakeClock(), listeners=[ev], watch_s=0.02)
    await acd.start()  # the file watch, as in the running service
    await acd.agent_login("a1")
    write(rules_file, BOMB)  # an administrator (or an attacker) saves over the rules file
    started = time.perf_counter()
    # Meanwhile the service answers: a call arrives and rings the agent under the old rules.
    await acd.enqueue("c1", "chan-c1", {"menu": "1"})
    [offered] = [e for e in ev.items if isinstance(e, CallOffered)]
    assert (offered.agent_id, offered.queue) == ("a1", "billing")
    while time.perf_counter() - started < 5:
        if acd.rules_status.last_error is not None:
            break
        await asyncio.sleep(0.01)
    assert re.match(re.escape(str(rules_file)) + BOMB_ERROR, acd.rules_status.last_error or "")
    assert acd.core.rules.queues["billing"].ring_timeout_s == 0.05  # the old rules, in force
    await acd.aclose()


async def test_hot_reload_refuses_a_non_utf8_file_and_keeps_the_rules(rules_file: Path) -> None:
    acd, _tel, ev, _ = await make(rules_file)
    write_bytes(rules_file, GBK)  # saved by an editor in the Windows code page
    st = await asyncio.wait_for(acd.reload(), 1.0)
    assert st.last_error == f"{rules_file}: {GBK_ERROR}"
    assert acd.core.rules.queues["billing"].ring_timeout_s == 0.05
    await acd.agent_login("a2")
    await acd.enqueue("c1", "chan-c1", {"menu": "1"})  # still routed by the old rules
    assert [e.queue for e in ev.items if isinstance(e, CallOffered)] == ["billing"]
    await acd.aclose()


async def test_callers_adopted_before_start_go_back_at_start_in_the_order_they_waited(
    rules_file: Path,
) -> None:
    # At a takeover each PBX's resync adopts its own callers, concurrently: the ACD takes
    # them all at start (once every resync is done), the first in line offered first.
    acd, _tel, ev, _ = await make(rules_file)
    await acd.agent_login("a1")
    now = acd.clock.now()
    await acd.requeue("later", "chan-later", {"menu": "1"}, "billing",
                      since=now - timedelta(seconds=10))
    await acd.requeue("gone", "chan-gone", {"menu": "1"}, "billing",
                      since=now - timedelta(seconds=60))
    await acd.requeue("first", "chan-first", {"menu": "1"}, "billing",
                      since=now - timedelta(seconds=30))
    await acd.on_caller_hangup("gone")  # hung up before start: not put back
    assert not [e for e in ev.items if isinstance(e, CallOffered)]
    await acd.start()
    assert [e.call_id for e in ev.items if isinstance(e, CallOffered)] == ["first"]
    assert [c.call_id for c in acd.core.router.waiting_calls()] == ["later"]
    # once started, a caller adopted later (a PBX reconnecting) goes back at once
    await acd.requeue("after", "chan-after", {"menu": "1"}, "billing", since=now)
    assert [c.call_id for c in acd.core.router.waiting_calls()] == ["later", "after"]
    await acd.aclose()
