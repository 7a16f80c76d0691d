"""Surveys on SQLite and PostgreSQL, through the service: a survey the caller answered by keys
(the stream's CallConnected / WorkOrderCreated / MenuKeyPressed / CallEnded, as the IVR and the
ACD publish them) is stored linked to the call, agent, queue and work order; an agent's call-back
survey; the averages per agent, queue and day; SurveyAnswered for the reports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cti.domain.routing.events import CallConnected
from cti.domain.survey import Answers
from cti.domain.work_orders import WorkOrderCreated
from cti.events import CallEnded, MenuKeyPressed, SurveyAnswered
from cti.features.auth.service import Principal, Role
from cti.features.surveys.service import Surveys, _Running
from cti.features.surveys.storage import SurveyStore
from cti.platform.bus import InProcessBus
from cti.platform.clock import FakeClock
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.errors import Forbidden

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
AGENT = Principal(1, "agent1001", Role.AGENT, "1001", "A", "zh")


class NoIvr:
    """take_caller is proved on the sandbox (tests/e2e/test_survey_e2e.py); here the IVR part
    is not reached."""

    def state_of(self, call_id: str) -> None:
        return None


@pytest.fixture
async def env(database_url: str) -> AsyncIterator[tuple[Surveys, InProcessBus, list[Any],
                                                        FakeClock]]:
    engine = make_engine(database_url)
    bus = InProcessBus()
    clock = FakeClock(T0)
    seen: list[Any] = []

    async def note(e: Any) -> None:
        seen.append(e)

    bus.subscribe("t", note, (SurveyAnswered,))
    surveys = Surveys(SurveyStore(make_sessionmaker(engine)), NoIvr(), bus, clock,  # type: ignore[arg-type]
                      rules=lambda: None)  # type: ignore[arg-type,return-value]
    yield surveys, bus, seen, clock
    await bus.aclose()
    await engine.dispose()


def ev(cls: Any, **kw: Any) -> Any:
    return cls(at=T0, **kw)


async def test_keys_after_the_agent_left_are_stored_with_their_links(env: Any) -> None:
    surveys, bus, seen, _ = env
    bus.publish(ev(CallConnected, call_id="c1", agent_id="1001", queue="billing",
                   waited_s=3.0, bridge_id="b1"))
    bus.publish(WorkOrderCreated(7, T0, "service_request", "normal", 3, "assigned",
                                 "agent:1001", T0, "agent1001", call_id="c1"))
    bus.publish(ev(MenuKeyPressed, call_id="c1", digit="2"))  # in the menu, before the agent
    await bus.drain()
    # what take_caller records when the survey flow starts on the caller (proved on the
    # sandbox in tests/e2e/test_survey_e2e.py)
    surveys._running["c1"] = _Running("1001", "billing", T0)
    for digit in "5913":
        bus.publish(ev(MenuKeyPressed, call_id="c1", digit=digit))
    bus.publish(ev(CallEnded, call_id="c1", cause=16, cause_text="Normal Clearing",
                   ended_by="caller"))
    await bus.drain()
    (row,) = await surveys.store.of_call("c1")
    assert (row.channel, row.agent_id, row.queue, row.work_order_id) == (
        "ivr", "1001", "billing", 7)
    assert row.answers == Answers(5, True, 3)
    (event,) = seen
    assert (event.survey_id, event.speed, event.resolved, event.attitude, event.complete) == (
        row.id, 5, True, 3, True)


async def test_a_callback_survey_and_the_averages(env: Any) -> None:
    surveys, bus, seen, clock = env
    await surveys.record(AGENT, Answers(5, True, 5), call_id="c9", work_order_id=3)
    clock.advance(86400)
    await surveys.record(AGENT, Answers(1, False, None), call_id=None, work_order_id=None)
    boss = Principal(2, "supervisor", Role.SUPERVISOR, None, "S", "zh")
    await surveys.record(boss, Answers(3, True, 3), call_id=None, work_order_id=None,
                         agent_id="1002")
    with pytest.raises(Forbidden):
        await surveys.record(AGENT, Answers(5, None, None), call_id=None, work_order_id=None,
                             agent_id="1002")
    await bus.drain()
    assert [e.channel for e in seen] == ["callback"] * 3
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=3)
    by_agent = await surveys.figures(since, until, "agent")
    assert [(a.key, a.surveys, a.speed, a.resolved_rate, a.attitude) for a in by_agent] == [
        ("1001", 2, 3.0, 0.5, 5.0), ("1002", 1, 3.0, 1.0, 3.0)]
    by_day = await surveys.figures(since, until, "day", tz="Asia/Shanghai")
    assert [(a.key, a.surveys) for a in by_day] == [("2026-03-01", 1), ("2026-03-02", 2)]
    only = await surveys.figures(since, until, "all", agent_id="1002")
    assert [(a.key, a.surveys) for a in only] == [("all", 1)]
