"""Routing by skill and load, end to end: real Asterisk, sipp callers with RTP pressing menu keys,
registered sipp agent phones, the real service (IVR menu -> ACD -> ring the agent -> bridge).

Every test runs on its own copy of tests/e2e/data/routing_rules.yaml and the routing_menu flow
(open around the clock: nothing here depends on the time of day). Run with an instance of your
own:  CTI_E2E_PBX=e2e-routing .venv/bin/pytest tests/e2e/test_routing_e2e.py
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from cti.app import create_app
from cti.domain.agents.state import AgentState
from cti.domain.routing.events import (
    AgentStateChanged,
    CallConnected,
    CallOffered,
    CallQueued,
    OfferWithdrawn,
    RoutingEvent,
)
from cti.features.auth.service import NewUser, Role
from cti.features.ivr.caller_audio import TAP_BRIDGE_PREFIX
from cti.features.routing.call_routing import ROUTING_EVENTS
from cti.runtime import Service
from tests.e2e.conftest import (
    DATA,
    call_from,
    call_of,
    flows_dir,
    service_settings,
    wait_until,
)
from tests.e2e.pbx import AgentMode, AgentPhone, Pbx, SippResult, register_agent, run_sipp

# Routing does not depend on the database backend; one backend keeps the file under 3 minutes
# (the call log on both backends is proven by tests/service/test_call_repository.py).
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

E = TypeVar("E", bound=RoutingEvent)


@dataclass
class RoutingEvents:
    """Every event the ACD emitted, with the monotonic time it arrived (a RoutingListener)."""

    events: list[tuple[float, RoutingEvent]] = field(default_factory=list)

    async def on_routing_event(self, event: RoutingEvent) -> None:
        self.events.append((time.monotonic(), event))

    def of(self, kind: type[E], pred: Callable[[E], bool] = lambda _: True) -> list[E]:
        return [e for _, e in self.events if isinstance(e, kind) and pred(e)]

    def when(self, kind: type[E], pred: Callable[[E], bool] = lambda _: True) -> float:
        times = [t for t, e in self.events if isinstance(e, kind) and pred(e)]
        assert times, f"no {kind.__name__} matching; got {self.describe()}"
        return times[0]

    async def wait(
        self, kind: type[E], pred: Callable[[E], bool] = lambda _: True, timeout: float = 15.0
    ) -> E:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(kind, pred)
            if found:
                return found[0]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {kind.__name__} within {timeout} s; got {self.describe()}")

    def describe(self) -> str:
        return "\n  " + "\n  ".join(repr(e) for _, e in self.events)


@dataclass
class Routed:
    service: Service
    events: RoutingEvents
    rules_file: Path
    pbx: Pbx

    def call_of(self, caller: str) -> str | None:
        return call_of(self.service, caller)

    async def call_from(self, caller: str) -> str:
        return await call_from(self.service, caller)

    async def bridge_of(self, channel_id: str, timeout: float = 5.0) -> tuple[str, ...]:
        """The channels of the ARI bridge holding `channel_id` with another channel (asked of
        Asterisk; waits for the second channel to join)."""
        deadline = time.monotonic() + timeout
        seen: list[tuple[str, ...]] = []
        while time.monotonic() < deadline:
            seen = [b.channels for b in await self.service.telephony.list_bridges()]
            for channels in seen:
                if channel_id in channels and len(channels) > 1:
                    return channels
            await asyncio.sleep(0.05)
        raise AssertionError(f"channel {channel_id} is bridged with nobody; bridges: {seen}")

    async def channel_name(self, channel_id: str) -> str:
        for channel in await self.service.telephony.list_channels():
            if channel.id == channel_id:
                return channel.name
        raise AssertionError(f"no channel {channel_id}")


def _flows_dir(tmp: Path) -> Path:
    """The product's agent_greeting flow plus the test menus, in a directory of their own."""
    return flows_dir(tmp, data=None)


@pytest.fixture
async def routed(pbx: Pbx, database_url: str, tmp_path: Path) -> AsyncIterator[Routed]:
    rules_file = tmp_path / "routing.yaml"
    shutil.copy(DATA / "routing_rules.yaml", rules_file)
    settings = service_settings(
        pbx, database_url, inbound_flow="routing_menu", flows_dir=_flows_dir(tmp_path),
        rules_file=rules_file,
    )
    service = Service.build(settings)
    service.acd.rules_watch.interval_s = 0.3  # notice an edited rules file soon (default 2 s)
    events = RoutingEvents()
    service.bus.subscribe("test.routing", events.on_routing_event, ROUTING_EVENTS)
    await service.start()
    try:
        yield Routed(service, events, rules_file, pbx)
    finally:
        await service.stop()


def _caller(
    pbx: Pbx, number: str, digit: str, *, talk_ms: int | None = None, max_wait_s: float = 40
) -> asyncio.Task[SippResult]:
    """A caller who presses `digit` a second after answer; hangs up after talk_ms, or (None)
    waits for the far end's BYE."""
    scenario = "caller_dtmf_wait_bye" if talk_ms is None else "caller_dtmf_hangup"
    variables: dict[str, int | str] = {"dtmf_delay_ms": 1000}
    if talk_ms is not None:
        variables["talk_ms"] = talk_ms
    return asyncio.create_task(
        run_sipp(
            pbx, scenario, service="4000", caller=number, pcap=pbx.media("speech"),
            dtmf_pcap=pbx.media(f"dtmf-{digit}"), variables=variables, max_wait_s=max_wait_s,
            timeout=max_wait_s + 10,
        )
    )


def _from_user(phone: AgentPhone) -> list[str]:
    """The caller number in the From header of each INVITE the agent's phone received."""
    users = []
    for invite in phone.invites():
        line = next(ln for ln in invite.text.splitlines() if ln.lower().startswith("from:"))
        users.append(line.split("sip:", 1)[1].split("@", 1)[0])
    return users


async def _phones(pbx: Pbx, **modes: AgentMode) -> dict[str, AgentPhone]:
    """Register agent phones: _phones(pbx, a1001="answer", a1002="noanswer"). One after the
    other: each start copies its scenario files into the chroot (pbx.stage), and two copies of
    one file at once can leave sipp reading a half-written scenario."""
    phones: dict[str, AgentPhone] = {}
    for name, mode in modes.items():
        agent = name.removeprefix("a")
        phones[agent] = await register_agent(pbx, agent, mode=mode, ring_ms=400)
    return phones


async def _stop(phones: dict[str, AgentPhone]) -> None:
    for phone in phones.values():  # one by one, as in _phones
        await phone.stop()


async def test_menu_choice_rings_the_qualified_agent_and_bridges_caller_and_agent(
    routed: Routed,
) -> None:
    service, acd = routed.service, routed.service.acd
    phones = await _phones(routed.pbx, a1001="answer", a1002="answer")
    try:
        await acd.agent_login("1001")  # billing
        await acd.agent_login("1002")  # tech
        # the second caller starts once the first is in (sipp's files are staged by then)
        billing = _caller(routed.pbx, "+8613800000101", "1")
        billing_call = await routed.call_from("+8613800000101")
        tech = _caller(routed.pbx, "+8613800000102", "2")
        tech_call = await routed.call_from("+8613800000102")

        to_billing = await routed.events.wait(CallConnected, lambda e: e.call_id == billing_call)
        to_tech = await routed.events.wait(CallConnected, lambda e: e.call_id == tech_call)
        assert (to_billing.agent_id, to_billing.queue) == ("1001", "billing")
        assert (to_tech.agent_id, to_tech.queue) == ("1002", "tech")
        # each qualified agent's phone rang once, for its own caller only
        assert _from_user(phones["1001"]) == ["+8613800000101"]
        assert _from_user(phones["1002"]) == ["+8613800000102"]

        for call_id, agent in ((billing_call, "1001"), (tech_call, "1002")):
            channels = await routed.bridge_of(call_id)
            assert len(channels) == 2, channels
            (agent_leg,) = set(channels) - {call_id}
            assert (await routed.channel_name(agent_leg)).startswith(f"PJSIP/{agent}-")
            assert acd.agent_status(agent).state is AgentState.ON_CALL
            session = service.registry.get(call_id)
            assert session is not None
            assert session.call.agent_id == agent

        # the decision trace names the chosen agent and why
        trace = acd.describe_call(billing_call)
        assert trace["agent_id"] == "1001"
        assert any(d["outcome"] == "offered" for d in trace["decisions"])

        await service.telephony.hangup(billing_call)
        await service.telephony.hangup(tech_call)
        for result in await asyncio.gather(billing, tech):
            assert result.ok, result.describe()
        # the ACD hung up the agents' legs with the callers
        await wait_until(
            lambda: all(len(p.messages()) > 0 and any(
                m.direction == "received" and m.method_or_status == "BYE" for m in p.messages()
            ) for p in phones.values()),
            what="agents got BYE",
        )
    finally:
        await _stop(phones)


async def test_ring_no_answer_moves_the_call_to_the_next_agent(routed: Routed) -> None:
    acd = routed.service.acd
    phones = await _phones(routed.pbx, a1001="noanswer", a1003="answer")
    try:
        await acd.agent_login("1001")  # billing 5, idle longest: offered first, never answers
        await asyncio.sleep(0.05)
        await acd.agent_login("1003")  # billing 4
        caller = _caller(routed.pbx, "+8613800000201", "1")
        call_id = await routed.call_from("+8613800000201")

        first = await routed.events.wait(CallOffered, lambda e: e.call_id == call_id)
        assert first.agent_id == "1001"
        withdrawn = await routed.events.wait(OfferWithdrawn, lambda e: e.call_id == call_id)
        assert (withdrawn.agent_id, withdrawn.reason) == ("1001", "no_answer")
        connected = await routed.events.wait(CallConnected, lambda e: e.call_id == call_id)
        assert connected.agent_id == "1003"

        # 1001 rang for the queue's ring timeout (3 s), then 1003 was tried at once
        t_offer = routed.events.when(CallOffered, lambda e: e.agent_id == "1001")
        t_missed = routed.events.when(OfferWithdrawn, lambda e: e.agent_id == "1001")
        t_next = routed.events.when(CallOffered, lambda e: e.agent_id == "1003")
        assert 2.9 <= t_missed - t_offer <= 4.0
        assert t_next - t_missed < 0.5
        assert _from_user(phones["1001"]) == ["+8613800000201"]
        assert _from_user(phones["1003"]) == ["+8613800000201"]
        # the unanswered phone was cancelled; its agent is counted one miss and is free again
        await wait_until(
            lambda: any(m.method_or_status == "CANCEL" for m in phones["1001"].messages()),
            what="CANCEL to 1001",
        )
        status = acd.agent_status("1001")
        assert (status.state, status.missed) == (AgentState.AVAILABLE, 1)

        channels = await routed.bridge_of(call_id)
        assert len(channels) == 2
        await routed.service.telephony.hangup(call_id)
        result = await caller
        assert result.ok, result.describe()
    finally:
        await _stop(phones)


async def test_wrap_up_holds_the_agent_until_it_ends(routed: Routed) -> None:
    acd = routed.service.acd
    phones = await _phones(routed.pbx, a1001="answer")
    try:
        await acd.agent_login("1001")  # the only billing agent logged in; billing wrap-up 4 s
        first = _caller(routed.pbx, "+8613800000301", "1", talk_ms=2500)
        first_call = await routed.call_from("+8613800000301")
        await routed.events.wait(CallConnected, lambda e: e.call_id == first_call)
        wrap = await routed.events.wait(
            AgentStateChanged, lambda e: e.agent_id == "1001" and e.new == "wrap_up", timeout=20
        )
        assert wrap.call_id == first_call
        t_wrap = routed.events.when(
            AgentStateChanged, lambda e: e.agent_id == "1001" and e.new == "wrap_up"
        )
        result = await first
        assert result.ok, result.describe()  # the caller hung up (BYE from sipp)

        # a second billing caller during the wrap-up waits for it
        second = _caller(routed.pbx, "+8613800000302", "1")
        second_call = await routed.call_from("+8613800000302")
        queued = await routed.events.wait(CallQueued, lambda e: e.call_id == second_call)
        assert queued.queue == "billing"
        assert acd.agent_status("1001").state is AgentState.WRAP_UP
        connected = await routed.events.wait(CallConnected, lambda e: e.call_id == second_call)
        assert connected.agent_id == "1001"
        t_offer = routed.events.when(CallOffered, lambda e: e.call_id == second_call)
        assert t_offer - t_wrap >= 3.9, "offered before the 4 s wrap-up ended"
        assert t_offer - t_wrap < 5.0, "not offered as soon as the wrap-up ended"
        assert _from_user(phones["1001"]) == ["+8613800000301", "+8613800000302"]

        await routed.service.telephony.hangup(second_call)
        result = await second
        assert result.ok, result.describe()
    finally:
        await _stop(phones)


async def _admin_client(service: Service) -> tuple[httpx.AsyncClient, dict[str, str]]:
    await service.desk.auth.users.create(NewUser("admin", "admin-e2e-pw", Role.ADMIN))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(service)), base_url="http://cti"
    )
    r = await client.post("/auth/login", json={"username": "admin", "password": "admin-e2e-pw"})
    assert r.status_code == 200, r.text
    return client, {"Authorization": f"Bearer {r.json()['token']}"}


async def test_edited_rules_reroute_waiting_and_new_callers(routed: Routed) -> None:
    service, acd = routed.service, routed.service.acd
    phones = await _phones(routed.pbx, a1002="answer", a1004="answer")
    client, admin = await _admin_client(service)
    try:
        await acd.agent_login("1002")  # tech agents only: nobody serves billing
        await acd.agent_login("1004")
        waiting = _caller(routed.pbx, "+8613800000401", "1")
        waiting_call = await routed.call_from("+8613800000401")
        queued = await routed.events.wait(CallQueued, lambda e: e.call_id == waiting_call)
        assert queued.queue == "billing"
        await asyncio.sleep(1.0)
        assert not routed.events.of(CallOffered, lambda e: e.call_id == waiting_call)

        # the administrator sends key 1 to technical support and reloads through the API
        text = routed.rules_file.read_text()
        routed.rules_file.write_text(
            text.replace('when: menu == "1"', 'when: menu == "9"').replace(
                'when: menu == "2"', 'when: menu == "1" or menu == "2"'
            )
        )
        r = await client.post("/admin/rules/reload", headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True
        assert r.json()["last_error"] is None

        # the caller already waiting is re-planned under the new rules, keeping their place
        connected = await routed.events.wait(CallConnected, lambda e: e.call_id == waiting_call)
        assert (connected.queue, connected.agent_id) == ("tech", "1002")
        offered = routed.events.of(CallOffered, lambda e: e.call_id == waiting_call)
        assert [o.agent_id for o in offered] == ["1002"]
        assert any(
            d["trigger"] == "rules_reloaded" and d["outcome"] == "offered"
            for d in acd.decisions_for(waiting_call)
        )

        # and a new caller pressing 1 goes to technical support at once
        new = _caller(routed.pbx, "+8613800000402", "1")
        new_call = await routed.call_from("+8613800000402")
        connected = await routed.events.wait(CallConnected, lambda e: e.call_id == new_call)
        assert (connected.queue, connected.agent_id) == ("tech", "1004")
        assert not routed.events.of(CallQueued, lambda e: e.call_id == new_call)

        for call_id in (waiting_call, new_call):
            await service.telephony.hangup(call_id)
        for result in await asyncio.gather(waiting, new):
            assert result.ok, result.describe()
    finally:
        await client.aclose()
        await _stop(phones)


async def test_broken_rules_file_is_rejected_and_routing_goes_on(routed: Routed) -> None:
    service, acd = routed.service, routed.service.acd
    phones = await _phones(routed.pbx, a1001="answer")
    client, admin = await _admin_client(service)
    try:
        await acd.agent_login("1001")
        loaded_at = acd.rules_status.loaded_at
        good = routed.rules_file.read_text()
        # key 1 now names a queue that does not exist: the whole file must be refused
        broken = good.replace("- {queue: billing}", "- {queue: billling}")
        assert broken != good
        routed.rules_file.write_text(broken)

        # the watcher notices the change and rejects it, with file:line:column and the reason
        await wait_until(lambda: acd.rules_status.last_error is not None, what="rejected")
        error = acd.rules_status.last_error or ""
        line = broken.splitlines().index("      - {queue: billling}") + 1
        assert f"{routed.rules_file}:{line}:" in error
        assert "unknown queue 'billling'" in error
        assert acd.rules_status.loaded_at == loaded_at
        r = await client.post("/admin/rules/reload", headers=admin)
        assert r.status_code == 200
        assert r.json()["ok"] is False
        assert "unknown queue 'billling'" in r.json()["last_error"]
        r = await client.get("/admin/rules", headers=admin)
        assert "unknown queue 'billling'" in r.json()["last_error"]

        # the rules in force still route key 1 to billing
        caller = _caller(routed.pbx, "+8613800000501", "1")
        call_id = await routed.call_from("+8613800000501")
        connected = await routed.events.wait(CallConnected, lambda e: e.call_id == call_id)
        assert (connected.queue, connected.agent_id) == ("billing", "1001")
        await service.telephony.hangup(call_id)
        result = await caller
        assert result.ok, result.describe()

        # a fixed file is taken again, and the error clears
        routed.rules_file.write_text(good)
        await wait_until(lambda: acd.rules_status.last_error is None, what="fixed file loaded")
        assert acd.rules_status.loaded_at != loaded_at
    finally:
        await client.aclose()
        await _stop(phones)


WATCHED_MENU = """\
# routing_menu, with the caller's audio watched in the menu (a noisy line goes to an agent)
name: watched_menu
description: routing_menu with the line watch on
start: main
nodes:
  main:
    type: menu
    prompt: menu_main
    options: {"1": billing_queue, "0": agent_queue}
    timeout: 8
    retries: 1
    invalid_prompt: menu_invalid
    on_fail: agent_queue
    on: {"audio:noisy": agent_queue}
  billing_queue: {type: route, queue: billing, skill: billing}
  agent_queue: {type: route, queue: general, skill: general}
"""


async def test_a_watched_caller_leaves_the_taps_bridge_for_the_agents_and_stays_watched(
    pbx: Pbx, database_url: str, tmp_path: Path
) -> None:
    """In the IVR the line watch's bridge holds the caller's own channel and the externalMedia
    channel (no snoop); the caller hears the menu and its key press is taken. Routed, the caller
    goes into the agent's bridge, and a snoop on it takes its place in the tap's bridge: the
    watch goes on hearing the caller, not the agent."""
    rules_file = tmp_path / "routing.yaml"
    shutil.copy(DATA / "routing_rules.yaml", rules_file)
    flows = _flows_dir(tmp_path)
    (flows / "watched_menu.yaml").write_text(WATCHED_MENU, encoding="utf-8")
    service = Service.build(service_settings(
        pbx, database_url, inbound_flow="watched_menu", flows_dir=flows, rules_file=rules_file,
    ))
    events = RoutingEvents()
    service.bus.subscribe("test.routing", events.on_routing_event, ROUTING_EVENTS)
    windows: list[tuple[str, str]] = []  # (call id, class) of every classified window
    feed = service.ivr.feed

    def watched(call_id: str, event: object) -> bool:
        kind = getattr(event, "kind", None)
        if type(event).__name__ == "AudioClassified" and isinstance(kind, str):
            windows.append((call_id, kind))
        return feed(call_id, event)  # type: ignore[arg-type]

    service.ivr.feed = watched  # type: ignore[method-assign]
    await service.start()
    phones: dict[str, AgentPhone] = {}
    try:
        phones = await _phones(pbx, a1001="answer")
        await service.acd.agent_login("1001")  # billing
        caller = asyncio.create_task(run_sipp(
            pbx, "caller_dtmf_hangup", service="4000", caller="+8613800000201",
            pcap=pbx.media("speech"), dtmf_pcap=pbx.media("dtmf-1"),
            variables={"dtmf_delay_ms": 3000, "talk_ms": 14000}, max_wait_s=40, timeout=50,
        ))
        call_id = await call_from(service, "+8613800000201")

        async def tap_bridge() -> tuple[str, ...]:
            found = [b.channels for b in await service.telephony.list_bridges()
                     if b.id.startswith(TAP_BRIDGE_PREFIX + call_id)]
            return found[0] if len(found) == 1 else ()

        # in the menu: the caller itself and the externalMedia channel, nothing else
        deadline = time.monotonic() + 5
        while len(in_ivr := await tap_bridge()) != 2:
            assert time.monotonic() < deadline, f"tap bridge: {in_ivr}"
            await asyncio.sleep(0.05)
        assert call_id in in_ivr
        (media,) = set(in_ivr) - {call_id}
        assert media.endswith("-media")

        connected = await events.wait(CallConnected, lambda e: e.call_id == call_id, timeout=20)
        assert connected.agent_id == "1001"  # the key press (1: billing) was heard in the bridge
        agents = await _bridge_with(service, call_id)
        assert not any(c.startswith(call_id) and c != call_id for c in agents), agents
        deadline = time.monotonic() + 5
        while True:
            with_agent = await tap_bridge()
            if len(with_agent) == 2 and call_id not in with_agent:
                break
            assert time.monotonic() < deadline, f"tap bridge with the agent on: {with_agent}"
            await asyncio.sleep(0.05)
        (snoop,) = set(with_agent) - {media}
        assert snoop.endswith("-snoop")
        # still watched with the agent on: windows keep coming (sipp plays speech)
        heard = len([w for w in windows if w[0] == call_id])
        await wait_until(lambda: len([w for w in windows if w[0] == call_id]) >= heard + 2,
                         timeout=5, what="windows with the agent on")
        result = await caller
        assert result.ok, result.describe()
        await wait_until(lambda: service.registry.get(call_id) is None, what="call closed")
        leftovers = [b.id for b in await service.telephony.list_bridges()
                     if b.id.startswith(TAP_BRIDGE_PREFIX + call_id)]
        assert leftovers == []
    finally:
        await _stop(phones)
        await service.stop()


async def _bridge_with(service: Service, channel_id: str) -> tuple[str, ...]:
    """The channels of the non-tap bridge holding `channel_id` (the agent's)."""
    deadline = time.monotonic() + 5
    seen: list[tuple[str, ...]] = []
    while time.monotonic() < deadline:
        seen = [b.channels for b in await service.telephony.list_bridges()
                if not b.id.startswith(TAP_BRIDGE_PREFIX)]
        for channels in seen:
            if channel_id in channels and len(channels) > 1:
                return channels
        await asyncio.sleep(0.05)
    raise AssertionError(f"{channel_id} is in no bridge with an agent: {seen}")
