"""The ACD core (pure): the router plus every agent's state machine, events in, commands out.

No I/O and no clock: each method takes `now` (monotonic seconds, for routing) and `at` (UTC
wall time, for records) and returns `Command`s for a driver to execute — the asyncio service
(cti.features.routing.acd) against the PBX, or the simulator
(cti.features.routing.simulate) against a simulated clock.
The router's notion of "available" is kept equal to the agent machine's AVAILABLE state here,
in one place. It also says when a waiting caller is told their place and estimated wait
(`Announce`, per the queue's `announce` rules), from the history it keeps per queue.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cti.domain.agents import state as ag
from cti.domain.routing.decisions import Decision
from cti.domain.routing.events import (
    AgentStateChanged,
    CallConnected,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    OfferWithdrawn,
    RoutingEvent,
    WithdrawReason,
)
from cti.domain.routing.hours import is_open
from cti.domain.routing.model import CallAttributes, Fallback, Queue, RoutingRules
from cti.domain.routing.router import Offer, Router
from cti.domain.staffing import RunningAverage, estimated_wait
from cti.platform.errors import Conflict, NotFound

DECISIONS_PER_CALL = 50


@dataclass(frozen=True, slots=True)
class RingAgent:
    offer_id: str
    call_id: str
    agent_id: str
    endpoint: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class StopRinging:
    offer_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class Connect:
    offer_id: str
    call_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class HoldMusic:
    call_id: str
    moh_class: str
    position: int
    announce: bool


@dataclass(frozen=True, slots=True)
class Announce:
    """Tell a waiting caller their place in `queue` (1 = next) and the estimated wait; None
    is not to be said (switched off for the queue, or no estimate: nobody serving it)."""

    call_id: str
    queue: str
    position: int | None
    wait_s: float | None
    count: int  # 1 for the call's first announcement


@dataclass(frozen=True, slots=True)
class SendToFallback:
    call_id: str
    fallback: Fallback


@dataclass(frozen=True, slots=True)
class StartWrapUpTimer:
    agent_id: str
    gen: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Emit:
    event: RoutingEvent


@dataclass(frozen=True, slots=True)
class RecordDecision:
    decision: Decision
    at: datetime


Command = (
    RingAgent
    | StopRinging
    | Connect
    | HoldMusic
    | Announce
    | SendToFallback
    | StartWrapUpTimer
    | Emit
    | RecordDecision
)


@dataclass(frozen=True, slots=True)
class Requeued:
    """A caller an earlier process had waiting (or ringing an agent), as its record kept it."""

    call_id: str
    attributes: CallAttributes
    queue: str | None
    since: datetime | None  # when it first entered the ACD


@dataclass(slots=True)
class _Connected:
    call_id: str
    agent_id: str
    queue: str
    wrap_up_s: float
    since: float = 0.0  # connected at (monotonic): handling time for the wait estimate


@dataclass(slots=True)
class _Announcing:
    due: float  # next announcement (monotonic)
    count: int = 0


# Agents who will take the queue's calls as they come: the wait estimate's "agents serving".
_SERVING = frozenset(
    {ag.AgentState.AVAILABLE, ag.AgentState.RESERVED, ag.AgentState.ON_CALL, ag.AgentState.WRAP_UP}
)
HISTORY = 50  # handled calls / answered waits per queue in the running averages


class AcdCore:
    def __init__(self, rules: RoutingRules) -> None:
        self.router = Router(rules)
        self.agents: dict[str, ag.AgentStatus] = {a: ag.AgentStatus(a) for a in rules.agents}
        self._connected: dict[str, _Connected] = {}  # call_id -> who is talking
        self._consulting: dict[str, _Connected] = {}  # call_id -> agent consulting a colleague
        self._decisions: dict[str, deque[tuple[datetime, Decision]]] = {}
        self._announcing: dict[str, _Announcing] = {}  # call_id -> its announcement schedule
        self._handled: dict[str, RunningAverage] = {}  # queue -> talk + wrap-up of its calls
        self._answer_waits: dict[str, RunningAverage] = {}  # queue -> waits of answered calls
        self._qualified: dict[str, tuple[str, ...]] = {}  # queue -> its agents (skills, rules)
        self._cmds: list[Command] = []

    @property
    def rules(self) -> RoutingRules:
        return self.router.rules

    # ----- agents ----------------------------------------------------------------------

    def status(self, agent_id: str) -> ag.AgentStatus:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise NotFound(f"unknown agent {agent_id!r}") from None

    def agent_login(
        self, agent_id: str, now: float, at: datetime, *, available: bool = True
    ) -> list[Command]:
        return self._agent(agent_id, ag.Login(available), now, at)

    def agent_available(self, agent_id: str, now: float, at: datetime) -> list[Command]:
        return self._agent(agent_id, ag.MakeAvailable(), now, at)

    def agent_pause(self, agent_id: str, reason: str, now: float, at: datetime) -> list[Command]:
        return self._agent(agent_id, ag.Pause(reason), now, at)

    def agent_logout(self, agent_id: str, now: float, at: datetime) -> list[Command]:
        return self._agent(agent_id, ag.Logout(), now, at)

    def wrap_up_elapsed(self, agent_id: str, gen: int, now: float, at: datetime) -> list[Command]:
        return self._agent(agent_id, ag.WrapUpElapsed(gen), now, at)

    def set_skills(
        self, agent_id: str, skills: Mapping[str, int], now: float, at: datetime
    ) -> list[Command]:
        self._cmds = []
        self._qualified.clear()
        for d in self.router.set_skills(agent_id, skills, now):
            self._decision(d, at)
        return self._take()

    def _agent(
        self, agent_id: str, event: ag.AgentEvent, now: float, at: datetime
    ) -> list[Command]:
        self._cmds = []
        if agent_id not in self.rules.agents and isinstance(
            event, ag.Login | ag.MakeAvailable | ag.Pause
        ):
            # Removed by a rules reload: they finish what they had, then take nothing new.
            self.status(agent_id)  # NotFound for an agent never known
            raise NotFound(f"agent {agent_id!r} is no longer in the routing rules")
        self._step_agent(agent_id, event, now, at)
        return self._take()

    def _step_agent(self, agent_id: str, event: ag.AgentEvent, now: float, at: datetime) -> None:
        old = self.status(agent_id)
        new, effects = ag.step(old, event, at, max_missed=self.rules.max_missed_offers)
        self.agents[agent_id] = new
        for eff in effects:
            if isinstance(eff, ag.StateChange):
                self._cmds.append(
                    Emit(
                        AgentStateChanged(
                            agent_id,
                            eff.old.value,
                            eff.new.value,
                            eff.at,
                            eff.reason,
                            eff.call_id,
                        )
                    )
                )
            else:
                self._cmds.append(StartWrapUpTimer(eff.agent_id, eff.gen, eff.seconds))
        S = ag.AgentState
        if (
            old.state is S.AVAILABLE
            and new.state is not S.AVAILABLE
            and new.state is not S.RESERVED
        ):
            self.router.agent_unready(agent_id)
        if (
            new.state is S.AVAILABLE
            and old.state is not S.AVAILABLE
            and agent_id in self.rules.agents
        ):
            after_call = old.state in (S.WRAP_UP, S.ON_CALL)
            self._decision(self.router.agent_ready(agent_id, now, after_call=after_call), at)

    # ----- calls -----------------------------------------------------------------------

    def enqueue(
        self, call_id: str, attributes: CallAttributes, now: float, at: datetime
    ) -> list[Command]:
        """A caller enters the ACD (after the IVR). Closed hours send it to the after-hours
        fallback; otherwise it hears hold music and is offered to the best agent at once, or
        waits."""
        self._cmds = []
        hours = self.rules.business_hours
        if hours is not None and not is_open(hours, at):
            self._cmds.append(SendToFallback(call_id, hours.after_hours))
            self._cmds.append(
                Emit(
                    CallLeftQueue(
                        call_id,
                        "",
                        "fallback",
                        0.0,
                        at,
                        "after_hours",
                        hours.after_hours.mailbox or hours.after_hours.queue or None,
                    )
                )
            )
            return self._take()
        self._decision(self.router.enqueue(call_id, attributes, now), at)
        return self._take()

    # ----- after a service restart ------------------------------------------------------

    def restore_agent(
        self, agent_id: str, state: str, reason: str | None, now: float, at: datetime
    ) -> list[Command]:
        """Put a logged-out agent back where the last process left them (its last recorded
        state): available, or paused with its reason; an agent who was ringing, talking or
        in wrap-up was working, so comes back available (or on the call, if it is adopted)."""
        self._cmds = []
        S = ag.AgentState
        if self.status(agent_id).state is not S.LOGGED_OUT or state == S.LOGGED_OUT:
            return []
        if state == S.PAUSED:
            self._step_agent(agent_id, ag.Login(False), now, at)
            if reason and reason != "login":
                self._step_agent(agent_id, ag.Pause(reason), now, at)
        else:
            self._step_agent(agent_id, ag.Login(True), now, at)
        return self._take()

    def adopt_connected(
        self, call_id: str, agent_id: str, queue: str | None, now: float, at: datetime
    ) -> list[Command]:
        """A call an earlier process connected is still up with `agent_id` on it: the agent
        is on that call again (wrap-up and the next offer follow its end as usual)."""
        self._cmds = []
        name = queue if queue is not None and queue in self.rules.queues else (
            self.rules.default_queue
        )
        self._step_agent(agent_id, ag.ResumeCall(call_id), now, at)
        self.router.agent_call_started(agent_id, now)
        wrap = self.rules.queues[name].wrap_up_s
        self._connected[call_id] = _Connected(call_id, agent_id, name, wrap, now)
        return self._take()

    def outbound_started(
        self, call_id: str, agent_id: str, queue: str | None, now: float, at: datetime
    ) -> list[Command]:
        """The agent places a call (docs/outbound_calls.md): on that call from now, its end
        brings the wrap-up of `queue` (the default queue when not a known one) as usual.
        IllegalTransition when the agent is not available or paused."""
        self._cmds = []
        name = queue if queue is not None and queue in self.rules.queues else (
            self.rules.default_queue
        )
        self._step_agent(agent_id, ag.PlaceCall(call_id), now, at)
        self.router.agent_call_started(agent_id, now)
        wrap = self.rules.queues[name].wrap_up_s
        self._connected[call_id] = _Connected(call_id, agent_id, name, wrap, now)
        return self._take()

    def keep_place(self, call_id: str) -> bool:
        """The waiting caller left the queue for a call-back (docs/queue_callbacks.md): the
        call keeps its place (entry time, order) in the router; only the announcements to a
        channel that is gone stop. False when it is not waiting (offered, connected, gone)."""
        if self.router.queue_of(call_id) is None or self.router.offer_of_call(call_id) is not None:
            return False
        self._announcing.pop(call_id, None)
        return self.router.keep(call_id)

    def restore_callback(
        self, call_id: str, attributes: CallAttributes, queue: str | None, waited_s: float,
        now: float, at: datetime,
    ) -> list[Command]:
        """A call-back waits again at its place (`waited_s` since it first entered): after a
        restart, or when its next attempt is due. Offered at once when an agent is free."""
        self._cmds = []
        self._decision(self.router.restore_kept(call_id, attributes, queue, waited_s, now), at)
        self._announcing.pop(call_id, None)
        # Nobody on the line to play music or announcements to, and the call was counted
        # as queued when it first came: only the offer (if any) and the decision remain.
        return [c for c in self._take() if not isinstance(c, HoldMusic | Announce) and not (
            isinstance(c, Emit) and isinstance(c.event, CallQueued))]

    def requeue(
        self, call_id: str, attributes: CallAttributes, queue: str | None, now: float,
        at: datetime, since: datetime | None = None,
    ) -> list[Command]:
        """A call an earlier process had queued (or was ringing an agent for) waits again in
        the queue it was in, or goes through the rules if that queue is gone. `since`: when
        it first entered the ACD (wall clock, as kept): it takes its place from then, ahead
        of anyone who came later, and its waits count from then. Without it: from `now`."""
        self._cmds = []
        # The router counts on this process's monotonic clock: the kept wall time becomes a
        # point as far back on it as the call has been waiting (never in the future).
        entered = now - max((at - since).total_seconds(), 0.0) if since is not None else None
        if queue is not None and queue in self.rules.queues:
            self._decision(
                self.router.transfer(call_id, attributes, now, queue=queue, since=entered), at
            )
        else:
            self._decision(self.router.enqueue(call_id, attributes, now, since=entered), at)
        return self._take()

    def requeue_all(
        self, calls: Iterable[Requeued], now: float, at: datetime
    ) -> list[Command]:
        """Callers adopted together (after a takeover, each PBX's resync adopts its own at the
        same time, in no order across PBXs): put back in the order they first waited, so an
        agent free at that moment is offered the first in line, whichever PBX it is on. Those
        without a kept time come after, in the order given."""
        out: list[Command] = []
        for c in sorted(calls, key=lambda c: (c.since is None, c.since or at)):
            out.extend(self.requeue(c.call_id, c.attributes, c.queue, now, at, since=c.since))
        return out

    def caller_hangup(self, call_id: str, now: float, at: datetime) -> list[Command]:
        """The caller's channel ended: while waiting, ringing an agent, or talking."""
        self._cmds = []
        self._announcing.pop(call_id, None)
        consulting = self._consulting.pop(call_id, None)
        if consulting is not None:
            self._release(consulting, now, at)
        if call_id in self._connected:
            self._end_call(call_id, now, at)
            return self._take()
        d, offer = self.router.remove_call(call_id, now)
        if d is not None:
            self._decision(d, at)
            self._cmds.append(Emit(CallLeftQueue(call_id, d.queue, "abandoned", d.waited_s, at)))
        if offer is not None:
            self._cmds.append(StopRinging(offer.offer_id, offer.agent_id))
            self._withdraw(offer, "caller_hangup", at)
            self._step_agent(offer.agent_id, ag.OfferCancelled(offer.offer_id), now, at)
        return self._take()

    def offer_answered(self, offer_id: str, now: float, at: datetime) -> list[Command]:
        self._cmds = []
        offer = self.router.offer_answered(offer_id, now)
        self._connected[offer.call_id] = _Connected(
            offer.call_id, offer.agent_id, offer.queue, offer.wrap_up_s, now
        )
        self._announcing.pop(offer.call_id, None)
        waited = now - offer.at + offer.waited_s
        self._cmds.append(Connect(offer.offer_id, offer.call_id, offer.agent_id))
        self._step_agent(offer.agent_id, ag.OfferAnswered(offer_id), now, at)
        self._cmds.append(
            Emit(
                CallConnected(
                    offer.call_id,
                    offer.agent_id,
                    offer.queue,
                    waited,
                    at,
                )
            )
        )
        if offer.call_id not in self._consulting:  # a colleague answering is no queue wait
            self._history(self._answer_waits, offer.queue).add(waited)
        return self._take()

    def offer_failed(
        self, offer_id: str, now: float, at: datetime, reason: WithdrawReason = "no_answer"
    ) -> list[Command]:
        """Ring-no-answer or the agent's phone failed: next agent; the call keeps its place."""
        self._cmds = []
        if self.router.offer(offer_id) is None:
            return []  # already answered or cancelled: a late timer
        offer, d = self.router.offer_failed(offer_id, now)
        self._withdraw(offer, reason, at)
        self._step_agent(offer.agent_id, ag.OfferMissed(offer_id), now, at)
        self._decision(d, at, initial=False)
        return self._take()

    def call_ended(self, call_id: str, now: float, at: datetime) -> list[Command]:
        """The conversation ended (either side hung up): the agent goes to wrap-up."""
        self._cmds = []
        if call_id in self._connected:
            self._end_call(call_id, now, at)
        return self._take()

    def _end_call(self, call_id: str, now: float, at: datetime) -> None:
        self._release(self._connected.pop(call_id), now, at)

    # ----- one-click transfer ----------------------------------------------------------

    def transfer(
        self, call_id: str, attributes: CallAttributes, now: float, at: datetime, *,
        queue: str | None = None, agent_id: str | None = None,
    ) -> list[Command]:
        """Blind transfer of a connected call: its agent goes to wrap-up at once, and the call
        is offered to `agent_id` (who must be available) or waits in `queue` (default: the
        queue it was answered from). Raises (and changes nothing) when the target is wrong."""
        self._cmds = []
        current = self._connected.get(call_id)
        queue = self._check_target(call_id, current, queue, agent_id)
        if current is not None:
            self._end_call(call_id, now, at)
        self._decision(self.router.transfer(call_id, attributes, now, queue=queue,
                                            agent_id=agent_id), at)
        return self._take()

    def consult(
        self, call_id: str, attributes: CallAttributes, now: float, at: datetime, *,
        agent_id: str,
    ) -> list[Command]:
        """Attended transfer, first step: the call's agent stays on the call while
        `agent_id` is rung (and, on answer, talks with them); the caller is on hold."""
        self._cmds = []
        current = self._connected.get(call_id)
        if current is None:
            raise NotFound(f"call {call_id} is not connected to an agent")
        queue = self._check_target(call_id, current, None, agent_id)
        self._consulting[call_id] = self._connected.pop(call_id)
        self._decision(self.router.transfer(call_id, attributes, now, queue=queue,
                                            agent_id=agent_id), at)
        return self._take()

    def consult_completed(self, call_id: str, now: float, at: datetime) -> list[Command]:
        """The consulting agent hands the call over: they go to wrap-up; the call stays with
        the colleague (connected, or still ringing)."""
        self._cmds = []
        consulting = self._consulting.pop(call_id, None)
        if consulting is not None:
            self._release(consulting, now, at)
        return self._take()

    def consult_cancelled(self, call_id: str, now: float, at: datetime) -> list[Command]:
        """The consultation is over without a transfer: the colleague is released (ringing
        stops, or they go to wrap-up) and the call is the consulting agent's again."""
        self._cmds = []
        consulting = self._consulting.pop(call_id, None)
        if consulting is None:
            return []
        if call_id in self._connected:
            self._end_call(call_id, now, at)
        else:
            _d, offer = self.router.remove_call(call_id, now)
            if offer is not None:
                self._cmds.append(StopRinging(offer.offer_id, offer.agent_id))
                self._withdraw(offer, "caller_hangup", at)
                self._step_agent(offer.agent_id, ag.OfferCancelled(offer.offer_id), now, at)
        self._connected[call_id] = consulting
        return self._take()

    def is_consulting(self, call_id: str) -> bool:
        return call_id in self._consulting

    def connected_queue(self, call_id: str) -> str | None:
        c = self._connected.get(call_id) or self._consulting.get(call_id)
        return c.queue if c else None

    def _check_target(
        self, call_id: str, current: _Connected | None, queue: str | None, agent_id: str | None
    ) -> str:
        if call_id in self._consulting:
            raise Conflict(f"call {call_id} is in a consultation: complete or cancel it first")
        queue = queue or (current.queue if current else None) or self.rules.default_queue
        if queue not in self.rules.queues:
            raise NotFound(f"unknown queue {queue!r}")
        if agent_id is not None:
            self.status(agent_id)  # NotFound for an unknown agent
            if current is not None and current.agent_id == agent_id:
                raise Conflict(f"agent {agent_id} already has call {call_id}")
            if not self.router.is_available(agent_id):
                state = self.agents[agent_id].state.value
                raise Conflict(f"agent {agent_id} is not available ({state})")
        return queue

    def _release(self, c: _Connected, now: float, at: datetime) -> None:
        self._history(self._handled, c.queue).add(max(0.0, now - c.since) + c.wrap_up_s)
        self.router.agent_call_ended(c.agent_id, now)
        self._step_agent(c.agent_id, ag.CallEnded(c.wrap_up_s), now, at)

    def tick(self, now: float, at: datetime) -> list[Command]:
        self._cmds = []
        for d in self.router.tick(now):
            self._decision(d, at)
        self._announce_due(now)
        return self._take()

    def reload(self, rules: RoutingRules, now: float, at: datetime) -> list[Command]:
        self._cmds = []
        for aid in rules.agents:
            self.agents.setdefault(aid, ag.AgentStatus(aid))
        self._qualified.clear()
        for d in self.router.load_rules(rules, now):
            self._decision(d, at)
        # Agents the new rules no longer name are logged out: at once when idle or paused,
        # after the call or offer they hold otherwise (it goes on; the router forgot them).
        for aid, status in list(self.agents.items()):
            if (
                aid not in rules.agents
                and status.state is not ag.AgentState.LOGGED_OUT
                and status.pending != "logout"
            ):
                self._step_agent(aid, ag.Logout(), now, at)
        return self._take()

    # ----- queries ---------------------------------------------------------------------

    def decisions_for(self, call_id: str) -> list[tuple[datetime, Decision]]:
        return list(self._decisions.get(call_id, ()))

    def agent_of_call(self, call_id: str) -> str | None:
        c = self._consulting.get(call_id) or self._connected.get(call_id)
        if c is not None:
            return c.agent_id
        offer = self.router.offer_of_call(call_id)
        return offer.agent_id if offer else None

    def connected_calls(self) -> dict[str, str]:
        return {c: v.agent_id for c, v in self._connected.items()}

    # ----- internals -------------------------------------------------------------------

    def _take(self) -> list[Command]:
        cmds, self._cmds = self._cmds, []
        return cmds

    def _withdraw(self, offer: Offer, reason: WithdrawReason, at: datetime) -> None:
        self._cmds.append(
            Emit(OfferWithdrawn(offer.call_id, offer.agent_id, reason, at, offer.offer_id))
        )

    def _decision(self, d: Decision, at: datetime, *, initial: bool = True) -> None:
        if d.call_id is not None:
            log = self._decisions.setdefault(d.call_id, deque(maxlen=DECISIONS_PER_CALL))
            log.append((at, d))
            self._cmds.append(RecordDecision(d, at))
        if d.trigger == "call_arrived" and d.call_id is not None:
            queue = self.rules.queues[d.queue]
            pos = self.router.position(d.call_id) or 0
            self._cmds.append(HoldMusic(d.call_id, queue.moh_class, pos, queue.announce_position))
            # Kept while the call is with the router (also under offer: a ring-no-answer puts
            # it back in the queue); announced only while it waits.
            first = d.at + queue.announce.first_after_s
            self._announcing[d.call_id] = _Announcing(first)
            if d.outcome == "queued" and queue.announce.first_after_s == 0:
                self._announce_due(d.at, only=d.call_id)
        if d.outcome == "offered":
            assert d.agent_id is not None
            assert d.offer_id is not None
            assert d.call_id is not None
            self._step_agent(d.agent_id, ag.Reserve(d.call_id, d.offer_id), d.at, at)
            queue = self.rules.queues[d.queue]
            endpoint = self.rules.agents[d.agent_id].endpoint
            self._cmds.append(
                RingAgent(d.offer_id, d.call_id, d.agent_id, endpoint, queue.ring_timeout_s)
            )
            attrs = self.router.attributes_of(d.call_id) or {}
            self._cmds.append(
                Emit(
                    CallOffered(
                        d.call_id,
                        d.agent_id,
                        d.queue,
                        d.waited_s,
                        attrs,
                        at,
                        d.offer_id,
                        str(attrs.get("caller", "")),
                    )
                )
            )
        elif d.outcome == "queued" and d.trigger == "call_arrived" and d.call_id is not None:
            pos = self.router.position(d.call_id) or 0
            self._cmds.append(Emit(CallQueued(d.call_id, d.queue, d.priority, pos, at)))
        elif (
            d.outcome == "fallback"
            and d.call_id is not None
            and not self.router.is_waiting(d.call_id)
        ):
            fb = self._fallback_of(d)
            self._announcing.pop(d.call_id, None)
            self._cmds.append(SendToFallback(d.call_id, fb))
            self._cmds.append(
                Emit(
                    CallLeftQueue(
                        d.call_id,
                        d.queue,
                        "fallback",
                        d.waited_s,
                        at,
                        fb.action,
                        fb.queue or fb.mailbox or None,
                    )
                )
            )

    def _fallback_of(self, d: Decision) -> Fallback:
        return self.rules.queues[d.queue].fallback

    # ----- announcements to waiting callers --------------------------------------------

    def _history(self, table: dict[str, RunningAverage], queue: str) -> RunningAverage:
        avg = table.get(queue)
        if avg is None:
            avg = table[queue] = RunningAverage(HISTORY)
        return avg

    def _announce_due(self, now: float, *, only: str | None = None) -> None:
        """Announce to every waiting caller whose next announcement is due (or just `only`).
        A call under offer or in a consultation keeps its due announcement until it waits
        again (a ring-no-answer); a call the router no longer holds is forgotten."""
        if only is not None:
            due = [only] if only in self._announcing else []
        else:
            due = [c for c, st in self._announcing.items() if st.due <= now]
        if not due:
            return
        positions: dict[str, int] | None = None
        serving: dict[str, int] = {}
        for call_id in due:
            qname = self.router.queue_of(call_id)
            if qname is None:
                del self._announcing[call_id]
                continue
            if not self.router.is_waiting(call_id) or call_id in self._consulting:
                continue
            queue = self.rules.queues[qname]
            cfg = queue.announce
            if not cfg.enabled:
                continue  # switched off (perhaps only until a reload): looked at again later
            if positions is None:
                positions = self._queue_positions()
            position = positions.get(call_id, 1)
            if qname not in serving:
                serving[qname] = self._agents_serving(queue)
            st = self._announcing[call_id]
            st.count += 1
            wait_s = self._estimate(queue, position, serving[qname]) if cfg.estimated_wait else None
            if cfg.position or wait_s is not None:
                self._cmds.append(
                    Announce(call_id, qname, position if cfg.position else None, wait_s, st.count)
                )
            if cfg.every_s <= 0:
                del self._announcing[call_id]  # once
            else:
                # From when it was said: never two closer than every_s, also after an offer.
                st.due = now + cfg.every_s

    def _queue_positions(self) -> dict[str, int]:
        """Each waiting call's place among the calls waiting in the same queue (1 = next)."""
        counts: dict[str, int] = {}
        out: dict[str, int] = {}
        for call in self.router.waiting_calls():
            q = call.plan.stages[call.stage_index].queue
            counts[q] = counts.get(q, 0) + 1
            out[call.call_id] = counts[q]
        return out

    def _agents_serving(self, queue: Queue) -> int:
        """Logged-in agents qualified for the queue who are not paused (nor about to be)."""
        qualified = self._qualified.get(queue.name)
        if qualified is None:  # forgotten when skills or rules change
            qualified = self._qualified[queue.name] = tuple(
                a for a in self.rules.agents if queue.skills.matches(self.router.skills_of(a))
            )
        n = 0
        for agent_id in qualified:
            status = self.agents.get(agent_id)
            if status is not None and status.state in _SERVING and status.pending is None:
                n += 1
        return n

    def _estimate(self, queue: Queue, position: int, serving: int) -> float | None:
        """Erlang-style estimate by position over the agents serving, with the queue's handling
        time so far (its configured `aht_s` until there is history), blended with the running
        average wait of its answered calls. None: nobody serves the queue and no history."""
        aht = self._handled.get(queue.name)
        aht_s = aht.value if aht is not None and aht.value is not None else queue.aht_s
        waits = self._answer_waits.get(queue.name)
        wait = estimated_wait(position, serving, aht_s, waits.value if waits else None)
        return None if math.isinf(wait) else wait

    def announcement_due(self, call_id: str) -> float | None:
        """When the call's next announcement is due (monotonic), None if none is planned."""
        st = self._announcing.get(call_id)
        return st.due if st else None
