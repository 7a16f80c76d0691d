"""The procedure audit writes what queued up meanwhile in one transaction, and stores the
same rows as one entry per transaction did: the run, its timeline numbered in order, its end,
departures; a bad entry loses only itself; the database away keeps the batch for later."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from cti.domain.ivr.commands import Audit
from cti.features.procedures import audit as audit_module
from cti.features.procedures.audit import AuditEntry, ProcedureAudit
from cti.platform.db.base import Base, make_engine, make_sessionmaker

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


def commits(engine: AsyncEngine) -> list[int]:
    counted: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _conn: counted.append(1))
    return counted


def entry(kind: str, run: str | None, at_s: float, **detail: Any) -> AuditEntry:
    return AuditEntry("c1", Audit(kind, run, "silent_call" if run else None, detail),
                      T0 + timedelta(seconds=at_s), 100.0 + at_s)


def silent_call(run: str = "c1-r1") -> list[AuditEntry]:
    return [
        entry("procedure_started", run, 0, started_by="auto"),
        entry("prompt_started", run, 0, phrase="silent_call_first"),
        entry("prompt_finished", run, 2),
        entry("wait_started", run, 2, seconds=5),
        entry("ivr_node", None, 3),  # not stored here
        entry("departure", run, 4, what="hangup_cancelled_caller_present"),
        entry("wait_finished", run, 7, seconds=5),
        entry("hangup", run, 7, reason="procedure"),
        entry("procedure_ended", run, 7, reason="hangup"),
    ]


async def stored(audit: ProcedureAudit) -> dict[str, Any]:
    return await audit.runs_for_call("c1")


async def test_a_batch_is_one_transaction_with_the_rows_one_per_entry_made(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    batched = ProcedureAudit(make_sessionmaker(engine))
    counted = commits(engine)
    for e in silent_call():
        batched.submit(e)
    await batched.flush()
    assert len(counted) == 1
    got = await stored(batched)
    await batched.close()

    one_by_one_engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}")
    async with one_by_one_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    one_by_one = ProcedureAudit(make_sessionmaker(one_by_one_engine))
    for e in silent_call():
        await one_by_one.record(e)
    want = await stored(one_by_one)
    await one_by_one_engine.dispose()

    assert got == want
    [run] = got["runs"]
    assert (run["ended_at"] is not None, run["end_reason"], run["hung_up"]) == (
        True, "hangup", True)
    assert [(s["seq"], s["kind"], s["offset_ms"]) for s in run["timeline"]] == [
        (1, "prompt_started", 0), (2, "prompt_finished", 2000), (3, "wait_started", 2000),
        (4, "wait_finished", 7000), (5, "hangup", 7000),
    ]
    assert [d["what"] for d in got["departures"]] == ["hangup_cancelled_caller_present"]


async def test_a_bad_entry_in_a_batch_loses_only_itself(engine: AsyncEngine) -> None:
    audit = ProcedureAudit(make_sessionmaker(engine))
    await audit.record(entry("procedure_started", "c1-r1", 0))
    # the same run again (its id is taken): refused for its data, the others are stored
    for e in [entry("procedure_started", "c1-r1", 1), *silent_call("c1-r2")]:
        audit.submit(e)
    await audit.flush()
    got = await stored(audit)
    await audit.close()
    assert [r["run_id"] for r in got["runs"]] == ["c1-r1", "c1-r2"]
    assert [s["seq"] for s in got["runs"][1]["timeline"]] == [1, 2, 3, 4, 5]


async def test_the_database_away_keeps_the_batch_and_writes_it_later(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = audit_module._write
    refusals = [OSError("connection refused")]

    async def away_once(session: Any, plans: Any) -> None:
        if refusals:
            raise refusals.pop()
        await real(session, plans)

    monkeypatch.setattr(audit_module, "_write", away_once)
    monkeypatch.setattr(audit_module, "RETRY_S", 0.01)
    audit = ProcedureAudit(make_sessionmaker(engine))
    for e in silent_call():
        audit.submit(e)
    await audit.flush()
    got = await stored(audit)
    await audit.close()
    assert not refusals
    assert audit.pending == 0
    [run] = got["runs"]
    assert [s["seq"] for s in run["timeline"]] == [1, 2, 3, 4, 5]  # numbered once
