"""Call recording over fakes: segments per bridge (a transfer continues the recording),
pauses on the record, failures visible, retention deleting at the PBX, and the HTTP routes'
permissions and Range answers (206, 416), on both database backends."""

from __future__ import annotations

import io
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cti.domain.routing.events import CallConnected
from cti.events import (
    CallEnded,
    RecordingPaused,
    RecordingResumed,
    RecordingStarted,
    RecordingStopped,
)
from cti.features.recordings.http import router as recordings_router
from cti.features.recordings.service import CallRecordings
from cti.platform.ari.events import parse_event
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.errors import ChannelGone, TelephonyError
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


class FakePbx:
    """ARI's bridge recording, live-recording pause and stored recordings."""

    def __init__(self) -> None:
        self.live: dict[str, str] = {}  # name -> bridge
        self.files: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []
        self.refuse_record: str | None = None
        self.refuse_delete = False

    async def record_bridge(self, bridge_id: str, name: str, fmt: str = "wav") -> None:
        self.calls.append(("record", name))
        if bridge_id == self.refuse_record:
            raise TelephonyError("ARI POST bridges/x/record: Bridge not in Stasis")
        self.live[name] = bridge_id

    async def stop_recording(self, name: str) -> None:
        self.calls.append(("stop", name))
        if self.live.pop(name, None) is None:
            raise ChannelGone("Recording not found")
        self.files[name] = wav(2.0)

    async def pause_recording(self, name: str) -> None:
        self.calls.append(("pause", name))

    async def unpause_recording(self, name: str) -> None:
        self.calls.append(("unpause", name))

    async def recording_file(self, name: str) -> bytes:
        if name not in self.files:
            raise ChannelGone("Recording not found")
        return self.files[name]

    async def delete_stored_recording(self, name: str) -> None:
        self.calls.append(("delete", name))
        if self.refuse_delete:
            raise TelephonyError("ARI DELETE: boom")
        if self.files.pop(name, None) is None:
            raise ChannelGone("Recording not found")


class FakeBus:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, event: Any) -> int:
        self.events.append(event)
        return len(self.events)

    def subscribe(self, *_: Any, **__: Any) -> None:
        pass


RULES = SimpleNamespace(queues={"sales": SimpleNamespace(record=True),
                                "support": SimpleNamespace(record=False)})


def service(database_url: str, clock: FakeClock) -> tuple[CallRecordings, FakePbx, FakeBus, Any]:
    engine = make_engine(database_url)
    pbx, bus = FakePbx(), FakeBus()
    store = CallRecordings(make_sessionmaker(engine), pbx, clock, bus,  # type: ignore[arg-type]
                           lambda: RULES, retention_days=90, settle_s=0)  # type: ignore[arg-type,return-value]
    return store, pbx, bus, engine


def connected(call_id: str, agent: str, bridge: str, queue: str = "sales") -> CallConnected:
    return CallConnected(call_id, agent, queue, 3.0, AT, bridge)


def ended(call_id: str) -> CallEnded:
    return CallEnded(call_id, AT, 16, "Normal Clearing", "caller")


async def test_a_recorded_call_its_transfer_pause_and_end(database_url: str) -> None:
    clock = FakeClock(AT)
    store, pbx, bus, engine = service(database_url, clock)
    try:
        await store.on_event(connected("c1", "1001", "acd-c1"))
        await store.on_event(connected("c2", "1002", "acd-c2", queue="support"))  # not recorded
        clock.advance(5)
        await store.pause("c1", "1001")
        await store.pause("c1", "1001")  # once only
        clock.advance(3)
        await store.resume("c1", "1001")
        # a transfer: the call talks in a new bridge with another agent
        await store.on_event(connected("c1", "1002", "acd-c1-x1"))
        await store.on_event(ended("c1"))
        await store.on_event(ended("c2"))

        assert pbx.calls == [
            ("record", "call-c1-1"), ("pause", "call-c1-1"), ("unpause", "call-c1-1"),
            ("stop", "call-c1-1"), ("record", "call-c1-2"), ("stop", "call-c1-2"),
        ]
        rows = await store.of_call("c1")
        assert [(r["segment"], r["status"], r["agent_id"], r["duration_s"]) for r in rows] == [
            (1, "done", "1001", 2.0), (2, "done", "1002", 2.0)]
        assert rows[0]["pauses"] == [{
            "paused_at": (AT + timedelta(seconds=5)).isoformat(),
            "resumed_at": (AT + timedelta(seconds=8)).isoformat(), "by": "1001"}]
        assert await store.of_call("c2") == []
        kinds = [(type(e).__name__, getattr(e, "purpose", "")) for e in bus.events]
        assert kinds == [
            ("RecordingStarted", "call"), ("RecordingPaused", ""), ("RecordingResumed", ""),
            ("RecordingStopped", "call"), ("RecordingStarted", "call"),
            ("RecordingStopped", "call"),
        ]
        assert [e.segment for e in bus.events if isinstance(e, RecordingStarted)] == [1, 2]
        assert all(isinstance(e, RecordingPaused | RecordingResumed | RecordingStarted
                              | RecordingStopped) for e in bus.events)
    finally:
        await engine.dispose()


async def test_failures_are_on_the_record_and_published(database_url: str) -> None:
    clock = FakeClock(AT)
    store, pbx, bus, engine = service(database_url, clock)
    try:
        pbx.refuse_record = "acd-c3"
        await store.on_event(connected("c3", "1001", "acd-c3"))
        await store.on_event(connected("c4", "1001", "acd-c4"))
        await store.on_ari_event(parse_event({"type": "RecordingFailed", "recording": {
            "name": "call-c4-1", "format": "wav", "target_uri": "bridge:acd-c4",
            "cause": "disk full"}}))
        await store.on_event(ended("c3"))
        await store.on_event(ended("c4"))
        (r3,) = await store.of_call("c3")
        (r4,) = await store.of_call("c4")
        assert (r3["status"], r4["status"]) == ("failed", "failed")
        assert "Bridge not in Stasis" in (r3["reason"] or "")
        assert r4["reason"] == "PBX: disk full"
        failed = [e for e in bus.events if isinstance(e, RecordingStopped)]
        assert [(e.failed, e.reason is not None) for e in failed] == [(True, True), (True, True)]
    finally:
        await engine.dispose()


async def test_retention_deletes_the_pbx_file_and_marks_the_row(database_url: str) -> None:
    clock = FakeClock(AT)
    store, pbx, _bus, engine = service(database_url, clock)
    try:
        await store.on_event(connected("c5", "1001", "acd-c5"))
        await store.on_event(ended("c5"))
        clock.advance(89 * 86400)
        assert await store.sweep() == []
        clock.advance(2 * 86400)
        pbx.refuse_delete = True
        assert await store.sweep() == []  # kept for the next sweep
        pbx.refuse_delete = False
        (rid,) = [r["id"] for r in await store.of_call("c5")]
        assert await store.sweep() == [rid]
        assert "call-c5-1" not in pbx.files
        (row,) = await store.of_call("c5")
        assert row["status"] == "deleted"
        assert row["deleted_at"] is not None
        assert await store.sweep() == []
    finally:
        await engine.dispose()


async def test_the_periodic_sweep_runs_on_the_injected_scheduler(database_url: str) -> None:
    clock = FakeClock(AT)
    store, _pbx, _bus, engine = service(database_url, clock)
    waits: list[float] = []
    import asyncio

    gate = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 2:
            gate.set()
            await asyncio.Event().wait()

    store.sleep = sleep
    store.sweep_every_s = 60
    try:
        store.start()
        await asyncio.wait_for(gate.wait(), 5)
        assert waits == [60, 60]
    finally:
        await store.aclose()
        await engine.dispose()


async def test_routes_permissions_and_ranges(database_url: str, tmp_path: Path) -> None:
    clock = FakeClock(AT)
    store, pbx, _bus, engine = service(database_url, clock)
    try:
        await store.on_event(connected("c6", "1001", "acd-c6"))
        async with desk_app(tmp_path) as env:
            env.app.include_router(recordings_router)
            register(env.app, store)
            boss = await env.login("supervisor", "supervisor-pw")
            mine = await env.login("agent1001", "agent-1001")
            other = await env.login("agent1002", "agent-1002")
            client = env.client

            assert (await client.post("/calls/c6/recording/pause")).status_code == 401
            r = await client.post("/calls/c6/recording/pause", headers=other)
            assert r.status_code == 403
            r = await client.post("/calls/c6/recording/pause", headers=mine)
            assert r.status_code == 200, r.text
            assert r.json() == {"call_id": "c6", "recording": "paused"}
            r = await client.post("/calls/c6/recording/resume", headers=boss)
            assert r.json() == {"call_id": "c6", "recording": "recording"}
            r = await client.post("/calls/nope/recording/pause", headers=boss)
            assert (r.status_code, r.json()["error"]) == (404, "not_recording")

            await store.on_event(ended("c6"))
            pbx.files["call-c6-1"] = data = bytes(range(256)) * 4  # 1024 bytes
            r = await client.get("/calls/c6/recordings", headers=other)
            assert r.status_code == 403
            r = await client.get("/calls/c6/recordings", headers=mine)
            assert r.status_code == 200, r.text
            (rec,) = r.json()
            assert rec["pauses"][0]["by"] == "1001"
            audio = f"/recordings/{rec['id']}/audio"

            assert (await client.get(audio, headers=other)).status_code == 403
            r = await client.get(audio, headers=boss)
            assert r.status_code == 200
            assert r.content == data
            assert r.headers["accept-ranges"] == "bytes"
            r = await client.get(audio, headers={**mine, "Range": "bytes=100-199"})
            assert r.status_code == 206
            assert r.headers["content-range"] == "bytes 100-199/1024"
            assert r.content == data[100:200]
            r = await client.get(audio, headers={**boss, "Range": "bytes=-24"})
            assert (r.status_code, r.content) == (206, data[-24:])
            r = await client.get(audio, headers={**boss, "Range": "bytes=2000-"})
            assert r.status_code == 416
            assert r.headers["content-range"] == "bytes */1024"
            r = await client.get(audio, headers={**boss, "Range": "bytes=junk"})
            assert r.status_code == 416
            r = await client.get("/recordings/424242/audio", headers=boss)
            assert (r.status_code, r.json()["error"]) == (404, "unknown_recording")

            clock.advance(91 * 86400)
            await store.sweep()
            r = await client.get(audio, headers=boss)
            assert r.status_code == 404
    finally:
        await engine.dispose()


async def test_a_call_adopted_after_a_restart_closes_its_earlier_segment(
    database_url: str,
) -> None:
    clock = FakeClock(AT)
    first, pbx, _bus, engine = service(database_url, clock)
    try:
        await first.on_event(connected("c7", "1001", "acd-c7"))
        # a new process (nothing in memory) adopts the call in the same bridge
        second = CallRecordings(first.sessions, pbx, clock, FakeBus(),  # type: ignore[arg-type]
                                lambda: RULES, settle_s=0)  # type: ignore[arg-type,return-value]
        await second.on_event(connected("c7", "1001", "acd-c7"))
        await second.on_event(ended("c7"))
        rows = await second.of_call("c7")
        assert [(r["segment"], r["status"]) for r in rows] == [(1, "done"), (2, "done")]
        # an orphan of a call long over is stored by the sweep
        await first.on_event(connected("c8", "1001", "acd-c8"))
        third = CallRecordings(first.sessions, pbx, clock, FakeBus(),  # type: ignore[arg-type]
                               lambda: RULES, settle_s=0)  # type: ignore[arg-type,return-value]
        clock.advance(13 * 3600)
        await third.sweep()
        assert [r["status"] for r in await third.of_call("c8")] == ["done"]
    finally:
        await engine.dispose()
