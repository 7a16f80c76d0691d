"""Contact-center figures from the event stream, defined once (docs/metrics.md) and used by
both the live wallboard and the historical reports: fold the same events, get the same numbers.

Pure: events in (in stream order), figures out; no clock — a period is closed at a time given.
Calls count in the interval their offer began (the interval of `CallQueued`); agents' times are
split at interval boundaries.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cti.domain.periods import FixedPeriods, Periods, WholePeriod
from cti.domain.routing.model import Thresholds
from cti.events import (
    AgentStateChanged,
    CallConnected,
    CallEnded,
    CallHeld,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    CallResumed,
    CallTransferred,
    DomainEvent,
    OfferWithdrawn,
    OutboundCallPlaced,
    ProcedureStarted,
)


@dataclass(frozen=True, slots=True)
class QueueTargets:
    """A queue's service-level threshold, short-abandon threshold and service-level mode."""

    sl_s: float = 20.0
    short_abandon_s: float = 5.0
    sl_mode: Literal["sl", "sl2"] = "sl"
    sl_goal: float = 0.8  # the share of calls to answer within sl_s (colours the wallboard)
    aht_s: float = 180.0  # assumed where an interval handled no call (staffing)
    thresholds: Thresholds = field(default_factory=Thresholds)  # the wallboard tiles' colours


@dataclass
class QueueFigures:
    offered: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0  # short abandons excluded
    abandoned_in_sl: int = 0
    short_abandoned: int = 0
    callbacks: int = 0
    voicemails: int = 0
    after_hours: int = 0
    moved: int = 0  # left for another queue by its fallback
    wait_answered_s: float = 0.0
    longest_wait_answered_s: float = 0.0
    handled: int = 0  # calls whose handling (talk + hold + wrap-up) is complete
    talk_s: float = 0.0
    hold_s: float = 0.0
    wrap_s: float = 0.0
    transfers_out: int = 0
    procedures: dict[str, int] = field(default_factory=dict)

    @property
    def sl(self) -> float | None:
        """Answered within the threshold / answered (Asterisk's servicelevelperf)."""
        return self.answered_in_sl / self.answered if self.answered else None

    @property
    def sl2(self) -> float | None:
        """(Answered + abandoned, each within the threshold) / (answered + abandoned)
        (Asterisk's servicelevelperf2). Short abandons are in neither."""
        total = self.answered + self.abandoned
        return (self.answered_in_sl + self.abandoned_in_sl) / total if total else None

    @property
    def asa_s(self) -> float | None:
        """The mean wait of answered calls (a true mean, not a moving average)."""
        return self.wait_answered_s / self.answered if self.answered else None

    @property
    def aht_s(self) -> float | None:
        """(Talk + hold + wrap-up) / handled calls."""
        return (self.talk_s + self.hold_s + self.wrap_s) / self.handled if self.handled else None

    @property
    def abandonment_rate(self) -> float | None:
        """Abandoned / (answered + abandoned); short abandons excluded from both."""
        total = self.answered + self.abandoned
        return self.abandoned / total if total else None

    def add(self, other: QueueFigures) -> QueueFigures:
        """Add `other`'s counts and times (the figures of two intervals make their union's)."""
        _add(self, other, maxed=("longest_wait_answered_s",))
        return self

    def record(self) -> dict[str, Any]:
        """The counts and times alone (what a roll-up keeps; the ratios follow from them)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def as_dict(self, mode: str = "sl") -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out.update(sl=self.sl, sl2=self.sl2, asa_s=self.asa_s, aht_s=self.aht_s,
                   abandonment_rate=self.abandonment_rate,
                   service_level=self.sl2 if mode == "sl2" else self.sl)
        return out


@dataclass
class AgentFigures:
    calls: int = 0
    on_call_s: float = 0.0  # connected to a caller: talk + hold
    hold_s: float = 0.0
    wrap_s: float = 0.0
    ringing_s: float = 0.0
    available_s: float = 0.0
    pause_s: dict[str, float] = field(default_factory=dict)
    logged_in_s: float = 0.0
    transfers_in: int = 0
    transfers_out: int = 0
    missed: int = 0
    procedures: dict[str, int] = field(default_factory=dict)

    @property
    def talk_s(self) -> float:
        return max(0.0, self.on_call_s - self.hold_s)

    @property
    def paused_s(self) -> float:
        return sum(self.pause_s.values())

    @property
    def occupancy(self) -> float | None:
        """(Talk + hold + wrap-up) / (logged in − paused)."""
        base = self.logged_in_s - self.paused_s
        busy = self.talk_s + self.hold_s + self.wrap_s
        return busy / base if base > 0 else None

    def add(self, other: AgentFigures) -> AgentFigures:
        _add(self, other)
        return self

    def record(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out.update(talk_s=self.talk_s, paused_s=self.paused_s, occupancy=self.occupancy)
        return out


def _add(into: Any, other: Any, maxed: tuple[str, ...] = ()) -> None:
    for name in into.__dataclass_fields__:
        mine, theirs = getattr(into, name), getattr(other, name)
        if isinstance(mine, dict):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        elif name in maxed:
            setattr(into, name, max(mine, theirs))
        else:
            setattr(into, name, mine + theirs)


@dataclass
class _Call:
    queue: str | None = None
    bucket: datetime | None = None  # the interval its (first) offer began in
    offered_in: set[str] = field(default_factory=set)
    answered: bool = False
    agent: str | None = None
    connected_at: datetime | None = None
    held_at: datetime | None = None
    hold_s: float = 0.0
    transferred_from: str | None = None
    ended: bool = False
    queued_at: datetime | None = None  # when it joined its current queue
    left: bool = False  # left the queue without an agent (abandoned, fallback)


@dataclass
class _Agent:
    state: str = "logged_out"
    since: datetime | None = None
    reason: str | None = None
    call_id: str | None = None


def bucket_of(at: datetime, interval: timedelta | None, origin: datetime) -> datetime:
    """The start of the interval `at` falls in (intervals counted from `origin`)."""
    if interval is None:
        return origin
    n = (at - origin) // interval
    return origin + n * interval


class StatsFold:
    """Fold events (in stream order) into figures per interval, queue and agent.

    `interval=None`: one bucket for the whole period. `origin`: where intervals start (a local
    midnight for business-day reports: pass it in the report's time zone). `periods`, when
    given, instead: calendar days, weeks or months (cti/domain/periods.py)."""

    def __init__(
        self, targets: Callable[[str], QueueTargets] | None = None,
        interval: timedelta | None = None,
        origin: datetime = datetime(2000, 1, 1, tzinfo=UTC),
        periods: Periods | None = None,
    ) -> None:
        self.targets = targets or (lambda _q: QueueTargets())
        self.interval = interval
        self.origin = origin
        self.periods: Periods = periods or (
            WholePeriod(origin) if interval is None else FixedPeriods(interval, origin))
        self.queues: dict[datetime, dict[str, QueueFigures]] = defaultdict(dict)
        self.agents: dict[datetime, dict[str, AgentFigures]] = defaultdict(dict)
        self._calls: dict[str, _Call] = {}
        self._agents: dict[str, _Agent] = {}
        # calls agents placed: the agent's figures count them, no queue's do
        self._outbound: set[str] = set()

    # ----- reading --------------------------------------------------------------------------

    def queue(self, name: str, bucket: datetime | None = None) -> QueueFigures:
        b = self.origin if bucket is None else bucket
        return self.queues[b].setdefault(name, QueueFigures())

    def agent(self, agent_id: str, bucket: datetime | None = None) -> AgentFigures:
        b = self.origin if bucket is None else bucket
        return self.agents[b].setdefault(agent_id, AgentFigures())

    def waiting_since(self, queue: str) -> list[datetime]:
        """When each call waiting in `queue` now (offered, not answered, not gone) joined it."""
        return [c.queued_at for c in self._calls.values()
                if c.queue == queue and c.queued_at is not None and not c.answered
                and not c.left]

    # ----- folding --------------------------------------------------------------------------

    def apply_all(self, events: Iterable[DomainEvent]) -> StatsFold:
        for e in events:
            self.apply(e)
        return self

    def apply(self, e: DomainEvent) -> None:
        call: _Call | None
        if isinstance(e, CallQueued):
            call = self._calls.setdefault(e.call_id, _Call())
            if call.bucket is None:
                call.bucket = self._bucket(e.at)
            if e.queue not in call.offered_in:  # a requeue after a missed ring is one offer
                call.offered_in.add(e.queue)
                self._q(call, e.queue).offered += 1
            call.queue, call.queued_at, call.left = e.queue, e.at, False
        elif isinstance(e, OutboundCallPlaced):
            self._outbound.add(e.call_id)
        elif isinstance(e, CallOffered) and e.call_id not in self._outbound:
            # A caller offered at once to a free agent never waited: the ACD publishes no
            # CallQueued for it, so its offer is where it entered the queue. (An offer to a
            # call a queue counted already, a re-offer or a transfer, counts nothing here.)
            call = self._calls.setdefault(e.call_id, _Call())
            if not call.offered_in:
                entered = e.at - timedelta(seconds=e.waited_s)
                if call.bucket is None:
                    call.bucket = self._bucket(entered)
                call.offered_in.add(e.queue)
                self._q(call, e.queue).offered += 1
                call.queue, call.queued_at, call.left = e.queue, entered, False
        elif isinstance(e, CallConnected):
            outbound = e.call_id in self._outbound
            call = self._calls.setdefault(e.call_id, _Call(queue=None if outbound else e.queue))
            if call.bucket is None:
                call.bucket = self._bucket(e.at)
            if call.transferred_from is not None:
                self._a(e.agent_id, e.at).transfers_in += 1
            elif outbound:
                pass
            elif not call.answered:
                q = self._q(call, e.queue)
                q.answered += 1
                q.wait_answered_s += e.waited_s
                q.longest_wait_answered_s = max(q.longest_wait_answered_s, e.waited_s)
                if e.waited_s <= self.targets(e.queue).sl_s:
                    q.answered_in_sl += 1
            call.answered = True
            call.queue = call.queue or (None if outbound else e.queue)
            call.agent, call.connected_at, call.transferred_from = e.agent_id, e.at, None
            self._a(e.agent_id, e.at).calls += 1
        elif isinstance(e, CallLeftQueue):
            call = self._calls.get(e.call_id) or _Call(queue=e.queue, bucket=self._bucket(e.at))
            call.left = True
            q = self._q(call, e.queue)
            t = self.targets(e.queue)
            if e.outcome == "abandoned":
                if e.waited_s < t.short_abandon_s:
                    q.short_abandoned += 1
                else:
                    q.abandoned += 1
                    q.abandoned_in_sl += e.waited_s <= t.sl_s
            elif e.fallback == "callback":
                q.callbacks += 1
            elif e.fallback == "voicemail":
                q.voicemails += 1
            elif e.fallback == "after_hours":
                q.after_hours += 1
            else:
                q.moved += 1
        elif isinstance(e, CallHeld):
            call = self._calls.get(e.call_id)
            if call is not None and call.held_at is None:
                call.held_at = e.at
        elif isinstance(e, CallResumed):
            self._resume(e.call_id, e.at)
        elif isinstance(e, CallTransferred):
            call = self._calls.get(e.call_id)
            if call is not None and call.agent is not None:
                self._talk_ends(e.call_id, call, e.at, handled=False)
                self._q(call, call.queue or "").transfers_out += 1
                call.transferred_from, call.agent = e.agent_id, None
            if e.agent_id:
                self._a(e.agent_id, e.at).transfers_out += 1
        elif isinstance(e, CallEnded):
            self._outbound.discard(e.call_id)
            call = self._calls.get(e.call_id)
            if call is not None:
                call.ended = True
                agent = call.agent
                if agent is not None:
                    self._talk_ends(e.call_id, call, e.at, handled=True)
                wrapping = agent is not None and self._agents.get(agent, _Agent()).state in (
                    "on_call", "wrap_up")
                if not wrapping:  # nothing more will be counted for it
                    self._calls.pop(e.call_id, None)
        elif isinstance(e, OfferWithdrawn):
            if e.reason == "no_answer":
                self._a(e.agent_id, e.at).missed += 1
        elif isinstance(e, ProcedureStarted):
            call = self._calls.get(e.call_id)
            if call is not None and call.queue:
                procs = self._q(call, call.queue).procedures
                procs[e.procedure] = procs.get(e.procedure, 0) + 1
            agent = call.agent if call is not None else None
            if agent:
                a = self._a(agent, e.at)
                a.procedures[e.procedure] = a.procedures.get(e.procedure, 0) + 1
        elif isinstance(e, AgentStateChanged):
            self._agent_state(e)

    def close(self, at: datetime) -> StatsFold:
        """Count every open agent state and hold up to `at` (the end of a report, or now)."""
        for call_id, call in self._calls.items():
            if call.held_at is not None:
                self._resume(call_id, at)
                call.held_at = at  # still on hold: a later close goes on from here
        for agent_id, st in self._agents.items():
            if st.since is not None and st.since < at:
                self._segment(agent_id, st, st.since, at)
                st.since = at
        return self

    def open_part(self, at: datetime) -> StatsFold:
        """What `close(at)` would add (agents' states and holds still open), in a new fold;
        this one unchanged. Figures kept so far plus these are the figures up to `at`."""
        other = StatsFold(self.targets, self.interval, self.origin, self.periods)
        other._calls = copy.deepcopy(self._calls)
        other._agents = copy.deepcopy(self._agents)
        return other.close(at)

    def take(self) -> tuple[dict[datetime, dict[str, QueueFigures]],
                            dict[datetime, dict[str, AgentFigures]]]:
        """The figures added since the last take, leaving the calls' and agents' states (a
        roll-up keeps these and the fold goes on)."""
        queues, agents = self.queues, self.agents
        self.queues, self.agents = defaultdict(dict), defaultdict(dict)
        return queues, agents

    # ----- inside ---------------------------------------------------------------------------

    def _bucket(self, at: datetime) -> datetime:
        return self.periods.start(at)

    def _q(self, call: _Call, queue: str) -> QueueFigures:
        return self.queue(queue, call.bucket)

    def _a(self, agent_id: str, at: datetime) -> AgentFigures:
        return self.agent(agent_id, self._bucket(at))

    def _resume(self, call_id: str, at: datetime) -> None:
        call = self._calls.get(call_id)
        if call is None or call.held_at is None:
            return
        held = max(0.0, (at - call.held_at).total_seconds())
        call.hold_s += held
        call.held_at = None
        if call.queue:
            self._q(call, call.queue).hold_s += held
        if call.agent:
            self._a(call.agent, at).hold_s += held

    def _talk_ends(self, call_id: str, call: _Call, at: datetime, *, handled: bool) -> None:
        self._resume(call_id, at)
        if call.connected_at is not None and call.queue:
            q = self._q(call, call.queue)
            q.talk_s += max(0.0, (at - call.connected_at).total_seconds() - call.hold_s)
            q.handled += handled
        call.connected_at, call.hold_s = None, 0.0
        if handled:
            call.agent = None

    def _agent_state(self, e: AgentStateChanged) -> None:
        st = self._agents.setdefault(e.agent_id, _Agent())
        if st.since is not None:
            self._segment(e.agent_id, st, st.since, e.at)
        if st.state == "wrap_up" and e.new != "wrap_up":  # the call's handling is complete
            done = self._calls.get(st.call_id or "")
            if done is not None and done.ended:
                del self._calls[st.call_id or ""]
        st.state, st.since, st.reason = e.new, e.at, e.reason
        st.call_id = e.call_id or (st.call_id if e.new == "wrap_up" else None)

    def _segment(self, agent_id: str, st: _Agent, start: datetime, end: datetime) -> None:
        """Add [start, end) in state `st` to the agent's figures, split at interval edges."""
        if st.state == "logged_out":  # nothing is counted (and no empty rows made)
            return
        t = start
        while t < end:
            b = self._bucket(t)
            edge = min(end, self.periods.next(b))
            secs = (edge - t).total_seconds()
            a = self.agent(agent_id, b)
            a.logged_in_s += secs
            if st.state == "on_call":
                a.on_call_s += secs
            elif st.state == "wrap_up":
                a.wrap_s += secs
                call = self._calls.get(st.call_id or "")
                if call is not None and call.queue:
                    self._q(call, call.queue).wrap_s += secs
            elif st.state == "paused":
                key = st.reason or "paused"
                a.pause_s[key] = a.pause_s.get(key, 0.0) + secs
            elif st.state == "reserved":
                a.ringing_s += secs
            elif st.state == "available":
                a.available_s += secs
            t = edge
