"""The after-call survey: when the agent hangs up first on a call from a queue with
`survey: true`, the ACD asks `take_caller` before hanging the caller up; the caller's IVR goes
on in the survey flow (ivr_flows/queue_survey.yaml) in their language, the keys they press are
collected from `MenuKeyPressed`, and when the call ends the answers (cti.domain.survey.tally)
are stored — linked to the call, the agent, the queue and the work order made during the call —
and published as `SurveyAnswered` (the reports read them from the stream). An agent records a
survey done by a call-back with `record` (channel "callback")."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from cti.domain.routing.events import CallConnected
from cti.domain.routing.model import RoutingRules
from cti.domain.survey import Answers, Average, Scored, averages, tally
from cti.domain.work_orders import WorkOrderCreated
from cti.events import Bus, CallEnded, MenuKeyPressed, SurveyAnswered
from cti.features.auth.service import Principal, Role
from cti.features.ivr.runner import IvrRunner
from cti.features.surveys.storage import Survey, SurveyStore
from cti.platform.clock import Clock
from cti.platform.errors import Forbidden, NotFound, TelephonyError
from cti.platform.log import get_logger

log = get_logger(__name__)

K = TypeVar("K")
V = TypeVar("V")
FLOW = "queue_survey"
REMEMBERED = 10_000  # calls whose agent, queue and work order are kept for a survey


@dataclass
class _Running:
    agent_id: str
    queue: str
    offered_at: datetime
    keys: list[str] = field(default_factory=list)


class Surveys:
    def __init__(self, store: SurveyStore, runner: IvrRunner, bus: Bus, clock: Clock,
                 rules: Callable[[], RoutingRules], flow: str = FLOW) -> None:
        self.store = store
        self.runner = runner
        self.bus = bus
        self.clock = clock
        self.rules = rules
        self.flow = flow
        self._connected: OrderedDict[str, tuple[str, str]] = OrderedDict()  # call -> agent, queue
        self._orders: OrderedDict[str, int] = OrderedDict()  # call -> work order made in it
        self._running: dict[str, _Running] = {}
        bus.subscribe("surveys", self.on_event,
                      (CallConnected, WorkOrderCreated, MenuKeyPressed, CallEnded))

    # ----- the ACD asks, when the agent hung up first ------------------------------------

    async def take_caller(self, call_id: str, channel_id: str, agent_id: str) -> bool:
        connected = self._connected.get(call_id)
        queue = connected[1] if connected else ""
        spec = self.rules().queues.get(queue)
        state = self.runner.state_of(call_id)
        if spec is None or not spec.survey or state is None:
            return False
        if self.flow not in self.runner.flow_source.flows:
            log.warning("survey.no_flow", flow=self.flow, call_id=call_id)
            return False
        offered_at = self.clock.now()
        self._running[call_id] = _Running(agent_id, queue, offered_at)
        slots = {key: {"queue": queue} for key in {state.lang, *state.ctx.slots}}
        try:
            await self.runner.switch_flow(call_id, self.flow, slots)
        except (NotFound, TelephonyError):  # the caller hung up just now
            self._running.pop(call_id, None)
            return False
        # kept after the switch, off the caller's path: the response rate's denominator
        try:
            await self.store.add_offer(at=offered_at, call_id=call_id, agent_id=agent_id,
                                       queue=queue)
        except Exception:  # the survey goes on; only the report's response rate is short
            log.exception("survey.offer_not_kept", call_id=call_id)
        log.info("survey.started", call_id=call_id, agent_id=agent_id, queue=queue)
        return True

    # ----- the stream --------------------------------------------------------------------

    async def on_event(
        self, event: CallConnected | WorkOrderCreated | MenuKeyPressed | CallEnded
    ) -> None:
        if isinstance(event, CallConnected):
            _remember(self._connected, event.call_id, (event.agent_id, event.queue))
        elif isinstance(event, WorkOrderCreated):
            if event.call_id:
                _remember(self._orders, event.call_id, event.order_id)
        elif isinstance(event, MenuKeyPressed):
            running = self._running.get(event.call_id)
            if running is not None:
                running.keys.append(event.digit)
        else:
            running = self._running.pop(event.call_id, None)
            if running is None:
                return
            answers = tally(running.keys)
            if answers.empty:
                log.info("survey.unanswered", call_id=event.call_id)
                return
            await self._store("ivr", event.call_id, running.agent_id, running.queue,
                              self._orders.get(event.call_id), answers, None,
                              running.offered_at)

    # ----- an agent's call-back survey, and the figures -----------------------------------

    async def record(self, who: Principal, answers: Answers, *, call_id: str | None,
                     work_order_id: int | None, queue: str | None = None,
                     agent_id: str | None = None) -> Survey:
        """A survey done by a call-back, for the agent's own service (supervisors: any)."""
        if agent_id is not None and agent_id != who.agent_id and not who.may(Role.SUPERVISOR):
            raise Forbidden("an agent records surveys of their own calls")
        agent = agent_id or who.agent_id
        if call_id is not None and queue is None and call_id in self._connected:
            queue = self._connected[call_id][1]
        if work_order_id is None and call_id is not None:
            work_order_id = self._orders.get(call_id)
        return await self._store("callback", call_id, agent, queue, work_order_id, answers,
                                 who.username)

    async def _store(self, channel: str, call_id: str | None, agent_id: str | None,
                     queue: str | None, work_order_id: int | None, answers: Answers,
                     by: str | None, offered_at: datetime | None = None) -> Survey:
        survey = await self.store.add(at=self.clock.now(), channel=channel, call_id=call_id,
                                      agent_id=agent_id, queue=queue,
                                      work_order_id=work_order_id, answers=answers,
                                      recorded_by=by, offered_at=offered_at)
        self.bus.publish(SurveyAnswered(
            survey.id, survey.at, channel, call_id, agent_id, queue, work_order_id,
            answers.speed, answers.resolved, answers.attitude, answers.complete))
        log.info("survey.stored", survey_id=survey.id, call_id=call_id, channel=channel,
                 complete=answers.complete)
        return survey

    async def figures(self, since: datetime, until: datetime, by: str, tz: str = "UTC",
                      agent_id: str | None = None, queue: str | None = None) -> list[Average]:
        """Averages per agent, queue or day (in `tz`) over [since, until)."""
        zone = ZoneInfo(tz)
        rows = [Scored(s.agent_id, s.queue, s.at.astimezone(zone).date().isoformat(),
                       s.answers)
                for s in await self.store.between(since, until, agent_id=agent_id,
                                                  queue=queue)]
        key: Callable[[Scored], str | None] = {
            "agent": lambda r: r.agent_id, "queue": lambda r: r.queue,
            "day": lambda r: r.day, "all": lambda r: "all",
        }[by]
        return averages(rows, key)


def _remember(cache: OrderedDict[K, V], key: K, value: V) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > REMEMBERED:
        cache.popitem(last=False)

