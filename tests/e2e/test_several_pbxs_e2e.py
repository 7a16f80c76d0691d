"""Two Asterisks trunked together, one service driving both (docs/cluster.md, "Several
Asterisk servers"): a caller on one PBX is answered by an agent registered on the other,
through the ACD and the trunk, both ways; then one PBX dies (SIGKILL: no BYE, no StasisEnd):
its call ends in the record as "PBX lost", the call on the other goes on, and the agent whose
phone was on the dead one is paused as unreachable; when it is back, that agent is available
again and the other PBX's call is still up.

Run alone:  CTI_E2E_INSTANCE_SUFFIX=me .venv/bin/pytest tests/e2e/test_several_pbxs_e2e.py
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cti.domain.agents.state import AgentState
from cti.domain.routing.events import CallConnected
from cti.events import CallArrived
from cti.features.pbxs.watch import LOST_REASON, UNREACHABLE
from cti.features.routing.call_routing import ROUTING_EVENTS
from cti.platform.ari.pbx_set import PbxSet
from cti.platform.settings import load_settings
from cti.runtime import Service
from tests.e2e.conftest import call_from, flows_dir, wait_until
from tests.e2e.pbx import Pbx, free_port, pbx_pair, register_agent, run_sipp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

RULES = """\
version: 1
skills: [general]
default_queue: general
queues:
  general:
    skills: {general: 1}
    strategy: longest_idle
    ring_timeout_s: 8
    wrap_up_s: 1
    max_wait_s: 120
agents:
  "1001": {skills: {general: 5}}
  "1002": {skills: {general: 5}}
"""


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Pbx, Pbx]]:
    a, b = pbx_pair("e2e-pair")
    with a, b:
        yield a, b


def _caller(pbx: Pbx, number: str) -> asyncio.Task[object]:
    """A caller who talks until the far end hangs up (or the test stops it)."""
    return asyncio.create_task(run_sipp(
        pbx, "caller_wait_bye", service="4000", caller=number, pcap=pbx.media("speech"),
        max_wait_s=60, timeout=70,
    ))


async def test_callers_reach_agents_across_the_trunk_and_a_dead_pbx_is_cleared(
    pair: tuple[Pbx, Pbx], database_url: str, tmp_path: Path
) -> None:
    a, b = pair
    rules = tmp_path / "routing.yaml"
    rules.write_text(RULES)
    settings = {
        "database_url": database_url, "sounds_dir": a.sounds_dir, "rules_file": rules,
        "inbound_flow": "routing_direct", "flows_dir": flows_dir(tmp_path),
        "asterisks": [{**p.asterisk_setting(), "reconnect_initial": 0.1, "reconnect_max": 1.0,
                       "lost_after_s": 1.0} for p in (a, b)],
    }
    service = Service.build(load_settings(**settings))
    assert isinstance(service.telephony, PbxSet)
    arrived: list[CallArrived] = []
    connected: list[CallConnected] = []

    async def keep(event: object) -> None:
        if isinstance(event, CallArrived):
            arrived.append(event)
        elif isinstance(event, CallConnected):
            connected.append(event)

    service.bus.subscribe("test.arrived", keep, (CallArrived, *ROUTING_EVENTS))
    await service.start()
    callers: list[asyncio.Task[object]] = []
    phone_a = await register_agent(a, "1001", ring_ms=300)  # 1001's phone is on PBX a
    phone_b = await register_agent(b, "1002", ring_ms=300)  # 1002's on PBX b
    try:
        acd = service.acd
        await acd.agent_login("1001")
        # a caller on b, the only agent free is on a: dialled through b's trunk to a
        callers.append(_caller(b, "+8613800000701"))
        on_b = await call_from(service, "+8613800000701")
        await wait_until(lambda: any(c.call_id == on_b for c in connected), 15, "call on b")
        assert on_b.startswith("pbxb-")  # b's systemname starts its channel ids
        assert [e.pbx for e in arrived if e.call_id == on_b] == ["pbxb"]
        assert next(c for c in connected if c.call_id == on_b).agent_id == "1001"
        assert len(phone_a.invites()) == 1
        assert phone_b.invites() == []

        # and the other way: a caller on a, answered by 1002 whose phone is on b
        await acd.agent_login("1002")
        callers.append(_caller(a, "+8613800000702"))
        on_a = await call_from(service, "+8613800000702")
        await wait_until(lambda: any(c.call_id == on_a for c in connected), 15, "call on a")
        assert on_a.startswith("pbxa-")
        assert [e.pbx for e in arrived if e.call_id == on_a] == ["pbxa"]
        assert next(c for c in connected if c.call_id == on_a).agent_id == "1002"
        assert len(phone_b.invites()) == 1

        # b dies: its call ends in the record, a's call goes on, 1002 is unreachable
        b.crash()
        await wait_until(lambda: service.registry.get(on_b) is None, 10, "b's call closed")
        rows = {c.id: c for c in await service.calls_repo.recent(10)}
        assert rows[on_b].hangup_cause_text == LOST_REASON
        assert rows[on_b].ended_at is not None
        assert service.registry.get(on_a) is not None
        assert rows[on_a].ended_at is None
        await wait_until(lambda: acd.agent_status("1002").reason == UNREACHABLE
                         or acd.agent_status("1002").pending_reason == UNREACHABLE,
                         10, "1002 unreachable")
        assert acd.agent_status("1001").state is not AgentState.PAUSED
        assert [(s.id, s.lost) for s in service.pbx_status.states()] == [
            ("pbxa", False), ("pbxb", True)]

        # b is back: its resync runs (and leaves a's call alone); 1002, still on a's call, will
        # not be paused when it ends
        b.up()
        await wait_until(lambda: acd.agent_status("1002").pending is None, 15,
                         "1002's pause cancelled")
        assert acd.agent_status("1002").state is AgentState.ON_CALL
        # connected: once its resync is done
        await wait_until(lambda: all(s.connected for s in service.pbx_status.states()), 10,
                         "b resynced")
        assert [(s.id, s.lost) for s in service.pbx_status.states()] == [
            ("pbxa", False), ("pbxb", False)]
        assert service.pbx_resyncs["pbxb"].last is not None
        assert service.pbx_resyncs["pbxb"].last.generation == 2
        assert service.registry.get(on_a) is not None

        await service.telephony.hangup(on_a)
        await wait_until(lambda: service.registry.get(on_a) is None, 10, "a's call closed")
    finally:
        for task in callers:
            task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        await phone_a.stop()
        await phone_b.stop(unregister=b.is_running())
        await service.stop()
        shutil.rmtree(tmp_path / "flows", ignore_errors=True)


async def test_an_asterisk_down_at_start_is_lost_and_the_others_serve(
    pair: tuple[Pbx, Pbx], database_url: str, tmp_path: Path
) -> None:
    a, _ = pair
    rules = tmp_path / "routing.yaml"
    rules.write_text(RULES)
    nobody = f"http://127.0.0.1:{free_port('tcp')}/ari"  # nothing listens there
    service = Service.build(load_settings(
        database_url=database_url, sounds_dir=a.sounds_dir, rules_file=rules,
        inbound_flow="routing_direct", flows_dir=flows_dir(tmp_path),
        asterisks=[{**a.asterisk_setting(), "reconnect_max": 1.0},
                   {"id": "pbxc", "url": nobody, "request_timeout": 1.0}],
    ))
    await service.start()
    try:
        assert [(s.id, s.connected, s.lost) for s in service.pbx_status.states()] == [
            ("pbxa", True, False), ("pbxc", False, True)]
        # the lost one is left out of what asks every PBX (it would raise otherwise)
        assert isinstance(await service.telephony.list_channels(), list)
    finally:
        await service.stop()
