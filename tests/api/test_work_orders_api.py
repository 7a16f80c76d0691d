"""Work orders over HTTP on the product's app: create during a call (the caller's record
linked), list, read with history, transitions, assignment with a desk notification, the
customer's open orders, config reload; and who may do what."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from cti.domain.crm import Customer
from cti.events import (
    CallEnded,
    CallOffered,
    CustomerIdentified,
    WorkOrderAssigned,
    WorkOrderEscalated,
)
from cti.features.desk.hub import Subscription
from cti.platform.settings import REPO_ROOT
from tests.api.full_app import FullApp, full_app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cti")


def messages(sub: Subscription) -> list[str]:
    out = []
    while sub.pending():
        out.append(sub._queue.get_nowait())  # type: ignore[attr-defined]
    return [m for m in out if m is not None]


async def caller(env: FullApp) -> Customer:
    return await env.service.desk.customers.add(Customer(
        id=None, numbers=("+8613800138000",), name="李娜", surname="李", title=None,
        tier="standard", company="", notes="",
    ))


async def test_agent_creates_during_a_call_and_works_the_order(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        customer = await caller(env)
        env.service.bus.publish(CustomerIdentified(
            "call-1", env.service.clock.now(), "+8613800138000", customer))
        await env.service.bus.drain()
        agent = env.bearer("agent1001")
        r = await c.post("/work-orders", headers=agent, json={
            "call_id": "call-1", "type": "service_request", "severity": "high",
            "description": "router keeps rebooting"})
        assert r.status_code == 201, r.text
        order = r.json()
        assert (order["customer_id"], order["call_id"], order["owner"], order["status"]) == (
            customer.id, "call-1", "agent:1001", "assigned")
        oid = order["id"]

        r = await c.get("/work-orders", headers=agent, params={"owner": "me", "status": "open"})
        assert [o["id"] for o in r.json()] == [oid]

        for to in ("in_progress", "waiting_customer", "in_progress"):
            r = await c.post(f"/work-orders/{oid}/transition", headers=agent, json={"to": to})
            assert r.status_code == 200, r.text
        r = await c.post(f"/work-orders/{oid}/transition", headers=agent, json={"to": "closed"})
        assert r.status_code == 409
        assert r.json()["error"] == "work_order_invalid"
        assert "from in_progress to closed" in r.json()["detail"]
        r = await c.post(f"/work-orders/{oid}/transition", headers=agent,
                         json={"to": "resolved", "result": "firmware updated"})
        assert r.json()["status"] == "resolved"
        assert r.json()["result"] == "firmware updated"

        r = await c.get(f"/crm/customers/{customer.id}/work-orders", headers=agent)
        assert r.json() == []  # resolved: no longer open
        r = await c.get(f"/work-orders/{oid}", headers=agent)
        history = r.json()["history"]
        assert [h["action"] for h in history] == [
            "created", "status", "status", "status", "status"]
        assert {h["actor"] for h in history} == {"agent1001"}
        assert history[-1]["changes"][0] == {
            "field": "status", "old": "in_progress", "new": "resolved"}


async def test_roles(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        a1, a2 = env.bearer("agent1001"), env.bearer("agent1002")
        sup = env.bearer("supervisor")
        r = await c.post("/work-orders", headers=a1,
                         json={"type": "service_request", "severity": "normal"})
        oid = r.json()["id"]
        # Another agent neither sees nor moves it, nor lists others' orders.
        assert (await c.get(f"/work-orders/{oid}", headers=a2)).status_code == 404
        r = await c.post(f"/work-orders/{oid}/transition", headers=a2, json={"to": "in_progress"})
        assert r.status_code == 404
        r = await c.get("/work-orders", headers=a2, params={"owner": "any"})
        assert r.status_code == 403
        # An agent cannot create an order for a colleague; a supervisor can.
        r = await c.post("/work-orders", headers=a1, json={
            "type": "service_request", "severity": "normal", "owner": "agent:1002"})
        assert r.status_code == 403
        # The supervisor reads all and assigns; the new owner is told on the desk.
        hub = env.service.desk.hub
        sub = hub.connect()
        hub.subscribe(sub, "agent:1002")
        messages(sub)
        r = await c.post(f"/work-orders/{oid}/assign", headers=sup,
                         json={"owner": "agent:1002", "note": "you know this customer"})
        assert r.status_code == 200
        assert r.json()["owner"] == "agent:1002"
        await env.service.bus.drain()
        pushed = messages(sub)
        assert len(pushed) == 1
        assert '"event":"assigned"' in pushed[0]
        # Now agent 1002 owns it; 1001 no longer updates it.
        r = await c.post(f"/work-orders/{oid}/transition", headers=a2, json={"to": "in_progress"})
        assert r.status_code == 200
        r = await c.post(f"/work-orders/{oid}/transition", headers=a1,
                         json={"to": "waiting_customer"})
        assert r.status_code == 403  # 1001 created it (reads it) but does not own it
        # The owner hands it over; an agent may not hand over an order that is not theirs.
        r = await c.post(f"/work-orders/{oid}/assign", headers=a1, json={"owner": "agent:1001"})
        assert r.status_code == 403
        r = await c.post(f"/work-orders/{oid}/assign", headers=a2,
                         json={"owner": "team:back_office"})
        assert r.status_code == 200
        r = await c.get("/work-orders", headers=sup,
                        params={"owner": "team:back_office", "status": "all"})
        assert [o["id"] for o in r.json()] == [oid]
        detail = (await c.get(f"/work-orders/{oid}", headers=sup)).json()
        assert [(h["actor"], h["action"]) for h in detail["history"]] == [
            ("agent1001", "created"), ("supervisor", "reassigned"), ("agent1002", "status"),
            ("agent1002", "reassigned")]


async def test_a_critical_complaint_escalates_to_the_duty_manager(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        seen: list[Any] = []

        async def record(event: Any) -> None:
            seen.append(event)

        env.service.bus.subscribe("test", record, (WorkOrderEscalated, WorkOrderAssigned))
        hub = env.service.desk.hub
        sub = hub.connect()
        hub.subscribe(sub, "supervisors")
        messages(sub)
        customer = await caller(env)
        r = await c.post("/work-orders", headers=env.bearer("agent1001"), json={
            "customer_id": customer.id, "type": "complaint", "severity": "critical",
            "description": "rude answer"})
        assert r.status_code == 201
        assert r.json()["escalated_to"] == ["duty_manager"]
        await env.service.bus.drain()
        assert [(e.rule, e.team) for e in seen] == [("critical_complaint", "duty_managers")]
        assert any('"event":"escalated"' in m for m in messages(sub))
        r = await c.get(f"/crm/customers/{customer.id}/work-orders",
                        headers=env.bearer("agent1002"))
        assert [o["type"] for o in r.json()] == ["complaint"]


async def test_bad_requests(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        h = env.bearer("agent1001")
        r = await c.post("/work-orders", headers=h, json={"type": "nope", "severity": "high"})
        assert r.status_code == 409
        assert "unknown type 'nope'" in r.json()["detail"]
        r = await c.post("/work-orders", headers=h,
                         json={"type": "service_request", "severity": "high", "customer_id": 99})
        assert r.status_code == 404
        r = await c.post("/work-orders", headers=h,
                         json={"type": "service_request", "severity": "high", "colour": 1})
        assert r.status_code == 422
        assert (await c.get("/work-orders/12345", headers=h)).status_code == 404
        assert (await c.get("/work-orders")).status_code == 401


async def test_config_reload_keeps_the_running_config_on_a_broken_file(tmp_path: Path) -> None:
    wo = tmp_path / "work_orders.yaml"
    shutil.copyfile(REPO_ROOT / "config" / "work_orders.yaml", wo)
    async with full_app(tmp_path, work_orders_file=wo) as env, client(env.app) as c:
        admin = env.bearer("admin")
        assert (await c.post("/work-orders/config/reload",
                             headers=env.bearer("supervisor"))).status_code == 403
        r = await c.post("/work-orders/config/reload", headers=admin)
        assert r.status_code == 200
        assert r.json()["ok"]
        wo.write_text("severities: [x]\nteams: [t]\ntypes: {}\n", encoding="utf-8")
        r = await c.post("/work-orders/config/reload", headers=admin)
        assert r.status_code == 422
        assert f"{wo}:3:1: types" in r.json()["detail"]
        r = await c.post("/work-orders", headers=admin,
                         json={"type": "service_request", "severity": "high"})
        assert r.status_code == 201  # the running config is kept


async def test_the_callers_open_orders_follow_the_screen_pop(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        customer = await caller(env)
        r = await c.post("/work-orders", headers=env.bearer("agent1002"), json={
            "customer_id": customer.id, "type": "service_request", "severity": "normal",
            "description": "new SIM card"})
        oid = r.json()["id"]
        bus, hub, now = env.service.bus, env.service.desk.hub, env.service.clock.now()
        bus.publish(CustomerIdentified("call-9", now, "+8613800138000", customer))
        bus.publish(CallOffered("call-9", "1001", "support", 3.0, {}, now))
        await bus.drain()
        shown = hub.state("agent:1001")["work_orders:call-9"]
        assert shown["customer_id"] == customer.id
        assert [(o["id"], o["status"]) for o in shown["orders"]] == [(oid, "assigned")]
        bus.publish(CallEnded("call-9", now, 16, "normal", "caller", "1001", "support"))
        await bus.drain()
        assert "work_orders:call-9" not in hub.state("agent:1001")


async def test_types_for_the_page_and_notes_on_the_history(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        agent = env.bearer("agent1001")
        r = await c.get("/work-orders/types", headers=agent)
        assert r.status_code == 200, r.text
        types = {t["name"]: t for t in r.json()["types"]}
        assert types["complaint"]["complaint"] is True
        assert types["complaint"]["severities"] == ["normal", "high", "critical"]
        assert r.json()["flow"]["in_progress"] == ["resolved", "waiting_customer"]
        r = await c.post("/work-orders", headers=agent, json={
            "type": "service_request", "severity": "low", "description": "x"})
        oid = r.json()["id"]
        r = await c.post(f"/work-orders/{oid}/notes", headers=agent,
                         json={"note": "  called, no answer  "})
        assert r.status_code == 200, r.text
        last = r.json()["history"][-1]
        assert (last["actor"], last["action"], last["note"], last["changes"]) == (
            "agent1001", "note", "called, no answer", [])
        r = await c.post(f"/work-orders/{oid}/notes", headers=agent, json={"note": ""})
        assert r.status_code == 422
        r = await c.post(f"/work-orders/{oid}/notes", headers=env.bearer("agent1002"),
                         json={"note": "not mine"})
        assert r.status_code == 404
