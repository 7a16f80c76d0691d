"""The satisfaction survey, pure: its three questions and their keys, the answers read from the
keys the caller pressed, the averages per agent, queue or day, and the additive satisfaction
figures the reports add up per period (docs/reports.md, "Satisfaction").

The survey runs as an IVR flow (ivr_flows/queue_survey.yaml): each question is a menu whose
options are exactly its keys; another key replays the same question, and a question left
unanswered ends the survey. So the answers are the keys in order, an invalid key skipped —
`tally` reads them the same way, whatever the flow's prompts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SPEED_KEYS: Mapping[str, int] = {"5": 5, "3": 3, "1": 1}  # fast / medium / slow
RESOLVED_KEYS: Mapping[str, bool] = {"1": True, "2": False}
ATTITUDE_KEYS: Mapping[str, int] = {"5": 5, "3": 3, "1": 1}
QUESTIONS = ("speed", "resolved", "attitude")


@dataclass(frozen=True, slots=True)
class Answers:
    speed: int | None = None
    resolved: bool | None = None
    attitude: int | None = None

    @property
    def complete(self) -> bool:
        return None not in (self.speed, self.resolved, self.attitude)

    @property
    def empty(self) -> bool:
        return (self.speed, self.resolved, self.attitude) == (None, None, None)


def tally(keys: Iterable[str]) -> Answers:
    """The answers the pressed keys give, question by question (a key the current question does
    not take is skipped: the flow asked again)."""
    speed: int | None = None
    resolved: bool | None = None
    attitude: int | None = None
    for key in keys:
        if speed is None:
            speed = SPEED_KEYS.get(key)
        elif resolved is None:
            resolved = RESOLVED_KEYS.get(key)
        elif attitude is None:
            attitude = ATTITUDE_KEYS.get(key)
    return Answers(speed, resolved, attitude)


def check(speed: int | None, resolved: bool | None, attitude: int | None) -> Answers:
    """Answers given some other way (an agent's call-back survey); ValueError on a bad score."""
    if speed is not None and speed not in SPEED_KEYS.values():
        raise ValueError(f"speed is 5, 3 or 1, not {speed}")
    if attitude is not None and attitude not in ATTITUDE_KEYS.values():
        raise ValueError(f"attitude is 5, 3 or 1, not {attitude}")
    answers = Answers(speed, resolved, attitude)
    if answers.empty:
        raise ValueError("give at least one answer")
    return answers


@dataclass(frozen=True, slots=True)
class Scored:
    """One stored survey as the averages read it."""

    agent_id: str | None
    queue: str | None
    day: str  # YYYY-MM-DD in the report's time zone
    answers: Answers


@dataclass(frozen=True, slots=True)
class Average:
    key: str
    surveys: int
    speed: float | None
    resolved_rate: float | None  # share of "yes" among those who answered
    attitude: float | None


def averages(rows: Sequence[Scored], by: Callable[[Scored], str | None]) -> list[Average]:
    """Per group (agent, queue, day...): surveys, mean speed, resolved share, mean attitude;
    each mean over the surveys that answered that question. Groups sorted by key."""
    groups: dict[str, list[Answers]] = defaultdict(list)
    for row in rows:
        key = by(row)
        if key is not None:
            groups[key].append(row.answers)

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 3) if values else None

    return [
        Average(
            key, len(answers),
            mean([a.speed for a in answers if a.speed is not None]),
            mean([1.0 if a.resolved else 0.0 for a in answers if a.resolved is not None]),
            mean([a.attitude for a in answers if a.attitude is not None]),
        )
        for key, answers in sorted(groups.items())
    ]


@dataclass(frozen=True, slots=True)
class SurveyFact:
    """What the reports count: a survey offered to a caller (`answers` None), or a stored survey.
    `at` is when the survey was offered; a survey stored without an offer (an agent's call-back
    survey) counts when it was stored."""

    at: datetime
    queue: str | None
    agent_id: str | None
    answers: Answers | None = None
    offered: bool = False  # a stored survey: it answers an offer made to the caller


@dataclass(slots=True)
class SurveyFigures:
    """Satisfaction figures that add up (counts and sums), so a day is the sum of its quarter
    hours and a team the sum of its agents; the means and rates are made in `as_dict`."""

    offered: int = 0  # callers put into the keypad survey
    answered: int = 0  # of those, the ones who answered at least one question
    surveys: int = 0  # stored surveys of any channel (keypad and call-back)
    speed_sum: int = 0
    speed_n: int = 0
    attitude_sum: int = 0
    attitude_n: int = 0
    resolved_yes: int = 0
    resolved_n: int = 0

    def count(self, fact: SurveyFact) -> None:
        a = fact.answers
        if a is None:
            self.offered += 1
            return
        self.surveys += 1
        self.answered += fact.offered
        if a.speed is not None:
            self.speed_sum += a.speed
            self.speed_n += 1
        if a.attitude is not None:
            self.attitude_sum += a.attitude
            self.attitude_n += 1
        if a.resolved is not None:
            self.resolved_yes += a.resolved
            self.resolved_n += 1

    def add(self, other: SurveyFigures) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        def ratio(part: int, whole: int) -> float | None:
            return round(part / whole, 4) if whole else None

        return {
            "csat_surveys": self.surveys,
            "csat_offered": self.offered,
            "csat_response_rate": ratio(self.answered, self.offered),
            "csat_speed": ratio(self.speed_sum, self.speed_n),
            "csat_attitude": ratio(self.attitude_sum, self.attitude_n),
            "csat_resolved_rate": ratio(self.resolved_yes, self.resolved_n),
        }


SatisfactionByKey = dict[datetime, dict[str, SurveyFigures]]


def satisfaction(facts: Iterable[SurveyFact], period_of: Callable[[datetime], datetime | None],
                 ) -> tuple[SatisfactionByKey, SatisfactionByKey]:
    """The facts added up per period (`period_of(at)`; None leaves a fact out) and queue, and
    per period and agent. A fact without a queue (or agent) is in no queue (agent) row."""
    queues: SatisfactionByKey = defaultdict(dict)
    agents: SatisfactionByKey = defaultdict(dict)
    for fact in facts:
        period = period_of(fact.at)
        if period is None:
            continue
        if fact.queue is not None:
            queues[period].setdefault(fact.queue, SurveyFigures()).count(fact)
        if fact.agent_id is not None:
            agents[period].setdefault(fact.agent_id, SurveyFigures()).count(fact)
    return dict(queues), dict(agents)
