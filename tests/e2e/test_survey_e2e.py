"""The after-call survey end to end on the sandbox: a sipp caller reaches a queue with
`survey: true`, a registered sipp agent phone answers, a work order is made during the call;
the agent's phone hangs up first (sipp sends BYE); the caller, still on the line, hears the
survey and sends DTMF 5, 1, 3 (RFC 4733); the answers are stored linked to the call, the agent,
the queue and the work order, and `SurveyAnswered` is published. The caller is hung up after
the thanks.

Run with an instance of your own:
  CTI_E2E_INSTANCE_SUFFIX=w11b .venv/bin/pytest tests/e2e/test_survey_e2e.py -q
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cti.events import SurveyAnswered
from cti.features.auth.service import Principal, Role
from cti.runtime import Service
from tests.e2e import media
from tests.e2e.conftest import DATA, call_from, flows_dir, service_settings, wait_until
from tests.e2e.pbx import Pbx, register_agent, run_sipp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

QUIET_FLOW = ("name: agent_quiet\nstart: talk\nnodes:\n"
              "  talk: {type: wait, seconds: 3600, next: talk}\n")
CALLER = "+8613800000888"
AGENT = Principal(4, "agent1004", Role.AGENT, "1004", "Agent", "zh")


async def test_the_caller_answers_the_survey_by_keypad_after_the_agent_hangs_up(
    pbx: Pbx, database_url: str, tmp_path: Path
) -> None:
    rules_file = tmp_path / "routing.yaml"
    rules = (DATA / "routing_rules.yaml").read_text(encoding="utf-8")
    rules = rules.replace("  general:\n    skills: {general: 1}\n",
                          "  general:\n    skills: {general: 1}\n    survey: true\n")
    assert "survey: true" in rules
    rules_file.write_text(rules, encoding="utf-8")
    flows = flows_dir(tmp_path, repo=("agent_greeting", "queue_survey"))
    (flows / "agent_quiet.yaml").write_text(QUIET_FLOW, encoding="utf-8")
    dtmf = tmp_path / "survey-keys.pcap"
    # speed 5 (fast), resolved 1 (yes), attitude 3 (medium), one every 4 s
    media.write_dtmf_pcap(dtmf, "513", gap_ms=4000)
    settings = service_settings(pbx, database_url, inbound_flow="routing_direct",
                                flows_dir=flows, rules_file=rules_file, agent_flow="agent_quiet")
    service = Service.build(settings)
    answered: list[SurveyAnswered] = []

    async def note(event: Any) -> None:
        answered.append(event)

    service.bus.subscribe("test.survey", note, (SurveyAnswered,))
    await service.start()
    # the agent's phone sends BYE 6 s after answering
    phone = await register_agent(pbx, "1004", mode="answer_bye", ring_ms=300, talk_ms=6000)
    caller = None
    try:
        await service.acd.agent_login("1004")
        caller = asyncio.create_task(run_sipp(
            pbx, "caller_dtmf_wait_bye", service="4000", caller=CALLER,
            pcap=pbx.media("silence"), dtmf_pcap=dtmf, variables={"dtmf_delay_ms": 9000},
            max_wait_s=60, timeout=70))
        call_id = await call_from(service, CALLER)
        await wait_until(lambda: _agent_channel(service, call_id) is not None, 15,
                         "the agent to answer")
        order = await service.work_orders.create(AGENT, type_name="service_request",
                                                 severity="normal", call_id=call_id)
        await wait_until(lambda: bool(answered), 45, "the survey to be stored")
        result = await caller
        caller = None
        assert result.ok, result.describe()  # the caller got the BYE after the thanks
        assert any(m.direction == "sent" and m.method_or_status == "BYE"
                   for m in phone.messages()), "the agent's phone hung up"

        (event,) = answered
        assert (event.call_id, event.agent_id, event.queue, event.work_order_id) == (
            call_id, "1004", "general", order.id)
        assert (event.speed, event.resolved, event.attitude, event.complete) == (
            5, True, 3, True)
        (row,) = await service.surveys.store.of_call(call_id)
        assert row.channel == "ivr"
        assert (row.answers.speed, row.answers.resolved, row.answers.attitude) == (5, True, 3)
        assert row.work_order_id == order.id
    finally:
        if caller is not None:
            caller.cancel()
            await asyncio.gather(caller, return_exceptions=True)
        await phone.stop()
        await service.stop()


def _agent_channel(service: Service, call_id: str) -> str | None:
    call = service.acd.calls.by_id.get(call_id)
    if call is None or call.leg is None or not call.leg.answered:
        return None
    return call.leg.channel_id
