"""Several Asterisks driven by one process: each operation reaches the PBX that holds its
subject (cti.platform.ari.pbx_set), the settings that name them, and the loss of one."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from cti.domain.agents.state import AgentState, AgentStatus
from cti.domain.calls import Call
from cti.features.calls.registry import CallRegistry, CallSession
from cti.features.calls.resync import ResyncReport
from cti.features.pbxs.status import PbxStatus
from cti.features.pbxs.watch import LOST_REASON, UNREACHABLE, PbxWatch
from cti.platform.ari.client import AriClient
from cti.platform.ari.events import parse_event
from cti.platform.ari.pbx_set import CURRENT_PBX, PbxSet
from cti.platform.ari.telephony import AriTelephony
from cti.platform.errors import ChannelGone, ConfigError, TelephonyError
from cti.platform.scheduler import ManualScheduler
from cti.platform.settings import AriSettings, load_settings


class FakeAriClient:
    """Records the REST calls one PBX receives; answers from `replies` (path -> body)."""

    def __init__(self, pbx: str, replies: Mapping[str, Any] | None = None) -> None:
        self.settings = SimpleNamespace(app="cti", id=pbx)
        self.calls: list[tuple[str, str]] = []
        self.replies = dict(replies or {})

    async def request(self, method: str, path: str, **_: Any) -> Any:
        self.calls.append((method, path))
        reply = self.replies.get(path)
        if isinstance(reply, Exception):
            raise reply
        if reply is None and method == "POST" and path in ("channels", "channels/externalMedia"):
            return {"id": f"made-{len(self.calls)}"}
        return reply

    async def request_bytes(self, method: str, path: str, **_: Any) -> bytes:
        self.calls.append((method, path))
        reply = self.replies.get(path)
        if isinstance(reply, Exception):
            raise reply
        return bytes(reply or b"")


def make_set(**replies: Mapping[str, Any]) -> tuple[PbxSet, dict[str, FakeAriClient]]:
    clients = {p: FakeAriClient(p, replies.get(p)) for p in ("pbxa", "pbxb")}
    members = {p: AriTelephony(c) for p, c in clients.items()}  # type: ignore[arg-type]
    return PbxSet(members), clients


def stasis_start(channel: str, pbx: str, *args: str) -> Any:
    return parse_event({"type": "StasisStart", "channel": {"id": channel},
                        "args": list(args), "pbx": pbx})


def paths(client: FakeAriClient) -> list[str]:
    return [f"{m} {p}" for m, p in client.calls]


async def test_channel_operations_go_to_the_pbx_whose_event_named_the_channel() -> None:
    pbxs, clients = make_set()
    pbxs.observe(stasis_start("x-1", "pbxb", "inbound"))
    await pbxs.answer("x-1")
    await pbxs.hangup("x-1")
    assert paths(clients["pbxb"]) == ["POST channels/x-1/answer", "DELETE channels/x-1"]
    assert clients["pbxa"].calls == []


async def test_an_unseen_channel_is_found_by_its_systemname_prefix() -> None:
    pbxs, clients = make_set()
    await pbxs.answer("pbxb-1796130948.4")  # a call adopted after a restart
    assert paths(clients["pbxb"]) == ["POST channels/pbxb-1796130948.4/answer"]
    assert pbxs.owns("pbxb", "pbxb-1796130948.4")
    assert not pbxs.owns("pbxa", "pbxb-1796130948.4")


async def test_agent_leg_is_dialled_from_the_callers_pbx_through_the_trunk() -> None:
    pbxs, clients = make_set(
        pbxa={"endpoints/PJSIP/1001": {"state": "online"}},
        pbxb={"endpoints/PJSIP/1001": {"state": "offline"}},
    )
    pbxs.observe(stasis_start("pbxb-1.1", "pbxb", "inbound"))
    leg = await pbxs.originate("PJSIP/1001", channel_id="acd-leg1",
                               variables={"CTI_CALL_ID": "pbxb-1.1"})
    originate = [c for c in clients["pbxb"].calls if c == ("POST", "channels")]
    assert originate, "the agent leg is originated on the caller's PBX"
    assert ("POST", "channels") not in clients["pbxa"].calls
    assert pbxs.pbx_of_channel(leg.id) == "pbxb"
    assert pbxs.pbx_of_channel("acd-leg1") == "pbxb"
    assert pbxs.endpoint_pbx["1001"] == "pbxa"


async def test_an_outbound_calls_legs_all_go_to_the_pbx_of_its_first_leg() -> None:
    pbxs, clients = make_set(
        pbxa={"endpoints/PJSIP/1001": {"state": "offline"}},
        pbxb={"endpoints/PJSIP/1001": {"state": "online"}},
    )
    # the agent's phone first (no caller channel yet), then the customer, one call id
    await pbxs.originate("PJSIP/1001", channel_id="out-agent",
                         variables={"CTI_CALL_ID": "out-call1"})
    token = CURRENT_PBX.set("pbxb")  # whatever the context, the call's PBX wins
    try:
        await pbxs.originate("PJSIP/+8613800000001@provider", channel_id="out-call1",
                             variables={"CTI_CALL_ID": "out-call1"})
    finally:
        CURRENT_PBX.reset(token)
    assert [c for c in clients["pbxa"].calls if c == ("POST", "channels")] == [
        ("POST", "channels"), ("POST", "channels")]
    assert pbxs.pbx_of_channel("out-agent") == pbxs.pbx_of_channel("out-call1") == "pbxa"


async def test_the_dialled_endpoint_names_the_trunk_when_the_agent_is_elsewhere() -> None:
    pbxs, _ = make_set(
        pbxa={"endpoints/PJSIP/1001": {"state": "online"}},
        pbxb={"endpoints/PJSIP/1001": {"state": "offline"},
              "endpoints/PJSIP/1002": {"state": "online"}},
    )
    assert await pbxs.route_endpoint("PJSIP/1001", "pbxb") == "PJSIP/1001@pbxa"
    assert await pbxs.route_endpoint("PJSIP/1002", "pbxb") == "PJSIP/1002"
    # not an agent's own endpoint: dialled as it is
    assert await pbxs.route_endpoint("PJSIP/+8613800000001@provider", "pbxb") == (
        "PJSIP/+8613800000001@provider"
    )


async def test_an_agent_registered_nowhere_is_not_dialled() -> None:
    pbxs, _ = make_set(
        pbxa={"endpoints/PJSIP/1001": {"state": "offline"}},
        pbxb={"endpoints/PJSIP/1001": ChannelGone("no such endpoint")},
    )
    with pytest.raises(TelephonyError, match="not registered on any reachable PBX"):
        await pbxs.originate("PJSIP/1001", variables={"CTI_CALL_ID": "pbxa-1.1"})


async def test_a_bridge_is_made_on_the_pbx_of_its_first_channels() -> None:
    pbxs, clients = make_set()
    pbxs.observe(stasis_start("pbxb-1.1", "pbxb", "inbound"))
    bridge = await pbxs.create_bridge("acd-call1")
    assert clients["pbxa"].calls == clients["pbxb"].calls == []  # not made yet
    await pbxs.add_to_bridge(bridge, ["pbxb-1.1", "acd-leg"])
    await pbxs.play_on_bridge(bridge, ["sound:beep"], playback_id="pb1")
    await pbxs.stop_playback("pb1")
    await pbxs.destroy_bridge(bridge)
    assert paths(clients["pbxb"]) == [
        "POST bridges/acd-call1", "POST bridges/acd-call1/addChannel",
        "POST bridges/acd-call1/play/pb1", "DELETE playbacks/pb1", "DELETE bridges/acd-call1",
    ]
    assert clients["pbxa"].calls == []


async def test_a_bridge_destroyed_before_use_is_never_made() -> None:
    pbxs, clients = make_set()
    await pbxs.destroy_bridge(await pbxs.create_bridge("b1"))
    assert clients["pbxa"].calls == clients["pbxb"].calls == []


async def test_what_a_call_task_creates_goes_to_the_pbx_of_the_event_it_handles() -> None:
    pbxs, clients = make_set()
    token = CURRENT_PBX.set("pbxb")
    try:
        await pbxs.external_media(external_host="127.0.0.1:4000", channel_id="tap-1")
    finally:
        CURRENT_PBX.reset(token)
    assert ("POST", "channels/externalMedia") in clients["pbxb"].calls
    assert pbxs.pbx_of_channel("tap-1") == "pbxb"


async def test_a_media_channel_is_made_beside_the_channel_it_will_join() -> None:
    # A call's audio tap started by a task that handles no PBX's event: the caller's PBX, not
    # the first; else the snoop (on the caller's PBX) and the media channel share no bridge.
    pbxs, clients = make_set()
    await pbxs.external_media(external_host="127.0.0.1:4000", channel_id="tap-3",
                              near="pbxb-1.1")
    assert ("POST", "channels/externalMedia") in clients["pbxb"].calls
    assert clients["pbxa"].calls == []
    assert pbxs.pbx_of_channel("tap-3") == "pbxb"


async def test_playbacks_and_recordings_follow_their_channel() -> None:
    pbxs, clients = make_set(pbxb={"recordings/stored/vm1/file": b"RIFF"})
    pbxs.observe(stasis_start("c1", "pbxb", "inbound"))
    pid = await pbxs.play("c1", ["sound:hello"])
    await pbxs.stop_playback(pid)
    await pbxs.record("c1", "vm1")
    assert await pbxs.recording_file("vm1") == b"RIFF"
    assert clients["pbxa"].calls == []


async def test_a_recording_of_an_earlier_process_is_looked_for_on_each_pbx() -> None:
    pbxs, clients = make_set(
        pbxa={"recordings/stored/old/file": ChannelGone("no")},
        pbxb={"recordings/stored/old/file": b"RIFF"},
    )
    assert await pbxs.recording_file("old") == b"RIFF"
    assert ("GET", "recordings/stored/old/file") in clients["pbxa"].calls


async def test_listings_cover_every_reachable_pbx() -> None:
    pbxs, _ = make_set(
        pbxa={"channels": [{"id": "pbxa-1.1"}], "applications/cti": {"channel_ids": ["pbxa-1.1"]}},
        pbxb={"channels": [{"id": "pbxb-1.1"}], "applications/cti": {"channel_ids": []}},
    )
    assert {c.id for c in await pbxs.list_channels()} == {"pbxa-1.1", "pbxb-1.1"}
    assert await pbxs.application_channel_ids() == {"pbxa-1.1"}
    pbxs.lost.add("pbxb")
    assert {c.id for c in await pbxs.list_channels()} == {"pbxa-1.1"}


# ----- settings ---------------------------------------------------------------------------


def test_one_asterisk_in_the_old_form_gets_the_default_id() -> None:
    settings = load_settings(ari={"url": "http://127.0.0.1:8088/ari"})
    assert [p.id for p in settings.pbxs()] == ["pbx1"]


def test_several_asterisks_each_with_its_id() -> None:
    settings = load_settings(asterisks=[
        {"id": "pbxa", "url": "http://127.0.0.1:8088/ari"},
        {"id": "pbxb", "url": "http://127.0.0.1:8090/ari", "lost_after_s": 2},
    ])
    assert [(p.id, p.lost_after_s) for p in settings.pbxs()] == [("pbxa", 5.0), ("pbxb", 2.0)]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"asterisks": [{"id": "a", "url": "http://x/ari"}, {"id": "a", "url": "http://y/ari"}]},
         "same id 'a'"),
        ({"asterisks": [{"id": "a", "url": "http://x/ari"}, {"id": "b", "url": "http://x/ari"}]},
         "same url"),
        ({"asterisks": [{"id": "a", "url": "http://x/ari"}], "ari": {"url": "http://y/ari"}},
         "either ari"),
        ({"asterisks": [{"id": "Pbx A", "url": "http://x/ari"}]}, "asterisks.0.id"),
    ],
)
def test_bad_asterisks_settings_say_why(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load_settings(**values)


def test_bad_asterisks_in_the_config_file_name_file_and_line(tmp_path: Any) -> None:
    path = tmp_path / "cti.yaml"
    path.write_text(
        "asterisks:\n"
        "  - {id: pbxa, url: 'http://127.0.0.1:8088/ari'}\n"
        "  - {id: pbxa, url: 'http://127.0.0.1:8090/ari'}\n"
    )
    # the line of `asterisks:`; the reason names the entries
    with pytest.raises(ConfigError, match=r"cti\.yaml:1:\d+: asterisks: .*0 and 1 .*'pbxa'"):
        load_settings(path)


def test_the_events_client_tag_says_which_pbx() -> None:
    event = stasis_start("pbxb-1.1", "pbxb", "inbound")
    assert event.pbx == "pbxb"
    unknown = parse_event({"type": "SomethingNew", "pbx": "pbxa"})
    assert unknown.pbx == "pbxa"


# ----- an Asterisk that goes away ---------------------------------------------------------


class FakeInbound:
    def __init__(self, registry: CallRegistry) -> None:
        self.registry = registry
        self.ended: list[tuple[str, str]] = []

    async def end_lost(self, session: CallSession, reason: str = "") -> None:
        self.ended.append((session.call.id, reason))
        self.registry.remove(session.call.id)


class FakeLegs:
    def __init__(self, legs: set[str]) -> None:
        self.legs = legs
        self.lost: list[str] = []

    def leg_channel_ids(self) -> set[str]:
        return set(self.legs)

    async def on_leg_lost(self, channel_id: str) -> None:
        self.lost.append(channel_id)
        self.legs.discard(channel_id)


class FakeAgents:
    def __init__(self, states: dict[str, AgentState]) -> None:
        self.status = {a: AgentStatus(a, s) for a, s in states.items()}

    def agent_status(self, agent_id: str) -> AgentStatus:
        return self.status[agent_id]

    async def agent_pause(self, agent_id: str, reason: str = "break") -> None:
        now = self.status[agent_id]
        if now.state is AgentState.ON_CALL:  # as the agent state machine: after the call
            self.status[agent_id] = replace(now, pending="pause", pending_reason=reason)
        else:
            self.status[agent_id] = AgentStatus(agent_id, AgentState.PAUSED, reason=reason)

    async def agent_available(self, agent_id: str) -> None:
        now = self.status[agent_id]
        if now.state is AgentState.ON_CALL:
            self.status[agent_id] = replace(now, pending=None, pending_reason=None)
        else:
            self.status[agent_id] = AgentStatus(agent_id, AgentState.AVAILABLE)


def call(channel: str) -> Call:
    return Call(id=channel, channel_id=channel, caller_number="1", caller_name="",
                dialled_number="4000", arrived_at=datetime(2026, 1, 1, tzinfo=UTC))


async def test_a_lost_pbx_ends_its_calls_pauses_its_agents_and_spares_the_others() -> None:
    pbxs, _ = make_set(
        pbxa={"endpoints/PJSIP/1001": {"state": "online"},
              "endpoints/PJSIP/1002": {"state": "offline"},
              "endpoints/PJSIP/1004": {"state": "offline"}},
    )
    registry = CallRegistry()
    for channel in ("pbxa-1.1", "pbxb-1.1"):
        registry.add(CallSession(call=call(channel)))
    pbxs.channels["acd-leg-b"] = "pbxb"
    pbxs.channels["acd-leg-a"] = "pbxa"
    inbound, legs = FakeInbound(registry), FakeLegs({"acd-leg-a", "acd-leg-b"})
    agents = FakeAgents({"001": AgentState.AVAILABLE, "002": AgentState.AVAILABLE,
                         "003": AgentState.LOGGED_OUT, "004": AgentState.ON_CALL})
    scheduler = ManualScheduler()
    watch = PbxWatch(
        pbxs, registry, inbound, legs, agents,  # type: ignore[arg-type]
        lambda: {"001": "PJSIP/1001", "002": "PJSIP/1002", "003": "PJSIP/1003",
                 "004": "PJSIP/1004"},
        scheduler, {"pbxa": 5.0, "pbxb": 5.0},
    )

    await watch.on_disconnected("pbxb")
    await scheduler.pass_time(4.9)
    assert inbound.ended == []  # a blink is not a loss
    await scheduler.pass_time(0.2)
    for _ in range(20):  # the loss runs in a task of its own
        await asyncio.sleep(0)

    assert inbound.ended == [("pbxb-1.1", LOST_REASON)]
    assert legs.lost == ["acd-leg-b"]
    assert registry.get("pbxa-1.1") is not None
    # 1001 is registered on pbxa (alive); 1002 nowhere now; 003 is logged out
    assert agents.status["001"].state is AgentState.AVAILABLE
    assert agents.status["002"] == AgentStatus("002", AgentState.PAUSED, reason=UNREACHABLE)
    assert agents.status["003"].state is AgentState.LOGGED_OUT
    # 004 is on a call (on pbxa, through the trunk): paused once it ends
    assert (agents.status["004"].pending, agents.status["004"].pending_reason) == (
        "pause", UNREACHABLE)
    assert "pbxb" in pbxs.lost

    await watch.on_connected("pbxb")
    assert "pbxb" not in pbxs.lost
    assert agents.status["002"].state is AgentState.AVAILABLE
    assert agents.status["004"].state is AgentState.ON_CALL
    assert agents.status["004"].pending is None
    await watch.aclose()


async def test_a_pbx_back_within_the_grace_loses_nothing() -> None:
    pbxs, _ = make_set()
    registry = CallRegistry()
    registry.add(CallSession(call=call("pbxb-1.1")))
    inbound = FakeInbound(registry)
    scheduler = ManualScheduler()
    watch = PbxWatch(pbxs, registry, inbound, FakeLegs(set()), FakeAgents({}),  # type: ignore[arg-type]
                     dict, scheduler, {"pbxa": 5.0, "pbxb": 5.0})
    await watch.on_disconnected("pbxb")
    await scheduler.pass_time(2)
    await watch.on_connected("pbxb")
    await scheduler.pass_time(10)
    assert inbound.ended == []
    assert not pbxs.lost
    await watch.aclose()


def test_an_asterisk_whose_systemname_is_not_its_id_is_refused_at_start() -> None:
    from cti.runtime import _check_systemname

    client = SimpleNamespace(settings=SimpleNamespace(url="http://127.0.0.1:8090/ari"))
    _check_systemname("pbxb", client, {"config": {"name": "pbxb"}})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"systemname '\(none\)': set `systemname = pbxb`"):
        _check_systemname("pbxb", client, {"config": {}})  # type: ignore[arg-type]


async def test_a_lost_pbx_fails_at_once_and_gets_nothing_new() -> None:
    pbxs, clients = make_set()
    pbxs.observe(stasis_start("c1", "pbxb", "inbound"))
    pbxs.lost.add("pbxb")
    with pytest.raises(TelephonyError, match="pbxb is lost"):
        await pbxs.answer("c1")
    # no call to follow: created on a live PBX
    await pbxs.external_media(external_host="127.0.0.1:4000", channel_id="tap-2")
    assert clients["pbxb"].calls == []
    assert pbxs.pbx_of_channel("tap-2") == "pbxa"


def test_health_gives_each_pbxs_own_last_resync() -> None:
    # A takeover adopts calls on every PBX: each one's resync says what it found.
    clients = {p: AriClient(AriSettings(id=p, url=f"http://{p}:8088/ari"))
               for p in ("pbxa", "pbxb")}
    found = ResyncReport(generation=1, kept=0, closed=0, adopted=2, orphan_bridges_destroyed=1)
    resyncs: Any = {"pbxa": SimpleNamespace(last=None), "pbxb": SimpleNamespace(last=found)}
    states = PbxStatus(clients, {"pbxa"}, resyncs).states()
    assert [(s.id, s.lost, s.last_resync) for s in states] == [
        ("pbxa", True, None), ("pbxb", False, found)]
    # one Asterisk, no resyncs given: none reported
    assert PbxStatus({"pbx1": clients["pbxa"]}).states()[0].last_resync is None
