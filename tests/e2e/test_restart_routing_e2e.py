"""A service restart with callers in the ACD, end to end: the call an agent is talking on and
the caller waiting in the queue are both taken back by the new process. The agent is on that
call again (their hang-up ends the caller's side), and when their wrap-up ends the waiting
caller is offered to them, as if nothing had happened.

Run with an instance of your own: CTI_E2E_PBX=e2e-restart .venv/bin/pytest <this file>
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cti.domain.agents.state import AgentState
from cti.domain.calls import CallState
from cti.domain.routing.events import CallConnected
from cti.features.ivr.caller_audio import is_tap_channel
from cti.features.routing.call_routing import ROUTING_EVENTS
from cti.runtime import Service
from tests.e2e.conftest import DATA, service_settings, wait_until
from tests.e2e.pbx import Pbx
from tests.e2e.test_routing_e2e import RoutingEvents, _caller, _flows_dir, _phones, _stop

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


async def test_restart_keeps_the_talking_and_the_waiting_caller_with_the_acd(
    pbx: Pbx, database_url: str, tmp_path: Path
) -> None:
    rules_file = tmp_path / "routing.yaml"
    shutil.copy(DATA / "routing_rules.yaml", rules_file)  # billing: wrap-up 4 s
    settings = service_settings(
        pbx, database_url, inbound_flow="routing_menu", flows_dir=_flows_dir(tmp_path),
        rules_file=rules_file,
    )
    phones = await _phones(pbx, a1001="answer")
    first = Service.build(settings)
    await first.start()
    talking = waiting = None
    try:
        await first.acd.agent_login("1001")
        talking = _caller(pbx, "+8613800000601", "1")
        await wait_until(lambda: any(
            s.call.caller_number == "+8613800000601" and s.call.state is CallState.CONNECTED
            for s in first.registry.sessions()), timeout=15, what="first caller with 1001")
        waiting = _caller(pbx, "+8613800000602", "1")
        await wait_until(lambda: any(
            s.call.caller_number == "+8613800000602" and s.call.state is CallState.QUEUED
            for s in first.registry.sessions()), timeout=15, what="second caller queued")
        ids = {s.call.caller_number: s.call.id for s in first.registry.sessions()}
        talking_id, waiting_id = ids["+8613800000601"], ids["+8613800000602"]
        # the audio tap follows the agent: on the bridged caller, not on the one in the queue
        talking_session, waiting_session = (first.registry.get(talking_id),
                                            first.registry.get(waiting_id))
        assert talking_session is not None
        assert waiting_session is not None
        await wait_until(lambda: any(is_tap_channel(c) for c in talking_session.channels),
                         what="tap on the bridged caller")
        assert not any(is_tap_channel(c) for c in waiting_session.channels)
    finally:
        await first.stop()  # the process goes away; both calls stay up on the PBX

    second = Service.build(settings)
    # an empty bridge an earlier process left behind (it died between create and destroy)
    orphan = await second.telephony.create_bridge("acd-orphan-from-before", "mixing")
    events = RoutingEvents()
    second.bus.subscribe("test.routing", events.on_routing_event, ROUTING_EVENTS)
    await second.start()
    try:
        assert second.resync.last is not None
        assert second.resync.last.adopted == 2
        assert second.resync.last.orphan_bridges_destroyed == 1
        assert orphan not in {b.id for b in await second.telephony.list_bridges()}
        acd = second.acd
        # the agent is on the adopted call again, the other caller waits in billing
        assert acd.agent_status("1001").state is AgentState.ON_CALL
        assert acd.core.connected_calls() == {talking_id: "1001"}
        assert acd.core.router.queue_of(waiting_id) == "billing"
        # with what routing read off it before the restart (its log row kept them)
        kept = acd.core.router.attributes_of(waiting_id) or {}
        assert (kept.get("menu"), kept.get("language")) == ("1", "zh")
        assert len(phones["1001"].invites()) == 1  # nothing rang the busy agent again

        # the agent hangs up: the new process ends the caller's side and logs it
        agent_leg = acd.agent_channel_of(talking_id)
        assert agent_leg is not None
        await second.telephony.hangup(agent_leg)
        assert talking is not None
        result = await talking
        assert result.ok, result.describe()
        await wait_until(lambda: second.registry.get(talking_id) is None, what="first call over")
        row = await second.calls_repo.get(talking_id)
        assert row is not None
        assert row.state is CallState.ENDED

        # after the wrap-up the waiting caller is offered to the agent and connected
        assert acd.agent_status("1001").state is AgentState.WRAP_UP
        connected = await events.wait(CallConnected, lambda e: e.call_id == waiting_id,
                                      timeout=15)
        assert connected.agent_id == "1001"
        assert len(phones["1001"].invites()) == 2
        await second.telephony.hangup(waiting_id)
        assert waiting is not None
        result = await waiting
        assert result.ok, result.describe()
    finally:
        await second.stop()
        await _stop(phones)
        for task in (talking, waiting):
            if task is not None and not task.done():
                task.cancel()
