"""No dead air, no hang-up on a present caller (docs/no_dead_air.md), in the pure engine on a
simulated call with a fake clock.

1. Whatever ends a procedure early, the call goes on to a defined next step at once: the
   agent if one is on the call, else the conversation's `then:` (the transfer, the queue).
2. Before any procedure's hang-up the caller's last seconds of audio are judged again
   (ConfirmCallerAbsent -> CallerPresence, answered at once from what was already heard):
   what the procedure counts as the caller being there cancels the hang-up
   (`caller_present`); otherwise the hang-up happens at its exact time.

Timeline of the cases (prompts take 2 s): greeting 0-2, silence watch 2-7;
  silent call:  4a 7-9, wait 9-14, 4b 14-16, wait 16-21, 4c 21-23, wait 23-28, check at 28
  agent path:   the agent's hang-up at 10: 4c 10-12, wait 12-17 (speech no longer stops it),
                check at 17
  quiet (5b):   quiet windows at 3: 5b ask 3-5, recheck 5-13, change phone 13-15, wait 15-20,
                check at 20
  noisy (6b):   noisy windows at 2.5: goodbye 2.5-4.5, wait 4.5-9.5, check at 9.5
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ivr_sim import SimCall, machine

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.config import DetectionSettings
from cti.domain.ivr.engine import AGENT_HANDOVER_S
from cti.domain.ivr.flow import HangupNode
from cti.domain.ivr.presence import ANY_SOUND, CLEAR_SPEECH


def windows(sim: SimCall, kind: str, n: int = 3) -> None:
    for _ in range(n):
        sim.feed(e.AudioClassified(kind))  # type: ignore[arg-type]


def silent_agent_path(sim: SimCall) -> float:
    sim.run_until(10.0)
    sim.feed(e.AgentCommand("hangup", "a1"))
    return 17.0


def silent_auto_path(sim: SimCall) -> float:
    sim.run_until(23.5)  # in the last wait: speech and keys end it there by themselves
    return 28.0


def quiet_path(sim: SimCall) -> float:
    sim.run_until(3.0)
    windows(sim, "quiet")
    return 20.0


def noisy_path(sim: SimCall) -> float:
    sim.run_until(2.5)
    windows(sim, "noisy")
    return 9.5


PATHS: dict[str, tuple[Callable[[SimCall], float], str, tuple[str, ...]]] = {
    # name: (how to get there, the procedure, what counts as the caller being there)
    "silent call, agent's hang-up": (silent_agent_path, "silent_call", ANY_SOUND),
    "quiet (5b)": (quiet_path, "quiet", CLEAR_SPEECH),
    "noisy (6b)": (noisy_path, "noisy", CLEAR_SPEECH),
}


def evidence(sim: SimCall, kind: str) -> None:
    """One sign of the caller, of `kind`, at the simulated time now."""
    if kind == "talk":
        sim.feed(e.SpeechStarted())
        sim.feed(e.SpeechStopped(300))
    elif kind == "key":
        sim.feed(e.Dtmf("5"))
    else:
        sim.feed(e.AudioClassified(kind))  # type: ignore[arg-type]


def hangup_at(sim: SimCall) -> float | None:
    hit = sim.first(c.HangUpCall)
    return hit[0] if hit else None


CASES = [
    (path, kind, before)
    for path in PATHS
    for kind in ("talk", "quiet", "normal", "noisy", "key")
    for before in (0.2, 2.9, 3.5)  # seconds before the hang-up; the window is 3 s
]


@pytest.mark.parametrize(("path", "kind", "before"), CASES)
@pytest.mark.parametrize("agent", [False, True])
def test_a_sign_of_the_caller_in_the_last_seconds_cancels_the_hang_up(
    path: str, kind: str, before: float, agent: bool
) -> None:
    reach, procedure, counts = PATHS[path]
    sim = SimCall.start(agent=agent)
    check_at = reach(sim)
    assert sim.state.procedure is not None
    assert sim.state.procedure.name == procedure
    sim.run_until(check_at - before)
    evidence(sim, kind)
    assert sim.state.procedure is not None, "the evidence itself must not end the procedure"
    sim.run_until(check_at + 0.01)
    present = kind in counts and before <= 3.0
    if not present:
        assert hangup_at(sim) == pytest.approx(check_at), "the hang-up on time"
        assert sim.ended
        return
    assert hangup_at(sim) is None, f"{path}: hung up on a caller who was there ({kind})"
    assert not sim.ended
    (ended,) = sim.audits("procedure_ended")
    assert ended.detail["reason"] == "caller_present"
    (trigger,) = [a for a in sim.audits("trigger") if a.detail["trigger"] == "caller_present"]
    assert kind in trigger.detail["counted"]
    (departure,) = sim.audits("departure")[-1:]
    assert departure.detail["what"] == "hangup_cancelled_caller_present"
    assert kind in departure.detail["evidence"]["found"]
    # ... and the call goes on at once: with the agent, or to the flow's next step.
    if agent:
        assert ended.detail["next"] == "agent"
        assert sim.state.node == "conversation"
    else:
        assert ended.detail["next"] == "transfer"
        assert sim.plays()[-1] == (pytest.approx(check_at), "menu_transfer")
    sim.run()
    assert hangup_at(sim) is None


@pytest.mark.parametrize("kind", ["noisy", "key"])
def test_the_silent_call_goes_on_when_the_line_is_not_silent_at_its_hang_up(kind: str) -> None:
    """Sound that does not stop row 4 by itself (noise; a key in its last wait does, so the
    key comes just before the wait) still shows someone there when the hang-up is judged."""
    sim = SimCall.start()
    check_at = silent_auto_path(sim)
    sim.run_until(check_at - 1.0)
    if kind == "key":  # the wait's own trigger would end it: put the key in the memory only
        sim.heard.note(sim.now, e.Dtmf("1"))
    else:
        windows(sim, kind, 1)
    assert sim.state.procedure is not None
    sim.run()
    assert hangup_at(sim) is None
    assert [a.detail["reason"] for a in sim.audits("procedure_ended")] == ["caller_present"]


def test_quiet_speech_heard_as_silence_but_talking_per_talk_detect_is_not_hung_up() -> None:
    """The trial's case (b): the classifier took quiet speech for silence, TALK_DETECT did
    not. The agent starts row 4 on a caller whose talking began before it and never stopped:
    no new speech event comes during the procedure, but its hang-up finds the caller talking."""
    sim = SimCall.start(agent=True)
    sim.run_until(1.0)
    sim.feed(e.SpeechStarted())  # TALK_DETECT: talking (and it never says it stopped)
    sim.run_until(3.0)
    sim.feed(e.StartProcedure("silent_call", "agent", "a1"))
    t = 3.0
    while not sim.ended and sim.state.procedure is not None and t < 40:
        t += 1.0
        sim.run_until(t)
        windows(sim, "silent", 1)  # what the classifier makes of the quiet speech
    assert [p for _, p in sim.plays()][-3:] == [
        "silent_call_first", "silent_call_second", "silent_call_goodbye"
    ]
    assert hangup_at(sim) is None
    (ended,) = sim.audits("procedure_ended")
    assert (ended.detail["reason"], ended.detail["next"]) == ("caller_present", "agent")
    (answer,) = sim.answers
    assert answer.present
    assert answer.evidence["found"] == ["talk"]
    assert answer.evidence["windows"] == {"silent": 3}


@pytest.mark.parametrize(
    ("fed", "presence"), [("silent", "absent"), (None, "unknown")]
)
def test_an_absent_caller_is_hung_up_on_time_and_the_audit_says_how_it_was_judged(
    fed: str | None, presence: str
) -> None:
    sim = SimCall.start()
    t = 0.0
    while t < 28.0:
        t += 1.0
        sim.run_until(t)
        if fed:
            windows(sim, fed, 1)
    sim.run()
    assert hangup_at(sim) == pytest.approx(28.0)  # 5 s after the goodbye, not a moment later
    (hangup,) = sim.audits("hangup")
    assert hangup.detail["presence"] == presence
    assert hangup.detail["evidence"]["windows"] == ({"silent": 3} if fed else {})
    checks = sim.of(c.ConfirmCallerAbsent)
    assert [(t, cmd.window_s) for t, cmd in checks] == [(pytest.approx(28.0), 3.0)]  # type: ignore[attr-defined]


def test_the_window_is_a_setting() -> None:
    m = machine(detection=DetectionSettings(presence_window_seconds=5.0))
    sim = SimCall.start(m=m)
    check_at = silent_agent_path(sim)
    sim.run_until(check_at - 4.0)
    windows(sim, "quiet", 1)
    sim.run()
    assert hangup_at(sim) is None


def test_no_answer_in_time_hangs_up_after_the_bound_and_says_it_was_not_verified() -> None:
    sim = SimCall.start()
    sim.answers_presence = False
    sim.run()
    assert hangup_at(sim) == pytest.approx(28.0 + DetectionSettings().presence_answer_seconds)
    (hangup,) = sim.audits("hangup")
    assert (hangup.detail["presence"], hangup.detail["cause"]) == ("unknown", "no_answer")


@pytest.mark.parametrize(
    ("event", "cancels"),
    [(e.SpeechStarted(), True), (e.AudioClassified("quiet"), True), (e.Dtmf("3"), True),
     (e.AudioClassified("silent"), False)],
)
def test_a_sign_of_the_caller_while_the_answer_is_awaited_cancels_it_too(
    event: e.Event, cancels: bool
) -> None:
    sim = SimCall.start()
    sim.answers_presence = False
    check_at = silent_agent_path(sim)
    sim.run_until(check_at + 0.1)
    assert sim.state.checking
    sim.feed(event)
    sim.run()
    assert (hangup_at(sim) is None) is cancels


def test_the_agents_hang_up_while_the_answer_is_awaited_changes_nothing() -> None:
    sim = SimCall.start()
    sim.answers_presence = False
    check_at = silent_agent_path(sim)
    sim.run_until(check_at + 0.1)
    sim.feed(e.AgentCommand("hangup", "a1"))
    assert [a.detail["what"] for a in sim.audits("departure")] == [
        "agent_hangup_runs_procedure", "agent_hangup_during_goodbye"
    ]
    assert sim.plays()[-1][1] == "silent_call_goodbye"  # not the goodbye again
    sim.feed(e.CallerPresence(sim.state.check_seq - 1, True))  # stale: ignored
    assert sim.state.checking
    sim.feed(e.CallerPresence(sim.state.check_seq, False))
    assert hangup_at(sim) == pytest.approx(check_at + 0.1)


def test_every_procedure_hang_up_is_checked() -> None:
    """The check is the engine's rule for any procedure's hang-up node, not an opt-in."""
    for name, flow in machine().procedures.items():
        for node_id, node in flow.nodes.items():
            if isinstance(node, HangupNode):
                assert node.present_if, (name, node_id)


# -- 1. whatever ends a procedure early, a defined next step at once ---------------------------


ENDINGS: dict[str, Callable[[SimCall], object]] = {
    "speech": lambda sim: sim.feed(e.SpeechStarted()),
    "quiet speech": lambda sim: windows(sim, "quiet", 1),
    "a key": lambda sim: sim.feed(e.Dtmf("1")),
    "the agent ends it": lambda sim: sim.feed(e.AgentCommand("end", "a1")),
}
SILENT_STAGES = {  # row 4, any step, the goodbye included
    "4a": 8.0, "first wait": 11.0, "4b": 15.0, "second wait": 18.0, "4c goodbye": 22.0,
    "last wait": 27.5,
}


@pytest.mark.parametrize("stage", SILENT_STAGES)
@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("agent", [False, True])
def test_row_4_ended_early_goes_on_at_once(stage: str, ending: str, agent: bool) -> None:
    sim = SimCall.start(agent=agent)
    at = SILENT_STAGES[stage]
    sim.run_until(at)
    assert sim.state.procedure is not None
    ENDINGS[ending](sim)
    assert sim.state.procedure is None, (stage, ending)
    assert not sim.state.playing or sim.plays()[-1][0] == at
    if agent:  # with the agent: they talk; nothing plays over them, nothing is stranded
        assert sim.state.node == "conversation"
        assert sim.state.agent_on_call
        assert sim.plays()[-1][0] < at
    elif ending == "the agent ends it":  # a moment for the agent's handover, then the next step
        assert sim.state.timer_live
        sim.run_until(at + AGENT_HANDOVER_S)
        assert sim.plays()[-1] == (at + AGENT_HANDOVER_S, "menu_transfer")
        assert [a.detail["what"] for a in sim.audits("departure")][-1] == (
            "no_agent_after_procedure"
        )
    else:  # nobody else: the flow's next step, heard at once (the goodbye was cut short)
        assert sim.plays()[-1] == (at, "menu_transfer")
        if stage == "4c goodbye":
            assert any(isinstance(cmd, c.StopPlayback) for t, cmd in sim.timeline if t == at)
        sim.run()
        assert sim.first(c.RouteToQueue) is not None
    assert not sim.of(c.HangUpCall)


@pytest.mark.parametrize("bridged_after", [0.05, 1.9, None])
def test_the_hold_resumed_for_a_handover_waits_a_moment_for_the_bridge(
    bridged_after: float | None,
) -> None:
    """An outside transfer: the agent's leg has left (no one bridged), the hold is resumed as
    the outside party answers, and the caller is bridged with them a moment later."""
    sim = SimCall.start(agent=True)
    sim.run_until(3.0)
    sim.feed(e.SpeechStarted())
    sim.feed(e.StartProcedure("hold", "agent", "a1"))
    sim.run_until(10.0)
    sim.feed(e.AgentLink(False))  # the agent's bridge is gone
    sim.run_until(20.0)
    sim.feed(e.AgentCommand("resume"))
    (ended,) = sim.audits("procedure_ended")
    assert ended.detail["next"] == "agent"
    sim.feed(e.SpeechStarted())  # the caller talking meanwhile changes nothing
    if bridged_after is not None:
        sim.run_until(20.0 + bridged_after)
        sim.feed(e.AgentLink(True))
    sim.run_until(30.0)
    if bridged_after is not None:  # with the outside party: no queue, nothing played
        assert sim.plays()[-1][1] == "please_hold"
        assert not sim.of(c.RouteToQueue)
        assert not sim.state.timer_live
    else:  # nobody came: the flow's next step after the moment
        assert sim.plays()[-1] == (pytest.approx(20.0 + AGENT_HANDOVER_S), "menu_transfer")


def test_the_agent_joining_or_leaving_decides_where_an_early_end_goes() -> None:
    sim = SimCall.start()
    sim.feed(e.AgentLink(True))
    sim.feed(e.AgentLink(False))  # e.g. a blind transfer moved the caller away
    sim.run_until(8.0)
    sim.feed(e.SpeechStarted())
    assert sim.plays()[-1] == (8.0, "menu_transfer")


# -- the driver's memory of the caller's audio (cti.domain.ivr.presence) -----------------------


def judged(fed: list[tuple[float, e.Event]], at: float, present_if: tuple[str, ...] = ANY_SOUND,
           window_s: float = 3.0) -> e.CallerPresence:
    from cti.domain.ivr.presence import CallerAudioMemory

    memory = CallerAudioMemory()
    for t, event in fed:
        memory.note(t, event)
    return memory.judge(at, c.ConfirmCallerAbsent(7, window_s, present_if))


Q, N, S, Z = (e.AudioClassified(k) for k in ("quiet", "normal", "silent", "noisy"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fed", "at", "present_if", "present", "known", "found"),
    [
        ([], 10.0, ANY_SOUND, False, False, []),  # no tap: nothing to judge by
        ([(8.0, S), (9.0, S), (10.0, S)], 10.0, ANY_SOUND, False, True, []),
        ([(6.0, Q), (9.0, S), (10.0, S)], 10.0, ANY_SOUND, False, True, []),  # 4 s ago: too old
        ([(7.0, Q), (9.0, S), (10.0, S)], 10.0, ANY_SOUND, True, True, ["quiet"]),
        ([(9.0, Q)], 10.0, CLEAR_SPEECH, False, True, ["quiet"]),  # 5b: quiet is the situation
        ([(9.0, N)], 10.0, CLEAR_SPEECH, True, True, ["normal"]),
        ([(9.0, Z)], 10.0, CLEAR_SPEECH, False, True, ["noisy"]),
        ([(9.0, Z)], 10.0, ANY_SOUND, True, True, ["noisy"]),
        ([(2.0, e.SpeechStarted())], 10.0, ANY_SOUND, True, True, ["talk"]),  # still talking
        ([(2.0, e.SpeechStarted()), (5.0, e.SpeechStopped())], 10.0, ANY_SOUND, False, False, []),
        ([(2.0, e.SpeechStarted()), (7.5, e.SpeechStopped())], 10.0, ANY_SOUND, True, True,
         ["talk"]),
        ([(2.0, e.SpeechStarted())], 40.0, ANY_SOUND, False, False, []),  # stale "talking"
        ([(9.5, e.Dtmf("1"))], 10.0, ANY_SOUND, True, True, ["key"]),
        ([(9.5, e.Dtmf("1"))], 10.0, CLEAR_SPEECH, False, False, ["key"]),
        ([(9.0, e.SpeechStarted()), (9.0, S)], 10.0, CLEAR_SPEECH, False, True, ["talk"]),
    ],
)
def test_the_caller_audio_memory_judges_only_the_window_and_what_counts(
    fed: list[tuple[float, e.Event]], at: float, present_if: tuple[str, ...], present: bool,
    known: bool, found: list[str],
) -> None:
    answer = judged(fed, at, present_if)
    assert (answer.check, answer.present, answer.known) == (7, present, known)
    assert answer.evidence["found"] == found
    assert answer.evidence["counted"] == [k for k in found if k in present_if]
