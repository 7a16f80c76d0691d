"""Listen, whisper, barge: a supervisor's leg on a live call, as a pure state machine.

The supervisor's phone is dialled once; changing mode never re-dials it. What each mode
needs at the PBX (docs/monitoring.md):

- listen:  a snoop on the agent's channel hearing both directions (`spy=both`) and saying
  nothing (`whisper=none`), in a bridge of its own with the supervisor's leg;
- whisper: the same with `whisper=out`: the supervisor's audio is written towards the
  agent's phone only, so the agent hears it and the caller does not;
- barge:   no snoop; the supervisor's leg joins the call's own (mixing) bridge: all three.

`step` functions return the new state and the commands for the driver to run, in order.
Snoops carry a generation: a mode change opens the new snoop before the old one is dropped,
so the supervisor never hears a gap, and the driver knows which channel each command names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from cti.platform.errors import IllegalTransition


class Mode(StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


class Phase(StrEnum):
    DIALLING = "dialling"  # the supervisor's phone rings
    ACTIVE = "active"
    ENDED = "ended"


Whisper = Literal["none", "out"]
Place = Literal["monitor", "call"]  # the supervisor's leg: in the monitor bridge or the call's

# What the snoop whispers, by mode; None: the mode has no snoop.
SNOOP_WHISPER: dict[Mode, Whisper | None] = {
    Mode.LISTEN: "none", Mode.WHISPER: "out", Mode.BARGE: None,
}


@dataclass(frozen=True, slots=True)
class Dial:
    endpoint: str


@dataclass(frozen=True, slots=True)
class OpenSnoop:
    """Snoop the agent's channel (spy both) with `whisper`, into the monitor bridge."""

    gen: int
    whisper: Whisper


@dataclass(frozen=True, slots=True)
class DropSnoop:
    gen: int


@dataclass(frozen=True, slots=True)
class MoveSupervisor:
    """Put the supervisor's leg in `place` (out of the other bridge, if it is there)."""

    place: Place


@dataclass(frozen=True, slots=True)
class HangUpSupervisor:
    pass


Command = Dial | OpenSnoop | DropSnoop | MoveSupervisor | HangUpSupervisor


@dataclass(frozen=True, slots=True)
class Monitor:
    """One supervisor on one call. `snoop` is the generation of the open snoop (None: none),
    `place` where the supervisor's leg is (None: not answered yet)."""

    phase: Phase
    mode: Mode
    endpoint: str
    snoop: int | None = None
    place: Place | None = None
    last_gen: int = 0


def _illegal(m: Monitor, event: str) -> IllegalTransition:
    return IllegalTransition("monitor", m.phase.value, event)


def start(mode: Mode, endpoint: str) -> tuple[Monitor, list[Command]]:
    """A supervisor asks to monitor: their phone is dialled."""
    return Monitor(Phase.DIALLING, mode, endpoint), [Dial(endpoint)]


def _enter(m: Monitor, mode: Mode) -> tuple[Monitor, list[Command]]:
    """From the current PBX set-up (snoop, place) to the one `mode` needs."""
    whisper = SNOOP_WHISPER[mode]
    cmds: list[Command] = []
    snoop, gen, place = m.snoop, m.last_gen, m.place
    if whisper is not None:
        gen += 1
        cmds.append(OpenSnoop(gen, whisper))  # first the new snoop: no gap for the supervisor
        if place != "monitor":
            cmds.append(MoveSupervisor("monitor"))
        if snoop is not None:
            cmds.append(DropSnoop(snoop))
        snoop, place = gen, "monitor"
    else:
        if place != "call":
            cmds.append(MoveSupervisor("call"))
        if snoop is not None:
            cmds.append(DropSnoop(snoop))
        snoop, place = None, "call"
    return dataclasses.replace(m, mode=mode, snoop=snoop, place=place, last_gen=gen), cmds


def answered(m: Monitor) -> tuple[Monitor, list[Command]]:
    """The supervisor's phone answered: the asked mode is set up."""
    if m.phase is not Phase.DIALLING:
        raise _illegal(m, "answered")
    return _enter(dataclasses.replace(m, phase=Phase.ACTIVE), m.mode)


def change(m: Monitor, mode: Mode) -> tuple[Monitor, list[Command]]:
    """Switch mode on the same leg. While dialling only the wish changes; the same mode is a
    no-op."""
    if m.phase is Phase.ENDED:
        raise _illegal(m, f"change to {mode.value}")
    if m.phase is Phase.DIALLING:
        return dataclasses.replace(m, mode=mode), []
    if mode is m.mode:
        return m, []
    return _enter(m, mode)


def agent_moved(m: Monitor) -> tuple[Monitor, list[Command]]:
    """The call is in a new bridge or with a new agent (a transfer): the set-up is made again
    there (a new snoop on the new agent's channel, or the new bridge for barge)."""
    if m.phase is not Phase.ACTIVE:
        return m, []
    if SNOOP_WHISPER[m.mode] is not None:
        return _enter(dataclasses.replace(m, place="monitor"), m.mode)
    return _enter(dataclasses.replace(m, place=None), m.mode)


def stop(m: Monitor, *, leg_gone: bool = False) -> tuple[Monitor, list[Command]]:
    """End monitoring: the snoop dropped and the supervisor's leg hung up (unless that leg
    is what ended). Stopping an ended monitor does nothing."""
    if m.phase is Phase.ENDED:
        return m, []
    cmds: list[Command] = []
    if m.snoop is not None:
        cmds.append(DropSnoop(m.snoop))
    if not leg_gone:
        cmds.append(HangUpSupervisor())
    return dataclasses.replace(m, phase=Phase.ENDED, snoop=None, place=None), cmds
