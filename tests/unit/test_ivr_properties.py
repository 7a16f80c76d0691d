"""Properties of the IVR engine under any sequence of events (hypothesis stateful testing):

- at most one timer is live, and the engine's idea of it matches the commands it gave;
- nothing is played, scheduled or routed after the call has ended;
- a procedure never hangs up directly: only after a goodbye prompt finished and a wait of
  at least 3 s fired; an agent never cuts the line while a guarded procedure runs;
- every path ends: with no caller input, the call reaches a resting state (ended, routed,
  conversation, or waiting for the agent) in a bounded number of steps.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from ivr_sim import CLOSED, OPEN, SLOTS, machine

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.engine import CallContext, CallState, IvrMachine, Phase
from cti.domain.ivr.flow import ListenNode, MohNode, RouteNode, WaitNode
from cti.domain.ivr.procedures import HANGUP_GUARDED, MIN_GOODBYE_WAIT_SECONDS

GOODBYES = {"silent_call_goodbye", "quiet_change_phone", "noisy_goodbye"}
PROCEDURES = [
    "silent_call", "hands_free", "quiet", "hold", "noisy", "dialect", "agent_quiet",
    "greet_reply", "greet_by_name", "no_such_procedure",
]
ACTIVE_COMMANDS = (c.Play, c.StartTimer, c.RouteToQueue, c.StartMoh, c.SetVolume, c.HangUpCall)


def resting(m: IvrMachine, state: CallState) -> bool:
    if state.phase is Phase.ENDED:
        return True
    if state.playing or state.timer_live:
        return False
    if state.procedure:
        node = m.procedures[state.procedure.name].nodes[state.procedure.node]
        return isinstance(node, MohNode) or (isinstance(node, WaitNode) and node.seconds is None)
    node = m.flows[state.flow].nodes[state.node]
    return isinstance(node, ListenNode | RouteNode | MohNode)


class IvrCall(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m = machine()
        self.state: CallState
        self.live_timers: set[int] = set()
        self.ended = False
        self.goodbye_stage: tuple[str, Any] = ("none", None)
        self.guarded_running: str | None = None

    @initialize(
        flow=st.sampled_from(["agent_greeting", "main_menu"]),
        vip=st.booleans(),
        open_=st.booleans(),
    )
    def answer(self, flow: str, vip: bool, open_: bool) -> None:
        self.state = self.m.new_call(CallContext("call1", "zh", SLOTS, vip, "1"), flow)
        self.feed(e.Answered(OPEN if open_ else CLOSED))

    # -- feeding and bookkeeping --------------------------------------------------------------

    def feed(self, event: e.Event) -> None:
        if isinstance(event, e.TimerFired) and event.gen in self.live_timers:
            self.live_timers.discard(event.gen)
            stage, gen = self.goodbye_stage
            if stage == "waiting" and gen == event.gen:
                self.goodbye_stage = ("waited", None)
        if isinstance(event, e.PromptFinished):
            stage, pid = self.goodbye_stage
            if stage == "played" and pid == event.playback_id:
                self.goodbye_stage = ("finished", None)
        was_ended = self.ended
        self.state, out = self.m.step(self.state, event)
        if isinstance(event, e.HangUp):
            self.ended = True
        for command in out:
            self.check(command, was_ended)

    def check(self, command: c.Command, was_ended: bool) -> None:
        if was_ended or self.ended:
            assert not isinstance(command, ACTIVE_COMMANDS), f"{command} after the call ended"
        match command:
            case c.StartTimer(gen=gen, seconds=seconds):
                self.live_timers.add(gen)
                if self.goodbye_stage[0] == "finished" and seconds >= MIN_GOODBYE_WAIT_SECONDS:
                    self.goodbye_stage = ("waiting", gen)
                else:
                    self.goodbye_stage = ("none", None)
            case c.CancelTimer(gen=gen):
                self.live_timers.discard(gen)
                if self.goodbye_stage[0] == "waiting":
                    self.goodbye_stage = ("none", None)
            case c.Play(playback_id=pid, phrase_id=phrase):
                self.goodbye_stage = ("played", pid) if phrase in GOODBYES else ("none", None)
            case c.StopPlayback():
                if self.goodbye_stage[0] == "played":
                    self.goodbye_stage = ("none", None)
            case c.HangUpCall(reason=reason):
                if reason == "procedure":
                    assert self.goodbye_stage[0] == "waited", "procedure hung up directly"
                if reason == "agent":
                    assert self.guarded_running is None, f"agent cut {self.guarded_running}"
                self.ended = True
            case c.Audit(kind="procedure_started", procedure=name):
                self.guarded_running = name if name in HANGUP_GUARDED else None
            case c.Audit(kind="procedure_ended"):
                self.guarded_running = None
            case _:
                pass
        assert len(self.live_timers) <= 1, f"live timers {self.live_timers}"

    # -- rules --------------------------------------------------------------------------------

    @rule()
    def prompt_finishes(self) -> None:
        if self.state.playing:
            self.feed(e.PromptFinished(self.state.playing))

    @rule(n=st.integers(0, 5))
    def stale_prompt_finishes(self, n: int) -> None:
        self.feed(e.PromptFinished(f"call1-p{max(0, self.state.play_seq - n)}x"))

    @rule()
    def timer_fires(self) -> None:
        if self.state.timer_live:
            self.feed(e.TimerFired(self.state.timer_gen))

    @rule(n=st.integers(1, 3))
    def stale_timer_fires(self, n: int) -> None:
        self.feed(e.TimerFired(self.state.timer_gen - n))

    @rule(digit=st.sampled_from("0123459*#"))
    def caller_presses(self, digit: str) -> None:
        self.feed(e.Dtmf(digit))

    @rule()
    def caller_speaks(self) -> None:
        self.feed(e.SpeechStarted())

    @rule()
    def caller_stops_speaking(self) -> None:
        self.feed(e.SpeechStopped(500))

    @rule(kind=st.sampled_from(["silent", "quiet", "noisy", "normal"]), n=st.integers(1, 4))
    def audio_windows(self, kind: str, n: int) -> None:
        for _ in range(n):
            self.feed(e.AudioClassified(kind))  # type: ignore[arg-type]

    @rule(command=st.sampled_from(["hangup", "resume", "next", "end", "dance"]))
    def agent_commands(self, command: str) -> None:
        self.feed(e.AgentCommand(command, "a1"))

    @rule(name=st.sampled_from(PROCEDURES), by=st.sampled_from(["agent", "auto"]))
    def procedure_started(self, name: str, by: str) -> None:
        self.feed(e.StartProcedure(name, by))  # type: ignore[arg-type]

    @rule(flow=st.sampled_from(["agent_greeting", "main_menu", "nope"]))
    def flow_switched(self, flow: str) -> None:
        self.feed(e.SwitchFlow(flow))

    @rule()
    def caller_hangs_up(self) -> None:
        self.feed(e.HangUp())

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def one_timer_and_the_engine_agrees(self) -> None:
        if not hasattr(self, "state") or self.ended:
            return
        assert self.state.timer_live == (len(self.live_timers) == 1)
        if self.state.timer_live:
            assert self.live_timers == {self.state.timer_gen}

    @invariant()
    def every_path_ends(self) -> None:
        """Left alone (prompts finish, timers fire), the call comes to rest within bounds."""
        if not hasattr(self, "state"):
            return
        state = self.state
        for _ in range(60):
            if resting(self.m, state):
                return
            if state.playing:
                state, _ = self.m.step(state, e.PromptFinished(state.playing))
            elif state.timer_live:
                state, _ = self.m.step(state, e.TimerFired(state.timer_gen))
        raise AssertionError(f"no rest after 60 steps: {state}")


IvrCall.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestIvrCallProperties = IvrCall.TestCase
