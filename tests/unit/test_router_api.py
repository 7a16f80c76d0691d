"""The routing API over an ACD with a fake PBX: reload (good and bad), traces, skills, states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from routing_fixtures import BASIC
from test_router_acd_service import FakeTelephony

from cti.features.auth.http import current_user
from cti.features.auth.service import Principal, Role
from cti.features.routing import http as routing
from cti.features.routing.acd import Acd
from cti.platform.clock import FakeClock
from cti.platform.errors import CtiError
from cti.platform.provide import register


def app_for(acd: Acd, role: Role, agent_id: str | None = None) -> FastAPI:
    from fastapi.responses import JSONResponse

    app = FastAPI()
    register(app, acd)
    app.include_router(routing.router)

    @app.exception_handler(CtiError)
    async def _err(_r: object, exc: CtiError) -> JSONResponse:
        return JSONResponse({"error": exc.error_id, "detail": exc.message}, exc.http_status)

    async def who() -> Principal:
        return Principal(1, "u", role, agent_id, "U", "zh")

    app.dependency_overrides[current_user] = who
    return app


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")  # sync on purpose: a tiny test fixture file


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    p = tmp_path / "routing.yaml"
    write(p, BASIC.replace("{strategy}", "longest_idle"))
    return p


async def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_bad_rules_file_is_rejected_and_reported(rules_file: Path) -> None:
    acd = Acd.from_file(FakeTelephony(), rules_file, clock=FakeClock(), watch_s=0)
    async with await client(app_for(acd, Role.ADMIN)) as c:
        write(rules_file, "queues:\n  billing: {skils: {}}\n")
        r = await c.post("/admin/rules/reload")
        assert r.status_code == 200
        assert r.json()["ok"] is False
        assert f"{rules_file}:" in r.json()["last_error"]
        status = (await c.get("/admin/rules")).json()
        assert status["last_error"] == r.json()["last_error"]
        assert "5 agents" in status["summary"]


async def test_trace_skills_and_state_endpoints(rules_file: Path) -> None:
    acd = Acd.from_file(FakeTelephony(), rules_file, clock=FakeClock(), watch_s=0)
    async with await client(app_for(acd, Role.ADMIN)) as c:
        r = await c.post("/agents/a4/state", json={"state": "available"})
        assert r.json()["state"] == "available"
        await acd.enqueue("c1", "chan-c1", {"menu": "1"})
        trace = (await c.get("/calls/c1/routing")).json()
        assert trace["waiting"] is True
        assert trace["decisions"][0]["outcome"] == "queued"
        r = await c.put("/agents/a4/skills", json={"skills": {"billing": 4}})
        assert r.json()["skills"] == {"billing": 4}
        trace = (await c.get("/calls/c1/routing")).json()
        assert trace["agent_id"] == "a4"
        assert trace["decisions"][-1]["outcome"] == "offered"
        assert (await c.put("/agents/a4/skills", json={"skills": {"nope": 2}})).status_code == 422
        r = await c.post("/agents/a2/state", json={"state": "paused", "reason": "lunch"})
        assert (r.json()["state"], r.json()["reason"]) == ("paused", "lunch")
        assert (await c.get("/calls/zzz/routing")).status_code == 404
    await acd.aclose()


async def test_an_agent_may_not_change_another_agents_state(rules_file: Path) -> None:
    acd = Acd.from_file(FakeTelephony(), rules_file, clock=FakeClock(), watch_s=0)
    async with await client(app_for(acd, Role.AGENT, "a1")) as c:
        assert (await c.post("/agents/a2/state", json={"state": "available"})).status_code == 403
        assert (await c.post("/agents/a1/state", json={"state": "available"})).status_code == 200
        assert (await c.post("/admin/rules/reload")).status_code == 403


@pytest.mark.parametrize("body", [{"state": "paused"}, {"state": "paused", "reason": "  "},
                                  {"state": "paused", "reason": None}])
async def test_pausing_an_agent_by_id_needs_a_reason(
    rules_file: Path, body: dict[str, Any]
) -> None:
    acd = Acd.from_file(FakeTelephony(), rules_file, clock=FakeClock(), watch_s=0)
    async with await client(app_for(acd, Role.SUPERVISOR)) as c:
        assert (await c.post("/agents/a2/state", json={"state": "available"})).status_code == 200
        r = await c.post("/agents/a2/state", json=body)
        assert r.status_code == 422
        assert "a pause needs a reason" in r.text
        assert acd.agent_status("a2").state.value == "available"
    await acd.aclose()
