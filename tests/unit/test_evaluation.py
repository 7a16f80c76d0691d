"""Evaluation scores (cti.domain.evaluation): weights, not-applicable out of the denominator,
automatic fails, bad answers refused with every reason; properties over random forms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.domain.evaluation import (
    NA,
    EvaluationInvalid,
    Form,
    Question,
    Scored,
    Section,
    averages,
    check_answers,
    score,
)

FORM = Form("f", 2, "F", (
    Section("open", "Opening", 20, (
        Question("greet", "greeting"),
        Question("name", "surname used", na_allowed=True),
    )),
    Section("handle", "Handling", 80, (
        Question("need", "understood", weight=2, max=5),
        Question("resolved", "resolved", weight=2),
        Question("forbidden", "no forbidden phrase", auto_fail=True),
    )),
))
ALL_GOOD = {"greet": 1, "name": 1, "need": 5, "resolved": 1, "forbidden": 1}


@pytest.mark.parametrize(("answers", "expected", "sections"), [
    (ALL_GOOD, 100.0, {"open": 100.0, "handle": 100.0}),
    # opening half right: 20 * 0.5 + 80 * 1 = 90
    ({**ALL_GOOD, "name": 0}, 90.0, {"open": 50.0, "handle": 100.0}),
    # N/A leaves the question out: opening is greet alone, 100
    ({**ALL_GOOD, "name": NA}, 100.0, {"open": 100.0, "handle": 100.0}),
    ({**ALL_GOOD, "name": NA, "greet": 0}, 20.0 * 0 + 80.0, {"open": 0.0, "handle": 100.0}),
    # scale 3 of 5 with weight 2 of 5: handling (2*0.6 + 2 + 1) / 5 = 0.84 -> 20 + 67.2
    ({**ALL_GOOD, "need": 3}, 87.2, {"open": 100.0, "handle": 84.0}),
    # the automatic fail zeroes everything, the sections keep their own scores
    ({**ALL_GOOD, "forbidden": 0}, 0.0, {"open": 100.0, "handle": 80.0}),
])
def test_score_weights_sections_and_questions(
    answers: dict[str, object], expected: float, sections: dict[str, float]
) -> None:
    result = score(FORM, answers)
    assert result.score == pytest.approx(expected)
    assert result.sections == pytest.approx(sections)
    assert result.auto_failed == (("forbidden",) if answers["forbidden"] == 0 else ())


def test_a_section_all_not_applicable_weighs_nothing() -> None:
    form = Form("g", 1, "G", (
        Section("a", "A", 50, (Question("x", "x", na_allowed=True),)),
        Section("b", "B", 50, (Question("y", "y"),)),
    ))
    result = score(form, {"x": NA, "y": 1})
    assert result.score == 100.0
    assert result.sections == {"a": None, "b": 100.0}


def test_nothing_applicable_is_refused() -> None:
    form = Form("g", 1, "G", (Section("a", "A", 1, (Question("x", "x", na_allowed=True),)),))
    with pytest.raises(EvaluationInvalid, match="nothing to score"):
        score(form, {"x": NA})


def test_bad_answers_are_refused_with_every_reason() -> None:
    with pytest.raises(EvaluationInvalid) as caught:
        check_answers(FORM, {"greet": NA, "need": 6, "resolved": True, "forbidden": "1",
                             "bogus": 1})
    assert caught.value.problems == [
        "bogus: no such question in form f v2",
        "greet: not-applicable is not allowed for this question",
        "name: not answered",
        "need: answer 6 is outside 0..5",
        "resolved: answer True is not a whole number 0..1",
        "forbidden: answer '1' is not a whole number 0..1",
    ]
    assert caught.value.http_status == 422


def test_averages_per_agent_and_team() -> None:
    rows = [Scored("1001", "north", 80, False), Scored("1001", "north", 0, True),
            Scored("1002", "north", 90, False), Scored("1003", None, 70, False),
            Scored(None, None, 50, False)]
    agents = {a.key: (a.evaluations, a.average, a.auto_failed) for a in averages(rows, "agent")}
    assert agents == {"1001": (2, 40.0, 1), "1002": (1, 90.0, 0), "1003": (1, 70.0, 0)}
    teams = {a.key: (a.evaluations, a.average) for a in averages(rows, "team")}
    assert teams == {"north": (3, 56.67)}


# ----- properties ----------------------------------------------------------------------------

_question = st.builds(
    Question, id=st.just(""), text=st.just("q"),
    weight=st.floats(0.1, 10), max=st.integers(1, 10), na_allowed=st.booleans(),
    auto_fail=st.booleans(),
)


@st.composite
def forms_and_answers(draw: st.DrawFn) -> tuple[Form, dict[str, object]]:
    sections = []
    n = 0
    for s in range(draw(st.integers(1, 4))):
        qs = []
        for _ in range(draw(st.integers(1, 5))):
            q = draw(_question)
            qs.append(Question(f"q{n}", q.text, q.weight, q.max, q.na_allowed, q.auto_fail))
            n += 1
        sections.append(Section(f"s{s}", "S", draw(st.floats(0.1, 100)), tuple(qs)))
    form = Form("p", 1, "P", tuple(sections))
    answers: dict[str, object] = {}
    for q in form.questions().values():
        choices = st.integers(0, q.max)
        answers[q.id] = draw(st.one_of(choices, st.just(NA)) if q.na_allowed else choices)
    return form, answers


def _applicable(answers: dict[str, object]) -> bool:
    return any(v != NA for v in answers.values())


@given(forms_and_answers())
def test_score_is_within_0_and_100_and_an_automatic_fail_is_0(
    case: tuple[Form, dict[str, object]],
) -> None:
    form, answers = case
    if not _applicable(answers):
        with pytest.raises(EvaluationInvalid):
            score(form, answers)
        return
    result = score(form, answers)
    assert 0.0 <= result.score <= 100.0
    failed = [q.id for q in form.questions().values() if q.auto_fail and answers[q.id] == 0]
    assert list(result.auto_failed) == failed
    if failed:
        assert result.score == 0.0


@given(forms_and_answers())
def test_not_applicable_is_the_same_as_the_question_not_being_there(
    case: tuple[Form, dict[str, object]],
) -> None:
    form, answers = case
    if not _applicable(answers):
        return
    kept = tuple(
        Section(s.id, s.title, s.weight, qs)
        for s in form.sections
        if (qs := tuple(q for q in s.questions if answers[q.id] != NA))
    )
    without = Form(form.id, form.version, form.title, kept)
    rest = {k: v for k, v in answers.items() if v != NA}
    assert score(form, answers).score == pytest.approx(score(without, rest).score, abs=0.011)


@given(forms_and_answers())
def test_all_top_answers_score_100(case: tuple[Form, dict[str, object]]) -> None:
    form, answers = case
    top = {q.id: (NA if answers[q.id] == NA else q.max) for q in form.questions().values()}
    if _applicable(top):
        assert score(form, top).score == 100.0
