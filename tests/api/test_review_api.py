"""Quality review over HTTP, on both database backends: a call's time line from its kept events
and recording, scoring it with the shipped evaluation form (4xx with reasons for bad input),
averages per agent and team, and the recording's audio link that an <audio> element can play
and seek (scoped to one recording, ended by logout, no bearer token)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from cti.events import (
    CallArrived,
    CallConnected,
    CallEnded,
    CallEvaluated,
    CallTransferred,
    IvrNoted,
    MenuKeyPressed,
)
from cti.features.events.store import EventLog
from cti.features.recordings.http import router as recordings_router
from cti.features.review.forms import EvaluationForms
from cti.features.review.http import router as review_router
from cti.features.review.service import CallReviews
from cti.features.review.storage import EvaluationStore
from cti.features.routing.storage import RoutingLog
from cti.platform.bus import InProcessBus
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_sessionmaker
from cti.platform.provide import register
from cti.platform.settings import Settings
from tests.api.desk_app import desk_app
from tests.api.test_recordings_api import AT, connected, ended, service

TEAMS = {"1001": "north", "1002": "south"}
GOOD = {"standard_greeting": 1, "surname_used": "na", "understood_need": 5,
        "hold_phrase": "na", "procedures_followed": 1, "resolved": 1,
        "no_forbidden_phrase": 1, "no_direct_hangup": 1, "courtesy": 4}


async def test_review_evaluations_and_audio_links(database_url: str, tmp_path: Path) -> None:
    clock = FakeClock(AT)
    recordings, pbx, _bus, engine = service(database_url, clock)
    sessions = make_sessionmaker(engine)
    bus = InProcessBus()
    log = EventLog(sessions, bus)
    seen: list[Any] = []

    async def note(e: Any) -> None:
        seen.append(e)

    bus.subscribe("test", note, (CallEvaluated,))
    forms = EvaluationForms(Settings().evaluation_forms_dir)
    reviews = CallReviews(log, recordings, RoutingLog(sessions), forms,
                          EvaluationStore(sessions), clock, bus, TEAMS.get)
    bus.publish(CallArrived("c1", AT, "ch1", "+8613800000001", "4000"))
    bus.publish(MenuKeyPressed("c1", AT, "1"))
    bus.publish(CallConnected("c1", "1001", "sales", 2.0, AT, "acd-c1"))
    await recordings.on_event(connected("c1", "1001", "acd-c1"))
    clock.advance(10)
    bus.publish(IvrNoted("c1", clock.now(), 10.0, "departure", "r9", "noisy_line",
                         {"what": "agent_hangup_runs_procedure", "agent_id": "1001"}))
    clock.advance(5)
    await recordings.on_event(ended("c1"))
    bus.publish(CallEnded("c1", clock.now(), 16, "Normal Clearing", "agent", "1001", "sales"))
    # c2: transferred from 1001 to 1002
    bus.publish(CallConnected("c2", "1001", "sales", 1.0, AT, "b2"))
    bus.publish(CallTransferred("c2", AT, "1001", "blind", "agent", "1002"))
    bus.publish(CallConnected("c2", "1002", "sales", 1.0, AT, "b3"))
    try:
        async with desk_app(tmp_path) as env:
            env.app.include_router(review_router)
            env.app.include_router(recordings_router)
            register(env.app, reviews, forms, recordings)
            boss = await env.login("supervisor", "supervisor-pw")
            agent = await env.login("agent1001", "agent-1001")
            client = env.client

            # the time line: supervisors only
            assert (await client.get("/calls/c1/review")).status_code == 401
            assert (await client.get("/calls/c1/review", headers=agent)).status_code == 403
            r = await client.get("/calls/nope/review", headers=boss)
            assert (r.status_code, r.json()["error"]) == (404, "unknown_call")
            r = await client.get("/calls/c1/review", headers=boss)
            assert r.status_code == 200, r.text
            review = r.json()
            assert review["duration_s"] == 15.0
            assert review["agents"] == ["1001"]
            assert [e["kind"] for e in review["entries"]] == [
                "arrived", "menu_key", "connected", "agent_hangup_runs_procedure", "ended"]
            (rec,) = review["recordings"]
            assert rec["status"] == "done"
            departure = review["entries"][3]
            assert departure["media"] == {"recording_id": rec["id"], "at_s": 10.0,
                                          "paused": False}
            assert [(d["kind"], d["offset_s"]) for d in review["departures"]] == [
                ("direct_hangup_blocked", 10.0)]
            assert {(s["kind"], s["start_s"], s["end_s"]) for s in review["stretches"]} == {
                ("segment", 0.0, 15.0)}

            # the forms
            r = await client.get("/evaluation-forms", headers=boss)
            (form,) = r.json()
            assert (form["id"], form["version"]) == ("standard_call", 1)
            assert sum(len(s["questions"]) for s in form["sections"]) == 9

            # scoring: opening 1/1; handling (2*1 + 1 + 2*1) / 5 = 1; conduct (1 + 1 + 0.8) / 3
            r = await client.post("/calls/c1/evaluations", headers=boss,
                                  json={"form_id": "standard_call", "answers": GOOD,
                                        "comment": "good call"})
            assert r.status_code == 201, r.text
            first = r.json()
            expected = round(100 * (20 + 50 + 30 * 2.8 / 3) / 100, 2)
            assert first["score"] == expected
            assert first["sections"] == {"opening": 100.0, "handling": 100.0,
                                         "conduct": round(100 * 2.8 / 3, 2)}
            assert (first["agent_id"], first["team"], first["evaluator"]) == (
                "1001", "north", "supervisor")
            assert (first["form_id"], first["form_version"]) == ("standard_call", 1)
            r = await client.post("/calls/c1/evaluations", headers=boss, json={
                "form_id": "standard_call", "answers": {**GOOD, "no_direct_hangup": 0}})
            assert r.status_code == 201
            assert (r.json()["score"], r.json()["auto_failed"]) == (0.0, ["no_direct_hangup"])
            r = await client.post("/calls/c2/evaluations", headers=boss, json={
                "form_id": "standard_call", "answers": GOOD, "agent_id": "1002"})
            assert (r.status_code, r.json()["team"]) == (201, "south")

            # bad input: 4xx with the reason
            async def refused(call: str, body: dict[str, Any], status: int, error: str,
                              says: str) -> None:
                r = await client.post(f"/calls/{call}/evaluations", headers=boss, json=body)
                assert (r.status_code, r.json()["error"]) == (status, error), r.text
                assert says in r.text, r.text

            ok = {"form_id": "standard_call", "answers": GOOD}
            await refused("c1", {**ok, "form_id": "nope"}, 404, "unknown_form",
                          "known: standard_call")
            await refused("c1", {**ok, "answers": {**GOOD, "courtesy": 6}}, 422,
                          "evaluation_invalid", "courtesy: answer 6 is outside 0..5")
            await refused("c1", {**ok, "answers": {"courtesy": 3}}, 422, "evaluation_invalid",
                          "resolved: not answered")
            await refused("c1", {**ok, "answers": {**GOOD, "resolved": "na"}}, 422,
                          "evaluation_invalid", "not-applicable is not allowed")
            await refused("c2", ok, 422, "wrong_agent", "had agents 1001, 1002")
            await refused("c1", {**ok, "agent_id": "1002"}, 422, "wrong_agent",
                          "agent 1002 had no part in call c1")
            await refused("nope", ok, 404, "unknown_call", "nothing is kept of call")
            r = await client.post("/calls/c1/evaluations", headers=boss,
                                  json={**ok, "answers": {**GOOD, "resolved": True}})
            assert r.status_code == 422  # a yes/no is 0 or 1, not JSON true
            r = await client.post("/calls/c1/evaluations", headers=boss, json={**ok, "x": 1})
            assert r.status_code == 422
            r = await client.post("/calls/c1/evaluations", headers=agent, json=ok)
            assert r.status_code == 403

            # read back, with the averages
            r = await client.get("/evaluations", headers=boss)
            assert r.status_code == 200, r.text
            body = r.json()
            assert [e["score"] for e in body["evaluations"]] == [expected, 0.0, expected]
            assert body["agents"] == [
                {"key": "1001", "evaluations": 2, "average": round(expected / 2, 2),
                 "auto_failed": 1},
                {"key": "1002", "evaluations": 1, "average": expected, "auto_failed": 0}]
            assert [t["key"] for t in body["teams"]] == ["north", "south"]
            r = await client.get("/evaluations", headers=boss, params={"team": "south"})
            assert [e["call_id"] for e in r.json()["evaluations"]] == ["c2"]
            r = await client.get("/evaluations", headers=boss, params={"agent_id": "1001"})
            assert len(r.json()["evaluations"]) == 2
            r = await client.get("/evaluations", headers=boss,
                                 params={"since": clock.now().isoformat()})  # inclusive
            assert len(r.json()["evaluations"]) == 3
            later = (clock.now() + timedelta(seconds=1)).isoformat()
            r = await client.get("/evaluations", headers=boss, params={"since": later})
            assert r.json()["evaluations"] == []
            r = await client.get("/evaluations", headers=boss,
                                 params={"since": later, "until": later})
            assert r.status_code == 422
            assert "until must be after since" in r.text
            r = await client.get("/evaluations", headers=boss,
                                 params={"until": "9999-12-31T23:59:59-23:59"})
            assert (r.status_code, r.json()["detail"][0]["msg"]) == (422, "time out of range")
            await bus.drain()
            assert [(e.call_id, e.agent_id, e.auto_failed) for e in seen] == [
                ("c1", "1001", False), ("c1", "1001", True), ("c2", "1002", False)]
            assert [e.type for e in await log.read(types=["CallEvaluated"])] == [
                "CallEvaluated"] * 3

            # the audio link: an <audio> element plays it without a header, and seeks
            pbx.files["call-c1-1"] = data = bytes(range(256)) * 4
            link_path = f"/recordings/{rec['id']}/audio-link"
            assert (await client.post(link_path)).status_code == 401
            r = await client.post(link_path, headers=boss)
            assert r.status_code == 200, r.text
            url = r.json()["url"]
            key = url.split("key=", 1)[1]
            r = await client.get(url)
            assert (r.status_code, r.content) == (200, data)
            r = await client.get(url, headers={"Range": "bytes=512-"})
            assert (r.status_code, r.content) == (206, data[512:])
            # the key fits that recording only, and is no bearer token
            r = await client.get(f"/recordings/{rec['id'] + 1}/audio", params={"key": key})
            assert (r.status_code, r.json()["detail"]) == (401, "this key is for something else")
            r = await client.get("/auth/me", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 401
            r = await client.get(f"/recordings/{rec['id']}/audio", params={"key": "x.y.z"})
            assert r.status_code == 401
            # an agent of another call gets no link; logging out ends the key
            other = await env.login("agent1002", "agent-1002")
            assert (await client.post(link_path, headers=other)).status_code == 403
            assert (await client.post("/auth/logout", headers=boss)).status_code == 204
            r = await client.get(url)
            assert r.status_code == 401
    finally:
        await bus.aclose()
        await engine.dispose()
