"""The agent's one-click transfers, end to end: real Asterisk, sipp callers, registered sipp
agent phones, the real service, and the agent's clicks as the desk sends them (the HTTP API,
logged in as the agent).

Callers go straight to queue `general`, which only agent 1001 ("A") serves; 1002 ("B") and
1003 ("C", queue `sales`) get a caller only by a transfer; agent 1004's phone plays the outside
party of a transfer to a number (tests/e2e/data/transfer_rules.yaml). Every claim about who
talks with whom is asked of Asterisk (its bridges and channels), not of the service's memory.
Run with an instance of your own:
  CTI_E2E_PBX=e2e-xfer .venv/bin/pytest tests/e2e/test_transfers_e2e.py
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cti.app import create_app
from cti.domain.agents.state import AgentState
from cti.domain.ivr.config import DetectionSettings
from cti.domain.routing.events import CallConnected, CallOffered
from cti.features.auth.service import NewUser, Role
from cti.features.routing.call_routing import ROUTING_EVENTS
from cti.platform.ari.events import (
    PlaybackFinished,
    PlaybackStarted,
    RecordingFinished,
    StasisStart,
)
from cti.platform.errors import CtiError
from cti.runtime import Service
from tests.e2e.conftest import DATA, EventLog, flows_dir, service_settings, wait_until
from tests.e2e.pbx import AgentPhone, Pbx, SippResult, run_sipp
from tests.e2e.test_routing_e2e import (
    Routed,
    RoutingEvents,
    _from_user,
    _phones,
    _stop,
)

# Transfers do not depend on the database backend (the call log on both is proven by
# tests/service/test_call_repository.py).
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

# The sandbox's stand-in for a trunk: the outside number is sent as the request-URI user to
# agent 1004's registered phone (production: "PJSIP/{number}@provider").
OUTSIDE_DIAL = "PJSIP/{number}@1004"
SPY_ROLE = "e2e-spy"
QUIET_RMS = 30.0  # below: silence (a lone caller in a bridge); the hold music is far above


@dataclass
class Desk(Routed):
    """The running service, its routing events, and the agents' HTTP client."""

    client: httpx.AsyncClient
    tokens: dict[str, dict[str, str]]
    ari: EventLog  # every ARI event the service received

    def hold_prompts(self, call_id: str) -> list[PlaybackStarted]:
        """The 请稍等 of the scripted hold, as played to the caller."""
        return [e for _, e in self.ari.events
                if isinstance(e, PlaybackStarted)
                and e.playback.target_uri == f"channel:{call_id}"
                and "please_hold" in e.playback.media_uri]

    async def login(self, agent: str) -> dict[str, str]:
        await self.service.desk.auth.users.create(
            NewUser(f"agent{agent}", f"agent-{agent}", Role.AGENT, agent)
        )
        r = await self.client.post(
            "/auth/login", json={"username": f"agent{agent}", "password": f"agent-{agent}"}
        )
        assert r.status_code == 200, r.text
        self.tokens[agent] = {"Authorization": f"Bearer {r.json()['token']}"}
        return self.tokens[agent]

    async def available(self, agent: str) -> None:
        """The agent's "available" button."""
        headers = self.tokens.get(agent) or await self.login(agent)
        r = await self.client.post("/agents/me/state", json={"state": "available"},
                                   headers=headers)
        assert r.status_code == 200, r.text
        await wait_until(
            lambda: self.service.acd.agent_status(agent).state is AgentState.AVAILABLE,
            what=f"agent {agent} available",
        )

    async def post(self, agent: str, path: str, body: Any = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.tokens[agent])

    async def bridges_with(self, channel_id: str) -> list[tuple[str, ...]]:
        """The channels of every ARI bridge that holds `channel_id` (asked of Asterisk)."""
        return [b.channels for b in await self.service.telephony.list_bridges()
                if channel_id in b.channels]

    async def bridge_id(self, channel_id: str) -> str:
        """The id of the one bridge holding `channel_id`."""
        (bridge,) = [b.id for b in await self.service.telephony.list_bridges()
                     if channel_id in b.channels]
        return bridge

    async def live_channels(self) -> set[str]:
        return {c.id for c in await self.service.telephony.list_channels()}

    async def bridged_pair(self, call_id: str, not_with: str = "") -> str:
        """The one other channel the caller is bridged with (waits until it is not
        `not_with`, the leg of an agent who has left)."""
        found: list[str] = []

        async def settled() -> bool:
            for channels in await self.bridges_with(call_id):
                others = set(channels) - {call_id}
                if len(channels) == 2 and not_with not in others:
                    found[:] = others
                    return True
            return False

        deadline = asyncio.get_running_loop().time() + 10
        while not await settled():
            assert asyncio.get_running_loop().time() < deadline, (
                f"caller {call_id} not bridged with one new party; "
                f"bridges: {await self.service.telephony.list_bridges()}"
            )
            await asyncio.sleep(0.05)
        return found[0]

    async def heard(self, channel_id: str, seconds: float = 1.5) -> float:
        """How loud (RMS of 16-bit samples) what Asterisk sent to `channel_id` was over
        `seconds`: a snoop on the channel's outgoing audio, recorded. (Packet counts prove
        nothing here: a caller alone in a bridge is sent silence.)"""
        tel = self.service.telephony
        spy = f"spy-{uuid.uuid4().hex[:12]}"
        await tel.snoop(channel_id, spy="out", app_args=SPY_ROLE, snoop_id=spy)
        await self.ari.wait_for(lambda e: isinstance(e, StasisStart) and e.channel.id == spy)
        name = f"e2e-xfer-{spy}"
        await tel.record(spy, name)
        await asyncio.sleep(seconds)
        await tel.stop_recording(name)
        await self.ari.wait_for(
            lambda e: isinstance(e, RecordingFinished) and e.recording.name == name
        )
        await tel.hangup(spy)
        with wave.open(io.BytesIO(await tel.recording_file(name))) as wav:
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        assert len(samples) > 8000 * seconds * 0.8, f"recorded only {len(samples)} samples"
        return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.fixture
async def desk(pbx: Pbx, database_url: str, tmp_path: Path) -> AsyncIterator[Desk]:
    rules_file = tmp_path / "transfer_rules.yaml"
    shutil.copy(DATA / "transfer_rules.yaml", rules_file)
    settings = service_settings(
        pbx, database_url, inbound_flow="routing_direct", flows_dir=flows_dir(tmp_path),
        rules_file=rules_file, transfer_dial=OUTSIDE_DIAL,
        # sipp's speech ends after a few seconds: no silent-call procedure in the way
        detection=DetectionSettings(auto_start=False),
    )
    service = Service.build(settings)
    events, ari = RoutingEvents(), EventLog()
    service.bus.subscribe("test.routing", events.on_routing_event, ROUTING_EVENTS)
    service.dispatcher.listen(ari.record)
    service.dispatcher.on_start(SPY_ROLE, _ignore)  # the test's snoops (Desk.heard)
    await service.start()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(service)), base_url="http://cti"
    )
    try:
        yield Desk(service, events, rules_file, pbx, client, {}, ari)
    finally:
        await client.aclose()
        # a failed test's caller must not live on into the next test's service (its resync
        # would adopt the call)
        for channel in _live_callers(service):
            with contextlib.suppress(CtiError):
                await service.telephony.hangup(channel)
        await service.stop()


async def _ignore(event: StasisStart) -> None:
    return None


def _live_callers(service: Service) -> list[str]:
    """The channels of the callers the service still has."""
    return [s.call.channel_id for s in service.registry.sessions() if not s.call.is_over]


def _call(pbx: Pbx, number: str) -> asyncio.Task[SippResult]:
    """A caller who talks, then waits for the far end's BYE."""
    return asyncio.create_task(run_sipp(
        pbx, "caller_wait_bye", service="4000", caller=number, pcap=pbx.media("speech"),
        max_wait_s=60, timeout=70,
    ))


def _answered(phone: AgentPhone) -> int:
    """How many INVITEs the phone answered (200 OK sent for an INVITE)."""
    return sum(
        1 for m in phone.messages()
        if m.direction == "sent" and m.method_or_status == "200"
        and "INVITE" in m.text.split("CSeq:", 1)[-1].split("\n", 1)[0]
    )


def _got_bye(phone: AgentPhone) -> bool:
    return any(m.direction == "received" and m.method_or_status == "BYE"
               for m in phone.messages())


async def _connected_to_a(desk: Desk, number: str) -> tuple[str, str, asyncio.Task[SippResult]]:
    """A caller from `number` reaches agent 1001: (call id, 1001's leg, the caller's task)."""
    caller = _call(desk.pbx, number)
    call_id = await desk.call_from(number)
    connected = await desk.events.wait(CallConnected, lambda e: e.call_id == call_id)
    assert (connected.agent_id, connected.queue) == ("1001", "general")
    a_leg = await desk.bridged_pair(call_id)
    assert (await desk.channel_name(a_leg)).startswith("PJSIP/1001-")
    return call_id, a_leg, caller


async def _end(desk: Desk, call_id: str, caller: asyncio.Task[SippResult]) -> None:
    await desk.service.telephony.hangup(call_id)
    result = await caller
    assert result.ok, result.describe()


async def test_blind_transfer_to_an_agent(desk: Desk) -> None:
    acd, number = desk.service.acd, "+8613800000601"
    phones = await _phones(desk.pbx, a1001="answer", a1002="answer")
    try:
        await desk.available("1001")
        call_id, a_leg, caller = await _connected_to_a(desk, number)
        await desk.available("1002")  # only now: B takes no caller from the queue
        a_bridge = await desk.bridge_id(call_id)

        r = await desk.post("1001", f"/calls/{call_id}/transfer",
                            {"target_type": "agent", "target": "1002"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "transferred"
        # A has left the call at once, in wrap-up; the caller hears 请稍等; B's phone rings
        assert acd.agent_status("1001").state is AgentState.WRAP_UP
        await wait_until(lambda: len(desk.hold_prompts(call_id)) == 1, what="请稍等")
        connected = await desk.events.wait(
            CallConnected, lambda e: e.call_id == call_id and e.agent_id == "1002"
        )
        assert connected.queue == "general"

        b_leg = await desk.bridged_pair(call_id, not_with=a_leg)
        assert (await desk.channel_name(b_leg)).startswith("PJSIP/1002-")
        assert a_leg not in await desk.live_channels()
        bridges = await desk.bridges_with(call_id)
        assert [sorted(c) for c in bridges] == [sorted((call_id, b_leg))]
        # a new id: Asterisk refuses a just-destroyed bridge's id for a moment (409)
        assert await desk.bridge_id(call_id) != a_bridge
        assert _got_bye(phones["1001"])
        assert _from_user(phones["1002"]) == [number]
        assert _answered(phones["1002"]) == 1
        assert acd.agent_status("1002").state is AgentState.ON_CALL
        assert acd.agent_status("1001").state is AgentState.WRAP_UP

        # the call log names B; A no longer controls the call, B does
        await desk.service.bus.drain()  # the call log follows the events it subscribes to
        row = await desk.service.calls_repo.get(call_id)
        assert row is not None
        assert row.agent_id == "1002", row
        r = await desk.client.get(f"/calls/{call_id}/desk", headers=desk.tokens["1001"])
        assert r.status_code == 403, r.text
        r = await desk.client.get(f"/calls/{call_id}/desk", headers=desk.tokens["1002"])
        assert r.status_code == 200, r.text
        assert r.json()["agent_id"] == "1002"

        await _end(desk, call_id, caller)
        await wait_until(lambda: _got_bye(phones["1002"]), what="B got BYE")
    finally:
        await _stop(phones)


async def test_blind_transfer_to_a_queue(desk: Desk) -> None:
    acd, number = desk.service.acd, "+8613800000602"
    phones = await _phones(desk.pbx, a1001="answer", a1003="answer")
    try:
        await desk.available("1001")
        await desk.available("1003")  # sales only: never offered a `general` caller
        call_id, a_leg, caller = await _connected_to_a(desk, number)
        assert not phones["1003"].invites()

        r = await desk.post("1001", f"/calls/{call_id}/transfer",
                            {"target_type": "queue", "target": "sales"})
        assert r.status_code == 200, r.text
        assert acd.agent_status("1001").state is AgentState.WRAP_UP
        connected = await desk.events.wait(
            CallConnected, lambda e: e.call_id == call_id and e.agent_id == "1003"
        )
        assert connected.queue == "sales"

        c_leg = await desk.bridged_pair(call_id, not_with=a_leg)
        assert (await desk.channel_name(c_leg)).startswith("PJSIP/1003-")
        assert a_leg not in await desk.live_channels()
        assert _from_user(phones["1003"]) == [number]
        assert _answered(phones["1003"]) == 1
        await desk.service.bus.drain()  # the call log follows the events
        row = await desk.service.calls_repo.get(call_id)
        assert row is not None
        assert (row.agent_id, row.queue) == ("1003", "sales"), row

        await _end(desk, call_id, caller)
    finally:
        await _stop(phones)


async def _consulting(
    desk: Desk, phones: dict[str, AgentPhone], number: str
) -> tuple[str, str, str, asyncio.Task[SippResult]]:
    """A is connected with a caller and consults B, who answers: (call id, A's leg, B's leg,
    the caller's task). Checks the consultation as Asterisk has it."""
    acd = desk.service.acd
    await desk.available("1001")
    call_id, a_leg, caller = await _connected_to_a(desk, number)
    await desk.available("1002")

    r = await desk.post("1001", f"/calls/{call_id}/transfer",
                        {"target_type": "agent", "target": "1002", "kind": "attended"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "consulting"
    await desk.events.wait(CallOffered, lambda e: e.call_id == call_id and e.agent_id == "1002")
    await wait_until(lambda: acd.consult_state(call_id) == "talking", what="B answered")

    # A and B talk in a bridge of their own; the caller is with neither, on hold: 请稍等,
    # then music (Asterisk keeps sending the caller audio)
    b_leg = await desk.bridged_pair(a_leg)
    assert (await desk.channel_name(b_leg)).startswith("PJSIP/1002-")
    assert not any(a_leg in chans or b_leg in chans for chans in await desk.bridges_with(call_id))
    await wait_until(lambda: len(desk.hold_prompts(call_id)) == 1, what="请稍等 to the caller")
    said = desk.hold_prompts(call_id)[0].playback.id
    await desk.ari.wait_for(lambda e: isinstance(e, PlaybackFinished) and e.playback.id == said)
    loudness = await desk.heard(call_id)
    assert loudness > QUIET_RMS, f"no music on hold after 请稍等 (RMS {loudness:.0f})"
    # still A's call until the transfer completes
    assert acd.core.agent_of_call(call_id) == "1001"
    assert acd.agent_status("1001").state is AgentState.ON_CALL
    assert not desk.events.of(CallConnected, lambda e: e.agent_id == "1002")
    assert _answered(phones["1002"]) == 1
    return call_id, a_leg, b_leg, caller


async def test_attended_transfer_completed(desk: Desk) -> None:
    acd, number = desk.service.acd, "+8613800000603"
    phones = await _phones(desk.pbx, a1001="answer", a1002="answer")
    try:
        call_id, a_leg, b_leg, caller = await _consulting(desk, phones, number)

        r = await desk.post("1001", f"/calls/{call_id}/transfer/complete")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "transferred"
        assert await desk.bridged_pair(call_id, not_with=a_leg) == b_leg
        await wait_until(lambda: _got_bye(phones["1001"]), what="A's leg hung up")
        assert a_leg not in await desk.live_channels()
        assert acd.agent_status("1001").state is AgentState.WRAP_UP
        assert acd.agent_status("1002").state is AgentState.ON_CALL
        assert acd.core.agent_of_call(call_id) == "1002"
        await desk.events.wait(CallConnected, lambda e: e.call_id == call_id
                               and e.agent_id == "1002")
        await wait_until(lambda: (s := desk.service.registry.get(call_id)) is not None
                         and s.call.agent_id == "1002", what="the call is B's")
        await desk.service.bus.drain()  # the call log follows the events it subscribes to
        row = await desk.service.calls_repo.get(call_id)
        assert row is not None
        assert row.agent_id == "1002", row

        await _end(desk, call_id, caller)
        await wait_until(lambda: _got_bye(phones["1002"]), what="B got BYE")
    finally:
        await _stop(phones)


async def test_attended_transfer_cancelled(desk: Desk) -> None:
    acd, number = desk.service.acd, "+8613800000604"
    phones = await _phones(desk.pbx, a1001="answer", a1002="answer", a1003="answer")
    try:
        await desk.available("1003")  # sales only: gets no `general` caller
        call_id, a_leg, b_leg, caller = await _consulting(desk, phones, number)

        r = await desk.post("1001", f"/calls/{call_id}/transfer/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "connected"
        assert await desk.bridged_pair(call_id) == a_leg
        await wait_until(lambda: _got_bye(phones["1002"]), what="B's leg hung up")
        assert b_leg not in await desk.live_channels()
        assert not _got_bye(phones["1001"])
        assert acd.core.agent_of_call(call_id) == "1001"
        assert acd.agent_status("1001").state is AgentState.ON_CALL
        assert acd.agent_status("1002").state is not AgentState.ON_CALL
        session = desk.service.registry.get(call_id)
        assert session is not None
        assert session.call.agent_id == "1001"
        await desk.service.bus.drain()  # the call log follows the events
        row = await desk.service.calls_repo.get(call_id)
        assert row is not None
        assert row.agent_id == "1001", row
        assert not desk.events.of(CallConnected, lambda e: e.agent_id == "1002")

        # A still controls the call: consults C now, and hands the call over
        r = await desk.post("1001", f"/calls/{call_id}/transfer",
                            {"target_type": "agent", "target": "1003", "kind": "attended"})
        assert r.status_code == 200, r.text
        await wait_until(lambda: acd.consult_state(call_id) == "talking", what="C answered")
        c_leg = await desk.bridged_pair(a_leg)
        assert (await desk.channel_name(c_leg)).startswith("PJSIP/1003-")
        r = await desk.post("1001", f"/calls/{call_id}/transfer/complete")
        assert r.status_code == 200, r.text
        assert await desk.bridged_pair(call_id, not_with=a_leg) == c_leg
        assert acd.core.agent_of_call(call_id) == "1003"
        await _end(desk, call_id, caller)
    finally:
        await _stop(phones)


async def test_blind_transfer_to_an_outside_number(desk: Desk) -> None:
    acd, number = desk.service.acd, "+8613800000605"
    phones = await _phones(desk.pbx, a1001="answer", a1004="answer")
    try:
        await desk.available("1001")
        call_id, a_leg, caller = await _connected_to_a(desk, number)

        # the agent types a national number; it is dialled in E.164
        r = await desk.post("1001", f"/calls/{call_id}/transfer",
                            {"target_type": "number", "target": "139 0000 0004"})
        assert r.status_code == 200, r.text
        assert r.json()["target"] == "+8613900000004"
        assert acd.agent_status("1001").state is AgentState.WRAP_UP

        outside = await desk.bridged_pair(call_id, not_with=a_leg)
        assert outside.startswith("xfer-")
        assert (await desk.channel_name(outside)).startswith("PJSIP/1004-")
        (invite,) = phones["1004"].invites()
        assert invite.first_line.startswith("INVITE sip:+8613900000004@"), invite.first_line
        assert _answered(phones["1004"]) == 1
        assert _from_user(phones["1004"]) == [number]  # the outside party sees the caller
        assert a_leg not in await desk.live_channels()
        assert _got_bye(phones["1001"])
        assert acd.core.agent_of_call(call_id) is None

        # the caller hangs up: the outside leg goes with them
        await _end(desk, call_id, caller)
        await wait_until(lambda: _got_bye(phones["1004"]), what="outside party got BYE")
        await wait_until(lambda: acd.agent_status("1001").state is AgentState.AVAILABLE,
                         what="A's wrap-up ends")
    finally:
        await _stop(phones)


async def test_refused_transfer_changes_nothing(desk: Desk) -> None:
    acd, number = desk.service.acd, "+8613800000606"
    phones = await _phones(desk.pbx, a1001="answer", a1002="answer")
    try:
        await desk.available("1001")
        await desk.login("1002")  # logged in to the desk, but not available in the ACD
        call_id, a_leg, caller = await _connected_to_a(desk, number)

        refusals = [
            ({"target_type": "agent", "target": "1002"}, 409),
            ({"target_type": "agent", "target": "1002", "kind": "attended"}, 409),
            ({"target_type": "agent", "target": "9999"}, 404),
            ({"target_type": "queue", "target": "nowhere"}, 404),
            ({"target_type": "number", "target": "12"}, 422),
        ]
        for body, status in refusals:
            r = await desk.post("1001", f"/calls/{call_id}/transfer", body)
            assert r.status_code == status, (body, r.status_code, r.text)

        # still A's call, as Asterisk and the service have it
        assert await desk.bridged_pair(call_id) == a_leg
        assert acd.core.agent_of_call(call_id) == "1001"
        assert acd.consult_state(call_id) is None
        assert acd.agent_status("1001").state is AgentState.ON_CALL
        session = desk.service.registry.get(call_id)
        assert session is not None
        assert (session.call.agent_id, session.call.state.value) == ("1001", "connected")
        assert not phones["1002"].invites()
        assert not _got_bye(phones["1001"])
        r = await desk.client.get(f"/calls/{call_id}/desk", headers=desk.tokens["1001"])
        assert r.status_code == 200, r.text
        assert r.json()["agent_id"] == "1001"

        # and a transfer after the refusals goes through
        await desk.available("1002")
        r = await desk.post("1001", f"/calls/{call_id}/transfer",
                            {"target_type": "agent", "target": "1002"})
        assert r.status_code == 200, r.text
        assert await desk.bridged_pair(call_id, not_with=a_leg)
        await _end(desk, call_id, caller)
    finally:
        await _stop(phones)
