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
Ring timeout, wrap-up and ticks are asyncio timers here; the core only sees their results.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from cti.domain.agents.state import AgentStatus
from cti.domain.routing.acd import (
    AcdCore,
    Announce,
    Command,
    Connect,
    Emit,
    HoldMusic,
    RecordDecision,
    RingAgent,
    SendToFallback,
    StartWrapUpTimer,
    StopRinging,
)
from cti.domain.routing.announcements import announcement_phrases
from cti.domain.routing.decisions import Decision
from cti.domain.routing.events import CallConnected, RoutingEvent, RoutingListener
from cti.domain.routing.model import CallAttributes, RoutingRules
from cti.domain.stats import QueueTargets
from cti.events import Bus, DomainEvent, FallbackReached, RulesReloaded
from cti.features.ivr.prompts import PromptSource
from cti.features.routing.rules import load_rules, summarize
from cti.platform.clock import Clock, SystemClock
from cti.platform.errors import ConfigError, CtiError, NotFound, TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import Telephony

log = get_logger(__name__)

AGENT_LEG_ARG = "acd-agent"
RECORD_BATCH_MAX = 500
LEG_SETTLE_TIMEOUT_S = 10.0  # a safety net: the commands normally take milliseconds


def is_agent_leg(app_args: Iterable[str] | str) -> bool:
    args = app_args.split(",") if isinstance(app_args, str) else list(app_args)
    return bool(args) and args[0] == AGENT_LEG_ARG


def _fresh_bridge_id(prefix: str, call_id: str) -> str:
    """A bridge id not used before: Asterisk keeps a destroyed bridge's id taken for a moment
    (ARI answers 409 "already exists"), so a call bridged again soon after needs a new one."""
    return f"{prefix}-{call_id}"[:53] + f"-{uuid.uuid4().hex[:6]}"


class DecisionSink(Protocol):
    """Where decisions and agent-state events are stored (cti.features.routing.storage)."""

    async def record_decision(self, at: datetime, decision: Decision) -> None: ...
    async def record_event(self, event: RoutingEvent) -> None: ...
    async def record_batch(
        self, items: Sequence[tuple[datetime, Decision] | RoutingEvent]
    ) -> None: ...


@dataclass
class RulesStatus:
    path: Path
    loaded_at: datetime | None = None
    mtime: float | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "summary": self.summary,
        }


@dataclass
class _Leg:
    offer_id: str
    call_id: str
    agent_id: str
    channel_id: str | None = None
    answered: bool = False
    timer: asyncio.Task[None] | None = None
    bridge_id: str | None = None
    # Set once the commands that rang this leg have all run (the offer's events included):
    # the leg's answer or end is handled only after them, so its events keep their order.
    settled: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Consult:
    """An attended transfer in progress: `agent_leg` (the call's agent) talks with the
    colleague's leg in `bridge_id` while the caller waits on hold."""

    agent_leg: _Leg
    bridge_id: str | None = None
    connected: CallConnected | None = None  # held back until the transfer completes


@dataclass
class _CallInfo:
    channel_id: str
    leg: _Leg | None = None
    bridge_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    consult: _Consult | None = None
    rebridged: bool = False  # its bridge was destroyed for a transfer: the next needs a new id
    # The position/wait announcement: its task (preparing the media, starting it, or putting
    # the hold music back), whether it has reached the PBX (then it is waited for, not
    # cancelled), and the playback it started, until that finishes or is stopped.
    announce_task: asyncio.Task[None] | None = None
    announce_at_pbx: bool = False
    playback_id: str | None = None
    moh_class: str = "default"


class Acd:
    def __init__(
        self,
        telephony: Telephony,
        rules: RoutingRules,
        *,
        rules_path: Path | None = None,
        clock: Clock | None = None,
        listeners: Iterable[RoutingListener] = (),
        sink: DecisionSink | None = None,
        bus: Bus | None = None,
        tick_s: float = 1.0,
        watch_s: float = 2.0,
        prompts: PromptSource | None = None,
        language: str = "zh",
    ) -> None:
        self.telephony = telephony
        # Position/wait announcements need prompts; without them callers hear only music.
        self._prompts = prompts
        self._language = language  # for a call whose attributes name no language
        self._announcements: dict[str, str] = {}  # playback id -> call id
        self.clock: Clock = clock or SystemClock()
        self.core = AcdCore(rules)
        self._listeners = list(listeners)
        self._sink = sink
        self._bus = bus
        self._tick_s = tick_s
        self._watch_s = watch_s
        self._calls: dict[str, _CallInfo] = {}
        self._legs: dict[str, _Leg] = {}  # offer_id -> leg
        self._leg_by_channel: dict[str, _Leg] = {}
        self._timers: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # Decisions and agent-state events are written by one background task, in order: a
        # database round trip must never stand between a caller and the agent's phone ringing.
        self._records: asyncio.Queue[tuple[datetime, Decision] | RoutingEvent] = asyncio.Queue()
        self._recorder: asyncio.Task[None] | None = None
        self.rules_status = RulesStatus(rules_path or Path(rules.source or "."))
        self.rules_status.summary = summarize(rules)
        self.rules_status.loaded_at = self.clock.now()
        if rules_path is not None:
            with contextlib.suppress(OSError):
                self.rules_status.mtime = rules_path.stat().st_mtime

    @classmethod
    def from_file(cls, telephony: Telephony, path: Path, **kw: Any) -> Acd:
        """Build from a rules file; a bad file raises ConfigError (the service should not start)."""
        return cls(telephony, load_rules(path), rules_path=path, **kw)

    # ----- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="acd-tick"))
        if self._watch_s > 0:
            self._tasks.append(asyncio.create_task(self._watch_loop(), name="acd-rules-watch"))

    async def aclose(self) -> None:
        await self.flush_records()
        if self._recorder is not None:
            self._tasks.append(self._recorder)
            self._recorder = None
        for t in [*self._tasks, *self._timers]:
            t.cancel()
        for t in [*self._tasks, *self._timers]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self._timers.clear()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                await self._run(self.core.tick(*self._now()))
            except Exception:
                log.exception("acd_tick_failed")

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self._watch_s)
            try:
                mtime = self.rules_status.path.stat().st_mtime
            except OSError:
                continue
            if mtime != self.rules_status.mtime:
                await self.reload()

    async def flush_records(self, timeout: float = 5.0) -> None:
        """Wait until every decision and event so far is in the sink (tests, shutdown)."""
        if self._recorder is None or self._recorder.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._records.join(), timeout)

    def _record(self, item: tuple[datetime, Decision] | RoutingEvent) -> None:
        if self._sink is None:
            return
        self._records.put_nowait(item)
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_loop(), name="acd-recorder")

    async def _record_loop(self) -> None:
        assert self._sink is not None
        while True:
            # Whatever queued up meanwhile goes in one transaction: at 20 calls a second that
            # is one write where there would be a hundred.
            batch = [await self._records.get()]
            while not self._records.empty() and len(batch) < RECORD_BATCH_MAX:
                batch.append(self._records.get_nowait())
            try:
                await self._sink.record_batch(batch)
            except Exception:
                log.exception("routing_record_failed", items=len(batch))
            finally:
                for _ in batch:
                    self._records.task_done()

    def _now(self) -> tuple[float, datetime]:
        return self.clock.monotonic(), self.clock.now()

    # ----- rules -----------------------------------------------------------------------

    async def reload(self) -> RulesStatus:
        """Re-read the rules file. A bad file is rejected: the running rules stay in force,
        and the error is logged and kept in `rules_status.last_error`."""
        st = self.rules_status
        with contextlib.suppress(OSError):
            st.mtime = st.path.stat().st_mtime
        try:
            rules = await asyncio.to_thread(load_rules, st.path)
        except ConfigError as exc:
            st.last_error, st.last_error_at = exc.message, self.clock.now()
            log.error("routing_rules_rejected", path=str(st.path), error=exc.message)
            self._publish(RulesReloaded(st.last_error_at, str(st.path), ok=False,
                                        error=exc.message, summary=st.summary))
            return st
        st.last_error = None
        st.loaded_at = self.clock.now()
        st.summary = summarize(rules)
        log.info("routing_rules_reloaded", path=str(st.path))
        self._publish(RulesReloaded(st.loaded_at, str(st.path), ok=True, summary=st.summary))
        await self._run(self.core.reload(rules, *self._now()))
        return st

    # ----- calls -----------------------------------------------------------------------

    async def enqueue(self, call_id: str, channel_id: str, attributes: CallAttributes) -> None:
        self._calls[call_id] = _CallInfo(channel_id, attributes=dict(attributes))
        await self._run(self.core.enqueue(call_id, attributes, *self._now()))

    async def on_caller_hangup(self, call_id: str) -> None:
        info = self._calls.pop(call_id, None)
        if info is None:
            return
        self._forget_announcement(info)
        await self._run(self.core.caller_hangup(call_id, *self._now()))
        if info.consult is not None:
            await self._end_consult_legs(info.consult)
        if info.bridge_id:
            with contextlib.suppress(TelephonyError):
                await self.telephony.destroy_bridge(info.bridge_id)
        if info.leg is not None and info.leg.channel_id and info.leg.answered:
            with contextlib.suppress(TelephonyError):
                await self.telephony.hangup(info.leg.channel_id)
            self._forget_leg(info.leg)

    # ----- after a restart or an event-socket drop -----------------------------------------

    def leg_channel_ids(self) -> set[str]:
        """The agent legs this process rang or connected (resync tells them from callers)."""
        return set(self._leg_by_channel)

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
        leg = _Leg(f"adopted-{call_id}", call_id, agent_id, agent_channel, answered=True,
                   bridge_id=bridge_id)
        leg.settled.set()
        self._calls[call_id] = _CallInfo(caller_channel, leg=leg, bridge_id=bridge_id,
                                         attributes=dict(attributes))
        self._leg_by_channel[agent_channel] = leg
        self._legs[leg.offer_id] = leg
        await self._run(self.core.adopt_connected(call_id, agent_id, queue, *self._now()))

    async def requeue(
        self, call_id: str, channel_id: str, attributes: CallAttributes, queue: str | None
    ) -> None:
        """An earlier process had this caller waiting (or ringing an agent): it waits again,
        in the same queue, with hold music."""
        self._calls[call_id] = _CallInfo(channel_id, attributes=dict(attributes))
        await self._run(self.core.requeue(call_id, attributes, queue, *self._now()))

    def queue_targets(self, queue: str) -> QueueTargets:
        """The queue's service-level threshold for the figures (docs/metrics.md), from the
        rules in force."""
        q = self.core.rules.queues.get(queue)
        if q is None:
            return QueueTargets()
        return QueueTargets(sl_s=q.service_level_s, sl_goal=q.service_level_percent / 100)

    def is_agent_channel(self, channel_id: str) -> bool:
        return channel_id in self._leg_by_channel

    async def _settled(self, channel_id: str) -> _Leg | None:
        """The leg of `channel_id` once the commands that rang it have run (None: not ours,
        or forgotten meanwhile)."""
        leg = self._leg_by_channel.get(channel_id)
        if leg is not None and not leg.settled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leg.settled.wait(), LEG_SETTLE_TIMEOUT_S)
        return leg if self._leg_by_channel.get(channel_id) is leg else None

    async def on_agent_channel_answered(self, channel_id: str) -> None:
        leg = await self._settled(channel_id)
        if leg is None or leg.answered:
            return
        if self.core.router.offer(leg.offer_id) is None:  # caller gone meanwhile
            await self._hangup(channel_id)
            return
        leg.answered = True
        if leg.timer:
            leg.timer.cancel()
        await self._run(self.core.offer_answered(leg.offer_id, *self._now()))

    async def on_agent_channel_ended(self, channel_id: str) -> None:
        leg = await self._settled(channel_id)
        if leg is None:
            return
        consult = self._consult_of(leg.call_id)
        if consult is not None:  # an attended transfer: either side left the consultation
            if leg is consult.agent_leg:
                await self.complete_consult(leg.call_id)
            else:
                await self.cancel_consult(leg.call_id)
            return
        self._forget_leg(leg)
        if leg.timer:
            leg.timer.cancel()
        if not leg.answered:  # the agent rejected or the phone failed while ringing
            await self._run(self.core.offer_failed(leg.offer_id, *self._now(), reason="no_answer"))
            return
        info = self._calls.pop(leg.call_id, None)
        await self._run(self.core.call_ended(leg.call_id, *self._now()))
        if info is not None:
            if info.bridge_id:
                with contextlib.suppress(TelephonyError):
                    await self.telephony.destroy_bridge(info.bridge_id)
            await self._hangup(info.channel_id)

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

    def decisions_for(self, call_id: str) -> list[dict[str, Any]]:
        return [
            {**d.to_dict(), "at": at.isoformat(), "router_time_s": d.at}
            for at, d in self.core.decisions_for(call_id)
        ]

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
                leg = self._legs.get(ring.offer_id)
                if leg is not None:
                    leg.settled.set()

    async def _execute(self, cmd: Command) -> None:
        if isinstance(cmd, Emit):
            await self._emit(cmd.event)
        elif isinstance(cmd, RecordDecision):
            self._record((cmd.at, cmd.decision))
        elif isinstance(cmd, HoldMusic):
            info = self._calls.get(cmd.call_id)
            if info is not None:
                info.moh_class = cmd.moh_class
                await self.telephony.start_moh(info.channel_id, cmd.moh_class)
        elif isinstance(cmd, Announce):
            self._announce(cmd)
        elif isinstance(cmd, RingAgent):
            await self._ring(cmd)
        elif isinstance(cmd, StopRinging):
            leg = self._legs.get(cmd.offer_id)
            if leg is not None:
                if leg.timer:
                    leg.timer.cancel()
                self._forget_leg(leg)
                if leg.channel_id:
                    await self._hangup(leg.channel_id)
        elif isinstance(cmd, Connect):
            await self._connect(cmd)
        elif isinstance(cmd, StartWrapUpTimer):
            self._later(cmd.seconds, lambda: self._wrap_up_done(cmd.agent_id, cmd.gen))
        elif isinstance(cmd, SendToFallback):
            info = self._calls.pop(cmd.call_id, None)
            channel = info.channel_id if info else ""
            if info is not None:
                await self._stop_announcement(info)  # the fallback has the channel now
            if self._bus is not None:
                fb = cmd.fallback
                queue = next((d.queue for _, d in reversed(self.core.decisions_for(cmd.call_id))
                              if d.outcome == "fallback"), "")
                self._bus.publish(FallbackReached(
                    cmd.call_id, self.clock.now(), channel, queue, fb.action,
                    mailbox=fb.mailbox or None, target=fb.queue or None,
                ))
            elif channel:
                await self._hangup(channel)

    async def _emit(self, event: RoutingEvent) -> None:
        if isinstance(event, CallConnected):
            consult = self._consult_of(event.call_id)
            if consult is not None:  # the colleague answered a consultation: not yet theirs
                consult.connected = event
                return
            info = self._calls.get(event.call_id)
            if not event.bridge_id and info is not None and info.bridge_id:
                # the bridge the caller talks in now (recording follows the call by it)
                event = dataclasses.replace(event, bridge_id=info.bridge_id)
        self._record(event)
        self._publish(event)
        for listener in self._listeners:
            try:
                await listener.on_routing_event(event)
            except Exception:
                log.exception("routing_listener_failed", listener=type(listener).__name__)

    def _publish(self, event: DomainEvent) -> None:
        if self._bus is not None:
            self._bus.publish(event)

    async def _ring(self, cmd: RingAgent) -> None:
        leg = _Leg(cmd.offer_id, cmd.call_id, cmd.agent_id)
        self._legs[cmd.offer_id] = leg
        info = self._calls.get(cmd.call_id)
        if info is not None:
            info.leg = leg
        channel_id = f"acd-{uuid.uuid4().hex[:20]}"
        leg.channel_id = channel_id
        self._leg_by_channel[channel_id] = leg
        attrs = self.core.router.attributes_of(cmd.call_id) or {}
        leg.timer = self._later(cmd.timeout_s, lambda: self._ring_timeout(cmd.offer_id))
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
            if leg.timer:
                leg.timer.cancel()
            self._forget_leg(leg)
            await self._run(
                self.core.offer_failed(cmd.offer_id, *self._now(), reason="ring_failed")
            )
            return
        if self._legs.get(cmd.offer_id) is not leg:  # cancelled while we were originating
            await self._hangup(channel_id)

    async def _ring_timeout(self, offer_id: str) -> None:
        leg = self._legs.get(offer_id)
        if leg is None or leg.answered:
            return
        if self._consult_of(leg.call_id) is not None:  # the colleague did not answer
            await self.cancel_consult(leg.call_id)
            return
        self._forget_leg(leg)
        await self._run(self.core.offer_failed(offer_id, *self._now(), reason="no_answer"))
        if leg.channel_id:
            await self._hangup(leg.channel_id)

    async def _wrap_up_done(self, agent_id: str, gen: int) -> None:
        await self._run(self.core.wrap_up_elapsed(agent_id, gen, *self._now()))

    async def _connect(self, cmd: Connect) -> None:
        info = self._calls.get(cmd.call_id)
        leg = self._legs.get(cmd.offer_id)
        if info is None or leg is None or leg.channel_id is None:
            return
        if info.consult is not None:  # attended transfer: the two agents talk, caller on hold
            bridge = await self.telephony.create_bridge(
                _fresh_bridge_id("consult", cmd.call_id), "mixing"
            )
            info.consult.bridge_id = leg.bridge_id = bridge
            assert info.consult.agent_leg.channel_id is not None
            await self.telephony.add_to_bridge(bridge, [info.consult.agent_leg.channel_id,
                                                        leg.channel_id])
            return
        await self._stop_announcement(info)  # a running playback would hold up addChannel
        await self.telephony.stop_moh(info.channel_id)
        name = _fresh_bridge_id("acd", cmd.call_id) if info.rebridged else f"acd-{cmd.call_id}"[:60]
        bridge = await self.telephony.create_bridge(name, "mixing")
        info.bridge_id = leg.bridge_id = bridge
        await self.telephony.add_to_bridge(bridge, [info.channel_id, leg.channel_id])

    def _later(self, seconds: float, action: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        async def run() -> None:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception:
                log.exception("acd_timer_failed")

        task = asyncio.create_task(run())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)
        return task

    def _forget_leg(self, leg: _Leg) -> None:
        self._legs.pop(leg.offer_id, None)
        if leg.channel_id:
            self._leg_by_channel.pop(leg.channel_id, None)

    async def _hangup(self, channel_id: str) -> None:
        with contextlib.suppress(TelephonyError):  # already gone
            await self.telephony.hangup(channel_id)

    # ----- announcements to waiting callers ---------------------------------------------
    #
    # Never in the way of an agent: the core announces only to waiting calls, the media is
    # prepared in a task of its own (rendering a new value takes a moment), and before the
    # caller joins a bridge the announcement is cancelled or stopped (`_stop_announcement`).

    def _announce(self, cmd: Announce) -> None:
        info = self._calls.get(cmd.call_id)
        if info is None or self._prompts is None or info.consult is not None:
            return
        busy = info.announce_task is not None and not info.announce_task.done()
        if busy or info.playback_id is not None:
            return  # the previous announcement is still being said: skip this one
        info.announce_at_pbx = False
        task = asyncio.create_task(self._say(cmd, info), name=f"acd-announce-{cmd.call_id}")
        info.announce_task = task
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _say(self, cmd: Announce, info: _CallInfo) -> None:
        assert self._prompts is not None
        lang = str(info.attributes.get("language") or self._language)
        try:
            media: list[str] = []
            for phrase_id, slots in announcement_phrases(cmd.position, cmd.wait_s):
                media += await self._prompts.media(phrase_id, slots, lang)
        except CtiError as exc:
            log.warning("queue_announcement_failed", call_id=cmd.call_id, error=exc.message)
            return
        waiting = self.core.router.is_waiting(cmd.call_id)
        if not media or not waiting or not self._still_waiting(cmd.call_id, info):
            return  # offered, answered or gone while the media was prepared
        # From here on the task is waited for, not cancelled: a cancelled request may still
        # have started the playback, which nobody would then stop.
        info.announce_at_pbx = True
        pid = f"acd-announce-{uuid.uuid4().hex[:16]}"
        info.playback_id = pid
        self._announcements[pid] = cmd.call_id
        try:
            await self.telephony.stop_moh(info.channel_id)
            await self.telephony.play(info.channel_id, media, playback_id=pid)
        except TelephonyError as exc:  # ChannelGone: the caller hung up meanwhile
            log.info("queue_announcement_not_played", call_id=cmd.call_id, error=exc.message)
            self._announcements.pop(pid, None)
            if info.playback_id == pid:
                info.playback_id = None
                if self._still_waiting(cmd.call_id, info):
                    with contextlib.suppress(TelephonyError):
                        await self.telephony.start_moh(info.channel_id, info.moh_class)

    def _still_waiting(self, call_id: str, info: _CallInfo) -> bool:
        """The caller is still ours and not with an agent (waiting, or its agent ringing)."""
        return (
            self._calls.get(call_id) is info
            and info.bridge_id is None
            and info.consult is None
            and (info.leg is None or not info.leg.answered)
        )

    def on_playback_finished(self, playback_id: str) -> None:
        """A PlaybackFinished from the PBX (every one; not ours are ignored): at the end of an
        announcement the caller hears the hold music again. Does not block the event loop's
        dispatcher: the request runs in the call's announcement task."""
        call_id = self._announcements.pop(playback_id, None)
        if call_id is None:
            return
        info = self._calls.get(call_id)
        if info is None or info.playback_id != playback_id:
            return  # stopped for a bridge or a fallback, or the caller left
        info.playback_id = None
        if not self._still_waiting(call_id, info):
            return
        info.announce_at_pbx = True
        task = asyncio.create_task(self._resume_moh(info), name=f"acd-moh-{call_id}")
        info.announce_task = task
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _resume_moh(self, info: _CallInfo) -> None:
        with contextlib.suppress(TelephonyError):  # the caller hung up meanwhile
            await self.telephony.start_moh(info.channel_id, info.moh_class)

    async def _stop_announcement(self, info: _CallInfo) -> None:
        """Before the caller joins a bridge (or leaves for a fallback): an announcement being
        prepared is cancelled; one whose requests are under way is waited for (milliseconds);
        a playback is stopped, so it cannot hold up the caller's addChannel."""
        task, info.announce_task = info.announce_task, None
        if task is not None and not task.done():
            if not info.announce_at_pbx:
                task.cancel()
            await asyncio.wait({task}, timeout=LEG_SETTLE_TIMEOUT_S)
        pid, info.playback_id = info.playback_id, None
        if pid is not None:
            self._announcements.pop(pid, None)
            with contextlib.suppress(TelephonyError):  # it ended by itself a moment ago
                await self.telephony.stop_playback(pid)

    def _forget_announcement(self, info: _CallInfo) -> None:
        """The caller hung up: nothing left to stop at the PBX; drop what we kept."""
        if info.announce_task is not None and not info.announce_at_pbx:
            info.announce_task.cancel()
        info.announce_task = None
        if info.playback_id is not None:
            self._announcements.pop(info.playback_id, None)
            info.playback_id = None

    # ----- one-click transfer ------------------------------------------------------------

    def agent_channel_of(self, call_id: str) -> str | None:
        """The answered agent leg of a connected call (the consulting agent's in a consult)."""
        info = self._calls.get(call_id)
        if info is None:
            return None
        leg = info.consult.agent_leg if info.consult else info.leg
        return leg.channel_id if leg is not None and leg.answered else None

    def consult_state(self, call_id: str) -> str | None:
        """None (no consultation), "ringing" or "talking"."""
        consult = self._consult_of(call_id)
        if consult is None:
            return None
        return "talking" if consult.bridge_id else "ringing"

    async def transfer(
        self, call_id: str, *, queue: str | None = None, agent_id: str | None = None
    ) -> None:
        """Blind transfer: the agent's leg leaves at once (the agent goes to wrap-up); the
        caller, with the attributes it arrived with, is offered to `agent_id` or waits in
        `queue`. Conflict/NotFound (nothing changed) when the target cannot take it."""
        info = self._require(call_id)
        commands = self.core.transfer(
            call_id, info.attributes, *self._now(), queue=queue, agent_id=agent_id
        )
        await self._detach_agent(info)
        await self._run(commands)

    async def release_call(self, call_id: str) -> str:
        """The call leaves the ACD for good (a transfer to an outside number): the agent's leg
        leaves and the agent goes to wrap-up. Returns the caller's channel id."""
        info = self._require(call_id)
        commands = self.core.call_ended(call_id, *self._now())
        await self._detach_agent(info)
        self._calls.pop(call_id, None)
        await self._run(commands)
        return info.channel_id

    async def consult(self, call_id: str, agent_id: str) -> None:
        """Attended transfer: take the agent's leg out of the caller's bridge and ring
        `agent_id`; on answer the two agents talk in a consultation bridge."""
        info = self._require(call_id)
        if info.leg is None or not info.leg.answered:
            raise NotFound(f"call {call_id} has no answered agent leg")
        commands = self.core.consult(call_id, info.attributes, *self._now(), agent_id=agent_id)
        info.consult = _Consult(info.leg)
        if info.bridge_id and info.leg.channel_id:
            with contextlib.suppress(TelephonyError):
                await self.telephony.remove_from_bridge(info.bridge_id, [info.leg.channel_id])
        await self._run(commands)

    async def complete_consult(self, call_id: str) -> None:
        """The consulting agent leaves; the colleague (talking, or still ringing) keeps the
        call and the caller is bridged with them."""
        info = self._calls.get(call_id)
        consult = info.consult if info else None
        if info is None or consult is None:
            raise NotFound(f"no consultation on call {call_id}")
        info.consult = None
        a_leg = consult.agent_leg
        self._forget_leg(a_leg)
        if consult.bridge_id:
            with contextlib.suppress(TelephonyError):
                await self.telephony.destroy_bridge(consult.bridge_id)
        if a_leg.channel_id:
            await self._hangup(a_leg.channel_id)
        if info.bridge_id:
            with contextlib.suppress(TelephonyError):
                await self.telephony.destroy_bridge(info.bridge_id)
            info.bridge_id = None
        await self._run(self.core.consult_completed(call_id, *self._now()))
        b_leg = info.leg if info.leg is not a_leg else None
        if b_leg is not None and b_leg.answered and b_leg.channel_id:
            await self._bridge_with(info, b_leg)
            if consult.connected is not None:
                await self._emit(consult.connected)
        elif b_leg is None:
            info.leg = None

    async def cancel_consult(self, call_id: str) -> None:
        """The consultation ends without a transfer: the colleague is released and the
        consulting agent is back with the caller."""
        info = self._calls.get(call_id)
        consult = info.consult if info else None
        if info is None or consult is None:
            raise NotFound(f"no consultation on call {call_id}")
        info.consult = None
        b_leg = info.leg if info.leg is not consult.agent_leg else None
        if b_leg is not None:
            if b_leg.timer:
                b_leg.timer.cancel()
            self._forget_leg(b_leg)
            if b_leg.channel_id:
                await self._hangup(b_leg.channel_id)
        if consult.bridge_id:
            with contextlib.suppress(TelephonyError):
                await self.telephony.destroy_bridge(consult.bridge_id)
        info.leg = consult.agent_leg
        await self._run(self.core.consult_cancelled(call_id, *self._now()))
        await self._bridge_with(info, consult.agent_leg)

    async def _bridge_with(self, info: _CallInfo, leg: _Leg) -> None:
        assert leg.channel_id is not None
        await self._stop_announcement(info)
        await self.telephony.stop_moh(info.channel_id)
        if info.bridge_id is None:
            info.bridge_id = await self.telephony.create_bridge(
                _fresh_bridge_id("acd", leg.call_id), "mixing"
            )
            await self.telephony.add_to_bridge(info.bridge_id, [info.channel_id, leg.channel_id])
        else:
            await self.telephony.add_to_bridge(info.bridge_id, [leg.channel_id])
        leg.bridge_id = info.bridge_id
        info.leg = leg

    async def _end_consult_legs(self, consult: _Consult) -> None:
        self._forget_leg(consult.agent_leg)
        if consult.bridge_id:
            with contextlib.suppress(TelephonyError):
                await self.telephony.destroy_bridge(consult.bridge_id)
        if consult.agent_leg.channel_id:
            await self._hangup(consult.agent_leg.channel_id)

    async def _detach_agent(self, info: _CallInfo) -> None:
        """Forget the agent's leg before hanging it up, so its end does not end the call."""
        leg, info.leg = info.leg, None
        if info.bridge_id:
            with contextlib.suppress(TelephonyError):
                await self.telephony.destroy_bridge(info.bridge_id)
            info.bridge_id, info.rebridged = None, True
        if leg is not None:
            self._forget_leg(leg)
            if leg.timer:
                leg.timer.cancel()
            if leg.channel_id:
                await self._hangup(leg.channel_id)

    def _require(self, call_id: str) -> _CallInfo:
        info = self._calls.get(call_id)
        if info is None:
            raise NotFound(f"call {call_id} is not with the ACD")
        return info

    def _consult_of(self, call_id: str) -> _Consult | None:
        info = self._calls.get(call_id)
        return info.consult if info else None

    def describe_call(self, call_id: str) -> dict[str, Any]:
        if call_id not in self._calls and not self.core.decisions_for(call_id):
            raise NotFound(f"no routing record for call {call_id}")
        return {
            "call_id": call_id,
            "waiting": self.core.router.is_waiting(call_id),
            "position": self.core.router.position(call_id),
            "queue": self.core.router.queue_of(call_id),
            "agent_id": self.core.agent_of_call(call_id),
            "decisions": self.decisions_for(call_id),
        }
