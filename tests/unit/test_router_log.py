"""The routing log stores decisions and agent-state changes and reads a call's trace back
(SQLite through the real migration)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from routing_fixtures import basic_rules

from cti.domain.routing.events import AgentStateChanged
from cti.domain.routing.router import Router
from cti.features.routing.storage import RoutingLog
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async


async def test_decisions_and_agent_events_are_stored_and_read_back(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_async(url, "0002")
    engine = make_engine(url)
    log = RoutingLog(make_sessionmaker(engine))
    r = Router(basic_rules())
    r.agent_ready("a1", 0.0)
    at = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    d = r.enqueue("c1", {"menu": "1"}, 1.0)
    await log.record_decision(at, d)
    await log.record_event(AgentStateChanged("a1", "available", "reserved", at, None, "c1"))
    [row] = await log.decisions_for("c1")
    assert row["agent_id"] == "a1"
    assert row["outcome"] == "offered"
    assert row["considered"][0]["agent_id"] == "a1"
    assert row["at"].startswith("2026-01-05T02:00")
    await engine.dispose()
