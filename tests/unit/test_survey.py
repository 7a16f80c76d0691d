"""The satisfaction survey's pure core: the caller's keys read as the flow asks (an invalid key
is asked again, so it is skipped), scores checked, averages per agent / queue / day, and the
reports' satisfaction figures (counted at the offer, adding up over periods and agents)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.domain.survey import (
    Answers,
    Scored,
    SurveyFact,
    SurveyFigures,
    averages,
    check,
    satisfaction,
    tally,
)


@pytest.mark.parametrize(("keys", "answers"), [
    ("513", Answers(5, True, 3)),
    ("321", Answers(3, False, 1)),
    ("5", Answers(5, None, None)),
    ("", Answers(None, None, None)),
    ("95423", Answers(5, False, 3)),  # 9: not a speed key; 4: not a resolved key
    ("52#5", Answers(5, False, 5)),
    ("5*1*9*1", Answers(5, True, 1)),
])
def test_keys_become_answers_question_by_question(keys: str, answers: Answers) -> None:
    assert tally(keys) == answers


@given(st.lists(st.sampled_from("0123456789*#"), max_size=12))
def test_answers_are_always_valid_scores(keys: list[str]) -> None:
    a = tally(keys)
    assert a.speed in (None, 5, 3, 1)
    assert a.attitude in (None, 5, 3, 1)
    # a later question is answered only after the earlier ones
    assert a.resolved is None or a.speed is not None
    assert a.attitude is None or a.resolved is not None


def test_completeness() -> None:
    assert Answers(5, True, 5).complete
    assert not Answers(5, None, 5).complete
    assert Answers().empty


def test_a_recorded_survey_has_valid_scores() -> None:
    assert check(5, None, None) == Answers(5, None, None)
    with pytest.raises(ValueError, match="speed"):
        check(4, True, 5)
    with pytest.raises(ValueError, match="attitude"):
        check(5, True, 2)
    with pytest.raises(ValueError, match="at least one"):
        check(None, None, None)


def test_averages_per_group_over_the_answered_questions() -> None:
    rows = [
        Scored("1001", "billing", "2026-03-01", Answers(5, True, 5)),
        Scored("1001", "billing", "2026-03-01", Answers(1, False, None)),
        Scored("1002", "billing", "2026-03-02", Answers(3, True, 3)),
        Scored(None, "general", "2026-03-02", Answers(5, None, None)),
    ]
    by_agent = averages(rows, lambda r: r.agent_id)
    assert [(a.key, a.surveys, a.speed, a.resolved_rate, a.attitude) for a in by_agent] == [
        ("1001", 2, 3.0, 0.5, 5.0), ("1002", 1, 3.0, 1.0, 3.0)]
    by_queue = {a.key: a for a in averages(rows, lambda r: r.queue)}
    assert by_queue["billing"].surveys == 3
    assert by_queue["billing"].speed == 3.0
    assert by_queue["general"].resolved_rate is None
    assert [a.key for a in averages(rows, lambda r: r.day)] == ["2026-03-01", "2026-03-02"]


T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _figures(*facts: SurveyFact) -> SurveyFigures:
    figures = SurveyFigures()
    for fact in facts:
        figures.count(fact)
    return figures


def test_the_satisfaction_figures_of_offers_keypad_and_callback_surveys() -> None:
    figures = _figures(
        SurveyFact(_at(1), "billing", "1001"),  # offered, answered below
        SurveyFact(_at(1), "billing", "1001", Answers(5, True, 5), offered=True),
        SurveyFact(_at(2), "billing", "1001"),  # offered, the caller hung up
        SurveyFact(_at(3), "billing", "1002"),
        SurveyFact(_at(3), "billing", "1002", Answers(3, None, None), offered=True),
        SurveyFact(_at(4), "billing", "1002", Answers(1, False, 1)),  # an agent's call-back
    )
    assert figures.as_dict() == {
        "csat_surveys": 3,
        "csat_offered": 3,
        "csat_response_rate": round(2 / 3, 4),  # call-back surveys were never offered
        "csat_speed": 3.0,  # (5 + 3 + 1) / 3
        "csat_attitude": 3.0,  # (5 + 1) / 2: the partial survey did not answer it
        "csat_resolved_rate": 0.5,
    }


def test_no_surveys_give_counts_of_zero_and_no_means() -> None:
    assert SurveyFigures().as_dict() == {
        "csat_surveys": 0, "csat_offered": 0, "csat_response_rate": None, "csat_speed": None,
        "csat_attitude": None, "csat_resolved_rate": None}


def test_facts_are_counted_per_period_queue_and_agent_and_left_out_when_asked() -> None:
    def quarter(at: datetime) -> datetime | None:
        if at >= _at(30):
            return None  # e.g. outside business hours
        return T0 + timedelta(minutes=15) * ((at - T0) // timedelta(minutes=15))

    queues, agents = satisfaction([
        # offered at 09:14:30 and stored after 09:15: counted in the offer's quarter
        SurveyFact(_at(14.5), "billing", "1001"),
        SurveyFact(_at(14.5), "billing", "1001", Answers(5, True, 5), offered=True),
        SurveyFact(_at(16), "billing", "1002"),
        SurveyFact(_at(17), None, "1002", Answers(1, None, None)),  # no queue: agent only
        SurveyFact(_at(40), "billing", "1001"),  # left out
    ], quarter)
    assert set(queues) == {T0, _at(15)}
    assert queues[T0]["billing"].as_dict()["csat_response_rate"] == 1.0
    assert queues[_at(15)]["billing"].as_dict()["csat_response_rate"] == 0.0
    assert queues[_at(15)]["billing"].surveys == 0
    assert agents[_at(15)]["1002"].as_dict()["csat_speed"] == 1.0
    assert agents[_at(15)]["1002"].offered == 1


scores = st.sampled_from([None, 5, 3, 1])
facts = st.lists(st.builds(
    SurveyFact, at=st.integers(0, 119).map(_at), queue=st.sampled_from(["a", "b", None]),
    agent_id=st.sampled_from(["1001", "1002"]),
    answers=st.one_of(st.none(), st.builds(Answers, scores, st.sampled_from([None, True, False]),
                                           scores)),
    offered=st.booleans()), max_size=40)


@given(facts)
def test_an_hour_is_the_sum_of_its_quarters_and_a_team_of_its_agents(
        rows: list[SurveyFact]) -> None:
    _, by_quarter = satisfaction(rows, lambda at: T0 + timedelta(minutes=15) * (
        (at - T0) // timedelta(minutes=15)))
    _, by_hour = satisfaction(rows, lambda at: T0 + timedelta(hours=1) * (
        (at - T0) // timedelta(hours=1)))
    for hour, agents in by_hour.items():
        for agent_id, figures in agents.items():
            summed = SurveyFigures()
            for quarter, quarter_agents in by_quarter.items():
                if hour <= quarter < hour + timedelta(hours=1) and agent_id in quarter_agents:
                    summed.add(quarter_agents[agent_id])
            assert summed == figures
    team = SurveyFigures()
    for agents in by_hour.values():
        for figures in agents.values():
            team.add(figures)
    assert team == _figures(*rows)
