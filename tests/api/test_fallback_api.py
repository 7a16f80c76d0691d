"""Supervisors' view of what callers left at the fallback: GET /callbacks (the IVR's call-back
requests, stored by the audit; POST /callbacks/{id}/done marks one followed up) and
GET /voicemails (+ /{id}/audio from the PBX's recording), on both database backends; agents
and anonymous callers are refused."""

from __future__ import annotations

import io
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from cti.domain.ivr.commands import Audit, Record
from cti.domain.ivr.engine import CallContext, CallState
from cti.features.fallback.http import router as fallback_router
from cti.features.fallback.voicemail import Voicemails, wav_seconds
from cti.features.procedures.audit import AuditEntry, ProcedureAudit
from cti.platform.ari.events import parse_event
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.errors import ChannelGone
from cti.platform.provide import register
from tests.api.desk_app import desk_app

AT = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x00" * round(seconds * 8000))
    return out.getvalue()


class StoredRecordings:
    """The PBX's stored recordings (ARI GET /recordings/stored/{name}/file)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    async def recording_file(self, name: str) -> bytes:
        if name not in self.files:
            raise ChannelGone(f"ARI GET /recordings/stored/{name}/file: Recording not found")
        return self.files[name]


def started(store: Voicemails, call_id: str, number: str, name: str) -> None:
    ctx = CallContext(call_id, "zh", {"zh": {"queue": "general", "mailbox": "sales-box"}},
                      caller_number=number)
    state = CallState(ctx=ctx, flow="queue_voicemail", node="record", lang="zh")
    store.recording_started(state, call_id, Record(name, "sales-box", 120, 5, True, "#"))


def recording_event(kind: str, name: str, channel: str, **extra: object) -> object:
    return parse_event({"type": kind, "recording": {
        "name": name, "format": "wav", "target_uri": f"channel:{channel}", **extra}})


async def test_supervisors_list_callbacks_and_voicemails_and_play_them(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    audit = ProcedureAudit(sessions)
    pbx = StoredRecordings()
    clock = FakeClock(AT)
    store = Voicemails(sessions, pbx, clock, settle_s=0)  # type: ignore[arg-type]
    try:
        # Two call-back requests (the callback node's audit), one other audit ignored here.
        for call_id, number, queue, lang in (("c1", "+8613800000001", "general", "zh"),
                                             ("c2", "+8613800000002", "", "en")):
            audit.submit(AuditEntry(call_id, Audit("callback_requested", detail={
                "number": number, "lang": lang, "queue": queue}), AT, 0.0))
        audit.submit(AuditEntry("c1", Audit("routed", detail={"queue": "general"}), AT, 0.0))

        # A message whose end the PBX reports, one kept after the caller hung up (no
        # report: measured from the stored file), one that failed, one never stored.
        started(store, "c3", "+8613800000003", "vm-c3-1")
        started(store, "c4", "+8613800000004", "vm-c4-1")
        started(store, "c5", "+8613800000005", "vm-c5-1")
        started(store, "c6", "+8613800000006", "vm-c6-1")
        pbx.files["vm-c3-1"] = wav(6.0)
        pbx.files["vm-c4-1"] = wav(2.5)
        await store.on_ari_event(recording_event("RecordingFinished", "vm-c3-1", "c3",
                                                 duration=6))
        await store.on_ari_event(parse_event({"type": "ChannelDestroyed", "channel": {"id": "c4"},
                                              "cause": 16}))
        await store.on_ari_event(recording_event("RecordingFailed", "vm-c5-1", "c5",
                                                 cause="no space"))
        await store.on_ari_event(parse_event({"type": "StasisEnd", "channel": {"id": "c6"}}))
        await store.flush()
        assert wav_seconds(b"not a wav") is None

        async with desk_app(tmp_path) as env:
            env.app.include_router(fallback_router)
            register(env.app, audit, store)
            boss = await env.login("supervisor", "supervisor-pw")
            agent = await env.login("agent1001", "agent-1001")
            client = env.client

            for path in ("/callbacks", "/voicemails", "/voicemails/1/audio"):
                assert (await client.get(path)).status_code == 401
                assert (await client.get(path, headers=agent)).status_code == 403

            r = await client.get("/callbacks", headers=boss)
            assert r.status_code == 200, r.text
            by_call = {cb["call_id"]: cb for cb in r.json()}
            assert set(by_call) == {"c1", "c2"}
            assert by_call["c1"] | {"id": 0} == {
                "id": 0, "call_id": "c1", "caller_number": "+8613800000001", "lang": "zh",
                "queue": "general", "requested_at": AT.isoformat(), "done_at": None,
            }
            assert by_call["c2"]["queue"] is None
            assert len((await client.get("/callbacks?limit=1", headers=boss)).json()) == 1

            r = await client.get("/voicemails", headers=boss)
            assert r.status_code == 200, r.text
            vms = {vm["call_id"]: vm for vm in r.json()}
            assert set(vms) == {"c3", "c4"}
            assert vms["c3"]["duration_s"] == 6.0
            assert vms["c4"]["duration_s"] == 2.5
            assert vms["c3"] | {"id": 0} == {
                "id": 0, "call_id": "c3", "caller_number": "+8613800000003",
                "mailbox": "sales-box", "queue": "general", "lang": "zh",
                "recording": "vm-c3-1", "format": "wav", "duration_s": 6.0,
                "started_at": AT.isoformat(), "recorded_at": AT.isoformat(),
            }
            r = await client.get("/voicemails?mailbox=nobody", headers=boss)
            assert r.json() == []

            vm_id = vms["c3"]["id"]
            r = await client.get(f"/voicemails/{vm_id}", headers=boss)
            assert r.json()["recording"] == "vm-c3-1"
            r = await client.get(f"/voicemails/{vm_id}/audio", headers=boss)
            assert r.status_code == 200
            assert r.headers["content-type"] == "audio/wav"
            assert wav_seconds(r.content) == 6.0

            r = await client.get("/voicemails/424242/audio", headers=boss)
            assert r.status_code == 404
            assert r.json()["error"] == "unknown_voicemail"
            assert (await client.get("/voicemails/424242", headers=boss)).status_code == 404
            del pbx.files["vm-c3-1"]  # deleted at the PBX since
            r = await client.get(f"/voicemails/{vm_id}/audio", headers=boss)
            assert r.status_code == 404
    finally:
        await store.close()
        await audit.close()
        await engine.dispose()


async def test_a_reported_end_and_the_hangup_lookup_store_one_row(database_url: str) -> None:
    engine = make_engine(database_url)
    store = Voicemails(make_sessionmaker(engine), StoredRecordings(),  # type: ignore[arg-type]
                       FakeClock(AT), settle_s=0)
    try:
        started(store, "c7", "+8613800000007", "vm-c7-1")
        await store.on_ari_event(parse_event({"type": "StasisEnd", "channel": {"id": "c7"}}))
        await store.on_ari_event(recording_event("RecordingFinished", "vm-c7-1", "c7",
                                                 duration=3))
        await store.flush()
        assert [vm["duration_s"] for vm in await store.list()] == [3.0]
        store.recording_not_started("nothing")  # harmless
        assert SimpleNamespace(pending=store._pending).pending == {}
    finally:
        await store.close()
        await engine.dispose()


async def test_a_supervisor_marks_a_callback_done_once(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    clock = FakeClock(AT)
    audit = ProcedureAudit(make_sessionmaker(engine), clock)
    try:
        for call_id, number in (("c1", "+8613800000001"), ("c2", "+8613800000002")):
            audit.submit(AuditEntry(call_id, Audit("callback_requested", detail={
                "number": number, "lang": "zh", "queue": "general"}), AT, 0.0))

        async with desk_app(tmp_path) as env:
            env.app.include_router(fallback_router)
            register(env.app, audit)
            boss = await env.login("supervisor", "supervisor-pw")
            agent = await env.login("agent1001", "agent-1001")
            client = env.client

            ids = {cb["call_id"]: cb["id"] for cb in
                   (await client.get("/callbacks", headers=boss)).json()}
            path = f"/callbacks/{ids['c1']}/done"
            assert (await client.post(path)).status_code == 401
            assert (await client.post(path, headers=agent)).status_code == 403

            clock.advance(90)
            r = await client.post(path, headers=boss)
            assert r.status_code == 200, r.text
            done_at = (AT + timedelta(seconds=90)).isoformat()
            assert r.json()["call_id"] == "c1"
            assert r.json()["done_at"] == done_at

            clock.advance(60)  # marking it again keeps the first time
            r = await client.post(path, headers=boss)
            assert r.status_code == 200, r.text
            assert r.json()["done_at"] == done_at

            by_call = {cb["call_id"]: cb for cb in
                       (await client.get("/callbacks", headers=boss)).json()}
            assert by_call["c1"]["done_at"] == done_at
            assert by_call["c2"]["done_at"] is None

            r = await client.post("/callbacks/424242/done", headers=boss)
            assert r.status_code == 404
            assert r.json()["error"] == "unknown_callback"
    finally:
        await audit.close()
        await engine.dispose()
