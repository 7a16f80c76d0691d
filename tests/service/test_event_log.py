"""The event log keeps every published event in stream order on both databases, reads it back
per call, per agent and by time, rebuilds the typed events, and loses nothing while the
database is away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cti.events import (
    AgentStateChanged,
    CallArrived,
    CallConnected,
    CallEnded,
    CallQueued,
    Envelope,
    ProcedureStepped,
    event_record,
)
from cti.features.events.store import EventLog
from cti.platform.bus import InProcessBus
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async

T0 = datetime(2026, 12, 1, 9, 0, 0, 250000, tzinfo=UTC)


def _call(call_id: str, t: datetime) -> list[object]:
    return [
        CallArrived(call_id, t, call_id, "+8613800000001", "100"),
        CallQueued(call_id, "billing", 1, 1, t + timedelta(seconds=3)),
        CallConnected(call_id, "1001", "billing", 7.5, t + timedelta(seconds=10), "b1"),
        ProcedureStepped(call_id, t + timedelta(seconds=20), 123.4, "run1", "silent",
                         "wait_started", {"seconds": 5.0}),
        CallEnded(call_id, t + timedelta(seconds=60), 16, "Normal Clearing", "caller", "1001",
                  "billing"),
    ]


async def test_published_events_are_kept_in_order_and_read_back_typed(database_url: str) -> None:
    engine = make_engine(database_url)
    bus = InProcessBus()
    log = EventLog(make_sessionmaker(engine), bus)
    try:
        for e in [*_call("c1", T0), *_call("c2", T0 + timedelta(minutes=5))]:
            bus.publish(e)  # type: ignore[arg-type]
        bus.publish(AgentStateChanged("1001", "available", "paused", T0, reason="lunch"))
        await bus.drain()
        everything = await log.read()
        assert [e.seq for e in everything] == list(range(1, 12))
        one = await log.read(call_id="c1")
        assert [e.type for e in one] == [
            "CallArrived", "CallQueued", "CallConnected", "ProcedureStepped", "CallEnded"]
        assert one[0].at == T0  # microseconds kept
        assert one[2].agent_id == "1001"
        assert one[2].queue == "billing"
        assert one[2].event() == _call("c1", T0)[2]
        assert one[3].event() == _call("c1", T0)[3]
        late = await log.read(since=T0 + timedelta(minutes=5))
        assert {e.call_id for e in late} == {"c2"}
        early = await log.read(until=T0 + timedelta(minutes=5))
        assert {e.call_id for e in early} == {"c1", None}
        paused = await log.read(agent_id="1001", types=["AgentStateChanged"])
        assert paused[0].payload["reason"] == "lunch"
        assert await log.last_seq() == 11
        assert [e.seq for e in await log.read(after_seq=9)] == [10, 11]
    finally:
        await engine.dispose()


async def test_a_failed_write_keeps_its_events_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database is away (here: no such table yet): the batch is kept, not lost, and goes in
    with the next one once the database is back."""
    url = f"sqlite+aiosqlite:///{tmp_path}/late.db"
    engine = make_engine(url)
    log = EventLog(make_sessionmaker(engine))
    monkeypatch.setattr("cti.features.events.store.RETRY_S", 0.0)
    try:
        first = [Envelope(i + 1, e) for i, e in enumerate(_call("c1", T0))]  # type: ignore[arg-type]
        await log.append(first)
        assert log.failures == 1
        assert log.pending == 5
        await upgrade_async(url)
        await log.append([Envelope(6, CallArrived("c2", T0, "c2", "", "100"))])
        assert log.pending == 0
        assert [e.seq for e in await log.read()] == [1, 2, 3, 4, 5, 6]
    finally:
        await engine.dispose()


async def test_a_batch_with_a_number_already_taken_writes_the_others_and_goes_on(
    database_url: str,
) -> None:
    """Numbers already in the log (a commit whose reply was lost, or numbers that met another
    node's after a Redis restarted empty) must not block the log for good."""
    engine = make_engine(database_url)
    log = EventLog(make_sessionmaker(engine))
    try:
        await log.append([Envelope(1, CallArrived("c1", T0, "c1", "", "100"))])
        await log.append([Envelope(1, CallArrived("c2", T0, "c2", "", "100")),
                          Envelope(2, CallArrived("c3", T0, "c3", "", "100"))])
        assert log.pending == 0
        await log.append([Envelope(3, CallArrived("c4", T0, "c4", "", "100"))])
        assert [(e.seq, e.call_id) for e in await log.read()] == [
            (1, "c1"), (2, "c3"), (3, "c4")]
    finally:
        await engine.dispose()


def test_every_event_kind_has_a_version_and_a_flat_record() -> None:
    record = event_record(CallEnded("c1", T0, None, None, "service"))
    assert record.type == "CallEnded"
    assert record.version == 1
    assert record.payload == {"call_id": "c1", "cause": None, "cause_text": None,
                              "ended_by": "service", "agent_id": None, "queue": None}
