"""Each live call's IVR checkpoint and its queue entry time, kept on both database backends:
the latest checkpoint per call wins, an ended call's is gone, a failed write is kept for the
next round, and the call log keeps when the caller first entered the ACD."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from cti.domain.calls import Call, CallState, move
from cti.domain.ivr.checkpoint import Checkpoint, PromptAt, TimerAt
from cti.features.calls.storage import CallRepository
from cti.features.ivr.checkpoints import CheckpointStore, CheckpointWriter
from cti.platform.db.base import make_engine, make_sessionmaker

T0 = datetime(2026, 3, 1, 8, 30, 15, 123000, tzinfo=UTC)


def checkpoint(call_id: str, node: str, at: datetime, deadline: float | None = None) -> Checkpoint:
    state = {"flow": "agent_greeting", "node": node, "phase": "active"}
    timer = TimerAt(4, at + timedelta(seconds=deadline)) if deadline is not None else None
    return Checkpoint(call_id, at, state, timer,
                      PromptAt(f"{call_id}-p3", at, 2.25) if deadline is None else None)


async def test_the_latest_checkpoint_of_each_call_is_kept_and_an_ended_calls_goes(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    store = CheckpointStore(make_sessionmaker(engine))
    writer = CheckpointWriter(store, interval_s=0.01)
    try:
        for i in range(5):  # five steps of one call before the writer runs: one row, the last
            writer.keep(checkpoint("1.1", f"wait_{i}", T0 + timedelta(seconds=i), 5.0))
        writer.keep(checkpoint("1.2", "first", T0))
        await writer.flush()
        assert writer.coalesced == 4
        assert (writer.writes, writer.rows) == (1, 2)
        kept = await store.load("1.1")
        assert kept is not None
        assert kept.state["node"] == "wait_4"
        assert kept.timer == TimerAt(4, T0 + timedelta(seconds=9))
        other = await store.load("1.2")
        assert other is not None
        assert other.prompt == PromptAt("1.2-p3", T0, 2.25)

        writer.keep(checkpoint("1.1", "second", T0 + timedelta(seconds=10)))  # an update
        writer.drop("1.2")
        await writer.flush()
        again = await store.load("1.1")
        assert again is not None
        assert again.state["node"] == "second"
        assert await store.load("1.2") is None
        assert await store.load("nobody") is None
    finally:
        await writer.close()
        await engine.dispose()


async def test_the_writer_runs_by_itself_and_close_writes_what_is_pending(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    store = CheckpointStore(make_sessionmaker(engine))
    writer = CheckpointWriter(store, interval_s=0.01)
    try:
        writer.keep(checkpoint("2.1", "wait_1", T0, 5.0))
        for _ in range(200):  # the background task's first round
            if writer.writes:
                break
            await asyncio.sleep(0.01)
        assert writer.writes >= 1
        writer.keep(checkpoint("2.1", "wait_2", T0, 5.0))
        await writer.close()
        kept = await store.load("2.1")
        assert kept is not None
        assert kept.state["node"] == "wait_2"
    finally:
        await engine.dispose()


async def test_a_refused_write_is_kept_for_the_next_round_unless_something_newer_came(
    database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = make_engine(database_url)
    store = CheckpointStore(make_sessionmaker(engine))
    writer = CheckpointWriter(store, interval_s=0.01)
    real = store.write
    calls = 0

    async def refused_once(keep: list[Checkpoint], drop: list[str]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            writer.keep(checkpoint("3.2", "newer", T0))  # came while the write was under way
            raise OperationalError("INSERT", {}, Exception("database restarting"))
        await real(keep, drop)

    monkeypatch.setattr(store, "write", refused_once)
    try:
        writer.keep(checkpoint("3.1", "wait_1", T0, 5.0))
        writer.keep(checkpoint("3.2", "older", T0))
        assert await writer.flush() is False
        assert await writer.flush() is True
        one, two = await store.load("3.1"), await store.load("3.2")
        assert one is not None
        assert one.state["node"] == "wait_1"
        assert two is not None
        assert two.state["node"] == "newer"
    finally:
        await writer.close()
        await engine.dispose()


async def test_the_call_log_keeps_when_the_caller_first_entered_the_queue(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    repo = CallRepository(make_sessionmaker(engine))
    try:
        call = Call(id="4.1", channel_id="4.1", caller_number="+8613800000004",
                    caller_name="", dialled_number="100", arrived_at=T0)
        await repo.save(call)
        stored = await repo.get("4.1")
        assert stored is not None
        assert stored.queued_at is None
        queued = replace(move(move(call, CallState.ANSWERED), CallState.QUEUED),
                         queued_at=T0 + timedelta(seconds=7.5))
        await repo.save(queued)
        (open_call,) = await repo.open_calls()
        assert open_call.queued_at == T0 + timedelta(seconds=7.5)
    finally:
        await engine.dispose()


async def test_the_sweep_removes_old_checkpoints_of_calls_no_longer_open(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    store, repo = CheckpointStore(sessions), CallRepository(sessions)
    try:
        live = Call(id="5.1", channel_id="5.1", caller_number="", caller_name="",
                    dialled_number="", arrived_at=T0)
        await repo.save(live)
        await repo.save(replace(live, id="5.2", channel_id="5.2", state=CallState.ENDED))
        await store.write([
            checkpoint("5.1", "wait_1", T0, 5.0),  # its call is open: kept
            checkpoint("5.2", "wait_1", T0, 5.0),  # its call ended: removed
            checkpoint("5.3", "wait_1", T0, 5.0),  # no call row at all: removed
            checkpoint("5.4", "first", T0 + timedelta(minutes=5)),  # too recent to judge
        ], [])
        assert await store.sweep(T0 + timedelta(minutes=1)) == 2
        assert [await store.load(c) is not None for c in ("5.1", "5.2", "5.3", "5.4")] == [
            True, False, False, True]
    finally:
        await engine.dispose()
