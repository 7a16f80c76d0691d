"""A generated contact-center history (seeded, so the same every run): days of calls to
queues served by their agents, with waits, abandons (short and long), call-backs after the
longest wait, holds, wrap-ups, lunch pauses, log-ins and log-outs, as the ACD would publish
them. Used by the report tests, the reports page's browser test and the report benchmark."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cti.events import (
    AgentStateChanged,
    CallConnected,
    CallEnded,
    CallHeld,
    CallLeftQueue,
    CallQueued,
    CallResumed,
    DomainEvent,
)

# Arrivals per hour of the day (weights): a morning and an afternoon peak.
PROFILE = {8: 4, 9: 8, 10: 10, 11: 9, 12: 5, 13: 6, 14: 9, 15: 10, 16: 8, 17: 6, 18: 4, 19: 2}


@dataclass(frozen=True)
class HistorySpec:
    start: date
    days: int
    calls_per_day: int
    queues: Mapping[str, Sequence[str]]  # queue -> the agents serving it
    tz: str = "Asia/Shanghai"
    seed: int = 7
    max_wait_s: float = 300.0
    wrap_s: float = 15.0
    opens: int = 8  # agents log in at this local hour
    closes: int = 20
    profile: Mapping[int, float] = field(default_factory=lambda: dict(PROFILE))


@dataclass
class _AgentTimeline:
    free_at: datetime
    state: str = "logged_out"
    lunched: bool = False


def history(spec: HistorySpec) -> Iterator[list[DomainEvent]]:
    """Each day's events, in time order."""
    rnd = random.Random(spec.seed)
    tz = ZoneInfo(spec.tz)
    agents = sorted({a for members in spec.queues.values() for a in members})
    queues = sorted(spec.queues)
    hours = sorted(spec.profile)
    weights = [spec.profile[h] for h in hours]
    n = 0
    for d in range(spec.days):
        day = spec.start + timedelta(days=d)
        opens = datetime.combine(day, time(spec.opens), tzinfo=tz)
        closes = datetime.combine(day, time(spec.closes), tzinfo=tz)
        lunch = datetime.combine(day, time(12), tzinfo=tz)
        events: list[DomainEvent] = []
        timeline = {a: _AgentTimeline(opens) for a in agents}

        def move(agent: str, new: str, at: datetime, reason: str | None = None,
                 call: str | None = None, *, _tl: dict[str, _AgentTimeline] = timeline,
                 _out: list[DomainEvent] = events) -> None:
            tl = _tl[agent]
            _out.append(AgentStateChanged(agent, tl.state, new, at, reason, call))
            tl.state = new

        for a in agents:
            login = opens + timedelta(seconds=rnd.uniform(0, 300))
            move(a, "available", login)
            timeline[a].free_at = login
        arrivals = sorted(
            datetime.combine(day, time(h), tzinfo=tz) + timedelta(seconds=rnd.uniform(0, 3600))
            for h in rnd.choices(hours, weights, k=spec.calls_per_day))
        for arrived in arrivals:
            n += 1
            call = f"h{spec.seed}-{n}"
            queue = queues[n % len(queues)] if rnd.random() < 0.5 else rnd.choice(queues)
            events.append(CallQueued(call, queue, 0, 1, arrived))
            members = spec.queues[queue]
            agent = min(members, key=lambda a: timeline[a].free_at)
            tl = timeline[agent]
            if not tl.lunched and tl.free_at < lunch + timedelta(hours=1) and \
                    max(tl.free_at, arrived) >= lunch:
                paused_at = max(tl.free_at, lunch)
                move(agent, "paused", paused_at, "lunch")
                move(agent, "available", paused_at + timedelta(minutes=30))
                tl.free_at, tl.lunched = paused_at + timedelta(minutes=30), True
                agent = min(members, key=lambda a: timeline[a].free_at)
                tl = timeline[agent]
            connect = max(arrived, tl.free_at) + timedelta(seconds=rnd.uniform(1, 4))
            waited = (connect - arrived).total_seconds()
            patience = rnd.expovariate(1 / 120)
            if waited > min(patience, spec.max_wait_s):
                if patience < spec.max_wait_s:
                    left = arrived + timedelta(seconds=patience)
                    events.append(CallLeftQueue(call, queue, "abandoned", patience, left))
                else:
                    left = arrived + timedelta(seconds=spec.max_wait_s)
                    events.append(CallLeftQueue(call, queue, "fallback", spec.max_wait_s, left,
                                                "callback", queue))
                events.append(CallEnded(call, left, 16, None, "caller"))
                continue
            move(agent, "on_call", connect, call=call)
            events.append(CallConnected(call, agent, queue, waited, connect))
            talk = rnd.lognormvariate(5.0, 0.6)  # median about 150 s
            if rnd.random() < 0.2:
                held = connect + timedelta(seconds=talk * rnd.uniform(0.2, 0.6))
                events.append(CallHeld(call, held, agent))
                events.append(CallResumed(call, held + timedelta(seconds=rnd.uniform(10, 60)),
                                          agent))
                talk += 60
            ended = connect + timedelta(seconds=talk)
            events.append(CallEnded(call, ended, 16, None, "caller", agent, queue))
            move(agent, "wrap_up", ended, call=call)
            free = ended + timedelta(seconds=spec.wrap_s)
            move(agent, "available", free)
            tl.free_at = free
        for a in agents:
            move(a, "logged_out", max(closes, timeline[a].free_at) + timedelta(seconds=1))
        events.sort(key=lambda e: e.at)
        yield events


def all_events(spec: HistorySpec) -> list[DomainEvent]:
    return [e for day in history(spec) for e in day]


__all__ = ["HistorySpec", "all_events", "history"]
