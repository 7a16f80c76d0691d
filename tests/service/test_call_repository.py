"""The call log round-trips through both database backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cti.domain.calls import Call, CallState, answered, ended
from cti.features.calls.storage import SAVED_COLUMNS, CallRepository, _row_values
from cti.platform.db.base import make_engine, make_sessionmaker

T0 = datetime(2026, 3, 1, 8, 30, 15, 123000, tzinfo=UTC)


async def test_call_row_keeps_times_cause_and_state(database_url: str) -> None:
    engine = make_engine(database_url)
    repo = CallRepository(make_sessionmaker(engine))
    try:
        call = Call(id="1.1", channel_id="1.1", caller_number="+8613800000001",
                    caller_name="张", dialled_number="100", arrived_at=T0)
        await repo.save(call)
        assert [c.id for c in await repo.open_calls()] == ["1.1"]
        call = answered(call, T0 + timedelta(milliseconds=40))
        await repo.save(call)
        call = ended(call, T0 + timedelta(seconds=12), 16, "Normal Clearing", "caller")
        await repo.save(call)
        stored = await repo.get("1.1")
        assert stored is not None
        assert stored.state is CallState.ENDED
        assert stored.arrived_at == T0
        assert stored.answered_at == T0 + timedelta(milliseconds=40)
        assert stored.ended_at == T0 + timedelta(seconds=12)
        assert (stored.hangup_cause, stored.ended_by) == (16, "caller")
        assert stored.caller_name == "张"
        assert await repo.open_calls() == []
    finally:
        await engine.dispose()


async def test_routing_attributes_are_kept_for_a_restarted_service(database_url: str) -> None:
    engine = make_engine(database_url)
    repo = CallRepository(make_sessionmaker(engine))
    try:
        call = Call(id="2.1", channel_id="2.1", caller_number="+8613800000002",
                    caller_name="", dialled_number="100", arrived_at=T0,
                    attributes={"menu": "2", "language": "en"})
        await repo.save(call)
        (open_call,) = await repo.open_calls()
        assert open_call.attributes == {"menu": "2", "language": "en"}
        await repo.save(Call(id="2.2", channel_id="2.2", caller_number="", caller_name="",
                             dialled_number="", arrived_at=T0))
        bare = await repo.get("2.2")
        assert bare is not None
        assert bare.attributes == {}
    finally:
        await engine.dispose()


def test_a_save_sets_exactly_the_saved_columns() -> None:
    # The upsert's SET list is SAVED_COLUMNS: a value _row_values gave that it lacked would be
    # inserted but never updated, and a column it listed without a value would be nulled.
    call = Call("c1", "c1", "+4930", "", "4000", datetime(2026, 1, 5, tzinfo=UTC))
    assert set(_row_values(call)) == set(SAVED_COLUMNS)
    assert "direction" not in SAVED_COLUMNS


def _call(n: int, **kw: object) -> Call:
    return Call(id=f"9.{n}", channel_id=f"9.{n}", caller_number=f"+86138000{n:05d}",
                caller_name="", dialled_number="100", arrived_at=T0, **kw)  # type: ignore[arg-type]


async def test_saves_asked_together_share_transactions_and_each_returns_once_written(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    repo = CallRepository(make_sessionmaker(engine))
    try:
        await asyncio.gather(*(repo.save(_call(n)) for n in range(40)))
        assert len(await repo.open_calls()) == 40  # every save returned after its row was in
        assert repo.transactions < 40  # grouped: what queued up behind a write went together
    finally:
        await engine.dispose()


async def test_a_call_saved_again_before_its_write_ends_in_its_latest_state(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    repo = CallRepository(make_sessionmaker(engine))
    try:
        call = _call(1)
        states = [call, answered(call, T0 + timedelta(seconds=1))]
        states.append(ended(states[1], T0 + timedelta(seconds=9), 16, "Normal Clearing",
                            "caller"))
        await asyncio.gather(repo.save(_call(2)), *(repo.save(s) for s in states))
        stored = await repo.get("9.1")
        assert stored is not None
        assert stored.state is CallState.ENDED
        assert stored.answered_at == T0 + timedelta(seconds=1)
    finally:
        await engine.dispose()


async def test_a_row_the_database_refuses_fails_its_own_save_only(database_url: str) -> None:
    engine = make_engine(database_url)
    repo = CallRepository(make_sessionmaker(engine))
    try:
        bad = _call(7, attributes={"menu": object()})  # not JSON: refused at the write
        outcomes = await asyncio.gather(
            *(repo.save(_call(n)) for n in range(5)), repo.save(bad), return_exceptions=True)
        assert [o is None for o in outcomes] == [True] * 5 + [False]
        assert isinstance(outcomes[5], Exception)
        assert sorted(c.id for c in await repo.open_calls()) == [f"9.{n}" for n in range(5)]
    finally:
        await engine.dispose()
