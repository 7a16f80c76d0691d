"""The timed procedures, driven on a simulated call with a fake clock (docs/phrases.md,
rows 2-9)."""

from __future__ import annotations

import pytest
from ivr_sim import SimCall, machine

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.config import DetectionSettings, ProcedureSettings
from cti.domain.ivr.engine import Phase

SILENT = ["silent_call_first", "silent_call_second", "silent_call_goodbye"]


def quiet_windows(sim: SimCall, n: int = 3, kind: str = "quiet") -> None:
    for _ in range(n):
        sim.feed(e.AudioClassified(kind))  # type: ignore[arg-type]


@pytest.mark.parametrize("prompt_seconds", [0.5, 2.0, 3.7])
def test_silent_call_waits_5s_after_each_prompt_then_hangs_up(prompt_seconds: float) -> None:
    sim = SimCall.start(prompt_seconds=prompt_seconds)
    sim.run()
    p = prompt_seconds
    greeting_end = p
    first = greeting_end + 5.0  # silence after the greeting starts the procedure
    expected = [
        (0.0, "greeting_answer"),
        (first, SILENT[0]),
        (first + p + 5.0, SILENT[1]),
        (first + 2 * (p + 5.0), SILENT[2]),
    ]
    assert sim.plays() == [(pytest.approx(t), phrase) for t, phrase in expected]
    hangup = sim.first(c.HangUpCall)
    assert hangup is not None
    assert hangup[0] == pytest.approx(expected[-1][0] + p + 5.0)  # 5 s after the goodbye ends
    assert sim.ended


@pytest.mark.parametrize(
    ("speech_at", "stage"),
    [
        (8.0, "first prompt"),
        (11.0, "first wait"),
        (15.0, "second prompt"),
        (18.0, "second wait"),
        (22.0, "goodbye prompt"),
        (27.9, "last wait"),
    ],
)
@pytest.mark.parametrize("agent", [True, False])
def test_speech_ends_silent_call_and_the_call_goes_on(
    speech_at: float, stage: str, agent: bool
) -> None:
    sim = SimCall.start(agent=agent)
    sim.run_until(speech_at)
    assert sim.state.procedure is not None, stage
    sim.feed(e.SpeechStarted())
    assert sim.state.procedure is None
    ended = sim.audits("procedure_ended")
    assert [a.detail["reason"] for a in ended] == ["completed"]
    if agent:  # the caller and the agent talk on
        assert ended[0].detail["next"] == "agent"
        assert sim.state.node == "conversation"
        assert sim.state.timer_live is False  # no silence watch once the caller has spoken
        assert sim.plays()[-1][0] < speech_at  # nothing more is said for the agent
    else:  # no agent: at once, the flow's next step (the transfer, then the queue)
        assert ended[0].detail["next"] == "transfer"
        assert sim.plays()[-1] == (speech_at, "menu_transfer")
    sim.run()
    assert not sim.of(c.HangUpCall), stage
    if not agent:
        assert sim.state.node == "to_agent"
        assert sim.first(c.RouteToQueue) == (speech_at + 2.0, c.RouteToQueue("general", "general",
                                                                              "zh"))


def test_quiet_speech_also_counts_as_speech_for_the_silent_call() -> None:
    sim = SimCall.start()
    sim.run_until(12.0)
    sim.feed(e.AudioClassified("quiet"))
    assert sim.state.procedure is None
    assert not sim.of(c.HangUpCall)


@pytest.mark.parametrize("hangup_seconds", [3.0, 4.0, 5.0])
def test_quiet_caller_gets_louder_then_change_phone_then_hangup(hangup_seconds: float) -> None:
    sim = SimCall.start(m=machine(ProcedureSettings(quiet_hangup_seconds=hangup_seconds)))
    sim.run_until(3.0)
    quiet_windows(sim)
    assert sim.state.procedure is not None
    assert sim.state.procedure.name == "quiet"
    sim.run_until(5.5)  # "speak louder" finished at 5.0
    quiet_windows(sim)  # still unclear
    sim.run()
    assert [p for _, p in sim.plays()] == [
        "greeting_answer", "quiet_speak_louder", "quiet_change_phone"
    ]
    change_start = sim.plays()[-1][0]
    hangup = sim.first(c.HangUpCall)
    assert hangup is not None
    assert hangup[0] == pytest.approx(change_start + 2.0 + hangup_seconds)
    assert not sim.of(c.SetVolume)  # row 5b: the agent's own volume stays unchanged


def test_quiet_caller_who_then_speaks_normally_goes_on() -> None:
    sim = SimCall.start()
    sim.run_until(3.0)
    quiet_windows(sim)
    sim.run_until(6.0)
    quiet_windows(sim, kind="normal")
    sim.run()
    assert not sim.of(c.HangUpCall)
    assert sim.state.procedure is None


def test_quiet_caller_silent_after_recheck_is_asked_to_change_phone() -> None:
    sim = SimCall.start()
    sim.run_until(3.0)
    quiet_windows(sim)
    sim.run()  # louder ends at 5.0, recheck 8 s, change phone at 13.0, hang-up at 20.0
    assert sim.plays()[-1] == (pytest.approx(13.0), "quiet_change_phone")
    hangup = sim.first(c.HangUpCall)
    assert hangup is not None
    assert hangup[0] == pytest.approx(20.0)


def test_noise_starts_noisy_line_and_hangs_up_5s_after_goodbye() -> None:
    sim = SimCall.start()
    sim.run_until(2.5)
    quiet_windows(sim, kind="noisy")
    sim.run()
    assert sim.plays()[-1] == (2.5, "noisy_goodbye")
    hangup = sim.first(c.HangUpCall)
    assert hangup is not None
    assert hangup[0] == pytest.approx(2.5 + 2.0 + 5.0)


@pytest.mark.parametrize(
    ("setup", "expected_phrase"),
    [
        (lambda sim: quiet_windows(sim, 1, "noisy"), "noisy_goodbye"),
        (lambda sim: quiet_windows(sim, 1, "quiet"), "quiet_change_phone"),
        (lambda sim: None, "silent_call_goodbye"),
    ],
)
def test_agent_hangup_in_a_guarded_situation_runs_the_goodbye_and_wait(
    setup: object, expected_phrase: str
) -> None:
    sim = SimCall.start()
    sim.run_until(3.0)
    setup(sim)  # type: ignore[operator]
    sim.feed(e.AgentCommand("hangup", "a1"))
    assert not sim.of(c.HangUpCall)  # never cut directly
    sim.run()
    assert sim.plays()[-1][1] == expected_phrase
    hangup = sim.first(c.HangUpCall)
    assert hangup is not None
    assert hangup[0] == pytest.approx(sim.plays()[-1][0] + 2.0 + 5.0)


def test_agent_hangup_during_silent_call_wait_goes_to_goodbye_which_speech_cannot_stop() -> None:
    sim = SimCall.start(agent=True)
    sim.run_until(10.0)  # in the first wait
    sim.feed(e.AgentCommand("hangup", "a1"))
    assert sim.plays()[-1] == (10.0, "silent_call_goodbye")
    sim.feed(e.SpeechStarted())  # a word during the goodbye, long before the hang-up
    sim.run_until(10.5)
    sim.feed(e.SpeechStopped(500))
    sim.run()
    hangup = sim.first(c.HangUpCall)
    assert hangup is not None
    assert hangup[0] == pytest.approx(17.0)
    assert [a.detail["what"] for a in sim.audits("departure")] == ["agent_hangup_runs_procedure"]


def test_agent_hangup_during_the_goodbye_wait_changes_nothing() -> None:
    sim = SimCall.start(m=machine())
    sim.run_until(3.0)
    quiet_windows(sim, kind="noisy")
    sim.run_until(6.0)
    sim.feed(e.AgentCommand("hangup", "a1"))
    sim.run()
    hangup = sim.first(c.HangUpCall)
    assert hangup is not None
    assert hangup[0] == pytest.approx(3.0 + 2.0 + 5.0)  # as if the agent had not asked
    assert len(sim.of(c.HangUpCall)) == 1


def test_agent_hangup_in_a_normal_conversation_hangs_up_at_once() -> None:
    sim = SimCall.start()
    sim.run_until(3.0)
    quiet_windows(sim, 1, "normal")
    sim.feed(e.AgentCommand("hangup", "a1"))
    assert sim.first(c.HangUpCall) == (3.0, c.HangUpCall("agent"))


def test_please_hold_plays_then_music_until_the_agent_returns() -> None:
    sim = SimCall.start(agent=True)
    sim.run_until(3.0)
    quiet_windows(sim, 1, "normal")
    sim.feed(e.StartProcedure("hold", "agent", "a1"))
    sim.run_until(60.0)
    assert sim.plays()[-1] == (3.0, "please_hold")
    assert sim.first(c.StartMoh)[0] == pytest.approx(5.0)  # type: ignore[index]
    out = sim.feed(e.AgentCommand("resume", "a1"))
    assert c.StopMoh() in out
    assert sim.state.procedure is None
    assert not sim.of(c.HangUpCall)


def test_dialect_asks_for_mandarin_then_for_someone_who_speaks_it() -> None:
    sim = SimCall.start(agent=True)
    sim.run_until(3.0)
    quiet_windows(sim, 1, "normal")
    sim.feed(e.StartProcedure("dialect", "agent", "a1"))
    sim.run_until(30.0)
    assert sim.state.procedure is not None  # waits for the agent's judgement, no timer
    sim.feed(e.AgentCommand("next", "a1"))
    sim.run()
    assert [p for _, p in sim.plays()][-2:] == ["dialect_ask_mandarin", "dialect_ask_other_person"]
    assert sim.state.procedure is None


def test_agent_too_quiet_raises_volume_one_step_between_sorry_and_question() -> None:
    sim = SimCall.start(agent=True)
    sim.run_until(3.0)
    quiet_windows(sim, 1, "normal")
    for _ in range(2):
        sim.feed(e.StartProcedure("agent_quiet", "agent", "a1"))
        sim.run()
    kinds = [type(cmd).__name__ for _, cmd in sim.timeline if isinstance(cmd, c.Play | c.SetVolume)]
    assert kinds == ["Play", "Play", "SetVolume", "Play", "Play", "SetVolume", "Play"]
    assert [cmd.gain for _, cmd in sim.of(c.SetVolume)] == [3, 6]  # type: ignore[attr-defined]
    assert [p for _, p in sim.plays()][1:3] == ["agent_quiet_sorry", "agent_quiet_ask"]


@pytest.mark.parametrize("name", ["greet_reply", "greet_by_name"])
def test_greeting_procedures_say_one_phrase_and_return(name: str) -> None:
    sim = SimCall.start()
    sim.run_until(3.0)
    sim.feed(e.SpeechStarted())
    sim.feed(e.StartProcedure(name, "agent"))
    sim.run()
    assert sim.state.procedure is None
    assert sim.state.phase is Phase.ACTIVE


def test_auto_start_happens_at_most_once_per_procedure() -> None:
    sim = SimCall.start()
    sim.run_until(3.0)
    quiet_windows(sim)
    sim.run_until(6.0)
    quiet_windows(sim, kind="normal")
    quiet_windows(sim, kind="quiet")
    assert len(sim.audits("procedure_started")) == 1


def test_auto_start_can_be_switched_off() -> None:
    sim = SimCall.start(m=machine(detection=DetectionSettings(auto_start=False)))
    sim.run()
    quiet_windows(sim, kind="noisy")
    assert sim.audits("procedure_started") == []
    assert not sim.of(c.HangUpCall)


def test_stale_timer_and_stale_prompt_finished_are_ignored() -> None:
    sim = SimCall.start()
    sim.run_until(8.0)  # in the first silent-call prompt
    before = len(sim.timeline)
    sim.feed(e.TimerFired(1))  # the silence watch's, long gone
    sim.feed(e.PromptFinished("call1-p1"))  # the greeting's, already finished
    assert len(sim.timeline) == before


def test_audit_timeline_of_a_silent_call_run() -> None:
    sim = SimCall.start()
    sim.run()
    kinds = [a.kind for a in sim.audits() if a.run_id]
    assert kinds == [
        "procedure_started",
        "prompt_started", "prompt_finished", "wait_started", "wait_finished",
        "prompt_started", "prompt_finished", "wait_started", "wait_finished",
        "prompt_started", "prompt_finished", "wait_started", "wait_finished",
        "hangup", "procedure_ended",
    ]
    started = sim.audits("procedure_started")[0]
    assert started.procedure == "silent_call"
    assert started.detail["started_by"] == "auto"


def test_nothing_happens_after_the_caller_hangs_up() -> None:
    sim = SimCall.start()
    sim.run_until(9.0)
    sim.feed(e.HangUp())
    count = len(sim.timeline)
    for event in (e.SpeechStarted(), e.Dtmf("1"), e.StartProcedure("noisy"), e.TimerFired(9)):
        sim.feed(event)
    sim.run()
    assert len(sim.timeline) == count
    assert sim.ended
