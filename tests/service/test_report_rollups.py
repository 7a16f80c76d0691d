"""Reports from the kept quarter hours (roll-ups) give exactly the figures of folding the
events, for every period kind, queue, agent and team; after a restart in the middle too. On
a generated history of three days (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cti.domain.routing.hours import is_open
from cti.domain.routing.model import RoutingRules
from cti.domain.staffing import staffing_for_interval
from cti.domain.stats import QueueTargets
from cti.events import ProcedureStepped
from cti.features.events.store import EventLog
from cti.features.reports.rollups import Rollups
from cti.features.reports.service import build_report
from cti.features.routing.rules import load_rules
from cti.platform.bus import InProcessBus
from cti.platform.db.base import make_engine, make_sessionmaker
from tests.history import HistorySpec, history

TZ = "Asia/Shanghai"
RULES = load_rules(Path(__file__).resolve().parents[2] / "config" / "routing.yaml")
START = date(2026, 11, 27)  # a Friday: two weekend days follow, with shorter hours


def targets(queue: str) -> QueueTargets:
    q = RULES.queues.get(queue)
    return QueueTargets(sl_s=q.service_level_s, sl_goal=q.service_level_percent / 100,
                        aht_s=q.aht_s) if q else QueueTargets()


def eligible(rules: RoutingRules) -> dict[str, list[str]]:
    return {name: [a.id for a in rules.agents.values() if q.skills.matches(a.skills)]
            for name, q in rules.queues.items() if name in ("billing", "tech_support", "vip")}


SPEC = HistorySpec(START, 3, 250, eligible(RULES), tz=TZ)
SINCE = datetime(2026, 11, 27, tzinfo=ZoneInfo(TZ))
UNTIL = SINCE + timedelta(days=3)


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], float) or isinstance(y[k], float):
                assert x[k] == pytest.approx(y[k], rel=1e-9, abs=1e-9), k
            else:
                assert x[k] == y[k], k


async def test_rollups_equal_the_fold_for_every_period(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    days = list(history(SPEC))
    try:
        bus = InProcessBus()
        log = EventLog(sessions, bus)
        rollups = Rollups(sessions, log, targets, bus)
        await rollups.start()
        for day in days[:2]:
            for event in day:
                bus.publish(event)
            await bus.drain(60)
        assert rollups.seq == bus.last_seq
        # the service stops; the third day's events are kept while the roll-ups are not running
        bus2 = InProcessBus(bus.last_seq + 1)
        EventLog(sessions, bus2)
        for event in days[2]:
            bus2.publish(event)
        await bus2.drain(60)
        restarted = Rollups(sessions, log, targets)
        await restarted.start()
        assert restarted.seq == bus2.last_seq

        for interval in ("15m", "60m", "day", "week", "month", "all"):
            folded = await build_report(log, SINCE, UNTIL, interval=interval, timezone=TZ,
                                        targets=targets, rules=RULES)
            kept = await build_report(log, SINCE, UNTIL, interval=interval, timezone=TZ,
                                      targets=targets, rules=RULES, source=restarted)
            assert kept.source == "rollups"
            assert folded.source == "events"
            assert folded.queues
            assert folded.agents
            assert folded.teams
            same(kept.queues, folded.queues)
            same(kept.agents, folded.agents)
            same(kept.teams, folded.teams)
        # another time zone cuts other days out of the same quarter hours
        berlin = await build_report(log, SINCE, UNTIL, interval="day", timezone="Europe/Berlin",
                                    targets=targets, rules=RULES, source=restarted)
        folded = await build_report(log, SINCE, UNTIL, interval="day", timezone="Europe/Berlin",
                                    targets=targets, rules=RULES)
        same(berlin.queues, folded.queues)
        assert berlin.queues[0]["interval_start"].endswith("+01:00")
        total = sum(r["offered"] for r in berlin.queues)
        assert total == 3 * 250
        await bus.aclose()
        await bus2.aclose()
    finally:
        await engine.dispose()


async def test_teams_staffing_and_business_hours(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        bus = InProcessBus()
        log = EventLog(sessions, bus)
        rollups = Rollups(sessions, log, targets, bus)
        for day in history(SPEC):
            for event in day:
                bus.publish(event)
        await bus.drain(60)
        rep = await build_report(log, SINCE, UNTIL, interval="15m", timezone=TZ,
                                 targets=targets, rules=RULES, source=rollups)
        # a team's row is the sum of its agents' rows
        sums: dict[tuple[str, str], float] = defaultdict(float)
        for row in rep.agents:
            assert row["team"] == RULES.agents[row["agent_id"]].team
            sums[(row["interval_start"], row["team"])] += row["talk_s"]
        for row in rep.teams:
            assert row["talk_s"] == pytest.approx(sums[(row["interval_start"], row["team"])])
        # Erlang C per quarter hour from its arrivals and AHT, beside who was there
        busy = [r for r in rep.queues if r["offered"] >= 5]
        assert busy
        for row in busy:
            t = targets(row["queue"])
            need = staffing_for_interval(row["offered"], 900, row["aht_s"] or t.aht_s, t.sl_s,
                                         t.sl_goal)
            assert row["agents_needed"] == need.agents_needed
            assert row["traffic_erlangs"] == pytest.approx(need.traffic_erlangs)
            assert 0 < row["agents_logged_in"] <= len(SPEC.queues[row["queue"]])
        # business hours: Saturday opens at 09:00, so 08:xx quarter hours are left out
        hours = RULES.business_hours
        open_only = await build_report(log, SINCE, UNTIL, interval="15m", timezone=TZ,
                                       targets=targets, rules=RULES, source=rollups,
                                       business_hours_only=True)
        starts = {datetime.fromisoformat(r["interval_start"]) for r in open_only.queues}
        assert starts
        assert all(is_open(hours, s) for s in starts)
        closed = [r for r in rep.queues if not is_open(hours, datetime.fromisoformat(
            r["interval_start"]))]
        assert closed  # there were calls outside business hours, and they are not counted
        assert sum(r["offered"] for r in open_only.queues) == \
            sum(r["offered"] for r in rep.queues) - sum(r["offered"] for r in closed)
        day = await build_report(log, SINCE, UNTIL, interval="day", timezone=TZ,
                                 targets=targets, rules=RULES, source=rollups,
                                 business_hours_only=True)
        assert sum(r["offered"] for r in day.queues) == sum(r["offered"] for r in open_only.queues)
        await bus.aclose()
    finally:
        await engine.dispose()


async def test_batches_without_figures_write_nothing_and_a_restart_loses_nothing(
    database_url: str,
) -> None:
    """A batch of a call's IVR steps (no event the figures count) costs no transaction; the
    roll-ups kept after it, and after a restart, are those of folding the events."""
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    day = list(next(iter(history(HistorySpec(START, 1, 20, eligible(RULES), tz=TZ)))))
    try:
        bus = InProcessBus()
        log = EventLog(sessions, bus)
        rollups = Rollups(sessions, log, targets, bus)
        await rollups.start()
        half = len(day) // 2
        for event in day[:half]:
            bus.publish(event)
        await bus.drain(60)
        written = rollups.transactions
        at = day[half - 1].at
        for i in range(30):
            bus.publish(ProcedureStepped("c-ivr", at, float(i), "c-ivr-r1", "silent_call",
                                         "wait_started", {"seconds": 5}))
            await bus.drain(60)  # one batch each
        assert rollups.transactions == written
        assert rollups.seq == bus.last_seq
        for event in day[half:]:
            bus.publish(event)
        await bus.drain(60)
        assert rollups.transactions > written
        await bus.aclose()

        restarted = Rollups(sessions, log, targets)
        await restarted.start()
        since, until = SINCE, SINCE + timedelta(days=1)
        folded = await build_report(log, since, until, interval="60m", timezone=TZ,
                                    targets=targets, rules=RULES)
        kept = await build_report(log, since, until, interval="60m", timezone=TZ,
                                  targets=targets, rules=RULES, source=restarted)
        assert kept.source == "rollups"
        assert folded.queues
        same(kept.queues, folded.queues)
        same(kept.agents, folded.agents)
    finally:
        await engine.dispose()
