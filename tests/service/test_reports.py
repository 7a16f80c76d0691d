"""Live and historical figures agree: the scripted day published on the bus gives the same
numbers on the wallboard, in the report read back from the kept events, and on a wallboard
rebuilt after a restart; the wallboard's tiles are pushed as events happen."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from cti.domain.stats import QueueTargets
from cti.features.events.store import EventLog
from cti.features.reports.live import LiveStats
from cti.features.reports.service import build_report, to_csv
from cti.platform.bus import InProcessBus
from cti.platform.db.base import make_engine, make_sessionmaker
from tests.unit.test_stats import T0, scripted_day, t

SAME = ("offered", "answered", "answered_in_sl", "abandoned", "short_abandoned", "voicemails",
        "sl", "sl2", "asa_s", "aht_s", "abandonment_rate", "talk_s", "hold_s", "wrap_s")


class Pages:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def publish(self, topic: str, message: Mapping[str, Any]) -> None:
        self.sent.append(dict(message))


class Clock:
    def __init__(self) -> None:
        self.at = t(300)

    def now(self):  # type: ignore[no-untyped-def]
        return self.at

    def monotonic(self) -> float:
        return 0.0


def targets(_queue: str) -> QueueTargets:
    return QueueTargets(sl_s=20, short_abandon_s=5)


async def test_live_and_historical_figures_are_the_same(database_url: str) -> None:
    engine = make_engine(database_url)
    bus, pages, clock = InProcessBus(), Pages(), Clock()
    log = EventLog(make_sessionmaker(engine), bus)
    live = LiveStats(bus, log, pages, clock, targets, "Asia/Shanghai")  # type: ignore[arg-type]
    try:
        await live.start()
        for event in scripted_day():
            bus.publish(event)
        await bus.drain()
        board = {tile["queue"]: tile for tile in live.snapshot()["queues"]}["sales"]
        report = await build_report(log, T0 - timedelta(hours=1), t(300), interval="all",
                                    timezone="Asia/Shanghai", targets=targets)
        (row,) = report.queues
        for name in SAME:
            assert board[name] == pytest.approx(row[name], abs=1e-3), name
        assert board["offered"] == 5
        # pushed while it happened: the last queue tile says what the board says
        tiles = [m for m in pages.sent if m["type"] == "wallboard.queue"]
        assert tiles
        assert tiles[-1]["answered"] == 2

        # a restarted service's board, folded again from the kept events, says the same
        again = LiveStats(InProcessBus(), log, Pages(), clock, targets, "Asia/Shanghai")  # type: ignore[arg-type]
        await again.start()
        rebuilt = {tile["queue"]: tile for tile in again.snapshot()["queues"]}["sales"]
        for name in SAME:
            assert rebuilt[name] == pytest.approx(board[name], abs=1e-3), name
        agents = {a["agent_id"]: a for a in again.snapshot()["agents"]}
        assert agents["1001"]["occupancy"] == pytest.approx(0.35, abs=1e-3)
    finally:
        await engine.dispose()


async def test_report_intervals_and_csv(database_url: str) -> None:
    engine = make_engine(database_url)
    bus = InProcessBus()
    log = EventLog(make_sessionmaker(engine), bus)
    try:
        for event in scripted_day():
            bus.publish(event)
        await bus.drain()
        report = await build_report(log, T0, t(300), interval="15m", timezone="UTC",
                                    targets=targets)
        assert [r["offered"] for r in report.queues] == [5]  # all in 09:00-09:15 UTC
        assert report.queues[0]["interval_start"] == T0.isoformat()
        text = to_csv(report.agents)
        header, *lines = text.splitlines()
        assert header.startswith("interval_start,agent_id,team,calls")
        assert any(line.split(",")[1] == "1001" and "lunch=100.0" in line for line in lines)
    finally:
        await engine.dispose()


async def test_the_wallboard_pushes_todays_series_and_each_queues_thresholds() -> None:
    """Charts: after the tiles, the queue's figures per quarter hour of today; the tile says
    where its colours change (the queue's settings)."""
    from cti.domain.routing.model import Thresholds
    from cti.features.events.store import EventLog as Log

    def with_thresholds(_queue: str) -> QueueTargets:
        return QueueTargets(sl_s=20, short_abandon_s=5,
                            thresholds=Thresholds(0.05, (20.0, 40.0), (0.05, 0.1), None))

    class NoLog(Log):
        def __init__(self) -> None:  # the board is not started here: nothing is read
            pass

    bus, pages, clock = InProcessBus(), Pages(), Clock()
    LiveStats(bus, NoLog(), pages, clock, with_thresholds, "UTC")  # type: ignore[arg-type]
    for event in scripted_day():
        bus.publish(event)
    await bus.drain()
    series = [m for m in pages.sent if m["type"] == "wallboard.series"]
    last = series[-1]
    assert last["queue"] == "sales"
    assert last["step_s"] == 900
    (point,) = last["points"]  # every call of the scripted day came in 09:00-09:15
    assert point["t"] == T0.isoformat()
    assert (point["offered"], point["answered"], point["abandoned"]) == (5, 2, 1)
    assert point["asa_s"] == pytest.approx(17.5)
    tile = [m for m in pages.sent if m["type"] == "wallboard.queue"][-1]
    assert tile["thresholds"] == {"sl_warn": 0.05, "asa_s": (20.0, 40.0),
                                  "abandonment": (0.05, 0.1), "longest_wait_s": None}
    # the tiles of a batch go out before its charts
    kinds = [m["type"] for m in pages.sent]
    assert kinds.index("wallboard.queue") < kinds.index("wallboard.series")
    await bus.aclose()
