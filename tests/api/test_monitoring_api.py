"""Listen / whisper / barge over HTTP with a fake PBX: the routes drive the monitor (dial once,
snoop or bridge per mode, mode changes on the same leg, stop), publish the Monitor* events,
refuse agent-only roles (403), and answer the typed errors (409 not connected / already
monitored, 404 not monitored, 422 bad mode or endpoint). The audio itself is proven on the
sandbox (tests/e2e/test_monitoring_e2e.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cti.domain.monitoring import Mode
from cti.events import CallConnected, CallEnded, MonitorModeChanged, MonitorStarted, MonitorStopped
from cti.features.monitoring.http import router as monitoring_router
from cti.features.monitoring.service import Monitoring
from cti.features.routing.acd_calls import ConnectedLegs
from cti.platform.ari.events import parse_event
from cti.platform.bus import InProcessBus
from cti.platform.clock import FakeClock
from cti.platform.errors import TelephonyError
from cti.platform.ports import BridgeInfo, ChannelInfo
from cti.platform.provide import register
from tests.api.desk_app import desk_app


class FakePbx:
    """Records what monitoring asks; a snoop 'enters Stasis' at once, as ARI's does."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.monitoring: Monitoring | None = None
        self.refuse_dial = False
        self.in_app: set[str] = set()
        self.bridges: list[BridgeInfo] = []

    async def originate(self, endpoint: str, **kw: Any) -> ChannelInfo:
        if self.refuse_dial:
            raise TelephonyError("Allocation failed")
        self.log.append(("dial", endpoint, kw["channel_id"]))
        return ChannelInfo(kw["channel_id"], "", "", "", "", "", "")

    async def snoop(self, channel_id: str, **kw: Any) -> ChannelInfo:
        self.log.append(("snoop", channel_id, kw["spy"], kw["whisper"], kw["snoop_id"]))
        assert self.monitoring is not None
        await self.monitoring.on_stasis_start(start_event(kw["snoop_id"], kw["app_args"]))
        return ChannelInfo(kw["snoop_id"], "", "", "", "", "", "")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        self.log.append(("hangup", channel_id))

    async def create_bridge(self, bridge_id: str | None = None, kind: str = "mixing") -> str:
        self.log.append(("bridge", bridge_id, kind))
        return bridge_id or "b"

    async def add_to_bridge(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        self.log.append(("add", bridge_id, *channel_ids))

    async def remove_from_bridge(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        self.log.append(("remove", bridge_id, *channel_ids))

    async def destroy_bridge(self, bridge_id: str) -> None:
        self.log.append(("destroy", bridge_id))


    async def application_channel_ids(self) -> set[str]:
        return self.in_app

    async def list_bridges(self) -> list[BridgeInfo]:
        return self.bridges


class FakeAcd:
    def __init__(self) -> None:
        self.calls: dict[str, ConnectedLegs] = {}

    def connected(self, call_id: str) -> ConnectedLegs | None:
        return self.calls.get(call_id)


def start_event(channel_id: str, args: str) -> Any:
    return parse_event({"type": "StasisStart", "channel": {"id": channel_id},
                        "args": args.split(",")})


def destroyed(channel_id: str) -> Any:
    return parse_event({"type": "ChannelDestroyed", "channel": {"id": channel_id},
                        "cause": 16, "cause_txt": "Normal Clearing"})


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_supervisor_listens_whispers_barges_on_one_leg_and_agents_are_refused(
    tmp_path: Path,
) -> None:
    clock, bus, pbx, acd = FakeClock(), InProcessBus(), FakePbx(), FakeAcd()
    monitoring = Monitoring(pbx, acd, bus, clock)
    pbx.monitoring = monitoring
    seen: list[Any] = []

    async def note(event: Any) -> None:
        seen.append(event)

    bus.subscribe("test", note, (MonitorStarted, MonitorModeChanged, MonitorStopped))
    acd.calls["c1"] = ConnectedLegs("1001", "agent-ch", "acd-c1")
    async with desk_app(tmp_path) as env:
        env.app.include_router(monitoring_router)
        register(env.app, monitoring)
        boss = await env.login("supervisor", "supervisor-pw")
        agent = await env.login("agent1001", "agent-1001")
        client = env.client

        body = {"mode": "listen", "endpoint": "1003"}
        assert (await client.post("/calls/c1/monitor", json=body)).status_code == 401
        for method in ("POST", "PATCH", "DELETE", "GET"):  # agent-only roles can't
            r = await client.request(method, "/calls/c1/monitor", json=body, headers=agent)
            assert r.status_code == 403, (method, r.text)
        assert (await client.get("/monitors", headers=agent)).status_code == 403
        for bad in ({"mode": "spy", "endpoint": "1003"}, {"mode": "listen"},
                    {"mode": "listen", "endpoint": "Local/1003@ctx"},
                    {"mode": "listen", "endpoint": "1003", "extra": 1}):
            r = await client.post("/calls/c1/monitor", json=bad, headers=boss)
            assert r.status_code == 422, bad
        r = await client.post("/calls/c9/monitor", json=body, headers=boss)
        assert (r.status_code, r.json()["error"]) == (409, "call_not_connected")
        r = await client.patch("/calls/c1/monitor", json={"mode": "barge"}, headers=boss)
        assert (r.status_code, r.json()["error"]) == (404, "not_monitored")

        r = await client.post("/calls/c1/monitor", json=body, headers=boss)
        assert r.status_code == 202, r.text
        out = r.json()
        sid = out["monitor_id"]
        leg = f"mon-{sid}"
        assert out["state"] == "dialling"
        assert (out["mode"], out["endpoint"], out["agent_id"], out["supervisor"]) == (
            "listen", "PJSIP/1003", "1001", "supervisor")
        assert pbx.log == [("dial", "PJSIP/1003", leg)]
        r = await client.post("/calls/c1/monitor", json=body, headers=boss)
        assert (r.status_code, r.json()["error"]) == (409, "already_monitored")

        # the supervisor answers: a listening snoop (spy both, whisper none) in its bridge
        pbx.log.clear()
        await monitoring.on_stasis_start(start_event(leg, f"monitor,{sid}"))
        await settle()
        await bus.drain()
        assert pbx.log == [
            ("snoop", "agent-ch", "both", "none", f"{leg}-s1"), ("bridge", leg, "mixing"),
            ("add", leg, f"{leg}-s1"), ("add", leg, leg)]
        assert (await client.get("/calls/c1/monitor", headers=boss)).json()["state"] == "active"

        pbx.log.clear()
        r = await client.patch("/calls/c1/monitor", json={"mode": "whisper"}, headers=boss)
        assert r.json()["mode"] == "whisper"
        assert pbx.log == [("snoop", "agent-ch", "both", "out", f"{leg}-s2"),
                           ("add", leg, f"{leg}-s2"), ("hangup", f"{leg}-s1")]
        pbx.log.clear()
        r = await client.patch("/calls/c1/monitor", json={"mode": "barge"}, headers=boss)
        assert r.json()["mode"] == "barge"
        assert pbx.log == [("remove", leg, leg), ("add", "acd-c1", leg), ("hangup", f"{leg}-s2")]
        assert not any(entry[0] == "dial" for entry in pbx.log)

        # a transfer: the supervisor follows the call into its new bridge
        pbx.log.clear()
        acd.calls["c1"] = ConnectedLegs("1002", "agent2-ch", "acd-c1-x")
        bus.publish(CallConnected("c1", "1002", "general", 1.0, clock.now(), "acd-c1-x"))
        await bus.drain()
        assert pbx.log == [("add", "acd-c1-x", leg)]

        r = await client.get("/monitors", headers=boss)
        assert [m["call_id"] for m in r.json()] == ["c1"]
        pbx.log.clear()
        r = await client.delete("/calls/c1/monitor", headers=boss)
        assert r.json()["state"] == "ended"
        assert pbx.log == [("hangup", leg), ("destroy", leg)]
        await bus.drain()
        assert [type(e).__name__ for e in seen] == [
            "MonitorStarted", "MonitorModeChanged", "MonitorModeChanged", "MonitorStopped"]
        assert seen[-1].reason == "stopped"
        assert (await client.get("/calls/c1/monitor", headers=boss)).status_code == 404
    await bus.aclose()


async def test_the_monitor_ends_with_the_call_the_supervisor_or_a_failed_dial() -> None:
    clock, bus, pbx, acd = FakeClock(), InProcessBus(), FakePbx(), FakeAcd()
    monitoring = Monitoring(pbx, acd, bus, clock)
    pbx.monitoring = monitoring
    stopped: list[MonitorStopped] = []

    async def note(event: MonitorStopped) -> None:
        stopped.append(event)

    bus.subscribe("test", note, (MonitorStopped,))
    acd.calls["c1"] = ConnectedLegs("1001", "agent-ch", "acd-c1")
    acd.calls["c2"] = ConnectedLegs("1002", "agent2-ch", "acd-c2")

    # the caller hangs up: snoop dropped, supervisor hung up
    v = await monitoring.start("c1", Mode.WHISPER, "PJSIP/1003", "sup")
    await monitoring.on_stasis_start(start_event(f"mon-{v.monitor_id}", "monitor,x"))
    await settle()
    bus.publish(CallEnded("c1", clock.now(), 16, "Normal Clearing", "caller"))
    await bus.drain()
    assert stopped[-1].reason == "call_ended"
    assert ("hangup", f"mon-{v.monitor_id}") in pbx.log
    # the supervisor hangs up an active monitor
    v = await monitoring.start("c2", Mode.BARGE, "PJSIP/1003", "sup")
    await monitoring.on_stasis_start(start_event(f"mon-{v.monitor_id}", "monitor,x"))
    await settle()
    await monitoring.on_ari_event(destroyed(f"mon-{v.monitor_id}"))
    await settle()
    await bus.drain()
    assert stopped[-1].reason == "supervisor_hung_up"

    # the supervisor's phone never answers: no_answer; then a refused dial: failed, 502
    v = await monitoring.start("c2", Mode.LISTEN, "PJSIP/1003", "sup")
    await monitoring.on_ari_event(destroyed(f"mon-{v.monitor_id}"))
    await settle()
    await bus.drain()
    assert stopped[-1].reason == "no_answer"
    pbx.refuse_dial = True
    try:
        await monitoring.start("c2", Mode.LISTEN, "PJSIP/1003", "sup")
    except TelephonyError:
        pass
    else:
        raise AssertionError("a refused dial must raise")
    await bus.drain()
    assert stopped[-1].reason == "failed"
    assert monitoring.active() == []
    await bus.aclose()


async def test_after_a_reconnect_leftover_monitor_channels_and_bridges_go() -> None:
    """Legs, snoops and bridges with the monitor prefix this process does not hold (an earlier
    process's) are removed; a held monitor whose leg vanished meanwhile is ended."""
    clock, bus, pbx, acd = FakeClock(), InProcessBus(), FakePbx(), FakeAcd()
    monitoring = Monitoring(pbx, acd, bus, clock)
    pbx.monitoring = monitoring
    acd.calls["c1"] = ConnectedLegs("1001", "agent-ch", "acd-c1")
    v = await monitoring.start("c1", Mode.LISTEN, "PJSIP/1003", "sup")
    leg = f"mon-{v.monitor_id}"
    await monitoring.on_stasis_start(start_event(leg, "monitor,x"))
    await settle()
    pbx.in_app = {leg, f"{leg}-s1", "mon-old", "mon-old-s3", "caller-1", "acd-c1-leg"}
    pbx.bridges = [BridgeInfo(leg, "mixing", (leg,), ""), BridgeInfo("mon-old", "mixing", (), ""),
                   BridgeInfo("acd-c1", "mixing", (), "")]
    pbx.log.clear()
    await monitoring.on_connect()
    assert sorted(pbx.log) == [("destroy", "mon-old"), ("hangup", "mon-old"),
                               ("hangup", "mon-old-s3")]
    assert monitoring.get("c1").state.value == "active"
    pbx.in_app = set()  # the supervisor hung up while the socket was down
    await monitoring.on_connect()
    assert monitoring.active() == []
    await bus.aclose()
