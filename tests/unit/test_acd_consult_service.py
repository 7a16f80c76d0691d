"""The ACD service's transfers over a fake PBX whose requests take a turn of the event loop
(as real ones do): an attended transfer completed, cancelled, or unanswered by the colleague;
a blind transfer to a queue. Time passes on a ManualScheduler."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_router_acd_service import Events, FakeTelephony, ring_timeout_rules, write

from cti.domain.routing.events import CallConnected, CallOffered
from cti.features.routing.acd import Acd
from cti.platform.clock import FakeClock
from cti.platform.scheduler import ManualScheduler


class SlowTelephony(FakeTelephony):
    def __getattr__(self, name: str) -> Any:
        op = super().__getattr__(name)

        async def slow(*args: Any, **kw: Any) -> Any:
            await asyncio.sleep(0)  # a request goes out and its answer comes back later
            return await op(*args, **kw)

        return slow


@pytest.fixture
async def talking(tmp_path: Path) -> tuple[Acd, SlowTelephony, Events, ManualScheduler, str]:
    """c1 connected with a1 (its leg returned); a2 available for a consultation."""
    rules = tmp_path / "routing.yaml"
    write(rules, ring_timeout_rules(0.05))
    tel = SlowTelephony()
    events = Events()
    scheduler = ManualScheduler(FakeClock())
    acd = Acd.from_file(tel, rules, clock=scheduler.clock, scheduler=scheduler,
                        listeners=[events], watch_s=0)
    await acd.agent_login("a1")
    await acd.enqueue("c1", "chan-c1", {"menu": "1"})
    (a1_leg,) = acd.calls.by_channel
    await acd.on_agent_channel_answered(a1_leg)
    await acd.agent_login("a2")
    assert acd.agent_status("a1").state.value == "on_call"
    return acd, tel, events, scheduler, a1_leg


def state(acd: Acd, agent: str) -> str:
    return acd.agent_status(agent).state.value


def leg_of(acd: Acd, agent: str) -> str:
    return next(ch for ch, leg in acd.calls.by_channel.items() if leg.agent_id == agent)


async def test_completed_consultation_hands_the_caller_to_the_colleague(
    talking: tuple[Acd, SlowTelephony, Events, ManualScheduler, str],
) -> None:
    acd, tel, events, _, a1_leg = talking
    await acd.consult("c1", "a2")
    assert ("remove_from_bridge", ("acd-c1", [a1_leg])) in tel.calls
    assert acd.consult_state("c1") == "ringing"
    a2_leg = leg_of(acd, "a2")
    await acd.on_agent_channel_answered(a2_leg)
    assert acd.consult_state("c1") == "talking"
    assert [e.agent_id for e in events.items if isinstance(e, CallConnected)] == ["a1"]
    await acd.complete_consult("c1")
    assert acd.consult_state("c1") is None
    assert ("hangup", (a1_leg,)) in tel.calls
    assert acd.agent_channel_of("c1") == a2_leg
    bridged = [args for name, args in tel.calls if name == "add_to_bridge"]
    assert bridged[-1][1] == ["chan-c1", a2_leg]
    # the colleague's CallConnected was held back until the call was theirs
    assert [e.agent_id for e in events.items if isinstance(e, CallConnected)] == ["a1", "a2"]
    assert (state(acd, "a1"), state(acd, "a2")) == ("wrap_up", "on_call")
    await acd.aclose()


async def test_cancelled_consultation_gives_the_caller_back(
    talking: tuple[Acd, SlowTelephony, Events, ManualScheduler, str],
) -> None:
    acd, tel, _, _, a1_leg = talking
    await acd.consult("c1", "a2")
    a2_leg = leg_of(acd, "a2")
    await acd.on_agent_channel_answered(a2_leg)
    await acd.on_agent_channel_ended(a2_leg)  # the colleague hangs up: cancelled
    assert acd.consult_state("c1") is None
    assert acd.agent_channel_of("c1") == a1_leg
    assert tel.calls[-1] == ("add_to_bridge", ("acd-c1", [a1_leg]))
    assert (state(acd, "a1"), state(acd, "a2")) == ("on_call", "wrap_up")
    await acd.aclose()


async def test_unanswered_consultation_is_cancelled_when_the_colleague_rings_out(
    talking: tuple[Acd, SlowTelephony, Events, ManualScheduler, str],
) -> None:
    acd, tel, _, scheduler, a1_leg = talking
    await acd.consult("c1", "a2")
    a2_leg = leg_of(acd, "a2")
    await scheduler.pass_time(0.05)  # the ring timeout: a2 never answers
    assert acd.consult_state("c1") is None
    assert ("hangup", (a2_leg,)) in tel.calls
    assert tel.calls[-1] == ("add_to_bridge", ("acd-c1", [a1_leg]))
    assert acd.agent_channel_of("c1") == a1_leg
    assert state(acd, "a1") == "on_call"
    assert state(acd, "a2") == "available"  # released, no longer reserved
    await acd.aclose()


async def test_blind_transfer_to_a_queue_offers_the_caller_again(
    talking: tuple[Acd, SlowTelephony, Events, ManualScheduler, str],
) -> None:
    acd, tel, events, scheduler, a1_leg = talking
    await acd.transfer("c1", queue="billing")
    assert ("hangup", (a1_leg,)) in tel.calls
    assert ("destroy_bridge", ("acd-c1",)) in tel.calls
    assert [e.agent_id for e in events.items if isinstance(e, CallOffered)] == ["a1", "a2"]
    a2_leg = leg_of(acd, "a2")
    await acd.on_agent_channel_answered(a2_leg)
    new_bridge = [args[0] for name, args in tel.calls if name == "create_bridge"][-1]
    assert new_bridge != "acd-c1"  # a fresh id: Asterisk keeps the old one taken a moment
    assert (state(acd, "a1"), state(acd, "a2")) == ("wrap_up", "on_call")
    await scheduler.pass_time(0.05)  # a1's wrap-up
    assert state(acd, "a1") == "available"
    await acd.aclose()
