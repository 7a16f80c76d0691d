"""Our calls in Asterisk's queue_log format (pure: events in, lines out).

Reporting tools contact centers already run on Asterisk (QueueMetrics and the like) read
`/var/log/asterisk/queue_log`: one line per queue event,

    epoch|callid|queuename|agent|event|data1|data2|...

`QueueLog.feed(seq, event)` turns our domain events, in stream order, into those lines, keeping
what a line needs from earlier events (the caller's number, when the call entered the queue,
its place, the agent being rung). The field mapping, and what we write where Asterisk has no
equivalent, is in docs/queue_log.md; in short:

- callid: our call id (the caller's channel id); "NONE" for member events, as Asterisk.
- agent: `Agent/<agent id>`; "NONE" where Asterisk writes NONE (ENTERQUEUE, ABANDON, EXIT...).
- queuename: the routing queue; member events (ADDMEMBER, REMOVEMEMBER, PAUSE, UNPAUSE) get
  one line per queue the agent serves (`member_queues(rules)`), or "NONE" if none is known.
- times: the epoch second of the event; holdtime, waittime and calltime are differences of
  those epoch seconds (so CONNECT's epoch - ENTERQUEUE's epoch == holdtime, as Asterisk);
  RINGNOANSWER/RINGCANCELED's ringtime is in milliseconds, CONNECT's in seconds.
- positions: the call's place among the callers in the same queue, waiting or being rung
  (priority first, then arrival; 1 = next), as this stream shows them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cti.domain.routing.model import AgentProfile, Queue, RoutingRules, SkillRequirement
from cti.events import (
    AgentStateChanged,
    CallArrived,
    CallConnected,
    CallEnded,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    CallTransferred,
    DomainEvent,
    OfferWithdrawn,
    OutboundCallPlaced,
    TransferCancelled,
    TransferStarted,
)

NONE = "NONE"
AGENT_PREFIX = "Agent/"
MAX_CALLS = 100_000  # calls remembered at once; the oldest go first (a stream cut mid-call)

QueuesOf = Callable[[str], Sequence[str]]


@dataclass(frozen=True, slots=True)
class QueueLogLine:
    time: int  # epoch seconds
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...] = ()

    def __str__(self) -> str:
        fields = (str(self.time), self.callid, self.queue, self.agent, self.event, *self.data)
        return "|".join(_clean(f) for f in fields)


def _clean(value: str) -> str:
    """No field may break the line apart: a '|' or a line break becomes '_'."""
    return value.replace("|", "_").replace("\n", "_").replace("\r", "_")


def agent_field(agent_id: str) -> str:
    return f"{AGENT_PREFIX}{agent_id}"


# ----- members: the queues each agent serves ----------------------------------------------


def _reaches(rules: RoutingRules, queue: Queue, agent: AgentProfile) -> bool:
    """The queue's calls can reach the agent: its skills, or one of its relaxation steps."""
    requirements = [queue.skills]
    for step in queue.relaxation:
        if step.kind == "lower_proficiency":
            requirements.append(queue.skills.lowered_to(step.min_proficiency))
        elif step.kind == "add_skill":
            requirements.append(SkillRequirement.of({step.skill: step.level}))
        elif step.queue in rules.queues:
            requirements.append(rules.queues[step.queue].skills)
    return any(r.matches(agent.skills) for r in requirements)


def member_queues(rules: RoutingRules) -> dict[str, tuple[str, ...]]:
    """Agent id -> the queues whose calls the rules can offer them (the queue_log's members)."""
    return {
        agent.id: tuple(q.name for q in rules.queues.values() if _reaches(rules, q, agent))
        for agent in rules.agents.values()
    }


def queues_from(
    source: Mapping[str, Sequence[str]] | QueuesOf | RoutingRules | None,
) -> QueuesOf:
    """A `queues_of(agent_id)` from a mapping, the routing rules, or a function."""
    if source is None:
        return lambda _agent: ()
    if isinstance(source, RoutingRules):
        source = member_queues(source)
    if isinstance(source, Mapping):
        table = source
        return lambda agent: tuple(table.get(agent, ()))
    return source


# ----- the converter -------------------------------------------------------------------------


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def epoch(at: datetime) -> int:
    return math.floor(_utc(at).timestamp())


def _seconds(start: datetime, end: datetime) -> int:
    """Whole seconds between the two events' epoch seconds, as Asterisk counts them."""
    return max(0, epoch(end) - epoch(start))


def _elapsed_ms(start: datetime, end: datetime) -> int:
    return max(0, int((_utc(end) - _utc(start)).total_seconds() * 1000))


@dataclass(slots=True)
class _Offer:
    agent_id: str
    at: datetime
    offer_id: str
    answered_at: datetime | None = None  # the agent's phone answered (their on_call)


@dataclass(slots=True)
class _Connection:
    agent_id: str
    at: datetime
    holdtime: int
    agent_left: bool = False  # the agent's leg ended before the call did


@dataclass(slots=True, eq=False)
class _Stay:
    """The call's time in one queue: from ENTERQUEUE to CONNECT and its end, or its exit."""

    queue: str
    entered_at: datetime
    priority: int
    order: int  # arrival order among every stay, for positions
    origposition: int
    offer: _Offer | None = None
    connection: _Connection | None = None


@dataclass(slots=True)
class _Call:
    caller: str = ""
    stay: _Stay | None = None
    transfer: TransferStarted | None = None  # asked for, not yet done or cancelled
    transfer_logged: bool = False  # TRANSFER already written for it (at the re-entry)
    consult: _Offer | None = None  # an attended transfer's colleague being rung / consulted
    ended: bool = False


@dataclass
class QueueLog:
    """Feed it events in stream order; it returns each one's queue_log lines (often none)."""

    queues_of: QueuesOf = field(default_factory=lambda: queues_from(None))
    _calls: dict[str, _Call] = field(default_factory=dict)
    _waiting: dict[str, list[_Stay]] = field(default_factory=dict)  # queue -> its stays
    _order: int = 0
    _last_seq: int | None = None
    # calls agents placed (docs/outbound_calls.md): not queue calls, no queue_log lines
    _outbound: set[str] = field(default_factory=set)

    @classmethod
    def for_members(
        cls, members: Mapping[str, Sequence[str]] | QueuesOf | RoutingRules | None
    ) -> QueueLog:
        return cls(queues_from(members))

    def feed(self, seq: int, event: DomainEvent) -> list[QueueLogLine]:
        """The lines for `event`. An event at or below the last seq seen is a replay: none."""
        if self._last_seq is not None and seq <= self._last_seq:
            return []
        self._last_seq = seq
        out: list[QueueLogLine] = []
        if isinstance(event, OutboundCallPlaced):
            self._outbound.add(event.call_id)
            return out
        if self._outbound and getattr(event, "call_id", None) in self._outbound:
            if isinstance(event, CallEnded):
                self._outbound.discard(event.call_id)
            return out
        match event:
            case CallArrived():
                self._call(event.call_id).caller = event.caller_number
            case CallQueued():
                self._queued(event, out)
            case CallOffered():
                self._offered(event, out)
            case OfferWithdrawn():
                self._withdrawn(event, out)
            case CallConnected():
                self._connected(event, out)
            case CallLeftQueue():
                self._left(event, out)
            case TransferStarted():
                call = self._calls.get(event.call_id)
                if call is not None and _connected(call.stay):
                    call.transfer, call.transfer_logged = event, False
            case TransferCancelled():
                call = self._calls.get(event.call_id)
                if call is not None:
                    call.transfer, call.transfer_logged, call.consult = None, False, None
            case CallTransferred():
                self._transferred(event, out)
            case CallEnded():
                self._ended(event, out)
            case AgentStateChanged():
                self._agent(event, out)
            case _:
                pass
        return out

    # ----- calls --------------------------------------------------------------------------

    def _call(self, call_id: str) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            if len(self._calls) >= MAX_CALLS:
                oldest = next(iter(self._calls))
                self._forget(oldest)
            call = self._calls[call_id] = _Call()
        return call

    def _forget(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        if call is not None and call.stay is not None:
            self._unlist(call.stay)

    def _enter(
        self, call_id: str, call: _Call, queue: str, at: datetime, priority: int,
        out: list[QueueLogLine],
    ) -> _Stay:
        self._order += 1
        stay = _Stay(queue, at, priority, self._order, 0)
        self._waiting.setdefault(queue, []).append(stay)
        stay.origposition = self._position(stay)
        call.stay = stay
        out.append(QueueLogLine(epoch(at), call_id, queue, NONE, "ENTERQUEUE",
                                ("", call.caller, str(stay.origposition))))
        return stay

    def _unlist(self, stay: _Stay) -> None:
        stays = self._waiting.get(stay.queue)
        if stays is not None and stay in stays:
            stays.remove(stay)
            if not stays:
                del self._waiting[stay.queue]

    def _position(self, stay: _Stay) -> int:
        ahead = sum(
            1 for other in self._waiting.get(stay.queue, ())
            if other is not stay and (
                other.priority > stay.priority
                or (other.priority == stay.priority and other.order < stay.order)
            )
        )
        return ahead + 1

    def _exit(
        self, call_id: str, stay: _Stay, event: str, at: datetime, out: list[QueueLogLine]
    ) -> None:
        """The call leaves its queue without an agent: ABANDON or EXITWITHTIMEOUT."""
        position = self._position(stay)
        if stay.offer is not None:  # the caller hung up while an agent's phone rang
            out.append(QueueLogLine(epoch(at), call_id, stay.queue,
                                    agent_field(stay.offer.agent_id), "RINGCANCELED",
                                    (str(_elapsed_ms(stay.offer.at, at)),)))
            stay.offer = None
        out.append(QueueLogLine(epoch(at), call_id, stay.queue, NONE, event,
                                (str(position), str(stay.origposition),
                                 str(_seconds(stay.entered_at, at)))))
        self._unlist(stay)

    def _moved(
        self, call_id: str, call: _Call, queue: str, at: datetime, out: list[QueueLogLine]
    ) -> _Stay:
        """The rules moved the waiting call to another queue (a target's timeout, a queue
        fallback): our events show it only with the next offer, which names the new queue."""
        old = call.stay
        assert old is not None
        self._exit(call_id, old, "EXITWITHTIMEOUT", at, out)
        return self._enter(call_id, call, queue, at, old.priority, out)

    def _transfer_line(
        self, call_id: str, call: _Call, stay: _Stay, at: datetime, out: list[QueueLogLine],
        source: CallTransferred | TransferStarted,
    ) -> None:
        conn = stay.connection
        assert conn is not None
        pending = call.transfer
        target = source.target or (pending.target if pending else "") or (
            call.consult.agent_id if call.consult else ""
        )
        context = source.target_type or (pending.target_type if pending else "")
        out.append(QueueLogLine(epoch(at), call_id, stay.queue, agent_field(conn.agent_id),
                                "TRANSFER", (target, context, str(conn.holdtime),
                                             str(_seconds(conn.at, at)),
                                             str(stay.origposition))))
        call.stay = None

    def _reentry(
        self, call_id: str, call: _Call, queue: str, at: datetime, priority: int,
        out: list[QueueLogLine],
    ) -> _Stay:
        """The call (re)enters `queue`: closes what it was in, then ENTERQUEUE."""
        stay = call.stay
        if stay is not None and stay.connection is not None:
            # A blind transfer: the ACD takes the call back before CallTransferred is out.
            if call.transfer is not None and not call.transfer_logged:
                self._transfer_line(call_id, call, stay, at, out, call.transfer)
                call.transfer_logged = True
            call.stay = None
        elif stay is not None:
            self._moved(call_id, call, queue, at, out)
            assert call.stay is not None
            return call.stay
        return self._enter(call_id, call, queue, at, priority, out)

    def _queued(self, e: CallQueued, out: list[QueueLogLine]) -> None:
        call = self._call(e.call_id)
        stay = call.stay
        if stay is not None and stay.connection is None and stay.queue == e.queue:
            return  # taken back after a restart: still the same stay
        self._reentry(e.call_id, call, e.queue, e.at, e.priority, out)

    def _offered(self, e: CallOffered, out: list[QueueLogLine]) -> None:
        call = self._call(e.call_id)
        if not call.caller:
            call.caller = e.caller_number
        offer = _Offer(e.agent_id, e.at, e.offer_id)
        stay = call.stay
        if stay is not None and stay.connection is not None:
            blind = call.transfer is not None and call.transfer.kind != "attended"
            if not blind:  # an attended transfer's consultation: the call stays with its agent
                call.consult = offer
                return
        if stay is None or stay.connection is not None or stay.queue != e.queue:
            stay = self._reentry(e.call_id, call, e.queue, e.at, 0, out)
        stay.offer = offer

    def _withdrawn(self, e: OfferWithdrawn, out: list[QueueLogLine]) -> None:
        call = self._calls.get(e.call_id)
        if call is None:
            return
        if call.consult is not None and _same(call.consult, e.agent_id, e.offer_id):
            call.consult = None  # the colleague did not take the consultation
            return
        stay = call.stay
        if stay is None or stay.offer is None or not _same(stay.offer, e.agent_id, e.offer_id):
            return
        event = "RINGCANCELED" if e.reason == "caller_hangup" else "RINGNOANSWER"
        out.append(QueueLogLine(epoch(e.at), e.call_id, stay.queue, agent_field(e.agent_id),
                                event, (str(_elapsed_ms(stay.offer.at, e.at)),)))
        stay.offer = None

    def _connected(self, e: CallConnected, out: list[QueueLogLine]) -> None:
        call = self._call(e.call_id)
        stay = call.stay
        if stay is None or stay.connection is not None:
            # Its start lies before this stream (or it was never seen): no ENTERQUEUE, the
            # hold time is the ACD's own.
            self._order += 1
            stay = call.stay = _Stay(e.queue, e.at, 0, self._order, 1)
            stay.entered_at = datetime.fromtimestamp(
                epoch(e.at) - max(0, math.floor(e.waited_s)), UTC
            )
        elif stay.queue != e.queue:
            stay = self._moved(e.call_id, call, e.queue, e.at, out)
        offer = stay.offer if stay.offer and stay.offer.agent_id == e.agent_id else None
        answered = (offer.answered_at or e.at) if offer else e.at
        ringtime = int((_utc(answered) - _utc(offer.at)).total_seconds()) if offer else 0
        holdtime = _seconds(stay.entered_at, e.at)
        out.append(QueueLogLine(epoch(e.at), e.call_id, stay.queue, agent_field(e.agent_id),
                                "CONNECT", (str(holdtime), (offer.offer_id if offer else "")
                                    or e.bridge_id, str(max(0, ringtime)))))
        stay.offer = None
        stay.connection = _Connection(e.agent_id, e.at, holdtime)
        self._unlist(stay)

    def _left(self, e: CallLeftQueue, out: list[QueueLogLine]) -> None:
        call = self._calls.get(e.call_id)
        stay = call.stay if call is not None else None
        if call is None or stay is None or stay.connection is not None:
            return  # after hours (never in a queue), or not seen entering
        event = "ABANDON" if e.outcome == "abandoned" else "EXITWITHTIMEOUT"
        self._exit(e.call_id, stay, event, e.at, out)
        call.stay = None
        if call.ended:
            self._forget(e.call_id)

    def _transferred(self, e: CallTransferred, out: list[QueueLogLine]) -> None:
        call = self._calls.get(e.call_id)
        if call is None:
            return
        stay = call.stay
        if not call.transfer_logged and stay is not None and stay.connection is not None:
            self._transfer_line(e.call_id, call, stay, e.at, out, e)
            if call.consult is not None:  # attended: the colleague has the call now
                consult, call.consult = call.consult, None
                self._enter(e.call_id, call, stay.queue, e.at, stay.priority, out)
                assert call.stay is not None
                call.stay.offer = consult
        call.transfer, call.transfer_logged = None, False

    def _ended(self, e: CallEnded, out: list[QueueLogLine]) -> None:
        call = self._calls.get(e.call_id)
        if call is None:
            return
        call.ended = True
        stay = call.stay
        if stay is not None and stay.connection is None:
            return  # waiting: the ACD's CallLeftQueue (abandoned) follows
        if stay is not None and stay.connection is not None:
            conn = stay.connection
            by_agent = conn.agent_left or e.ended_by != "caller"
            out.append(QueueLogLine(epoch(e.at), e.call_id, stay.queue,
                                    agent_field(conn.agent_id),
                                    "COMPLETEAGENT" if by_agent else "COMPLETECALLER",
                                    (str(conn.holdtime), str(_seconds(conn.at, e.at)),
                                     str(stay.origposition))))
            call.stay = None
        self._forget(e.call_id)

    # ----- agents ---------------------------------------------------------------------------

    def _agent(self, e: AgentStateChanged, out: list[QueueLogLine]) -> None:
        if e.call_id is not None:
            self._agent_on_call(e)
        events: list[tuple[str, str]] = []
        if e.old == "logged_out" and e.new != "logged_out":
            events.append(("ADDMEMBER", "PAUSED" if e.new == "paused" else ""))
        if e.new == "paused":
            events.append(("PAUSE", e.reason or ""))
        elif e.old == "paused" and e.new == "available":
            events.append(("UNPAUSE", ""))
        if e.new == "logged_out" and e.old != "logged_out":
            events.append(("REMOVEMEMBER", ""))
        if not events:
            return
        queues = list(self.queues_of(e.agent_id)) or [NONE]
        agent = agent_field(e.agent_id)
        for name, data in events:
            out.extend(QueueLogLine(epoch(e.at), NONE, q, agent, name, (data,)) for q in queues)

    def _agent_on_call(self, e: AgentStateChanged) -> None:
        call = self._calls.get(e.call_id or "")
        if call is None:
            return
        if e.new == "on_call":  # the agent's phone answered: the end of the ring time
            for offer in (call.consult, call.stay.offer if call.stay else None):
                if offer is not None and offer.agent_id == e.agent_id:
                    offer.answered_at = e.at
        conn = call.stay.connection if call.stay else None
        if (
            e.old == "on_call" and conn is not None and conn.agent_id == e.agent_id
            and call.transfer is None and call.consult is None
        ):
            conn.agent_left = True


def _connected(stay: _Stay | None) -> bool:
    return stay is not None and stay.connection is not None


def _same(offer: _Offer, agent_id: str, offer_id: str) -> bool:
    return offer.agent_id == agent_id and (not offer_id or not offer.offer_id
                                           or offer.offer_id == offer_id)


def queue_log_lines(
    events: Iterable[tuple[int, DomainEvent]],
    members: Mapping[str, Sequence[str]] | QueuesOf | RoutingRules | None = None,
) -> list[QueueLogLine]:
    """Every queue_log line of an ordered sequence of (seq, event)."""
    log = QueueLog.for_members(members)
    return [line for seq, event in events for line in log.feed(seq, event)]
