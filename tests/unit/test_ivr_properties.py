"""Properties of the IVR engine under any sequence of events (hypothesis stateful testing):

- at most one timer is live, and the engine's idea of it matches the commands it gave;
- nothing is played, scheduled or routed after the call has ended;
- a procedure never hangs up directly: only after a goodbye prompt finished and a wait of
  at least 3 s fired; an agent never cuts the line while a guarded procedure runs;
- every path ends: with no caller input, the call reaches a resting state (ended, routed,
  conversation, or waiting for the agent) in a bounded number of steps;
- no dead air: whenever a procedure ends without hanging up, the caller is at once with an
  agent, hearing a prompt, in the queue, or in a node that will act (a timer or a menu);
- a step leaves the state it was given as it was (it changes a copy);
- no hang-up on a present caller: a procedure hangs up only after its presence check was
  answered "absent" (or "unknown"), or went unanswered past its bound.

`test_every_path_leaves_no_dead_air` explores every reachable state of every shipped flow
with every procedure on top (breadth first, states merged by what decides their future).
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Hashable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from ivr_sim import CLOSED, OPEN, SLOTS, machine

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.config import DetectionSettings
from cti.domain.ivr.engine import CallContext, CallState, IvrMachine, Phase
from cti.domain.ivr.flow import ListenNode, MenuNode, MohNode, RouteNode, WaitNode
from cti.domain.ivr.procedures import HANGUP_GUARDED, MIN_GOODBYE_WAIT_SECONDS

GOODBYES = {"silent_call_goodbye", "quiet_change_phone", "noisy_goodbye"}
PROCEDURES = [
    "silent_call", "hands_free", "quiet", "hold", "noisy", "dialect", "agent_quiet",
    "greet_reply", "greet_by_name", "no_such_procedure",
]
ACTIVE_COMMANDS = (c.Play, c.StartTimer, c.RouteToQueue, c.StartMoh, c.SetVolume, c.HangUpCall)


def acting(m: IvrMachine, state: CallState) -> bool:
    """Not dead air: with an agent, hearing a prompt, a timer running (a menu's, a wait's, a
    recording's), or in the queue (the ACD has the call: music, announcements, an agent)."""
    if state.phase is not Phase.ACTIVE:
        return False
    if state.agent_on_call or state.playing or state.timer_live:
        return True
    node = m.flows[state.flow].nodes[state.node]
    return state.procedure is None and isinstance(node, RouteNode | MenuNode)


def procedure_ended_alive(m: IvrMachine, state: CallState, out: list[c.Command]) -> bool:
    """Whether this step ended a procedure and the call is still on."""
    return state.phase is Phase.ACTIVE and any(
        isinstance(cmd, c.Audit) and cmd.kind == "procedure_ended" for cmd in out
    )


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
        self.answered_present: set[int] = set()  # checks answered "the caller is there"

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
        if isinstance(event, e.CallerPresence) and event.present:
            self.answered_present.add(event.check)
        was_ended = self.ended
        before, as_given = self.state, copy.deepcopy(self.state)
        self.state, out = self.m.step(self.state, event)
        # pure: the state given is left as it was (the step changes a private copy)
        assert before == as_given, f"{event} changed the state it was given"
        if isinstance(event, e.HangUp):
            self.ended = True
        for command in out:
            self.check(command, was_ended)
        if procedure_ended_alive(self.m, self.state, out):
            assert acting(self.m, self.state), f"dead air after {event}: {self.state}"

    def check(self, command: c.Command, was_ended: bool) -> None:
        if was_ended or self.ended:
            assert not isinstance(command, ACTIVE_COMMANDS), f"{command} after the call ended"
        match command:
            case c.StartTimer(gen=gen, seconds=seconds):
                self.live_timers.add(gen)
                if self.goodbye_stage[0] == "finished" and seconds >= MIN_GOODBYE_WAIT_SECONDS:
                    self.goodbye_stage = ("waiting", gen)
                elif self.goodbye_stage[0] != "confirming":  # the check's bound on its answer
                    self.goodbye_stage = ("none", None)
            case c.ConfirmCallerAbsent(check=check):
                assert self.goodbye_stage[0] == "waited", "a presence check before the wait"
                self.goodbye_stage = ("confirming", check)
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
                    stage, check = self.goodbye_stage
                    assert stage == "confirming", "procedure hung up without the presence check"
                    assert check not in self.answered_present, "hung up on a present caller"
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
    def time_passes(self) -> None:
        """Nobody does anything for a while: prompts end, timers fire, up to a presence check."""
        for _ in range(12):
            if self.ended or self.state.checking:
                return
            if self.state.playing:
                self.feed(e.PromptFinished(self.state.playing))
            elif self.state.timer_live:
                self.feed(e.TimerFired(self.state.timer_gen))
            else:
                return

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

    @rule(present=st.booleans(), known=st.booleans(), stale=st.booleans())
    def presence_answered(self, present: bool, known: bool, stale: bool) -> None:
        self.feed(e.CallerPresence(self.state.check_seq - stale, present, known))

    @rule(connected=st.booleans())
    def agent_bridged(self, connected: bool) -> None:
        self.feed(e.AgentLink(connected))

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


# -- every path, exhaustively -------------------------------------------------------------------

KEYS = [(f"key {d}", [e.Dtmf(d)]) for d in "0239"]  # in a menu: every option, a wrong key
EARLY_ENDINGS: list[tuple[str, list[e.Event]]] = [
    ("speech", [e.SpeechStarted()]),
    ("key 1", [e.Dtmf("1")]),
    *[(f"audio {k}", [e.AudioClassified(k)]) for k in ("silent", "quiet", "noisy", "normal")],  # type: ignore[arg-type]
    *[(f"agent {cmd}", [e.AgentCommand(cmd, "a1")]) for cmd in ("hangup", "resume", "next", "end")],
    *[(f"start {p}", [e.StartProcedure(p, "agent", "a1")]) for p in PROCEDURES[:-1]],
]


def moves(m: IvrMachine, state: CallState) -> list[tuple[str, list[e.Event]]]:
    out: list[tuple[str, list[e.Event]]] = []
    if state.procedure is None and isinstance(m.flows[state.flow].nodes[state.node], MenuNode):
        out += KEYS
    if state.playing:
        out.append(("prompt ends", [e.PromptFinished(state.playing)]))
    if state.timer_live:
        out.append(("timer", [e.TimerFired(state.timer_gen)]))
    if state.checking:
        out += [("present", [e.CallerPresence(state.check_seq, True)]),
                ("absent", [e.CallerPresence(state.check_seq, False)])]
    out.append(("agent joins" if not state.agent_on_call else "agent leaves",
                [e.AgentLink(not state.agent_on_call)]))
    return out + EARLY_ENDINGS


def key(state: CallState) -> Hashable:
    """Where the call is, and what decides where it can go from there. Left out: ids,
    counters that only name things, the language (it changes words, not the way), the last
    audio kind and which procedures already started by
    themselves (they only narrow what an agent's hang-up or the audio may start)."""
    run = state.procedure
    return (
        state.flow, state.node, run.name if run else None, run.node if run else None,
        bool(state.playing), state.timer_live, state.menu_attempts, state.menu_reprompt,
        state.moh_on, state.caller_spoke, bool(state.recording), state.agent_on_call,
        state.checking, state.awaiting_agent,
    )


def test_every_path_leaves_no_dead_air() -> None:
    m = machine(detection=DetectionSettings(consecutive_windows=1))  # one window is "consistent"
    todo: deque[CallState] = deque()
    for flow in m.flows:
        for vip in (False, True):
            for at in (OPEN, CLOSED):
                state = m.new_call(CallContext("call1", "zh", SLOTS, vip, "1"), flow)
                state, _ = m.step(state, e.Answered(at))
                todo.append(state)
    seen: set[Hashable] = set()
    endings = 0
    while todo:
        state = todo.popleft()
        if state.phase is not Phase.ACTIVE or key(state) in seen:
            continue
        seen.add(key(state))
        for name, events in moves(m, state):
            after, out = state, []
            for event in events:
                after, step_out = m.step(after, event)
                out += step_out
            if procedure_ended_alive(m, after, out):
                endings += 1
                assert acting(m, after), f"dead air: {name} in {key(state)}"
            hung_up = [cmd for cmd in out if isinstance(cmd, c.HangUpCall)]
            if name == "present":
                assert not hung_up, f"hung up on a present caller in {key(state)}"
            if any(cmd.reason == "procedure" for cmd in hung_up):
                assert state.checking, (name, key(state))
                assert name in ("absent", "timer"), (name, key(state))
            todo.append(after)
    # Every node of every flow, and every step of every procedure, was visited.
    visited = {(k[0], k[1], k[2], k[3]) for k in seen}  # type: ignore[index]
    passing = ("hangup", "branch", "language", "callback", "volume", "end")
    for flow_name, flow in m.flows.items():
        resting_nodes = {n for n, spec in flow.nodes.items() if spec.type not in passing}
        missed = resting_nodes - {n for f, n, _, _ in visited if f == flow_name}
        assert not missed, (flow_name, missed)
    for name, proc in m.procedures.items():
        steps = {n for n, spec in proc.nodes.items() if spec.type not in passing[1:]}
        assert steps <= {pn for _, _, p, pn in visited if p == name}, name
    assert endings > 1000, endings


IvrCall.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestIvrCallProperties = IvrCall.TestCase


def test_a_step_copies_every_mutable_part_of_the_state() -> None:
    """The step's private copy shares only what cannot change (the frozen context, strings,
    times): a field added to CallState with a mutable value must be copied there too."""
    m = machine()
    state = m.new_call(CallContext("c1", "zh", SLOTS), "agent_greeting")
    state, _ = m.step(state, e.Answered(OPEN))
    state, _ = m.step(state, e.StartProcedure("silent_call", "agent"))
    state, _ = m.step(state, e.AudioClassified("silent", -90.0, 0.0))
    assert state.procedure is not None
    assert state.audio_detail is not None
    state.auto_starts["noisy"] = 1
    after, _ = m.step(state, e.Dtmf("5"))
    immutable = (str, int, float, bool, type(None), Phase, CallContext, type(OPEN))
    for name in CallState.__dataclass_fields__:
        mine, theirs = getattr(state, name), getattr(after, name)
        assert isinstance(mine, immutable) or mine is not theirs, f"{name} is shared"
