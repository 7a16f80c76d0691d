"""HTTP: an agent starts a procedure on their live call, the hang-up goes through it, and a
supervisor reads the audit; another agent is refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from ivr_sim import SLOTS
from test_ivr_runner import audit, finish_prompt, make_runner, settle

from cti.domain.calls import Call, CallState
from cti.domain.ivr import events as e
from cti.domain.ivr.engine import CallContext
from cti.features.calls.registry import CallRegistry, CallSession
from cti.features.procedures.audit import ProcedureAudit
from cti.features.procedures.http import router as procedures_router
from cti.platform.provide import register
from tests.api.desk_app import desk_app

__all__ = ["audit"]  # the fixture


async def test_noisy_line_from_the_page_hangup_goes_through_the_goodbye(
    audit: ProcedureAudit, tmp_path: Path
) -> None:
    runner, tel, timers, _ = make_runner(audit)
    registry = CallRegistry()
    registry.add(CallSession(call=Call(
        id="c1", channel_id="c1", caller_number="+8613800000001", caller_name="",
        dialled_number="100", arrived_at=datetime(2026, 1, 5, 9, tzinfo=UTC),
        state=CallState.CONNECTED, agent_id="1001",
    )))
    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting"))
    await settle()
    await finish_prompt(runner, tel)
    runner.feed("c1", e.SpeechStarted())
    async with desk_app(tmp_path, procedures=runner, calls=registry) as env:
        env.app.include_router(procedures_router)
        register(env.app, runner, audit)
        agent = await env.login("agent1001", "agent-1001")
        other = await env.login("agent1002", "agent-1002")
        supervisor = await env.login("supervisor", "supervisor-pw")
        c = env.client

        r = await c.post("/calls/c1/procedures/noisy_line", headers=other)
        assert r.status_code == 403
        r = await c.post("/calls/c1/procedures/shout", headers=agent)
        assert r.status_code == 422
        r = await c.post("/calls/c1/procedures/noisy_line")
        assert r.status_code == 401
        r = await c.post("/calls/c1/procedures/noisy_line", headers=agent)
        assert r.status_code == 200, r.text
        await settle()
        r = await c.post("/calls/c1/hangup", headers=agent)
        assert r.json()["state"] == "procedure"  # the goodbye is playing: the line is not cut
        assert ("hangup", "c1") not in tel.calls
        await finish_prompt(runner, tel)
        timers.advance(5.0)
        await settle()
        await asyncio.wait_for(task, 1)
        assert tel.calls.count(("hangup", "c1")) == 1

        r = await c.get("/calls/c1/procedures", headers=agent)
        assert r.status_code == 403  # quality review is for supervisors
        r = await c.get("/calls/c1/procedures", headers=supervisor)
        run = r.json()["runs"][0]
        assert run["procedure"] == "noisy"
        assert run["started_by"] == "agent"
        assert run["agent_id"] == "1001"
        assert run["hung_up"] is True
