"""A call's IVR checkpoint (cti.domain.ivr.checkpoint): the engine state survives the trip to
JSON and back, and a call restored from it at any instant, with only the kept deadlines to go
by (its process died: no timers, no prompt events), goes on exactly as the call would have."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ivr_sim import OPEN, SLOTS, SimCall

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.checkpoint import (
    Checkpoint,
    CheckpointUnreadable,
    PromptAt,
    TimerAt,
    from_json,
    restore,
    resume_plan,
    snapshot,
    to_json,
)
from cti.domain.ivr.engine import CallContext

CTX = CallContext("call1", "zh", SLOTS, False, "13800000000")
PROMPT_S = 2.0


def at(t: float):  # type: ignore[no-untyped-def]
    return OPEN + timedelta(seconds=t)


def kept(sim: SimCall) -> Checkpoint:
    """The checkpoint the runner would keep at `sim.now`: the state, the live timer's deadline
    and the playing prompt's start and length, taken from the simulated line's schedule."""
    timer = prompt = None
    for when, seq, event in sim._queue:
        if isinstance(event, e.TimerFired) and sim._timers.get(event.gen) == seq:
            timer = TimerAt(event.gen, at(when))
        if isinstance(event, e.PromptFinished) and event.playback_id == sim.state.playing:
            prompt = PromptAt(event.playback_id, at(when - PROMPT_S), PROMPT_S)
    cp = snapshot(sim.state, at(sim.now), timer, prompt)
    return from_json(json.loads(json.dumps(to_json(cp))))  # through the database's JSON


def adopted(sim: SimCall, prompt_listed: bool = False) -> SimCall:
    """The call as another process takes it on at `sim.now`: the engine state from the
    checkpoint, nothing scheduled but what `resume_plan` arms."""
    cp = kept(sim)
    other = SimCall(sim.m, restore(CTX, cp), PROMPT_S, now=sim.now)
    other.heard = copy.deepcopy(sim.heard)  # the audio memory is not kept (docs/cluster.md)
    plan = resume_plan(cp, at(sim.now), prompt_listed)
    if plan.timer is not None:
        gen, delay = plan.timer
        other._timers[gen] = other._schedule(delay, e.TimerFired(gen))
    if plan.prompt_end is not None:
        pid, ended, delay = plan.prompt_end
        other._schedule(delay, e.PromptFinished(pid, ended))
    return other


def continuation(sim: SimCall, since: int) -> list[tuple[float, c.Command]]:
    return sim.timeline[since:]


def same(a: list[tuple[float, c.Command]], b: list[tuple[float, c.Command]]) -> None:
    assert [cmd for _, cmd in a] == [cmd for _, cmd in b]
    for (ta, _), (tb, _) in zip(a, b, strict=True):
        assert tb == pytest.approx(ta, abs=1e-5)


# -- the state's trip -------------------------------------------------------------------------


@pytest.mark.parametrize(("flow", "until"), [
    ("agent_greeting", 0.0), ("agent_greeting", 3.0), ("agent_greeting", 9.0),
    ("agent_greeting", 20.0), ("main_menu", 1.0), ("main_menu", 4.0), ("main_menu", 30.0),
])
def test_restore_of_a_snapshot_is_the_same_engine_state(flow: str, until: float) -> None:
    sim = SimCall.start(flow, prompt_seconds=PROMPT_S, agent=flow == "agent_greeting")
    sim.run_until(until)
    assert restore(CTX, kept(sim)) == sim.state


def test_a_stale_timer_or_prompt_note_is_not_kept() -> None:
    sim = SimCall.start("agent_greeting", prompt_seconds=PROMPT_S)
    sim.run_until(1.0)  # the greeting plays, no timer
    cp = snapshot(sim.state, at(1), TimerAt(sim.state.timer_gen + 1, at(5)),
                  PromptAt("someone-else-p9", at(0), 2.0))
    assert cp.timer is None
    assert cp.prompt is None


def test_an_unknown_shape_version_is_refused_not_guessed() -> None:
    sim = SimCall.start("agent_greeting")
    data = to_json(snapshot(sim.state, at(0)))
    with pytest.raises(CheckpointUnreadable, match="version"):
        from_json({**data, "v": 99})
    with pytest.raises(CheckpointUnreadable):
        restore(CTX, Checkpoint("call1", at(0), {"flow": "agent_greeting"}))


# -- what an adopting process arms ------------------------------------------------------------


def cp_with(timer: TimerAt | None = None, prompt: PromptAt | None = None) -> Checkpoint:
    return Checkpoint("call1", at(0), {}, timer, prompt)


@pytest.mark.parametrize(("deadline", "now", "fires_in"), [
    (5.0, 2.0, 3.0),  # the rest of the wait, not all of it
    (5.0, 5.0, 0.0),
    (5.0, 7.5, 0.0),  # passed while nobody ran the call: at once
])
def test_the_live_timer_fires_at_its_original_deadline(
    deadline: float, now: float, fires_in: float
) -> None:
    plan = resume_plan(cp_with(timer=TimerAt(3, at(deadline))), at(now), False)
    assert plan.timer == (3, pytest.approx(fires_in))
    assert plan.prompt_end is None
    assert plan.await_prompt is None


def test_a_prompt_still_playing_at_the_pbx_ends_with_the_pbx() -> None:
    plan = resume_plan(cp_with(prompt=PromptAt("call1-p2", at(1), 2.5)), at(2), True)
    assert plan.await_prompt == "call1-p2"
    assert plan.prompt_end is None


@pytest.mark.parametrize(("now", "ends_in"), [(2.0, 1.5), (6.0, 0.0)])
def test_a_prompt_gone_from_the_pbx_ends_at_its_start_plus_its_length(
    now: float, ends_in: float
) -> None:
    plan = resume_plan(cp_with(prompt=PromptAt("call1-p2", at(1), 2.5)), at(now), False)
    assert plan.prompt_end is not None
    pid, ended, delay = plan.prompt_end
    assert (pid, ended) == ("call1-p2", at(3.5))
    assert delay == pytest.approx(ends_in)


def test_a_prompt_of_unknown_length_gone_from_the_pbx_counts_as_ended_now() -> None:
    plan = resume_plan(cp_with(prompt=PromptAt("call1-p2", at(1), None)), at(2), False)
    assert plan.prompt_end == ("call1-p2", at(2), 0.0)
    assert plan.notes == ("prompt_length_unknown",)


# -- adopted calls go on as they would have ---------------------------------------------------


def test_silent_call_adopted_mid_wait_says_its_next_phrase_on_time() -> None:
    sim = SimCall.start("agent_greeting", prompt_seconds=PROMPT_S, agent=True)
    sim.run_until(30)
    started = [t for t, p in sim.plays() if p == "silent_call_first"]
    assert started
    cut = started[0] + PROMPT_S + 3.2  # 3.2 s into the 5 s wait after 4a
    fresh = SimCall.start("agent_greeting", prompt_seconds=PROMPT_S, agent=True)
    fresh.run_until(cut)
    other = adopted(fresh)
    other.run_until(30)
    second = [t for t, p in other.plays() if p == "silent_call_second"]
    assert second == [pytest.approx(started[0] + PROMPT_S + 5.0)]


def test_a_menu_adopted_before_its_timeout_retries_at_the_original_time() -> None:
    sim = SimCall.start("main_menu", prompt_seconds=PROMPT_S)
    sim.run_until(2.0 + PROMPT_S + 2.0)  # welcome, the language menu said, 2 s of its 5 s
    assert sim.state.node == "language"
    assert sim.state.timer_live
    other = adopted(sim)
    since = len(other.timeline)
    other.run_until(20)
    retry = [cmd for cmd in continuation(other, since) if isinstance(cmd[1], c.Audit)
             and cmd[1].kind == "menu_retry"]
    assert retry[0][0] == pytest.approx(2.0 + PROMPT_S + 5.0)  # not 5 s after the adoption


def test_a_menu_adopted_while_its_prompt_plays_waits_for_its_end_then_the_timeout() -> None:
    sim = SimCall.start("main_menu", prompt_seconds=PROMPT_S)
    sim.run_until(2.5)  # the language menu's prompt, half said
    assert sim.state.playing is not None
    other = adopted(sim)  # the PBX no longer lists it: it ends at start + length (4.0)
    other.run_until(30)
    retry = next(t for t, cmd in other.timeline
                 if isinstance(cmd, c.Audit) and cmd.kind == "menu_retry")
    assert retry == pytest.approx(4.0 + 5.0)
    assert not [p for t, p in other.plays() if t < 4.0]  # nothing said again over it


EVENTS = st.sampled_from([
    e.SpeechStarted(), e.Dtmf("1"), e.Dtmf("2"), e.Dtmf("9"), e.AudioClassified("silent"),
    e.AudioClassified("quiet"), e.AudioClassified("noisy"), e.AgentCommand("hangup", "007"),
    e.StartProcedure("silent_call", "agent", "007"), e.AgentLink(True), e.AgentLink(False),
    e.AgentCommand("end", "007"),
])


@settings(max_examples=150, deadline=None)
@given(
    flow=st.sampled_from(["agent_greeting", "main_menu"]),
    # On a quarter-second grid (as every wait and the prompts' 2 s are), the cut between two
    # grid points: no instant is lost to rounding, and the cut never ties with an event.
    script=st.lists(st.tuples(st.integers(1, 160).map(lambda k: k / 4), EVENTS), max_size=12),
    cut=st.integers(0, 160).map(lambda k: k / 4 + 0.125),
    listed=st.booleans(),
)
def test_a_call_restored_at_any_instant_goes_on_like_the_original(
    flow: str, script: list[tuple[float, e.Event]], cut: float, listed: bool
) -> None:
    """Same events, same clock: the original and the call adopted at `cut` (from its kept
    checkpoint alone) give the same commands at the same times, and end in the same state."""
    script = sorted(script, key=lambda p: p[0])
    original = SimCall.start(flow, prompt_seconds=PROMPT_S)
    pending = list(script)
    while pending and pending[0][0] <= cut:
        t, event = pending.pop(0)
        original.run_until(t)
        original.now = t
        original.feed(event)
    original.run_until(cut)
    original.now = max(original.now, cut)
    # prompt still listed at the PBX: its own end comes as in the original
    other = adopted(original, prompt_listed=False)
    if listed and original.state.playing is not None:
        other = adopted(original, prompt_listed=True)
        for when, _, event in original._queue:
            if isinstance(event, e.PromptFinished) and event.playback_id == original.state.playing:
                other._schedule(when - other.now, event)
    mark_a, mark_b = len(original.timeline), len(other.timeline)
    for sim in (original, other):
        for t, event in pending:
            sim.run_until(t)
            sim.now = t
            sim.feed(event)
        sim.run_until(120)
    same(continuation(original, mark_a), continuation(other, mark_b))
    assert other.state == original.state
