"""The satisfaction survey's pure core: the caller's keys read as the flow asks (an invalid key
is asked again, so it is skipped), scores checked, and averages per agent / queue / day."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.domain.survey import Answers, Scored, averages, check, tally


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
