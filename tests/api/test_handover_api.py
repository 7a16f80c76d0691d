"""The shift handover log over HTTP on the product's app: write an entry with items linked to
work orders, the next shift acknowledges (not the writer), open entries, the reminders of
unacknowledged items (event and desk notification), bad input."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI

from cti.events import HandoverReminded
from tests.api.full_app import full_app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cti")


async def test_a_shift_hands_over_and_the_next_acknowledges(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        day, night = env.bearer("agent1001"), env.bearer("agent1002")
        lead = env.bearer("supervisor")
        r = await c.post("/work-orders", headers=day, json={
            "type": "complaint", "severity": "high", "description": "billed twice"})
        oid = r.json()["id"]
        r = await c.post("/handovers", headers=day, json={
            "shift": "2026-12-01 day", "next_shift": "2026-12-01 night",
            "note": "busy afternoon",
            "items": [{"text": "call the customer back about the refund", "work_order_id": oid},
                      {"text": "printer on floor 2 is broken"}]})
        assert r.status_code == 201, r.text
        entry = r.json()
        assert (entry["written_by"], entry["open_items"], len(entry["items"])) == (
            "agent1001", 2, 2)
        assert entry["items"][0]["work_order_id"] == oid
        eid, first, second = entry["id"], entry["items"][0]["id"], entry["items"][1]["id"]

        r = await c.get("/handovers", headers=lead, params={"open": "true"})
        assert [e["id"] for e in r.json()] == [eid]
        r = await c.post(f"/handovers/{eid}/acknowledge", headers=day, json={})
        assert r.status_code == 409
        assert r.json()["error"] == "handover_invalid"
        assert "not its writer" in r.json()["detail"]

        r = await c.post(f"/handovers/{eid}/acknowledge", headers=night,
                         json={"item_ids": [first], "note": "calling at 20:00"})
        assert r.status_code == 200, r.text
        items = {i["id"]: i for i in r.json()["items"]}
        assert (items[first]["acknowledged_by"], items[first]["ack_note"]) == (
            "agent1002", "calling at 20:00")
        assert items[second]["acknowledged_by"] is None
        assert r.json()["open_items"] == 1
        r = await c.post(f"/handovers/{eid}/acknowledge", headers=lead,
                         json={"item_ids": [first]})
        assert r.status_code == 409  # once
        r = await c.post(f"/handovers/{eid}/acknowledge", headers=lead, json={})
        assert r.json()["open_items"] == 0
        r = await c.get("/handovers", headers=night, params={"open": "true"})
        assert r.json() == []
        r = await c.get("/handovers", headers=night)
        assert [e["id"] for e in r.json()] == [eid]
        r = await c.post(f"/handovers/{eid}/acknowledge", headers=lead, json={})
        assert r.status_code == 409  # nothing left


async def test_unacknowledged_items_are_reminded_on_the_desk(tmp_path: Path) -> None:
    async with full_app(tmp_path, handover={"remind_after_min": 30,
                                            "remind_every_min": 15}) as env, \
            client(env.app) as c:
        seen: list[HandoverReminded] = []

        async def record(e: HandoverReminded) -> None:
            seen.append(e)

        bus, hub = env.service.bus, env.service.desk.hub
        bus.subscribe("test.reminded", record, (HandoverReminded,))
        r = await c.post("/handovers", headers=env.bearer("agent1001"), json={
            "shift": "day", "next_shift": "night", "items": [{"text": "queue 2 backlog"}]})
        eid, iid = r.json()["id"], r.json()["items"][0]["id"]
        await bus.drain()
        assert hub.state("supervisors")[f"handover:{eid}"]["entry"]["items"][0]["text"] == (
            "queue 2 backlog")
        handovers = env.service.handovers
        now = env.service.clock.now()
        assert await handovers.run_reminders(now + timedelta(minutes=29)) == 0
        assert await handovers.run_reminders(now + timedelta(minutes=31)) == 1
        assert await handovers.run_reminders(now + timedelta(minutes=32)) == 0
        assert await handovers.run_reminders(now + timedelta(minutes=47)) == 1
        await bus.drain()
        assert [(e.entry_id, e.item_id, e.reminders, e.next_shift) for e in seen] == [
            (eid, iid, 1, "night"), (eid, iid, 2, "night")]
        r = await c.get(f"/handovers/{eid}", headers=env.bearer("supervisor"))
        assert r.json()["items"][0]["reminders"] == 2
        r = await c.post(f"/handovers/{eid}/acknowledge", headers=env.bearer("agent1002"),
                         json={})
        assert r.status_code == 200
        await bus.drain()
        assert f"handover:{eid}" not in hub.state("supervisors")  # picked up: off the desk
        assert await handovers.run_reminders(now + timedelta(days=1)) == 0


async def test_bad_entries_are_refused_with_the_reason(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        agent = env.bearer("agent1001")
        r = await c.post("/handovers", headers=agent, json={
            "shift": "day", "next_shift": "night", "items": [{"text": "x",
                                                              "work_order_id": 999}]})
        assert r.status_code == 404
        assert "no work order 999" in r.json()["detail"]
        r = await c.post("/handovers", headers=agent, json={"shift": "day", "next_shift": "day",
                                                           "note": "x"})
        assert r.status_code == 409
        assert "not to itself" in r.json()["detail"]
        r = await c.post("/handovers", headers=agent, json={"shift": "day",
                                                           "next_shift": "night"})
        assert r.status_code == 409
        assert "a note or at least one item" in r.json()["detail"]
        r = await c.post("/handovers", headers=agent, json={"shift": "day", "next_shift": "n",
                                                           "note": "x", "extra": 1})
        assert r.status_code == 422
        r = await c.post("/handovers/5/acknowledge", headers=agent, json={})
        assert r.status_code == 404
        r = await c.get("/handovers")
        assert r.status_code == 401
