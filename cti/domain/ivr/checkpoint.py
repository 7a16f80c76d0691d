"""A call's IVR position as plain data, so another process can go on where this one stopped.

Pure: `snapshot` turns the engine's state plus the driver's two clocks-in-hand (the absolute
deadline of the live timer; the prompt playing, when it started and how long it lasts) into a
JSON-able `Checkpoint`; `restore` gives the engine state back, and `resume_plan` says, for a
given `now`, what the adopting driver must arm so the caller hears the rest of the wait, not
the whole of it again (docs/cluster.md, "What is kept outside the process").

The call's context (slots, VIP, caller number) is not kept: the adopting process rebuilds it
from the call log and the CRM, as it does for every adopted call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cti.domain.ivr.engine import CallContext, CallState, Phase, ProcedureRun

VERSION = 1


class CheckpointUnreadable(ValueError):
    """A kept checkpoint this code cannot read (another shape version, a damaged row)."""


@dataclass(frozen=True, slots=True)
class TimerAt:
    gen: int
    deadline: datetime  # wall clock, timezone-aware: another node's monotonic clock differs


@dataclass(frozen=True, slots=True)
class PromptAt:
    playback_id: str
    started_at: datetime
    duration_s: float | None  # None: the media's length is not known

    @property
    def ends_at(self) -> datetime | None:
        if self.duration_s is None:
            return None
        return self.started_at + timedelta(seconds=self.duration_s)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    call_id: str
    at: datetime
    state: dict[str, Any]  # the engine state without its context, JSON-able
    timer: TimerAt | None = None
    prompt: PromptAt | None = None


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What the adopting driver does at `now`, before the call's next event."""

    # (generation, seconds from now) of the timer that was live; 0: it is due, fire at once
    timer: tuple[int, float] | None = None
    # The prompt that was playing: wait for the PBX's own end of it (still listed there)...
    await_prompt: str | None = None
    # ...or end it ourselves: (playback id, when it ended or will end, seconds from now)
    prompt_end: tuple[str, datetime, float] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    at = datetime.fromisoformat(str(value))
    if at.tzinfo is None:
        raise CheckpointUnreadable(f"time without a zone in a checkpoint: {value!r}")
    return at


def snapshot(
    state: CallState, at: datetime, timer: TimerAt | None = None, prompt: PromptAt | None = None
) -> Checkpoint:
    """The call's position now. `timer` only when the state has a live timer of that
    generation; `prompt` only when the state's prompt is that playback (else dropped: a
    driver's stale note must not outlive the engine's own view)."""
    run = state.procedure
    data: dict[str, Any] = {
        "flow": state.flow, "node": state.node, "lang": state.lang,
        "phase": state.phase.value, "answered_at": _iso(state.answered_at),
        "procedure": None if run is None else {
            "name": run.name, "run_id": run.run_id, "started_by": run.started_by,
            "node": run.node, "agent_acted": run.agent_acted,
        },
        "playing": state.playing, "play_seq": state.play_seq,
        "timer_gen": state.timer_gen, "timer_live": state.timer_live,
        "menu_attempts": state.menu_attempts, "menu_reprompt": state.menu_reprompt,
        "moh_on": state.moh_on, "caller_spoke": state.caller_spoke,
        "audio_kind": state.audio_kind, "audio_run": state.audio_run,
        "audio_detail": state.audio_detail, "auto_starts": dict(state.auto_starts),
        "volume_gain": state.volume_gain, "run_seq": state.run_seq,
        "recording": state.recording, "rec_seq": state.rec_seq,
        "agent_on_call": state.agent_on_call, "check_seq": state.check_seq,
        "checking": state.checking, "awaiting_agent": state.awaiting_agent,
    }
    live_timer = timer if timer and state.timer_live and timer.gen == state.timer_gen else None
    live_prompt = prompt if prompt and state.playing == prompt.playback_id else None
    return Checkpoint(state.ctx.call_id, at, data, live_timer, live_prompt)


def restore(ctx: CallContext, checkpoint: Checkpoint) -> CallState:
    """The engine state the checkpoint was taken of, in `ctx` (the adopting process's)."""
    d = checkpoint.state
    try:
        proc = d["procedure"]
        return CallState(
            ctx=ctx, flow=str(d["flow"]), node=str(d["node"]), lang=str(d["lang"]),
            phase=Phase(d["phase"]), answered_at=_time(d["answered_at"]),
            procedure=None if proc is None else ProcedureRun(
                str(proc["name"]), str(proc["run_id"]), str(proc["started_by"]),
                str(proc["node"]), bool(proc["agent_acted"]),
            ),
            playing=d["playing"], play_seq=int(d["play_seq"]),
            timer_gen=int(d["timer_gen"]), timer_live=bool(d["timer_live"]),
            menu_attempts=int(d["menu_attempts"]), menu_reprompt=bool(d["menu_reprompt"]),
            moh_on=bool(d["moh_on"]), caller_spoke=bool(d["caller_spoke"]),
            audio_kind=d["audio_kind"], audio_run=int(d["audio_run"]),
            audio_detail=d["audio_detail"],
            auto_starts={str(k): int(v) for k, v in d["auto_starts"].items()},
            volume_gain=int(d["volume_gain"]), run_seq=int(d["run_seq"]),
            recording=d["recording"], rec_seq=int(d["rec_seq"]),
            agent_on_call=bool(d["agent_on_call"]), check_seq=int(d["check_seq"]),
            checking=bool(d["checking"]), awaiting_agent=bool(d["awaiting_agent"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointUnreadable(f"checkpoint of call {checkpoint.call_id}: {exc!r}") from None


def resume_plan(checkpoint: Checkpoint, now: datetime, prompt_listed: bool) -> ResumePlan:
    """What to arm at `now` for a call restored from `checkpoint`. `prompt_listed`: the PBX
    still lists the prompt that was playing (then its own PlaybackFinished ends it)."""
    timer = None
    if checkpoint.timer is not None:
        left = (checkpoint.timer.deadline - now).total_seconds()
        timer = (checkpoint.timer.gen, max(left, 0.0))
    prompt = checkpoint.prompt
    if prompt is None:
        return ResumePlan(timer=timer)
    if prompt_listed:
        return ResumePlan(timer=timer, await_prompt=prompt.playback_id)
    ends_at = prompt.ends_at
    if ends_at is None:  # not known how long it was: it is over as far as we can tell
        return ResumePlan(timer=timer, prompt_end=(prompt.playback_id, now, 0.0),
                          notes=("prompt_length_unknown",))
    left = (ends_at - now).total_seconds()
    return ResumePlan(timer=timer, prompt_end=(prompt.playback_id, ends_at, max(left, 0.0)))


def to_json(checkpoint: Checkpoint) -> dict[str, Any]:
    timer, prompt = checkpoint.timer, checkpoint.prompt
    return {
        "v": VERSION, "call_id": checkpoint.call_id, "at": _iso(checkpoint.at),
        "state": checkpoint.state,
        "timer": None if timer is None else {"gen": timer.gen, "deadline": _iso(timer.deadline)},
        "prompt": None if prompt is None else {
            "playback_id": prompt.playback_id, "started_at": _iso(prompt.started_at),
            "duration_s": prompt.duration_s,
        },
    }


def from_json(data: dict[str, Any]) -> Checkpoint:
    if data.get("v") != VERSION:
        raise CheckpointUnreadable(f"checkpoint shape version {data.get('v')!r}, "
                                   f"this code reads {VERSION}")
    try:
        t, p = data["timer"], data["prompt"]
        at = _time(data["at"])
        assert at is not None
        return Checkpoint(
            str(data["call_id"]), at, dict(data["state"]),
            None if t is None else TimerAt(int(t["gen"]), _time(t["deadline"]) or at),
            None if p is None else PromptAt(
                str(p["playback_id"]), _time(p["started_at"]) or at,
                None if p["duration_s"] is None else float(p["duration_s"]),
            ),
        )
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        raise CheckpointUnreadable(f"checkpoint: {exc!r}") from None
