"""The IVR state machine: `IvrMachine.step(state, event) -> (state, commands)`.

Pure: no I/O, no clock. The main flow (a menu, or the conversation after the greeting) runs
with at most one procedure on top of it. A procedure that ends without hanging up hands the
call to a defined next step, never to silence (docs/no_dead_air.md): the agent if one is on
the call (or, when the agent ended it, is bridged within AGENT_HANDOVER_S), else the
conversation's `then`, the queue, or the node it interrupted. Before a
procedure hangs up it asks the driver whether the caller's recent audio shows them there
(ConfirmCallerAbsent -> CallerPresence); if so the hang-up is cancelled (`caller_present`).
At most one timer is live; each carries a generation so a late TimerFired is ignored.
Nothing is played or scheduled once the call has ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.config import DetectionSettings
from cti.domain.ivr.flow import (
    BranchNode,
    CallbackNode,
    EndNode,
    Flow,
    HangupNode,
    LanguageNode,
    ListenNode,
    MenuNode,
    MohNode,
    Node,
    PlayNode,
    RecordNode,
    RouteNode,
    VolumeNode,
    WaitNode,
)
from cti.domain.ivr.procedures import NOISY, QUIET, SILENT_CALL
from cti.platform.errors import CtiError

MAX_HOPS = 64  # immediate nodes in a row; the loader rejects cycles, this guards code flows
# A recording ends by itself at its max_seconds (the PBX's limit); if its end is never reported
# (a lost event), the flow goes on this much later all the same.
RECORD_GUARD_S = 5.0
# A procedure the agent ended (the page's end, resume, next) on a call no one is bridged with:
# the agent is handing the call over (an outside transfer resumes the hold just before the
# bridge). The caller goes on at the conversation's `then` if no one is bridged by then.
AGENT_HANDOVER_S = 2.0


class Phase(StrEnum):
    WAITING = "waiting"  # not answered yet
    ACTIVE = "active"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class CallContext:
    call_id: str
    lang: str = "zh"
    # Slot values per language, e.g. {"zh": {"company": "示例科技", "agent_id": "007"}}.
    slots: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    vip: bool = False
    caller_number: str = ""


@dataclass(slots=True)
class ProcedureRun:
    name: str
    run_id: str
    started_by: str
    node: str
    agent_acted: bool = False  # an agent's command moved it (agent:<command> trigger)


@dataclass(slots=True)
class CallState:
    ctx: CallContext
    flow: str
    node: str
    lang: str
    phase: Phase = Phase.WAITING
    answered_at: datetime | None = None
    procedure: ProcedureRun | None = None
    playing: str | None = None
    play_seq: int = 0
    timer_gen: int = 0
    timer_live: bool = False
    menu_attempts: int = 0
    menu_reprompt: bool = False
    moh_on: bool = False
    caller_spoke: bool = False
    audio_kind: str | None = None
    audio_run: int = 0
    # The latest classified window's features (AudioClassified.detail), for the audit.
    audio_detail: dict[str, Any] | None = None
    auto_starts: dict[str, int] = field(default_factory=dict)
    volume_gain: int = 0
    run_seq: int = 0
    recording: str | None = None  # the name of the recording under way
    rec_seq: int = 0
    agent_on_call: bool = False  # bridged with an agent (or a transfer's party)
    check_seq: int = 0
    checking: bool = False  # a procedure's hang-up waits for the CallerPresence answer
    awaiting_agent: bool = False  # at `listen` after the agent ended a procedure: handover


class UnknownFlow(CtiError):
    error_id = "unknown_flow"
    http_status = 404


class IvrMachine:
    def __init__(
        self,
        flows: Mapping[str, Flow],
        procedures: Mapping[str, Flow],
        detection: DetectionSettings | None = None,
    ) -> None:
        self.flows = flows
        self.procedures = procedures
        self.detection = detection or DetectionSettings()

    def new_call(self, ctx: CallContext, flow: str) -> CallState:
        if flow not in self.flows:
            raise UnknownFlow(f"no IVR flow named {flow!r} (have: {', '.join(sorted(self.flows))})")
        return CallState(ctx=ctx, flow=flow, node=self.flows[flow].start, lang=ctx.lang)

    def resumed_call(
        self, ctx: CallContext, flow: str, kind: Literal["route", "listen"], at: datetime
    ) -> CallState | None:
        """A call adopted after a service restart goes on in `flow`: idle at its first `route`
        node (a queued caller: the route was taken, the ACD has it again), or from its first
        `listen` node (talking with an agent: the caller's audio is watched again). None when
        the flow has no such node."""
        state = self.new_call(ctx, flow)
        want: type[RouteNode | ListenNode] = RouteNode if kind == "route" else ListenNode
        node = next(
            (n for n, spec in self.flows[flow].nodes.items() if isinstance(spec, want)), None
        )
        if node is None:
            return None
        state.node = node
        state.agent_on_call = kind == "listen"  # adopted while talking with an agent
        if kind == "route":  # `route` is done: active and idle, as after the original route
            state.phase = Phase.ACTIVE
            state.answered_at = at
        return state

    def step(self, state: CallState, event: e.Event) -> tuple[CallState, list[c.Command]]:
        step = _Step(self, _private_copy(state))
        step.handle(event)
        return step.s, step.out


def _private_copy(state: CallState) -> CallState:
    """A copy the step may change, leaving `state` as it was: the mutable parts copied, the
    immutable ones (the frozen context, strings, times) shared. copy.deepcopy did the same,
    at several times the cost, once per event of every call (a classified window a second)."""
    proc = state.procedure
    return replace(
        state,
        procedure=replace(proc) if proc is not None else None,
        audio_detail=dict(state.audio_detail) if state.audio_detail is not None else None,
        auto_starts=dict(state.auto_starts),
    )


class _Step:
    """One event's processing: mutates a private copy of the state, collects commands."""

    def __init__(self, machine: IvrMachine, state: CallState) -> None:
        self.m = machine
        self.s = state
        self.out: list[c.Command] = []
        self.hops = 0

    # -- where we are -------------------------------------------------------------------------

    def current(self) -> tuple[Flow, str, Node]:
        if self.s.procedure:
            flow = self.m.procedures[self.s.procedure.name]
            node_id = self.s.procedure.node
        else:
            flow = self.m.flows[self.s.flow]
            node_id = self.s.node
        return flow, node_id, flow.nodes[node_id]

    def audit(self, kind: str, **detail: Any) -> None:
        run = self.s.procedure
        self.out.append(
            c.Audit(kind, run.run_id if run else None, run.name if run else None, detail)
        )

    # -- events -------------------------------------------------------------------------------

    def handle(self, event: e.Event) -> None:
        s = self.s
        if s.phase is Phase.ENDED:
            return
        if isinstance(event, e.HangUp):
            self.caller_hung_up(event)
            return
        if isinstance(event, e.AgentLink):
            s.agent_on_call = event.connected
            if event.connected and s.awaiting_agent:  # handed over: they talk
                s.awaiting_agent = False
                self.cancel_timer()
            return
        if isinstance(event, e.Answered):
            if s.phase is Phase.WAITING:
                s.phase = Phase.ACTIVE
                s.answered_at = event.at
                self.goto(s.node)
            return
        if s.phase is not Phase.ACTIVE:
            return
        if s.checking and self.presence_shown_by(event):
            return
        match event:
            case e.PromptFinished(playback_id=pid):
                self.prompt_finished(pid)
            case e.TimerFired(gen=gen):
                self.timer_fired(gen)
            case e.Dtmf(digit=digit):
                self.dtmf(digit)
            case e.SpeechStarted():
                self.speech()
            case e.SpeechStopped():
                pass
            case e.AudioClassified():
                self.audio(event)
            case e.RecordingEnded():
                self.recording_ended(event)
            case e.AgentCommand(command=command, agent_id=agent_id):
                self.agent_command(command, agent_id)
            case e.StartProcedure(name=name, started_by=by, agent_id=agent_id):
                self.start_procedure(name, by, agent_id=agent_id)
            case e.CallerPresence():
                self.presence_answered(event)
            case e.SwitchFlow(flow=flow, slots=slots):
                if slots:
                    merged = {lang: {**self.s.ctx.slots.get(lang, {}), **values}
                              for lang, values in slots.items()}
                    self.s.ctx = replace(self.s.ctx, slots={**self.s.ctx.slots, **merged})
                self.switch_flow(flow)

    def caller_hung_up(self, event: e.HangUp) -> None:
        s = self.s
        if s.timer_live:
            self.out.append(c.CancelTimer(s.timer_gen))
            s.timer_live = False
        s.playing = None
        s.moh_on = False
        if s.recording:  # the PBX ends the recording with the call and keeps what it has
            self.audit("recording_caller_hangup", name=s.recording)
            s.recording = None
        if s.procedure:
            self.audit("procedure_ended", reason="caller_hangup", cause=event.cause)
            s.procedure = None
        s.phase = Phase.ENDED

    def prompt_finished(self, playback_id: str) -> None:
        s = self.s
        if playback_id != s.playing:
            return  # a prompt we already stopped, or someone else's
        s.playing = None
        _, _, node = self.current()
        if s.procedure:
            self.audit("prompt_finished", playback_id=playback_id)
        if isinstance(node, PlayNode):
            self.goto(node.next)
        elif isinstance(node, MenuNode):
            if s.menu_reprompt:
                s.menu_reprompt = False
                self.play(node.prompt)
            else:
                self.start_timer(node.timeout)

    def timer_fired(self, gen: int) -> None:
        s = self.s
        if not s.timer_live or gen != s.timer_gen:
            return  # stale: the state moved on since this timer was started
        s.timer_live = False
        _, _, node = self.current()
        if isinstance(node, WaitNode) and node.next:
            if s.procedure:
                self.audit("wait_finished", seconds=node.seconds)
            self.goto(node.next)
        elif isinstance(node, MenuNode):
            self.menu_retry(node, "no_input")
        elif isinstance(node, ListenNode) and s.awaiting_agent and isinstance(node.then, str):
            s.awaiting_agent = False  # nobody took the call over: the flow's next step
            self.audit("departure", what="no_agent_after_procedure", next=node.then)
            self.goto(node.then)
        elif isinstance(node, ListenNode) and s.procedure is None:
            self.auto_start(SILENT_CALL, self.s.audio_detail)
        elif isinstance(node, RecordNode) and s.recording:
            self.audit("recording_timeout", name=s.recording)
            self.goto(node.next)  # leaving stops the recording
        elif isinstance(node, HangupNode) and s.checking:
            # The driver did not answer in time: no audio to judge by. Hang up as the
            # procedure says, and say so.
            s.checking = False
            self.hang_up_now("procedure", presence="unknown", cause="no_answer")

    def recording_ended(self, event: e.RecordingEnded) -> None:
        s = self.s
        if event.name != s.recording:
            return  # one we stopped already
        s.recording = None
        _, _, node = self.current()
        if event.failed:
            self.audit("recording_failed", name=event.name, cause=event.cause)
        else:
            self.audit("recording_finished", name=event.name, duration_s=event.duration_s)
        if isinstance(node, RecordNode):
            self.goto(node.next)

    def dtmf(self, digit: str) -> None:
        _, _, node = self.current()
        if isinstance(node, MenuNode):
            self.leave()
            if digit in node.options:
                self.goto(node.options[digit])
            else:
                self.menu_retry(node, "invalid")
        else:
            self.trigger("dtmf")

    def speech(self, audio: dict[str, Any] | None = None) -> None:
        self.s.caller_spoke = True
        if self.trigger("speech", audio):
            return
        _, _, node = self.current()
        if isinstance(node, ListenNode) and self.s.timer_live and not self.s.awaiting_agent:
            self.cancel_timer()  # the silence watch: the caller is not silent

    def audio(self, event: e.AudioClassified) -> None:
        s = self.s
        s.audio_detail = event.detail()
        if event.kind == s.audio_kind:
            s.audio_run += 1
        else:
            s.audio_kind, s.audio_run = event.kind, 1
        if event.kind in ("quiet", "normal"):
            self.speech(s.audio_detail)
            if s.phase is not Phase.ACTIVE:
                return
        if s.audio_run < self.m.detection.consecutive_windows:
            return
        if self.trigger(f"audio:{event.kind}", s.audio_detail):
            s.audio_run = 0
            return
        _, _, node = self.current()
        listening = s.procedure is None and isinstance(node, ListenNode)
        if listening and event.kind in ("quiet", "noisy"):
            self.auto_start(QUIET if event.kind == "quiet" else NOISY, s.audio_detail)

    def agent_command(self, command: str, agent_id: str | None) -> None:
        if command == "hangup":
            self.agent_hangup(agent_id)
        elif command == "end" and self.s.procedure:
            self.audit("departure", what="procedure_cancelled_by_agent", agent_id=agent_id)
            self.s.procedure.agent_acted = True
            self.end_procedure("cancelled_by_agent")
        elif not self.trigger(f"agent:{command}"):
            self.audit("agent_command_ignored", command=command, agent_id=agent_id)

    def agent_hangup(self, agent_id: str | None) -> None:
        s = self.s
        run = s.procedure
        if run:
            flow, node_id, node = self.current()
            if flow.agent_hangup is None:
                self.audit("agent_hangup", agent_id=agent_id)
                self.hang_up_now("agent")
                return
            if self.in_goodbye_tail(flow, node_id, node):
                self.audit("departure", what="agent_hangup_during_goodbye", agent_id=agent_id)
                return
            self.audit("departure", what="agent_hangup_runs_procedure", agent_id=agent_id)
            self.goto(flow.agent_hangup)
            return
        _, _, node = self.current()
        situation = None
        # The latest window of the caller's audio says which situation the line is in.
        if s.audio_kind == "noisy":
            situation = NOISY
        elif s.audio_kind == "quiet":
            situation = QUIET
        elif isinstance(node, ListenNode) and not s.caller_spoke:
            situation = SILENT_CALL
        if situation and situation in self.m.procedures:
            self.start_procedure(situation, "agent", agent_id=agent_id, via_hangup=True)
            return
        self.audit("agent_hangup", agent_id=agent_id)
        self.hang_up_now("agent")

    @staticmethod
    def in_goodbye_tail(flow: Flow, node_id: str, node: Node) -> bool:
        """In a goodbye prompt whose wait leads to the hang-up, or in that wait."""

        def wait_to_hangup(n: Node) -> bool:
            return (
                isinstance(n, WaitNode) and n.next is not None
                and isinstance(flow.nodes[n.next], HangupNode)
            )

        if wait_to_hangup(node) or isinstance(node, HangupNode):
            return True
        return isinstance(node, PlayNode) and wait_to_hangup(flow.nodes[node.next])

    def switch_flow(self, flow: str) -> None:
        if flow not in self.m.flows:
            self.audit("flow_unknown", flow=flow)
            return
        if self.s.procedure:
            self.abort_procedure("flow_switched")
        self.leave()
        self.s.flow = flow
        self.s.node = self.m.flows[flow].start
        self.goto(self.s.node)

    # -- procedures ---------------------------------------------------------------------------

    def auto_start(self, name: str, audio: dict[str, Any] | None = None) -> None:
        det = self.m.detection
        if not det.auto_start or self.s.auto_starts.get(name, 0) >= det.max_auto_starts:
            return
        self.s.auto_starts[name] = self.s.auto_starts.get(name, 0) + 1
        self.start_procedure(name, "auto", audio=audio)

    def start_procedure(
        self, name: str, by: str, *, agent_id: str | None = None, via_hangup: bool = False,
        audio: dict[str, Any] | None = None,
    ) -> None:
        s = self.s
        flow = self.m.procedures.get(name)
        if flow is None:
            self.audit("procedure_unknown", name=name)
            return
        if s.procedure:
            if s.procedure.name == name and not via_hangup:
                return  # already running
            self.abort_procedure("superseded")
        self.leave()
        s.run_seq += 1
        start = flow.agent_hangup if via_hangup and flow.agent_hangup else flow.start
        s.procedure = ProcedureRun(name, f"{s.ctx.call_id}-r{s.run_seq}", by, start)
        # An automatic start records the caller's audio that led to it (the last window).
        extra = {"audio": audio} if audio else {}
        self.audit("procedure_started", started_by=by, agent_id=agent_id, via_hangup=via_hangup,
                   **extra)
        self.goto(start)

    def abort_procedure(self, reason: str, **detail: Any) -> None:
        self.leave()
        self.audit("procedure_ended", reason=reason, **detail)
        self.s.procedure = None

    def end_procedure(self, reason: str) -> None:
        """The procedure is over without a hang-up: the call goes on to a defined next step,
        named in the audit (`next`) and so on the agent's page."""
        s = self.s
        node_id = s.node
        node = self.m.flows[s.flow].nodes[node_id]
        by_agent = s.procedure is not None and s.procedure.agent_acted
        if isinstance(node, RouteNode):
            self.abort_procedure(reason, next="queue")  # a routed call stays with its queue
        elif isinstance(node, ListenNode) and s.agent_on_call:
            self.abort_procedure(reason, next="agent")  # the caller and the agent talk on
            self.enter(node_id, node)
        elif isinstance(node, ListenNode) and node.then is not None and by_agent:
            # The agent ended it with no one bridged yet: a handover under way (an outside
            # transfer); a moment for the bridge, then the flow's next step.
            self.abort_procedure(reason, next="agent")
            self.start_timer(AGENT_HANDOVER_S)
            s.awaiting_agent = True
        elif isinstance(node, ListenNode) and node.then is not None:
            self.abort_procedure(reason, next=node.then)
            self.goto(node.then)
        else:  # the node it interrupted, again: a menu, a prompt, a timed wait...
            self.abort_procedure(reason, next=node_id)
            self.enter(node_id, node)

    # -- moving between nodes -----------------------------------------------------------------

    def leave(self) -> None:
        s = self.s
        if s.playing:
            self.out.append(c.StopPlayback(s.playing))
            s.playing = None
        if s.timer_live:
            self.cancel_timer()
        if s.moh_on:
            self.out.append(c.StopMoh())
            s.moh_on = False
        if s.recording:
            self.out.append(c.StopRecording(s.recording))
            s.recording = None
        s.menu_reprompt = False
        s.checking = False  # a pending presence check is moot once the node is left
        s.awaiting_agent = False

    def trigger(self, name: str, audio: dict[str, Any] | None = None) -> bool:
        _, _, node = self.current()
        target = node.on.get(name)
        if target is None:
            return False
        if self.s.procedure:
            extra = {"audio": audio} if audio else {}  # the window that fired it, if any
            self.audit("trigger", trigger=name, **extra)
            self.s.procedure.agent_acted |= name.startswith("agent:")
        self.goto(target)
        return True

    def goto(self, node_id: str) -> None:
        self.hops += 1
        if self.hops > MAX_HOPS:
            raise CtiError(f"IVR flow loops through immediate nodes at {node_id!r}")
        self.leave()
        if self.s.procedure:
            self.s.procedure.node = node_id
        else:
            self.s.node = node_id
        _, _, node = self.current()
        self.enter(node_id, node)

    def enter(self, node_id: str, node: Node) -> None:
        s = self.s
        det = self.m.detection
        if s.procedure is None:  # the caller's path through the menus, for quality review
            phrase = getattr(node, "phrase", None) or getattr(node, "prompt", None)
            self.audit("ivr_node", flow=s.flow, node=node_id, type=node.type,
                       **({"phrase": phrase} if phrase else {}))
        match node:
            case PlayNode():
                self.play(node.phrase)
            case WaitNode():
                s.audio_run = 0  # judge the caller's audio afresh after the prompt
                if node.seconds is not None:
                    if s.procedure:
                        self.audit("wait_started", seconds=node.seconds)
                    self.start_timer(node.seconds)
            case MenuNode():
                s.menu_attempts = 0
                self.play(node.prompt)
            case RouteNode():
                self.audit("routed", queue=node.queue, skill=node.skill)
                self.out.append(c.RouteToQueue(node.queue, node.skill, s.lang))
                if node.next:
                    self.goto(node.next)
            case HangupNode():
                if s.procedure:
                    self.confirm_absent(node)
                else:
                    self.hang_up_now("flow")
            case BranchNode():
                self.goto(node.cases[self.branch_case(node)])
            case LanguageNode():
                s.lang = node.language
                self.goto(node.next)
            case VolumeNode():
                s.volume_gain += node.step
                self.audit("volume_raised", leg="caller", direction="TX", gain=s.volume_gain)
                self.out.append(c.SetVolume("caller", "TX", s.volume_gain))
                self.goto(node.next)
            case MohNode():
                self.out.append(c.StartMoh(node.moh_class))
                s.moh_on = True
            case CallbackNode():
                self.audit(
                    "callback_requested", number=s.ctx.caller_number, lang=s.lang,
                    queue=self.slot("queue"),
                )
                self.goto(node.next)
            case RecordNode():
                s.rec_seq += 1
                s.recording = f"vm-{s.ctx.call_id}-{s.rec_seq}"
                mailbox = node.mailbox or self.slot("mailbox")
                self.audit("recording_started", name=s.recording, mailbox=mailbox)
                self.out.append(c.Record(
                    s.recording, mailbox, node.max_seconds, node.max_silence, node.beep,
                    node.terminate_on,
                ))
                self.start_timer(node.max_seconds + RECORD_GUARD_S)
            case ListenNode():
                if det.auto_start and not s.caller_spoke and s.procedure is None:
                    self.start_timer(det.silence_seconds)
            case EndNode():
                self.end_procedure("completed")

    def slot(self, name: str) -> str:
        """A slot of the call (e.g. the queue fallback's `queue`, `mailbox`), "" if unset."""
        slots = self.s.ctx.slots
        for lang in (self.s.lang, *slots):
            value = slots.get(lang, {}).get(name)
            if value:
                return value
        return ""

    def branch_case(self, node: BranchNode) -> str:
        s = self.s
        if node.test == "vip":
            return "yes" if s.ctx.vip else "no"
        hours = self.m.flows[s.flow].business_hours
        if hours is None or s.answered_at is None:
            return "open"
        return "open" if hours.is_open(s.answered_at) else "closed"

    def menu_retry(self, node: MenuNode, reason: str) -> None:
        s = self.s
        s.menu_attempts += 1
        self.audit("menu_retry", reason=reason, attempt=s.menu_attempts)
        if s.menu_attempts > node.retries:
            self.goto(node.on_fail)
            return
        if node.invalid_prompt:
            self.play(node.invalid_prompt)
            s.menu_reprompt = True
        else:
            self.play(node.prompt)

    # -- primitive commands -------------------------------------------------------------------

    def play(self, phrase: str) -> None:
        s = self.s
        s.play_seq += 1
        playback_id = f"{s.ctx.call_id}-p{s.play_seq}"
        s.playing = playback_id
        self.out.append(c.Play(playback_id, phrase, s.lang, dict(s.ctx.slots.get(s.lang, {}))))
        if s.procedure:
            self.audit("prompt_started", phrase=phrase, playback_id=playback_id, lang=s.lang)

    def start_timer(self, seconds: float) -> None:
        s = self.s
        if s.timer_live:
            self.cancel_timer()
        s.timer_gen += 1
        s.timer_live = True
        self.out.append(c.StartTimer(s.timer_gen, seconds))

    def cancel_timer(self) -> None:
        self.out.append(c.CancelTimer(self.s.timer_gen))
        self.s.timer_live = False

    # -- the caller's presence before a procedure's hang-up ------------------------------------

    def confirm_absent(self, node: HangupNode) -> None:
        """Ask the driver about the caller's last seconds of audio; the answer (at once, from
        what it already has) decides. Bounded: no answer in time and the hang-up goes ahead."""
        s = self.s
        det = self.m.detection
        s.check_seq += 1
        self.out.append(c.ConfirmCallerAbsent(
            s.check_seq, det.presence_window_seconds, tuple(node.present_if)
        ))
        self.start_timer(det.presence_answer_seconds)
        s.checking = True

    def presence_shown_by(self, event: e.Event) -> bool:
        """While the check is pending: an event that itself shows the caller there (as the
        hang-up counts it) cancels the hang-up at once."""
        match event:
            case e.SpeechStarted():
                kind = "talk"
            case e.AudioClassified(kind=audio):
                kind = audio
            case e.Dtmf():
                kind = "key"
            case _:
                return False
        _, _, node = self.current()
        if not isinstance(node, HangupNode) or kind not in node.present_if:
            return False
        self.presence_answered(e.CallerPresence(
            self.s.check_seq, True, True, {"live": kind, "found": [kind], "counted": [kind]}
        ))
        return True

    def presence_answered(self, event: e.CallerPresence) -> None:
        s = self.s
        if not s.checking or event.check != s.check_seq:
            return  # stale: the procedure has moved on (or ended) since it asked
        s.checking = False
        if s.timer_live:
            self.cancel_timer()
        evidence = dict(event.evidence)
        if event.present:
            # Someone is there: no hang-up. Recorded as a trigger of the run (its timeline)
            # and as a departure from the script, with what was heard.
            self.audit("trigger", trigger="caller_present", **evidence)
            self.audit("departure", what="hangup_cancelled_caller_present", evidence=evidence)
            self.end_procedure("caller_present")
        else:  # not there, or nothing heard to judge by (no audio tap): said in the audit
            presence = "absent" if event.known else "unknown"
            self.hang_up_now("procedure", presence=presence, evidence=evidence)

    def hang_up_now(self, reason: str, **detail: Any) -> None:
        s = self.s
        self.leave()
        if s.procedure:
            self.audit("hangup", reason=reason, **detail)
            self.audit("procedure_ended", reason="hangup")
            s.procedure = None
        self.out.append(c.HangUpCall(reason))
        s.phase = Phase.ENDED
