"""Quality evaluation forms and their scores, pure (docs/quality_review.md).

A form has sections, each with a weight and questions; a question has a weight, a scale (yes/no
is a scale of 1: 0 = no, 1 = yes), may allow "not applicable", and may be an automatic fail
(answered 0, the whole evaluation scores 0). The score, 0..100:

    section score  S = sum(w_q * value_q / max_q) / sum(w_q)   over its applicable questions
    total          100 * sum(W_s * S_s) / sum(W_s)              over sections with a score

so a not-applicable answer leaves the denominator as well as the numerator, and a section whose
every question is not applicable weighs nothing. An evaluation with nothing applicable at all
has no score and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cti.platform.errors import CtiError

NA: Literal["na"] = "na"
Answer = int | Literal["na"]


class EvaluationInvalid(CtiError):
    """The answers do not fit the form (unknown, missing, out of range, N/A not allowed)."""

    error_id = "evaluation_invalid"
    http_status = 422

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    text: str
    weight: float = 1.0
    max: int = 1  # 1: yes/no; n: a scale 0..n
    na_allowed: bool = False
    auto_fail: bool = False


@dataclass(frozen=True, slots=True)
class Section:
    id: str
    title: str
    weight: float
    questions: tuple[Question, ...]


@dataclass(frozen=True, slots=True)
class Form:
    id: str
    version: int
    title: str
    sections: tuple[Section, ...]

    def questions(self) -> dict[str, Question]:
        return {q.id: q for s in self.sections for q in s.questions}


@dataclass(frozen=True, slots=True)
class Score:
    score: float  # 0..100
    auto_failed: tuple[str, ...]  # the automatic-fail questions answered 0
    sections: dict[str, float | None]  # each section's 0..100, None when all N/A


def check_answers(form: Form, answers: Mapping[str, object]) -> dict[str, Answer]:
    """The answers as the form takes them; EvaluationInvalid naming every problem."""
    questions = form.questions()
    problems = [f"{qid}: no such question in form {form.id} v{form.version}"
                for qid in answers if qid not in questions]
    out: dict[str, Answer] = {}
    for qid, q in questions.items():
        if qid not in answers:
            problems.append(f"{qid}: not answered")
            continue
        value = answers[qid]
        if value == NA:
            if not q.na_allowed:
                problems.append(f"{qid}: not-applicable is not allowed for this question")
            else:
                out[qid] = NA
        elif isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{qid}: answer {value!r} is not a whole number 0..{q.max}"
                            + (" or 'na'" if q.na_allowed else ""))
        elif not 0 <= value <= q.max:
            problems.append(f"{qid}: answer {value} is outside 0..{q.max}")
        else:
            out[qid] = value
    if problems:
        raise EvaluationInvalid(problems)
    return out


def score(form: Form, answers: Mapping[str, object]) -> Score:
    """The evaluation's score (see the module's formula); EvaluationInvalid for answers that do
    not fit the form or leave nothing to score."""
    given = check_answers(form, answers)
    failed = tuple(q.id for s in form.sections for q in s.questions
                   if q.auto_fail and given[q.id] == 0)
    sections: dict[str, float | None] = {}
    total_w = total = 0.0
    for s in form.sections:
        applicable = [(q, v) for q in s.questions if (v := given[q.id]) != NA]
        weight = sum(q.weight for q, _ in applicable)
        if not applicable or weight == 0:
            sections[s.id] = None
            continue
        fraction = sum(q.weight * int(v) / q.max for q, v in applicable) / weight
        sections[s.id] = round(100 * fraction, 2)
        total += s.weight * fraction
        total_w += s.weight
    if total_w == 0:
        raise EvaluationInvalid(["every question is not applicable: nothing to score"])
    value = 0.0 if failed else min(100.0, max(0.0, round(100 * total / total_w, 2)))
    return Score(value, failed, sections)


@dataclass(frozen=True, slots=True)
class Scored:
    """One stored evaluation, as the averages need it."""

    agent_id: str | None
    team: str | None
    score: float
    auto_failed: bool


@dataclass(frozen=True, slots=True)
class Average:
    key: str
    evaluations: int
    average: float
    auto_failed: int


def averages(rows: list[Scored], by: Literal["agent", "team"]) -> list[Average]:
    """Mean score per agent (or team), with how many evaluations and automatic fails; rows
    without an agent (team) are left out. Sorted by key."""
    groups: dict[str, list[Scored]] = {}
    for r in rows:
        key = r.agent_id if by == "agent" else r.team
        if key:
            groups.setdefault(key, []).append(r)
    return [
        Average(k, len(g), round(sum(r.score for r in g) / len(g), 2),
                sum(r.auto_failed for r in g))
        for k, g in sorted(groups.items())
    ]
