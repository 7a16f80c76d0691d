"""The satisfaction survey, pure: its three questions and their keys, the answers read from the
keys the caller pressed, and the averages per agent, queue or day.

The survey runs as an IVR flow (ivr_flows/queue_survey.yaml): each question is a menu whose
options are exactly its keys; another key replays the same question, and a question left
unanswered ends the survey. So the answers are the keys in order, an invalid key skipped —
`tally` reads them the same way, whatever the flow's prompts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

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
