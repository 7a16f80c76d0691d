"""The thin asyncio driver of the IVR engine: one task and one event queue per call.

It feeds events to the pure `IvrMachine.step`, then carries out the commands through the
Telephony port, a timer scheduler (cti.platform.scheduler: the loop's, or a manual one in
tests) and the audit writer.
Timers carry generation numbers; a late TimerFired is dropped by the engine.

It keeps each call's recent caller audio (classifier windows, TALK_DETECT, keys: everything fed
to the call) and answers the engine's ConfirmCallerAbsent before a procedure's hang-up at once,
from what it already has, before the next event: the check never delays a hang-up.

Wiring (the call lifecycle service): `await runner.run_call(CallContext(...), "agent_greeting",
channel_id)` for an answered call (its own task); ARI events go through `ari_to_domain` and
`runner.feed(call_id, event)`. The agent page: `start_procedure`, `request_hangup`,
`agent_command`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.checkpoint import (
    Checkpoint,
    PromptAt,
    TimerAt,
    restore,
    resume_plan,
    snapshot,
)
from cti.domain.ivr.config import DetectionSettings, ProcedureSettings
from cti.domain.ivr.engine import CallContext, CallState, IvrMachine, Phase
from cti.domain.ivr.flow import Flow
from cti.domain.ivr.presence import CallerAudioMemory
from cti.domain.ivr.procedures import build_procedures
from cti.domain.phrases import ForbiddenPhraseRefused
from cti.events import Bus, CallRouted
from cti.features.ivr.caller_audio import TAP_BRIDGE_PREFIX
from cti.features.ivr.prompts import PromptLengths, PromptSource
from cti.features.procedures.audit import AuditEntry
from cti.platform.clock import Clock
from cti.platform.errors import ChannelGone, CtiError, NotFound, TelephonyError
from cti.platform.log import get_logger
from cti.platform.ports import Telephony
from cti.platform.scheduler import LoopScheduler, Scheduler, TimerHandle

log = get_logger(__name__)

# Names the agent page uses (cti/api/call_control.py) for the engine's procedures.
ALIASES = {"silent": "silent_call", "noisy_line": "noisy", "volume_up": "agent_quiet"}
# A wait after a prompt is timed from the prompt's end as the PBX stamped it: the time its
# PlaybackFinished took to reach the service and be processed (websocket, event loop; 5-50 ms
# on a loaded machine) would otherwise be heard as a longer wait. Only the part of that delay
# over the smallest one seen lately is taken off (so a PBX clock off from ours by a constant
# does not shorten every wait), and never more than CATCH_UP_MAX_S.
CATCH_UP_MAX_S = 0.25
DELAY_MEMORY = 256


class AuditSink(Protocol):
    def submit(self, entry: AuditEntry) -> None: ...


class FlowSource(Protocol):
    @property
    def flows(self) -> dict[str, Flow]: ...


class RecordingSink(Protocol):
    """Told of each recording the IVR starts (the voicemail store), before the PBX is asked:
    the recording's end may come after the call's, when the IVR no longer runs it."""

    def recording_started(self, state: CallState, channel_id: str, command: c.Record) -> None: ...
    def recording_not_started(self, name: str) -> None: ...


class CheckpointSink(Protocol):
    """Keeps each call's latest IVR position outside the process (cti.features.ivr.checkpoints):
    both calls return at once; the writing happens elsewhere, coalesced per call."""

    def keep(self, checkpoint: Checkpoint) -> None: ...
    def drop(self, call_id: str) -> None: ...


@runtime_checkable
class PlaybackProbe(Protocol):
    async def playback_listed(self, playback_id: str) -> bool: ...


# Told the engine's hang-up reason ("procedure", "flow", "agent") just before the IVR hangs up,
# so the call log can say who ended the call.
HangupHook = Callable[[str], None]
# Awaited before the IVR hands the caller on (a queue, hold music, a recording): whatever
# holds the caller's channel for the IVR (the line watch's bridge) lets it go. Never raises.
HandoverHook = Callable[[], Awaitable[None]]


class UnknownProcedure(NotFound):
    error_id = "unknown_procedure"


@dataclass
class _CallRun:
    ctx: CallContext
    channel_id: str
    machine: IvrMachine
    state: CallState
    queue: asyncio.Queue[tuple[e.Event, asyncio.Future[list[c.Command]] | None]] = field(
        default_factory=asyncio.Queue
    )
    timer: tuple[int, TimerHandle] | None = None
    on_hangup: HangupHook | None = None
    on_handover: HandoverHook | None = None
    heard: CallerAudioMemory = field(default_factory=CallerAudioMemory)
    # For the checkpoint: the live timer's deadline, the prompt playing (since when, how long)
    deadline: TimerAt | None = None
    prompt: PromptAt | None = None
    exact_end: str | None = None  # an adopted prompt whose end we computed: timed exactly
    stopping: bool = False  # the service stops: the call goes on elsewhere, keep its checkpoint


class IvrRunner:
    def __init__(
        self,
        telephony: Telephony,
        clock: Clock,
        audit: AuditSink,
        prompts: PromptSource,
        flows: FlowSource,
        *,
        procedures: ProcedureSettings | None = None,
        detection: DetectionSettings | None = None,
        timers: Scheduler | None = None,
        bus: Bus | None = None,
        recordings: RecordingSink | None = None,
        checkpoints: CheckpointSink | None = None,
    ) -> None:
        self.telephony = telephony
        self.clock = clock
        self.audit = audit
        self.prompts = prompts
        self.flow_source = flows
        self.procedures = build_procedures(procedures or ProcedureSettings())
        self.detection = detection or DetectionSettings()
        self.timers = timers or LoopScheduler()
        self.bus = bus  # CallRouted goes there: the routing feature takes the call
        self.recordings = recordings
        self.checkpoints = checkpoints
        self.calls: dict[str, _CallRun] = {}
        self._delays: deque[float] = deque(maxlen=DELAY_MEMORY)  # PBX stamp -> processed, s

    # -- the call's task ----------------------------------------------------------------------

    async def run_call(
        self, ctx: CallContext, flow_name: str, channel_id: str | None = None,
        on_hangup: HangupHook | None = None, resume: Literal["route", "listen"] | None = None,
        checkpoint: Checkpoint | None = None, on_handover: HandoverHook | None = None,
    ) -> CallState:
        """Run the call's IVR from answer to end (or cancellation). Returns the last state.
        `resume`: an adopted call goes on at the flow's first route (idle) or listen node.
        `checkpoint`: an adopted call goes on exactly where it was (node, procedure step,
        the rest of its wait); it wins over `resume`."""
        machine = IvrMachine(self.flow_source.flows, self.procedures, self.detection)
        state = machine.new_call(ctx, flow_name)
        if checkpoint is not None:
            state = restore(ctx, checkpoint)
        elif resume is not None:
            state = machine.resumed_call(ctx, flow_name, resume, self.clock.now()) or state
        run = _CallRun(ctx, channel_id or ctx.call_id, machine, state)
        run.on_hangup = on_hangup
        run.on_handover = on_handover
        self.calls[ctx.call_id] = run
        try:
            if checkpoint is not None:
                await self._resume(run, checkpoint)
            else:
                await self._process(run, e.Answered(self.clock.now()), None)
            while run.state.phase is not Phase.ENDED:
                event, done = await run.queue.get()
                try:
                    await self._process(run, event, done)
                except BaseException as exc:
                    # A bug in the engine: whoever waits on this event (an agent's click)
                    # learns of it instead of waiting for ever.
                    if done is not None and not done.done():
                        done.set_exception(exc)
                    raise
        finally:
            if run.timer:
                run.timer[1].cancel()
            self.calls.pop(ctx.call_id, None)
            if self.checkpoints is not None and run.state.phase is Phase.ENDED \
                    and not run.stopping:
                self.checkpoints.drop(ctx.call_id)
            while not run.queue.empty():
                _, done = run.queue.get_nowait()
                if done and not done.done():
                    done.set_result([])
        return run.state

    async def _process(
        self, run: _CallRun, event: e.Event, done: asyncio.Future[list[c.Command]] | None
    ) -> None:
        if isinstance(event, e.TimerFired) and run.timer and run.timer[0] == event.gen:
            run.timer = None
        if isinstance(event, e.HangUp) and event.cause == "service_stopping":
            run.stopping = True
        run.state, commands = run.machine.step(run.state, event)
        audits: list[c.Audit] = []
        checks: list[c.ConfirmCallerAbsent] = []
        ended_at = event.ended_at if isinstance(event, e.PromptFinished) else None
        exact = isinstance(event, e.PromptFinished) and event.playback_id == run.exact_end
        acted = False
        for command in commands:
            if isinstance(command, c.Audit):
                audits.append(command)
            elif isinstance(command, c.ConfirmCallerAbsent):
                checks.append(command)
            else:
                acted = True
                await self._execute(run, command, ended_at, exact)
        if acted or isinstance(event, e.AgentLink):  # AgentLink: who is on the call
            self._checkpoint(run)
        at, mono = self.clock.now(), self.clock.monotonic()
        for audit in audits:  # after the timers are set: a write never delays them
            self._submit(AuditEntry(run.ctx.call_id, audit, at, mono))
        if done is not None and not done.done():
            done.set_result(commands)
        for check in checks:
            # Before the procedure hangs up: judged now, from the audio already heard, and
            # processed before any other event, so an absent caller is hung up on time.
            answer = run.heard.judge(mono, check)
            log.info("ivr_presence_check", call_id=run.ctx.call_id, present=answer.present,
                     known=answer.known, found=answer.evidence.get("found"))
            await self._process(run, answer, None)

    def _checkpoint(self, run: _CallRun) -> None:
        """The call's position, kept (coalesced per call, written off this path) whenever
        a command moved it: a timer armed or cancelled, a prompt started or stopped."""
        if self.checkpoints is None or run.state.phase is not Phase.ACTIVE:
            return
        try:
            self.checkpoints.keep(snapshot(run.state, self.clock.now(), run.deadline, run.prompt))
        except Exception:  # a help for a later adoption, never a condition of this call
            log.exception("ivr_checkpoint_failed", call_id=run.ctx.call_id)

    async def _resume(self, run: _CallRun, checkpoint: Checkpoint) -> None:
        """An adopted call goes on from its checkpoint: the timer that was live fires at its
        original deadline (at once if it passed); a prompt that was playing ends when the PBX
        says (still listed there) or at its start plus its length."""
        listed = False
        if checkpoint.prompt is not None and isinstance(self.telephony, PlaybackProbe):
            try:
                listed = await self.telephony.playback_listed(checkpoint.prompt.playback_id)
            except TelephonyError:
                listed = False
        plan = resume_plan(checkpoint, self.clock.now(), listed)
        log.info("ivr_resumed", call_id=run.ctx.call_id, flow=run.state.flow,
                 node=run.state.node,
                 procedure=run.state.procedure.name if run.state.procedure else None,
                 procedure_node=run.state.procedure.node if run.state.procedure else None,
                 timer_in=plan.timer[1] if plan.timer else None,
                 prompt_listed=plan.await_prompt is not None,
                 prompt_ends_in=plan.prompt_end[2] if plan.prompt_end else None)
        if plan.timer is not None:
            gen, delay = plan.timer
            handle = self.timers.call_later(
                delay, lambda: run.queue.put_nowait((e.TimerFired(gen), None))
            )
            run.timer = (gen, handle)
            run.deadline = checkpoint.timer
        if plan.await_prompt is not None or plan.prompt_end is not None:
            run.prompt = checkpoint.prompt
        if plan.prompt_end is not None:
            pid, ended_at, delay = plan.prompt_end
            run.exact_end = pid
            self.timers.call_later(
                delay, lambda: run.queue.put_nowait((e.PromptFinished(pid, ended_at), None))
            )
        self._checkpoint(run)

    def already_waited(self, ended_at: datetime | None) -> float:
        """Seconds of a wait that began at `ended_at` (the PBX's stamp of a prompt's end)
        already gone by when its timer is set: the delay over the smallest seen lately."""
        if ended_at is None:
            return 0.0
        delay = (self.clock.now() - ended_at).total_seconds()
        self._delays.append(delay)
        return min(max(delay - min(self._delays), 0.0), CATCH_UP_MAX_S)

    async def _execute(
        self, run: _CallRun, command: c.Command, ended_at: datetime | None = None,
        exact: bool = False,
    ) -> None:
        call_id = run.ctx.call_id
        if isinstance(command, c.RouteToQueue | c.StartMoh | c.Record) and run.on_handover:
            await run.on_handover()
        try:
            match command:
                case c.StartTimer(gen=gen, seconds=seconds):
                    if run.timer:
                        run.timer[1].cancel()
                    if exact and ended_at is not None:
                        # the end of an adopted prompt, computed: all of the time since counts
                        waited = max((self.clock.now() - ended_at).total_seconds(), 0.0)
                    else:
                        waited = self.already_waited(ended_at)
                    delay = max(seconds - waited, 0.0)
                    handle = self.timers.call_later(
                        delay, lambda: run.queue.put_nowait((e.TimerFired(gen), None)),
                    )
                    run.timer = (gen, handle)
                    run.deadline = TimerAt(gen, self.clock.now() + timedelta(seconds=delay))
                case c.CancelTimer(gen=gen):
                    if run.timer and run.timer[0] == gen:
                        run.timer[1].cancel()
                        run.timer = None
                        run.deadline = None
                case c.Play():
                    await self._play(run, command)
                case c.StopPlayback(playback_id=pid):
                    run.prompt = None
                    # 404: the prompt ended by itself a moment ago (its PlaybackFinished is on
                    # the way); the caller is still there, so this is no HangUp.
                    with contextlib.suppress(ChannelGone):
                        await self.telephony.stop_playback(pid)
                case c.HangUpCall(reason=reason):
                    if run.on_hangup is not None:
                        run.on_hangup(reason)
                    await self.telephony.hangup(run.channel_id, "normal")
                    log.info("ivr_hangup", call_id=call_id, reason=reason)
                case c.SetVolume(direction=direction, gain=gain):
                    await self.telephony.set_volume(run.channel_id, direction, gain)
                case c.StartMoh(moh_class=moh_class):
                    await self.telephony.start_moh(run.channel_id, moh_class)
                case c.StopMoh():
                    await self.telephony.stop_moh(run.channel_id)
                case c.Record():
                    await self._record(run, command)
                case c.StopRecording(name=name):
                    # 404: it ended by itself a moment ago (its RecordingFinished is on the way)
                    with contextlib.suppress(ChannelGone):
                        await self.telephony.stop_recording(name)
                case c.RouteToQueue():
                    log.info("ivr_route", call_id=call_id, queue=command.queue)
                    if self.bus is not None:
                        self.bus.publish(
                            CallRouted(call_id, self.clock.now(), command.queue, command.lang)
                        )
        except ChannelGone:
            run.queue.put_nowait((e.HangUp("channel_gone"), None))
        except TelephonyError as exc:
            log.error("ivr_command_failed", call_id=call_id, command=type(command).__name__,
                      error=exc.message)
        except Exception:
            # A failing collaborator (the route handler, say) must not stop the procedure's
            # timers: the caller's timed hang-up still has to happen.
            log.exception("ivr_command_failed", call_id=call_id, command=type(command).__name__)

    async def _record(self, run: _CallRun, command: c.Record) -> None:
        if self.recordings is not None:
            self.recordings.recording_started(run.state, run.channel_id, command)
        try:
            await self.telephony.record(
                run.channel_id, command.name, fmt="wav", max_duration_s=command.max_seconds,
                max_silence_s=command.max_silence, beep=command.beep,
                terminate_on=command.terminate_on,
            )
        except ChannelGone:
            if self.recordings is not None:
                self.recordings.recording_not_started(command.name)
            raise
        except CtiError as exc:
            # Refused (the PBX cannot write the file, say): the flow goes on past the node.
            log.error("ivr_record_failed", call_id=run.ctx.call_id, error=exc.message)
            if self.recordings is not None:
                self.recordings.recording_not_started(command.name)
            run.queue.put_nowait((e.RecordingEnded(command.name, failed=True,
                                                   cause=exc.message), None))

    def _submit(self, entry: AuditEntry) -> None:
        try:
            self.audit.submit(entry)
        except Exception:  # the audit trail is a record, not a condition of the call
            log.exception("ivr_audit_failed", call_id=entry.call_id, kind=entry.audit.kind)

    async def _play(self, run: _CallRun, command: c.Play) -> None:
        try:
            media = await self.prompts.media(command.phrase_id, command.slots, command.lang)
            length = (self.prompts.seconds(media) if isinstance(self.prompts, PromptLengths)
                      else None)
            run.prompt = PromptAt(command.playback_id, self.clock.now(), length)
            await self.telephony.play(run.channel_id, media, playback_id=command.playback_id)
        except ChannelGone:
            raise
        except CtiError as exc:
            # The prompt cannot be said (missing slot, PBX refused): record it and go on, so
            # the flow and its waits continue instead of hanging silent.
            log.error("ivr_prompt_failed", call_id=run.ctx.call_id, phrase=command.phrase_id,
                      error=exc.message)
            # A forbidden result (a slot value, say) is a departure of its own for review.
            what = ("forbidden_phrase_blocked" if isinstance(exc, ForbiddenPhraseRefused)
                    else "prompt_failed")
            self._submit(AuditEntry(
                run.ctx.call_id,
                c.Audit("departure", run.state.procedure.run_id if run.state.procedure else None,
                        None, {"what": what, "phrase": command.phrase_id,
                               "error": exc.message}),
                self.clock.now(), self.clock.monotonic(),
            ))
            run.queue.put_nowait((e.PromptFinished(command.playback_id), None))

    # -- the outside world --------------------------------------------------------------------

    def feed(self, call_id: str, event: e.Event) -> bool:
        """Queue an event for a call; False if the IVR does not run that call."""
        run = self.calls.get(call_id)
        if run is None:
            return False
        run.heard.note(self.clock.monotonic(), event)  # when it was heard, not processed
        run.queue.put_nowait((event, None))
        return True

    async def _feed_and_wait(self, call_id: str, event: e.Event) -> list[c.Command]:
        run = self.calls.get(call_id)
        if run is None:
            raise NotFound(f"no IVR running for call {call_id!r}")
        done: asyncio.Future[list[c.Command]] = asyncio.get_running_loop().create_future()
        run.queue.put_nowait((event, done))
        return await done

    def procedure_name(self, name: str) -> str:
        real = ALIASES.get(name, name)
        if real not in self.procedures:
            known = ", ".join(sorted([*self.procedures, *ALIASES]))
            raise UnknownProcedure(f"unknown procedure {name!r}; known: {known}")
        return real

    async def start_procedure(
        self, call_id: str, name: str, agent_id: str | None = None, started_by: str = "agent"
    ) -> None:
        real = self.procedure_name(name)
        by: e.StartedBy = "auto" if started_by == "auto" else "agent"
        await self._feed_and_wait(call_id, e.StartProcedure(real, by, agent_id))

    async def request_hangup(self, call_id: str, agent_id: str | None = None) -> bool:
        """The agent clicked hang-up. True when a procedure took it over (goodbye, then the
        timed hang-up); False when the IVR does not run the call (hang up directly)."""
        if call_id not in self.calls:
            return False
        commands = await self._feed_and_wait(call_id, e.AgentCommand("hangup", agent_id))
        return not any(isinstance(cmd, c.HangUpCall) for cmd in commands)

    async def agent_command(self, call_id: str, command: str, agent_id: str | None = None) -> None:
        await self._feed_and_wait(call_id, e.AgentCommand(command, agent_id))

    async def switch_flow(
        self, call_id: str, flow: str, slots: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        await self._feed_and_wait(call_id, e.SwitchFlow(flow, slots))

    def state_of(self, call_id: str) -> CallState | None:
        run = self.calls.get(call_id)
        return run.state if run else None

    async def cancel_all(self) -> None:
        for call_id in list(self.calls):
            self.feed(call_id, e.HangUp("service_stopping"))
        await asyncio.sleep(0)


def pbx_time(event: Any) -> datetime | None:
    """An ARI event's own time stamp (Asterisk's clock), or None if it has none."""
    stamp = getattr(event, "timestamp", None)
    if not isinstance(stamp, str):
        return None
    try:
        # Asterisk's "2026-12-01T19:44:42.674+0000"; fromisoformat reads it in ~1 µs where
        # strptime took ~70 (every prompt's and every classified window's event has one).
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None  # a time without its zone is no time here


def ari_to_domain(event: Any) -> tuple[str, e.Event] | None:
    """(channel id, domain event) for the ARI events the IVR cares about, else None.

    Bridging: ChannelEnteredBridge/LeftBridge of the caller's channel say whether a person is
    on the call with them (AgentLink); the line watch's own bridge (which holds the caller's
    channel while in the IVR) is no person.

    PlaybackFinished and RecordingFinished/Failed are keyed by their target channel
    (`channel:<id>`)."""
    kind = getattr(event, "type", type(event).__name__)
    if kind == "PlaybackFinished":
        playback = event.playback
        target = str(getattr(playback, "target_uri", ""))
        channel = target.split(":", 1)[1] if target.startswith("channel:") else target
        return channel, e.PromptFinished(playback.id, pbx_time(event))
    if kind in ("RecordingFinished", "RecordingFailed"):
        rec = event.recording
        target = str(getattr(rec, "target_uri", ""))
        channel = target.split(":", 1)[1] if target.startswith("channel:") else target
        duration = getattr(rec, "duration", None)
        failed = kind == "RecordingFailed"
        return channel, e.RecordingEnded(
            rec.name, float(duration) if duration is not None else None, failed,
            str(getattr(rec, "cause", "") or "") if failed else "",
        )
    channel_obj = getattr(event, "channel", None)
    if channel_obj is None:
        return None
    channel_id = str(channel_obj.id)
    result: e.Event | None = None
    if kind == "ChannelDtmfReceived":
        result = e.Dtmf(str(event.digit))
    elif kind == "ChannelTalkingStarted":
        result = e.SpeechStarted()
    elif kind == "ChannelTalkingFinished":
        result = e.SpeechStopped(int(getattr(event, "duration", 0) or 0))
    elif kind in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
        result = e.HangUp(kind)
    elif kind in ("ChannelEnteredBridge", "ChannelLeftBridge") and not str(
        event.bridge.id
    ).startswith(TAP_BRIDGE_PREFIX):
        # A caller's channel is bridged with a person (an agent, a transfer's party), or with
        # the audio tap's externalMedia channel alone (the tap's bridge: no one on the call).
        result = e.AgentLink(kind == "ChannelEnteredBridge")
    return (channel_id, result) if result is not None else None

