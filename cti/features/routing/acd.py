"""The ACD service: drives the pure ACD core (router + agent states) against the PBX.

Wiring, for the call service:
- `await acd.enqueue(call_id, channel_id, attributes)` once the caller's IVR is done;
- `await acd.on_caller_hangup(call_id)` when the caller's channel ends (waiting, ringing an
  agent, or talking);
- agent legs are originated with app args `acd-agent,<offer_id>`: on their StasisStart (the
  agent answered) call `await acd.on_agent_channel_answered(channel_id)`; on their
  StasisEnd/ChannelDestroyed `await acd.on_agent_channel_ended(channel_id)`. Use
  `acd.is_agent_channel(channel_id)` / `is_agent_leg(app_args)` to tell them from callers.
- agents: `agent_login/agent_available/agent_pause/agent_logout`, or the desk's
  `request_agent_state(agent_id, "available"|"paused"|"logged_out", reason)`;
- what happens is published on the bus (cti.events: CallQueued, CallOffered, CallConnected,
  AgentStateChanged, FallbackReached, RulesReloaded...); `listeners=` are inline observers for
  tests and tools. Start with `await acd.start()` (ticks for live relaxation, rules-file
  watch) and stop with `await acd.aclose()`.
- position/wait announcements to waiting callers need `prompts=` (a PromptSource); pass every
  ARI PlaybackFinished's playback id to `acd.on_playback_finished` (the music comes back).
Ring timeouts, wrap-up, the relaxation tick and the rules-file watch are timers on the
injected `scheduler=` (the running loop's by default; a ManualScheduler in tests); the core
only sees their results.

This module is the driver: the public `Acd` API and the execution of the core's commands
(ring an agent, connect, hold music, wrap-up, fallback, events). The rest are parts the Acd
owns, each with its own state: `acd_calls` (the PBX side of calls and agent legs, shared by
the parts), `announcements`, `acd_transfers`, `rules_watch`, `decision_log`, `timers`.
Composition rather than mixins: a part sees the call table and the few driver functions it is
handed, not the whole driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from cti.domain.agents.state import AgentStatus
from cti.domain.callbacks import outcome_of
from cti.domain.routing.acd import (
    AcdCore,
    Announce,
    Command,
    Connect,
    Emit,
    HoldMusic,
    RecordDecision,
    Requeued,
    RingAgent,
    SendToFallback,
    StartWrapUpTimer,
    StopRinging,
)
from cti.domain.routing.events import CallConnected, RoutingEvent, RoutingListener
from cti.domain.routing.model import CallAttributes, RoutingRules
from cti.domain.stats import QueueTargets
from cti.events import Bus, FallbackReached, QueueCallbackAttempted
from cti.features.ivr.prompts import PromptSource
from cti.features.routing.acd_calls import (
    LEG_SETTLE_TIMEOUT_S,
    AcdCall,
    AcdCalls,
    AgentLeg,
    ConnectedLegs,
    destroy_bridge_quietly,
    fresh_bridge_id,
    hang_up_quietly,
)
from cti.features.routing.acd_transfers import AcdTransfers
from cti.features.routing.announcements import Announcements
from cti.features.routing.decision_log import DecisionLog, DecisionSink
from cti.features.routing.rules import load_rules
from cti.features.routing.rules_watch import RulesStatus, RulesWatch
from cti.features.routing.timers import AcdTimers
from cti.platform.clock import Clock, SystemClock
from cti.platform.errors import ConfigError, CtiError, NotFound, TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import Telephony
from cti.platform.scheduler import LoopScheduler, Scheduler

log = get_logger(__name__)

AGENT_LEG_ARG = "acd-agent"
CALLBACK_LEG_ARG = "queue-callback"  # Stasis(cti,queue-callback,<call_id>): called back, answered
DIAL_FAILED_CAUSE = 38  # Q.850 "network out of order": the PBX refused to dial at all
# (call id, caller's channel, agent id) -> True when it took the caller on after the agent left
AfterAgent = Callable[[str, str, str], Awaitable[bool]]

__all__ = ["AGENT_LEG_ARG", "CALLBACK_LEG_ARG", "Acd", "DecisionSink", "RulesStatus",
           "is_agent_leg"]


def is_agent_leg(app_args: Iterable[str] | str) -> bool:
    args = app_args.split(",") if isinstance(app_args, str) else list(app_args)
    return bool(args) and args[0] == AGENT_LEG_ARG


class Acd:
    def __init__(
        self,
        telephony: Telephony,
        rules: RoutingRules,
        *,
        rules_path: Path | None = None,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
        listeners: Iterable[RoutingListener] = (),
        sink: DecisionSink | None = None,
        bus: Bus | None = None,
        tick_s: float = 1.0,
        watch_s: float = 2.0,
        prompts: PromptSource | None = None,
        language: str = "zh",
        callback_dial: str = "PJSIP/{number}",
        callback_caller_id: str | None = None,
        callback_ring_s: int = 45,
        after_agent: AfterAgent | None = None,
    ) -> None:
        self.telephony = telephony
        # calling back a caller who left the queue (docs/queue_callbacks.md)
        self.callback_dial = callback_dial
        self.callback_caller_id = callback_caller_id
        self.callback_ring_s = callback_ring_s
        # Asked when the agent hangs up first whether someone takes the caller on (the
        # after-call survey); otherwise the caller is hung up with the agent.
        self._after_agent = after_agent
        self.clock: Clock = clock or SystemClock()
        self.core = AcdCore(rules)
        self._listeners = list(listeners)
        self._bus = bus
        self._tick_s = tick_s
        self.calls = AcdCalls()
        self.timers = AcdTimers(scheduler or LoopScheduler())
        self.decision_log = DecisionLog(sink)
        self.announcements = Announcements(
            telephony, self.core, self.calls, self.timers, prompts, language
        )
        self.transfers = AcdTransfers(
            telephony, self.core, self.calls, self.announcements,
            run=self._run, emit=self._emit, now=self._now,
        )
        self.rules_watch = RulesWatch(
            rules, rules_path, apply=self._apply_rules, clock=self.clock, timers=self.timers,
            bus=bus, interval_s=watch_s,
        )
        # Waiting callers adopted before start(): put back together at start, in their order
        # (None once started: from then on each is put back as its resync adopts it).
        self._adopted: list[Requeued] | None = []

    @classmethod
    def from_file(cls, telephony: Telephony, path: Path, **kw: Any) -> Acd:
        """Build from a rules file; a bad file raises ConfigError (the service should not start)."""
        return cls(telephony, load_rules(path), rules_path=path, **kw)

    # ----- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Once every reachable PBX's first resync has adopted its calls (Service._activate):
        the waiting callers they found, from all PBXs, go back in the order they waited."""
        adopted, self._adopted = self._adopted or [], None
        if adopted:
            await self._run(self.core.requeue_all(adopted, *self._now()))
        self.timers.every(self._tick_s, self._tick, name="acd-tick", failure="acd_tick_failed")
        self.rules_watch.start()

    async def aclose(self) -> None:
        await self.timers.aclose()
        await self.decision_log.aclose()

    async def _tick(self) -> None:
        await self._run(self.core.tick(*self._now()))

    async def flush_records(self, timeout: float = 5.0) -> None:
        """Wait until every decision and event so far is in the sink (tests, shutdown)."""
        await self.decision_log.flush(timeout)

    def _now(self) -> tuple[float, datetime]:
        return self.clock.monotonic(), self.clock.now()

    # ----- rules -----------------------------------------------------------------------

    @property
    def rules_status(self) -> RulesStatus:
        return self.rules_watch.status

    async def reload(self) -> RulesStatus:
        """Re-read the rules file. A bad file is rejected: the running rules stay in force,
        and the error is logged and kept in `rules_status.last_error`."""
        return await self.rules_watch.reload()

    async def _apply_rules(self, rules: RoutingRules) -> None:
        await self._run(self.core.reload(rules, *self._now()))

    def queue_targets(self, queue: str) -> QueueTargets:
        """The queue's service-level threshold, mode and short-abandon threshold for the
        figures (docs/metrics.md), from the rules in force."""
        q = self.core.rules.queues.get(queue)
        if q is None:
            return QueueTargets()
        return QueueTargets(sl_s=q.service_level_s, short_abandon_s=q.short_abandon_s,
                            sl_mode=q.sl_mode, sl_goal=q.service_level_percent / 100,
                            aht_s=q.aht_s, thresholds=q.thresholds)

    # ----- calls -----------------------------------------------------------------------

    async def enqueue(self, call_id: str, channel_id: str, attributes: CallAttributes) -> None:
        self.calls.by_id[call_id] = AcdCall(channel_id, attributes=dict(attributes))
        await self._run(self.core.enqueue(call_id, attributes, *self._now()))

    async def on_caller_hangup(self, call_id: str) -> None:
        kept = self.calls.by_id.get(call_id)
        if kept is not None and kept.callback_number is not None and not kept.callback_channel:
            return  # left the queue for a call-back: the call keeps its place
        call = self.calls.by_id.pop(call_id, None)
        if call is None:
            return
        if self._adopted is not None:  # gone before it was put back
            self._adopted = [c for c in self._adopted if c.call_id != call_id]
        if call.callback_channel:
            self.calls.callback_channels.pop(call.callback_channel, None)
        self.announcements.forget(call)
        await self._run(self.core.caller_hangup(call_id, *self._now()))
        if call.consult is not None:
            await self.transfers.end_consult_legs(call.consult)
        if call.bridge_id:
            await destroy_bridge_quietly(self.telephony, call.bridge_id)
        if call.leg is not None and call.leg.channel_id and call.leg.answered:
            await hang_up_quietly(self.telephony, call.leg.channel_id)
            self.calls.forget_leg(call.leg)

    def on_playback_finished(self, playback_id: str) -> None:
        """A PlaybackFinished from the PBX (every one; not ours are ignored): at the end of an
        announcement the caller hears the hold music again."""
        self.announcements.on_playback_finished(playback_id)

    # ----- after a restart or an event-socket drop -----------------------------------------

    def leg_channel_ids(self) -> set[str]:
        """The agent legs this process rang or connected (resync tells them from callers)."""
        return set(self.calls.by_channel)

    async def restore_agents(self, last: Mapping[str, tuple[str, str | None]]) -> None:
        """Each agent's last recorded (state, reason) from an earlier process."""
        for agent_id, (state, reason) in last.items():
            if agent_id in self.core.agents:
                await self._run(self.core.restore_agent(agent_id, state, reason, *self._now()))

    async def adopt_connected(
        self, call_id: str, caller_channel: str, agent_channel: str, bridge_id: str,
        agent_id: str, queue: str | None, attributes: CallAttributes,
    ) -> None:
        """An earlier process bridged this caller with `agent_id`'s leg: take both on, so
        either side's hang-up ends the other and the agent's wrap-up follows as usual."""
        leg = AgentLeg(f"adopted-{call_id}", call_id, agent_id, agent_channel, answered=True,
                       bridge_id=bridge_id)
        leg.settled.set()
        self.calls.by_id[call_id] = AcdCall(caller_channel, leg=leg, bridge_id=bridge_id,
                                            attributes=dict(attributes))
        self.calls.add_leg(leg)
        await self._run(self.core.adopt_connected(call_id, agent_id, queue, *self._now()))

    # ----- call-backs instead of waiting (docs/queue_callbacks.md) -------------------------

    async def keep_place(self, call_id: str, number: str) -> bool:
        """The waiting caller pressed the call-back key: they leave (the caller hangs up
        after this), their call keeps its place in the queue, and when an agent takes it the
        agent's phone rings first, then `number` is dialled and bridged. False when the call
        is not waiting (being offered, connected, gone) or left already."""
        call = self.calls.get(call_id)
        if call is None or call.callback_number is not None or call.leg is not None:
            return False
        if not self.core.keep_place(call_id):
            return False
        call.callback_number = number
        await self.announcements.stop(call)
        self.announcements.forget(call)
        return True

    def is_callback_channel(self, channel_id: str) -> bool:
        return channel_id in self.calls.callback_channels

    async def _dial_back(self, call_id: str, call: AcdCall, leg: AgentLeg) -> None:
        """The agent took a call-back: ring them back (the agent hears ringing meanwhile)."""
        number = call.callback_number or ""
        channel = f"qcb-{uuid.uuid4().hex[:20]}"
        call.callback_channel = call.channel_id = channel
        self.calls.callback_channels[channel] = call_id
        if leg.channel_id:
            with contextlib.suppress(CtiError):
                await self.telephony.ring(leg.channel_id)
        try:
            await self.telephony.originate(
                self.callback_dial.format(number=number, digits=number.lstrip("+")),
                app_args=f"{CALLBACK_LEG_ARG},{call_id}", caller_id=self.callback_caller_id,
                timeout=self.callback_ring_s, channel_id=channel,
                variables={"CTI_CALL_ID": call_id}, formats="ulaw",
            )
        except TelephonyError as exc:
            log.warning("queue_callback.dial_failed", call_id=call_id, error=exc.message)
            await self.on_callback_channel_ended(channel, DIAL_FAILED_CAUSE)
            return
        log.info("queue_callback.dialling", call_id=call_id, agent_id=leg.agent_id)

    async def on_callback_answered(self, channel_id: str) -> None:
        """The caller called back answered: bridged with the agent who took the call."""
        call_id = self.calls.callback_channels.get(channel_id)
        call = self.calls.get(call_id) if call_id else None
        if call_id is None or call is None or call.leg is None or not call.leg.channel_id:
            await hang_up_quietly(self.telephony, channel_id)
            return
        leg = call.leg
        call.callback_answered = True
        self._publish_attempt(call_id, call, "answered", None)
        with contextlib.suppress(CtiError):
            await self.telephony.ring_stop(leg.channel_id or "")
        bridge = await self.telephony.create_bridge(fresh_bridge_id("acd", call_id), "mixing")
        call.bridge_id = leg.bridge_id = bridge
        await self.telephony.add_to_bridge(bridge, [channel_id, leg.channel_id or ""])
        log.info("queue_callback.connected", call_id=call_id, agent_id=leg.agent_id)

    async def on_callback_channel_ended(self, channel_id: str, cause: int | None = None
                                        ) -> None:
        """The called-back caller hung up, or never answered (busy, no answer, failed: the
        PBX's Q.850 `cause`). Either way the agent's leg goes and their wrap-up follows; an
        unanswered attempt is published (QueueCallbackAttempted) and the call leaves the ACD
        for now: the queue call-backs feature brings it back at its place for the next
        attempt (`restore_callback`), or gives it up."""
        call_id = self.calls.callback_channels.pop(channel_id, None)
        if call_id is None:
            return
        call = self.calls.by_id.get(call_id)
        if call is None or call.callback_answered:
            await self.on_caller_hangup(call_id)
            return
        del self.calls.by_id[call_id]
        self.announcements.forget(call)
        if call.leg is not None:
            self.calls.forget_leg(call.leg)
            call.leg.stop_ring_timer()
            if call.leg.channel_id:
                await hang_up_quietly(self.telephony, call.leg.channel_id)
        await self._run(self.core.call_ended(call_id, *self._now()))
        self._publish_attempt(call_id, call, outcome_of(cause), cause)

    def _publish_attempt(self, call_id: str, call: AcdCall, outcome: str, cause: int | None
                         ) -> None:
        if self._bus is not None:
            self._bus.publish(QueueCallbackAttempted(
                call_id, self.clock.now(), call.callback_number or "", outcome, cause))

    async def restore_callback(self, call_id: str, number: str, queue: str | None,
                               attributes: CallAttributes, waited_s: float) -> None:
        """A call-back waits again at its place, `waited_s` after it first entered the queue
        (after a restart, or for its next attempt); no caller is on the line."""
        if call_id in self.calls.by_id:
            return
        self.calls.by_id[call_id] = AcdCall("", attributes=dict(attributes),
                                            callback_number=number)
        await self._run(self.core.restore_callback(call_id, attributes, queue, waited_s,
                                                   *self._now()))

    # ----- calls the agents place (cti.features.outbound) ---------------------------------

    def agent_endpoint(self, agent_id: str) -> str:
        agent = self.core.rules.agents.get(agent_id)
        if agent is None:
            raise NotFound(f"unknown agent {agent_id!r}")
        return agent.endpoint

    async def start_outbound(
        self, call_id: str, customer_channel: str, agent_id: str, agent_channel: str,
        queue: str | None, attributes: CallAttributes,
    ) -> None:
        """The agent places a call: they are on it now (no offers meanwhile). The agent leg
        and the customer's channel are the ACD's from here, as an answered agent leg and its
        caller: either side's end ends the other and brings the wrap-up; transfers work.
        IllegalTransition (409) when the agent is not available or paused."""
        commands = self.core.outbound_started(call_id, agent_id, queue, *self._now())
        leg = AgentLeg(f"out-{call_id}", call_id, agent_id, agent_channel, answered=True)
        leg.settled.set()
        self.calls.by_id[call_id] = AcdCall(customer_channel, leg=leg,
                                            attributes=dict(attributes))
        self.calls.add_leg(leg)
        await self._run(commands)

    def outbound_bridged(self, call_id: str, bridge_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.bridge_id = bridge_id
            if call.leg is not None:
                call.leg.bridge_id = bridge_id

    async def requeue(
        self, call_id: str, channel_id: str, attributes: CallAttributes, queue: str | None,
        since: datetime | None = None,
    ) -> None:
        """An earlier process had this caller waiting (or ringing an agent): it waits again,
        in the same queue, with hold music; `since` (when it first entered the ACD, kept in
        its log row): in its original place, its wait counted from then."""
        self.calls.by_id[call_id] = AcdCall(channel_id, attributes=dict(attributes))
        if self._adopted is not None:  # before start: with the other PBXs' callers, at start
            self._adopted.append(Requeued(call_id, dict(attributes), queue, since))
            return
        await self._run(self.core.requeue(call_id, attributes, queue, *self._now(), since=since))

    # ----- agent legs ------------------------------------------------------------------

    def is_agent_channel(self, channel_id: str) -> bool:
        return channel_id in self.calls.by_channel

    async def _settled(self, channel_id: str) -> AgentLeg | None:
        """The leg of `channel_id` once the commands that rang it have run (None: not ours,
        or forgotten meanwhile)."""
        leg = self.calls.by_channel.get(channel_id)
        if leg is not None and not leg.settled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leg.settled.wait(), LEG_SETTLE_TIMEOUT_S)
        return leg if self.calls.by_channel.get(channel_id) is leg else None

    async def on_agent_channel_answered(self, channel_id: str) -> None:
        leg = await self._settled(channel_id)
        if leg is None or leg.answered:
            return
        if self.core.router.offer(leg.offer_id) is None:  # caller gone meanwhile
            await hang_up_quietly(self.telephony, channel_id)
            return
        leg.answered = True
        leg.stop_ring_timer()
        await self._run(self.core.offer_answered(leg.offer_id, *self._now()))

    async def on_agent_channel_ended(self, channel_id: str) -> None:
        leg = await self._settled(channel_id)
        if leg is None:
            return
        consult = self.calls.consult_of(leg.call_id)
        if consult is not None:  # an attended transfer: either side left the consultation
            await self.transfers.leg_ended(leg, consult)
            return
        self.calls.forget_leg(leg)
        leg.stop_ring_timer()
        if not leg.answered:  # the agent rejected or the phone failed while ringing
            await self._run(self.core.offer_failed(leg.offer_id, *self._now(), reason="no_answer"))
            return
        call = self.calls.by_id.pop(leg.call_id, None)
        await self._run(self.core.call_ended(leg.call_id, *self._now()))
        if call is not None and call.callback_channel and not call.callback_answered:
            # the agent left while their call-back still rang: the attempt does not count
            self.calls.callback_channels.pop(call.callback_channel, None)
            self._publish_attempt(leg.call_id, call, "agent_left", None)
            await hang_up_quietly(self.telephony, call.callback_channel)
            return
        if call is not None:
            if call.bridge_id:
                await destroy_bridge_quietly(self.telephony, call.bridge_id)
            if self._after_agent is not None and await self._take_caller(leg, call):
                return
            await hang_up_quietly(self.telephony, call.channel_id)

    async def _take_caller(self, leg: AgentLeg, call: AcdCall) -> bool:
        try:
            assert self._after_agent is not None
            return await self._after_agent(leg.call_id, call.channel_id, leg.agent_id)
        except Exception:  # the caller must not be left on a dead line
            log.exception("acd.after_agent_failed", call_id=leg.call_id)
            return False

    # ----- agents ----------------------------------------------------------------------

    async def agent_login(self, agent_id: str, available: bool = True) -> None:
        await self._run(self.core.agent_login(agent_id, *self._now(), available=available))

    async def agent_available(self, agent_id: str) -> None:
        await self._run(self.core.agent_available(agent_id, *self._now()))

    async def agent_pause(self, agent_id: str, reason: str = "break") -> None:
        await self._run(self.core.agent_pause(agent_id, reason, *self._now()))

    async def agent_logout(self, agent_id: str) -> None:
        await self._run(self.core.agent_logout(agent_id, *self._now()))

    async def request_agent_state(
        self,
        agent_id: str,
        state: Literal["available", "paused", "logged_out"],
        reason: str | None = None,
    ) -> None:
        """The agent desk's AgentStateControl: one entry for the page's buttons."""
        current = self.core.status(agent_id).state.value
        if state == "available":
            if current == "logged_out":
                await self.agent_login(agent_id, available=True)
            else:
                await self.agent_available(agent_id)
        elif state == "paused":
            if current == "logged_out":
                await self.agent_login(agent_id, available=False)
                if reason:
                    await self.agent_pause(agent_id, reason)
            else:
                await self.agent_pause(agent_id, reason or "break")
        else:
            await self.agent_logout(agent_id)

    def agent_status(self, agent_id: str) -> AgentStatus:
        return self.core.status(agent_id)

    def skills_of(self, agent_id: str) -> dict[str, int]:
        return self.core.router.skills_of(agent_id)

    async def set_skills(self, agent_id: str, skills: Mapping[str, int]) -> dict[str, int]:
        unknown = set(skills) - set(self.core.rules.skills)
        if unknown:
            raise ConfigError(f"unknown skill(s): {', '.join(sorted(unknown))}")
        bad = {k: v for k, v in skills.items() if not 1 <= v <= 5}
        if bad:
            raise ConfigError(f"proficiency must be 1..5: {bad}")
        await self._run(self.core.set_skills(agent_id, skills, *self._now()))
        return self.skills_of(agent_id)

    # ----- transfers (acd_transfers) ---------------------------------------------------

    def agent_channel_of(self, call_id: str) -> str | None:
        """The answered agent leg of a connected call (the consulting agent's in a consult)."""
        return self.calls.agent_channel_of(call_id)

    def connected(self, call_id: str) -> ConnectedLegs | None:
        """The call's agent, the agent's channel and the call's bridge while they talk."""
        return self.calls.connected(call_id)

    def consult_state(self, call_id: str) -> str | None:
        """None (no consultation), "ringing" or "talking"."""
        return self.transfers.consult_state(call_id)

    async def transfer(
        self, call_id: str, *, queue: str | None = None, agent_id: str | None = None
    ) -> None:
        """Blind transfer to `agent_id` or `queue` (see AcdTransfers.transfer)."""
        await self.transfers.transfer(call_id, queue=queue, agent_id=agent_id)

    async def release_call(self, call_id: str) -> str:
        """The call leaves the ACD for good; returns the caller's channel id."""
        return await self.transfers.release_call(call_id)

    async def consult(self, call_id: str, agent_id: str) -> None:
        """Attended transfer: ring `agent_id` while the caller waits on hold."""
        await self.transfers.consult(call_id, agent_id)

    async def complete_consult(self, call_id: str) -> None:
        await self.transfers.complete_consult(call_id)

    async def cancel_consult(self, call_id: str) -> None:
        await self.transfers.cancel_consult(call_id)

    # ----- what happened to a call -----------------------------------------------------

    def decisions_for(self, call_id: str) -> list[dict[str, Any]]:
        return [
            {**d.to_dict(), "at": at.isoformat(), "router_time_s": d.at}
            for at, d in self.core.decisions_for(call_id)
        ]

    def describe_call(self, call_id: str) -> dict[str, Any]:
        if call_id not in self.calls.by_id and not self.core.decisions_for(call_id):
            raise NotFound(f"no routing record for call {call_id}")
        return {
            "call_id": call_id,
            "waiting": self.core.router.is_waiting(call_id),
            "position": self.core.router.position(call_id),
            "queue": self.core.router.queue_of(call_id),
            "agent_id": self.core.agent_of_call(call_id),
            "decisions": self.decisions_for(call_id),
        }

    # ----- command execution -----------------------------------------------------------

    async def _run(self, commands: list[Command]) -> None:
        # Ring first: the agent's phone is the one thing the caller waits for. The rest keeps
        # its order (hold music, the screen pop's "reserved", the decision record) and follows
        # within milliseconds, long before anyone can answer.
        rings = [c for c in commands if isinstance(c, RingAgent)]
        if rings:
            commands = [*rings, *(c for c in commands if not isinstance(c, RingAgent))]
        try:
            for cmd in commands:
                try:
                    await self._execute(cmd)
                except CtiError as exc:
                    log.warning(
                        "acd_command_failed", command=type(cmd).__name__, error=exc.message
                    )
        finally:
            for ring in rings:
                leg = self.calls.legs.get(ring.offer_id)
                if leg is not None:
                    leg.settled.set()

    async def _execute(self, cmd: Command) -> None:
        if isinstance(cmd, Emit):
            await self._emit(cmd.event)
        elif isinstance(cmd, RecordDecision):
            self.decision_log.record((cmd.at, cmd.decision))
        elif isinstance(cmd, HoldMusic):
            call = self.calls.get(cmd.call_id)
            if call is not None:
                call.moh_class = cmd.moh_class
                await self.telephony.start_moh(call.channel_id, cmd.moh_class)
        elif isinstance(cmd, Announce):
            self.announcements.announce(cmd)
        elif isinstance(cmd, RingAgent):
            await self._ring(cmd)
        elif isinstance(cmd, StopRinging):
            leg = self.calls.legs.get(cmd.offer_id)
            if leg is not None:
                leg.stop_ring_timer()
                self.calls.forget_leg(leg)
                if leg.channel_id:
                    await hang_up_quietly(self.telephony, leg.channel_id)
        elif isinstance(cmd, Connect):
            await self._connect(cmd)
        elif isinstance(cmd, StartWrapUpTimer):
            self.timers.later(cmd.seconds, lambda: self._wrap_up_done(cmd.agent_id, cmd.gen))
        elif isinstance(cmd, SendToFallback):
            await self._send_to_fallback(cmd)

    async def _emit(self, event: RoutingEvent) -> None:
        if self.transfers.hold_back(event):
            return
        if isinstance(event, CallConnected) and not event.bridge_id:
            call = self.calls.by_id.get(event.call_id)
            if call is not None and call.bridge_id:
                # the bridge the caller talks in now (recording follows the call by it)
                event = dataclasses.replace(event, bridge_id=call.bridge_id)
        self.decision_log.record(event)
        if self._bus is not None:
            self._bus.publish(event)
        for listener in self._listeners:
            try:
                await listener.on_routing_event(event)
            except Exception:
                log.exception("routing_listener_failed", listener=type(listener).__name__)

    async def _ring(self, cmd: RingAgent) -> None:
        channel_id = f"acd-{uuid.uuid4().hex[:20]}"
        leg = AgentLeg(cmd.offer_id, cmd.call_id, cmd.agent_id, channel_id)
        self.calls.add_leg(leg)
        call = self.calls.get(cmd.call_id)
        if call is not None:
            call.leg = leg
        attrs = self.core.router.attributes_of(cmd.call_id) or {}
        leg.ring_timer = self.timers.later(
            cmd.timeout_s, lambda: self._ring_timeout(cmd.offer_id)
        )
        try:
            await self.telephony.originate(
                cmd.endpoint,
                app_args=f"{AGENT_LEG_ARG},{cmd.offer_id}",
                caller_id=str(attrs.get("caller", "")) or None,
                timeout=int(cmd.timeout_s) + 1,
                channel_id=channel_id,
                variables={"CTI_CALL_ID": cmd.call_id},
                formats="ulaw",
            )
        except TelephonyError as exc:
            log.warning("agent_ring_failed", agent_id=cmd.agent_id, error=exc.message)
            leg.stop_ring_timer()
            self.calls.forget_leg(leg)
            await self._run(
                self.core.offer_failed(cmd.offer_id, *self._now(), reason="ring_failed")
            )
            return
        if self.calls.legs.get(cmd.offer_id) is not leg:  # cancelled while we were originating
            await hang_up_quietly(self.telephony, channel_id)

    async def _ring_timeout(self, offer_id: str) -> None:
        leg = self.calls.legs.get(offer_id)
        if leg is None or leg.answered:
            return
        if self.calls.consult_of(leg.call_id) is not None:  # the colleague did not answer
            await self.transfers.cancel_consult(leg.call_id)
            return
        self.calls.forget_leg(leg)
        await self._run(self.core.offer_failed(offer_id, *self._now(), reason="no_answer"))
        if leg.channel_id:
            await hang_up_quietly(self.telephony, leg.channel_id)

    async def _wrap_up_done(self, agent_id: str, gen: int) -> None:
        await self._run(self.core.wrap_up_elapsed(agent_id, gen, *self._now()))

    async def _connect(self, cmd: Connect) -> None:
        call = self.calls.get(cmd.call_id)
        leg = self.calls.legs.get(cmd.offer_id)
        if call is None or leg is None or leg.channel_id is None:
            return
        if call.consult is not None:  # attended transfer: the two agents talk, caller on hold
            await self.transfers.connect_consult(call, leg)
            return
        if call.callback_number is not None and call.callback_channel is None:
            await self._dial_back(cmd.call_id, call, leg)  # the caller is called back now
            return
        name = fresh_bridge_id("acd", cmd.call_id) if call.rebridged else f"acd-{cmd.call_id}"[:60]
        # The caller's music stops while the bridge is made: the agent is on the line already.
        stopped, moh, bridge = await asyncio.gather(
            self.announcements.stop(call),  # a running playback would hold up addChannel
            self.telephony.stop_moh(call.channel_id),
            self.telephony.create_bridge(name, "mixing"),
            return_exceptions=True,
        )
        if isinstance(bridge, BaseException):
            raise bridge
        for failed in (stopped, moh):
            if isinstance(failed, BaseException):  # the caller gone, say: no bridge left over
                await destroy_bridge_quietly(self.telephony, bridge)
                raise failed
        call.bridge_id = leg.bridge_id = bridge
        await self.telephony.add_to_bridge(bridge, [call.channel_id, leg.channel_id])

    async def _send_to_fallback(self, cmd: SendToFallback) -> None:
        call = self.calls.by_id.pop(cmd.call_id, None)
        if call is not None and call.callback_number is not None:
            # nobody to send anywhere: the caller left for a call-back that never came
            log.warning("queue_callback.expired", call_id=cmd.call_id,
                        number=call.callback_number)
            return
        channel = call.channel_id if call else ""
        if call is not None:
            await self.announcements.stop(call)  # the fallback has the channel now
        if self._bus is not None:
            fb = cmd.fallback
            queue = next((d.queue for _, d in reversed(self.core.decisions_for(cmd.call_id))
                          if d.outcome == "fallback"), "")
            self._bus.publish(FallbackReached(
                cmd.call_id, self.clock.now(), channel, queue, fb.action,
                mailbox=fb.mailbox or None, target=fb.queue or None,
            ))
        elif channel:
            await hang_up_quietly(self.telephony, channel)
