"""HTTP: start a procedure on a live call, read its audit, the agent's hang-up request."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ivr_sim import SLOTS
from test_ivr_runner import audit, finish_prompt, make_runner, settle

from cti.api.procedures import router
from cti.domain.ivr import events as e
from cti.domain.ivr.engine import CallContext
from cti.errors import CtiError
from cti.services.procedure_audit import ProcedureAudit

__all__ = ["audit"]  # the fixture


async def test_start_procedure_audit_and_hangup_over_http(audit: ProcedureAudit) -> None:
    runner, tel, timers, _ = make_runner(audit)
    app = FastAPI()
    app.include_router(router)
    app.state.ivr_runner = runner
    app.state.procedure_audit = audit

    @app.exception_handler(CtiError)
    async def _error(_r: Request, exc: CtiError) -> JSONResponse:
        return JSONResponse({"error": exc.error_id, "detail": exc.message}, exc.http_status)

    task = asyncio.create_task(runner.run_call(CallContext("c1", "zh", SLOTS), "agent_greeting"))
    await settle()
    await finish_prompt(runner, tel)
    runner.feed("c1", e.SpeechStarted())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.post("/calls/c1/procedures/shout", json={"agent_id": "a1"})
        assert r.status_code == 404
        assert r.json()["error"] == "unknown_procedure"
        r = await client.post("/calls/zz/procedures/noisy_line", json={"agent_id": "a1"})
        assert r.status_code == 404
        r = await client.post("/calls/c1/procedures/noisy_line", json={"agent_id": "a1"})
        assert r.status_code == 202
        assert r.json()["procedure"] == "noisy"
        await settle()
        r = await client.post("/calls/c1/ivr/commands/hangup", json={"agent_id": "a1"})
        assert r.json()["result"] == "procedure"  # the goodbye is playing: not cut
        await finish_prompt(runner, tel)
        timers.advance(5.0)
        await settle()
        await asyncio.wait_for(task, 1)
        r = await client.get("/calls/c1/procedures")
        run = r.json()["runs"][0]
        assert run["procedure"] == "noisy"
        assert run["started_by"] == "agent"
        assert run["agent_id"] == "a1"
        assert run["hung_up"] is True
        assert [d["what"] for d in r.json()["departures"]] == ["agent_hangup_during_goodbye"]
