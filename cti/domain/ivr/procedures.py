"""The timed procedures of the training manual (docs/phrases.md), as flows built in code.

They are code, not admin-editable YAML, because their words and waits are requirements:
  silent_call  row 4:  4a -> 5 s -> 4b -> 5 s -> 4c goodbye -> 5 s -> hang-up; speech ends it
  hands_free   row 5a: pick-up-the-handset phrase, then as quiet from the recheck on
  quiet        row 5b: speak-louder (our volume unchanged) -> still unclear -> change-phone
               phrase -> 3-5 s (default 5) -> hang-up
  hold         row 6a: 请稍等, then music on hold until the agent resumes
  noisy        row 6b: noisy-line goodbye -> 5 s -> hang-up (never a direct hang-up)
  dialect      row 7:  ask for Mandarin -> (agent: next) ask for someone who speaks Mandarin
  agent_quiet  row 9:  对不起, -> the agent's volume is raised one step -> 请问有什么可以帮助您?
  greet_reply  row 2,  greet_by_name row 3: one phrase each.
Waits start when the previous prompt has finished playing (the engine starts the timer on
PromptFinished). Every hang-up is checked first against the caller's last seconds of audio
(`present_if` on the hang-up node: what counts as the caller being there); a present caller is
not hung up on, and the procedure ends with `caller_present` (docs/no_dead_air.md).
"""

from __future__ import annotations

from typing import Any

from cti.domain.ivr.config import ProcedureSettings
from cti.domain.ivr.flow import Flow, HangupNode, PlayNode, WaitNode
from cti.domain.ivr.presence import ANY_SOUND, CLEAR_SPEECH

MANUAL_WAIT_SECONDS = 5.0  # rows 4 and 6b: fixed by the manual, not a setting
MIN_GOODBYE_WAIT_SECONDS = 3.0  # row 5b's lower bound: no hang-up comes sooner after a goodbye

SILENT_CALL = "silent_call"
HANDS_FREE = "hands_free"
QUIET = "quiet"
HOLD = "hold"
NOISY = "noisy"
DIALECT = "dialect"
AGENT_QUIET = "agent_quiet"
GREET_REPLY = "greet_reply"
GREET_BY_NAME = "greet_by_name"

# Situations in which an agent's hang-up goes through the procedure instead of cutting the line.
HANGUP_GUARDED = (SILENT_CALL, HANDS_FREE, QUIET, NOISY)


def _flow(name: str, description: str, **spec: Any) -> Flow:
    spec.update(name=name, kind="procedure", description=description)
    return Flow.model_validate(spec)


def _silent_call() -> Flow:
    w = MANUAL_WAIT_SECONDS
    # Any sign of the caller ends it: speech, or a key (a caller who presses keys is there).
    speech = {"speech": "done", "dtmf": "done"}
    play, wait, bye = "play", "wait", "silent_call_goodbye"
    return _flow(
        SILENT_CALL, "row 4: silent call",
        start="first", agent_hangup="agent_goodbye",
        nodes={
            "first": {"type": play, "phrase": "silent_call_first", "next": "wait_1", "on": speech},
            "wait_1": {"type": wait, "seconds": w, "next": "second", "on": speech},
            "second": {"type": play, "phrase": "silent_call_second", "next": "wait_2",
                       "on": speech},
            "wait_2": {"type": wait, "seconds": w, "next": "goodbye", "on": speech},
            "goodbye": {"type": play, "phrase": bye, "next": "wait_3", "on": speech},
            "wait_3": {"type": wait, "seconds": w, "next": "hangup", "on": speech},
            # Row 4's premise is "no sound": any sound in the last seconds cancels it.
            "hangup": {"type": "hangup", "present_if": list(ANY_SOUND)},
            # The agent asked to hang up: the goodbye and its wait, which speech no longer stops.
            "agent_goodbye": {"type": play, "phrase": bye, "next": "agent_wait"},
            "agent_wait": {"type": wait, "seconds": w, "next": "hangup"},
            "done": {"type": "end"},
        },
    )


def _quiet(name: str, first_phrase: str, row: str, settings: ProcedureSettings) -> Flow:
    return _flow(
        name, f"row {row}: the caller's voice is too quiet (our volume unchanged)",
        start="ask", agent_hangup="change_phone",
        nodes={
            "ask": {"type": "play", "phrase": first_phrase, "next": "recheck",
                    "on": {"audio:normal": "done"}},
            "recheck": {"type": "wait", "seconds": settings.quiet_recheck_seconds,
                        "next": "change_phone",
                        "on": {"audio:normal": "done", "audio:quiet": "change_phone"}},
            "change_phone": {"type": "play", "phrase": "quiet_change_phone", "next": "final_wait"},
            "final_wait": {"type": "wait", "seconds": settings.quiet_hangup_seconds,
                           "next": "hangup"},
            # The premise is a caller who is there but too quiet: only clear speech cancels.
            "hangup": {"type": "hangup", "present_if": list(CLEAR_SPEECH)},
            "done": {"type": "end"},
        },
    )


def build_procedures(settings: ProcedureSettings) -> dict[str, Flow]:
    flows = [
        _silent_call(),
        _quiet(HANDS_FREE, "hands_free_pick_up", "5a", settings),
        _quiet(QUIET, "quiet_speak_louder", "5b", settings),
        _flow(
            HOLD, "row 6a: please hold, then music on hold until the agent returns",
            start="say",
            nodes={
                "say": {"type": "play", "phrase": "please_hold", "next": "music"},
                "music": {"type": "moh", "moh_class": settings.moh_class,
                          "on": {"agent:resume": "done"}},
                "done": {"type": "end"},
            },
        ),
        _flow(
            NOISY, "row 6b: noisy line",
            start="goodbye", agent_hangup="goodbye",
            nodes={
                "goodbye": {"type": "play", "phrase": "noisy_goodbye", "next": "wait"},
                "wait": {"type": "wait", "seconds": MANUAL_WAIT_SECONDS, "next": "hangup"},
                # A noisy line has sound on it anyway: only clear speech cancels.
                "hangup": {"type": "hangup", "present_if": list(CLEAR_SPEECH)},
            },
        ),
        _flow(
            DIALECT, "row 7: the caller speaks a dialect the agent can't follow",
            start="ask_mandarin",
            nodes={
                "ask_mandarin": {"type": "play", "phrase": "dialect_ask_mandarin",
                                 "next": "listen"},
                "listen": {"type": "wait", "on": {"agent:next": "ask_other_person"}},
                "ask_other_person": {"type": "play", "phrase": "dialect_ask_other_person",
                                     "next": "done"},
                "done": {"type": "end"},
            },
        ),
        _flow(
            AGENT_QUIET, "row 9: the caller says the agent is too quiet",
            start="sorry",
            nodes={
                "sorry": {"type": "play", "phrase": "agent_quiet_sorry", "next": "louder"},
                "louder": {"type": "volume", "step": settings.volume_step, "next": "ask"},
                "ask": {"type": "play", "phrase": "agent_quiet_ask", "next": "done"},
                "done": {"type": "end"},
            },
        ),
        _flow(
            GREET_REPLY, "row 2: the caller greeted first", start="say",
            nodes={"say": {"type": "play", "phrase": "greeting_reply", "next": "done"},
                   "done": {"type": "end"}},
        ),
        _flow(
            GREET_BY_NAME, "row 3: the caller's name is known", start="say",
            nodes={"say": {"type": "play", "phrase": "greeting_by_name", "next": "done"},
                   "done": {"type": "end"}},
        ),
    ]
    return {f.name: f for f in flows}


def direct_hangups(flow: Flow) -> list[str]:
    """Hang-up nodes not reached only through "a goodbye prompt, then a wait of >= 3 s".

    Empty for every procedure: the manual never allows a direct hang-up.
    """
    bad = []
    for node_id, node in flow.nodes.items():
        if not isinstance(node, HangupNode):
            continue
        preds = [(pid, p) for pid, p in flow.nodes.items() if node_id in p.targets()]
        if flow.start == node_id or not preds:
            bad.append(node_id)
            continue
        for pid, pred in preds:
            ok = (
                isinstance(pred, WaitNode)
                and pred.seconds is not None
                and pred.seconds >= MIN_GOODBYE_WAIT_SECONDS
                and pred.next == node_id
                and node_id not in pred.on.values()
                and all(
                    isinstance(p, PlayNode) and p.next == pid and pid not in p.on.values()
                    for p in flow.nodes.values() if pid in p.targets()
                )
                and flow.start != pid
            )
            if not ok:
                bad.append(f"{node_id} (from {pid})")
    return bad
