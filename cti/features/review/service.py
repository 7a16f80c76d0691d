"""Quality review of a call: its time line (from the kept events, the routing decisions and the
recording segments, assembled by the pure cti.domain.review), and evaluations scored with the
YAML forms (cti.domain.evaluation), stored and averaged per agent and team."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from cti.domain.evaluation import Average, Scored, averages, score
from cti.domain.review import Decision, Fact, Review, Segment, build_review
from cti.events import Bus, CallEvaluated
from cti.features.events.store import EventLog
from cti.features.review.forms import EvaluationForms
from cti.features.review.storage import EvaluationStore, NewEvaluation
from cti.platform.clock import Clock
from cti.platform.errors import CtiError, NotFound


class UnknownCall(NotFound):
    error_id = "unknown_call"


class WrongAgent(CtiError):
    """The evaluated agent is not one of the call's."""

    error_id = "wrong_agent"
    http_status = 422


class DecisionReader(Protocol):
    async def decisions_for(self, call_id: str) -> list[dict[str, Any]]: ...


class RecordingReader(Protocol):
    async def of_call(self, call_id: str) -> list[dict[str, Any]]: ...


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def segment_of(row: Mapping[str, Any]) -> Segment:
    return Segment(
        id=int(row["id"]), segment=int(row["segment"]), status=str(row["status"]),
        started_at=_time(row["started_at"]),
        ended_at=_time(row["ended_at"]) if row.get("ended_at") else None,
        agent_id=row.get("agent_id"), reason=row.get("reason"),
        pauses=tuple((_time(p["paused_at"]),
                      _time(p["resumed_at"]) if p.get("resumed_at") else None)
                     for p in row.get("pauses") or ()),
    )


def decision_of(row: Mapping[str, Any]) -> Decision:
    return Decision(
        at=_time(row["at"]), outcome=str(row.get("outcome", "")), queue=str(row.get("queue", "")),
        agent_id=row.get("agent_id"), reason=str(row.get("reason", "")),
        trigger=str(row.get("trigger", "")),
    )


class CallReviews:
    def __init__(
        self, events: EventLog, recordings: RecordingReader, decisions: DecisionReader,
        forms: EvaluationForms, store: EvaluationStore, clock: Clock, bus: Bus,
        team_of: Callable[[str], str | None],
    ) -> None:
        self.events = events
        self.recordings = recordings
        self.decisions = decisions
        self.forms = forms
        self.store = store
        self.clock = clock
        self.bus = bus
        self.team_of = team_of  # from the running routing rules (agents' `team`)

    async def review(self, call_id: str) -> tuple[Review, list[dict[str, Any]]]:
        """The call's time line and its recording rows (the page plays them); UnknownCall when
        nothing is kept of the call."""
        await self.bus.drain(5.0)  # what happened until now is on the time line
        stored = await self.events.read(call_id=call_id, limit=None)
        rows = await self.recordings.of_call(call_id)
        decisions = await self.decisions.decisions_for(call_id)
        if not stored and not rows and not decisions:
            raise UnknownCall(f"nothing is kept of call {call_id!r}")
        facts = [Fact(e.seq, e.at, e.type, e.payload) for e in stored]
        review = build_review(call_id, facts, [segment_of(r) for r in rows],
                              [decision_of(d) for d in decisions])
        return review, rows

    async def evaluate(
        self, call_id: str, *, form_id: str, answers: Mapping[str, object], evaluator: str,
        agent_id: str | None = None, comment: str = "",
    ) -> dict[str, Any]:
        """Score the answers with the form and keep the evaluation. The agent is the call's
        (one who talked in it); a call that had several (a transfer) names which."""
        form = self.forms.get(form_id)
        result = score(form, answers)
        review, _ = await self.review(call_id)
        if agent_id is None:
            if len(review.agents) > 1:
                raise WrongAgent(f"call {call_id} had agents {', '.join(review.agents)}: "
                                 "say which one is evaluated (agent_id)")
            agent_id = review.agents[0] if review.agents else None
        elif agent_id not in review.agents:
            raise WrongAgent(f"agent {agent_id} had no part in call {call_id} (agents: "
                             f"{', '.join(review.agents) or 'none'})")
        team = self.team_of(agent_id) if agent_id else None
        now = self.clock.now()
        row = await self.store.add(NewEvaluation(
            call_id=call_id, agent_id=agent_id, team=team, evaluator=evaluator,
            form_id=form.id, form_version=form.version, answers=dict(answers),
            sections=result.sections, score=result.score, auto_failed=result.auto_failed,
            comment=comment, created_at=now,
        ))
        self.bus.publish(CallEvaluated(
            call_id=call_id, at=now, agent_id=agent_id, team=team, evaluation_id=row["id"],
            form_id=form.id, form_version=form.version, score=result.score,
            auto_failed=bool(result.auto_failed), evaluator=evaluator,
        ))
        return row

    async def evaluations(
        self, *, agent_id: str | None = None, team: str | None = None,
        since: datetime | None = None, until: datetime | None = None,
        call_id: str | None = None,
    ) -> dict[str, Any]:
        """The evaluations in the window, with the mean score per agent and per team."""
        rows = await self.store.find(call_id=call_id, agent_id=agent_id, team=team,
                                     since=since, until=until)
        scored = [Scored(r["agent_id"], r["team"], r["score"], bool(r["auto_failed"]))
                  for r in rows]
        return {
            "evaluations": rows,
            "agents": [_plain(a) for a in averages(scored, "agent")],
            "teams": [_plain(a) for a in averages(scored, "team")],
        }


def _plain(a: Average) -> dict[str, Any]:
    return {"key": a.key, "evaluations": a.evaluations, "average": a.average,
            "auto_failed": a.auto_failed}
