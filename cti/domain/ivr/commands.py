"""Commands out of the IVR engine: what the driver must do on the call, as plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Play:
    playback_id: str
    phrase_id: str
    lang: str
    slots: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StopPlayback:
    playback_id: str


@dataclass(frozen=True, slots=True)
class StartTimer:
    gen: int
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    gen: int


@dataclass(frozen=True, slots=True)
class HangUpCall:
    reason: str


@dataclass(frozen=True, slots=True)
class RouteToQueue:
    queue: str
    skill: str | None
    lang: str


@dataclass(frozen=True, slots=True)
class SetVolume:
    """Absolute gain (dB steps as Asterisk VOLUME takes them) on a leg, in one direction.

    leg "caller", direction "TX": what the caller hears, i.e. the agent's voice.
    """

    leg: Literal["caller", "agent"]
    direction: Literal["TX", "RX"]
    gain: int


@dataclass(frozen=True, slots=True)
class StartMoh:
    moh_class: str | None = None


@dataclass(frozen=True, slots=True)
class StopMoh:
    pass


@dataclass(frozen=True, slots=True)
class Record:
    """Record the caller's channel as `name` (a file name at the PBX, unique per call)."""

    name: str
    mailbox: str
    max_seconds: float
    max_silence: float
    beep: bool
    terminate_on: str


@dataclass(frozen=True, slots=True)
class StopRecording:
    """End the recording `name` early and keep what was recorded."""

    name: str


@dataclass(frozen=True, slots=True)
class ConfirmCallerAbsent:
    """Before a procedure's hang-up: is the caller there after all? The driver answers at once
    with `CallerPresence(check, ...)`, judged from the caller audio it has already received in
    the last `window_s` seconds (classifier windows, TALK_DETECT, keys): no waiting for more.
    `present_if` names the evidence that counts as the caller being there (see
    cti.domain.ivr.presence). No answer within the engine's bound: the hang-up goes ahead,
    recorded as unverified."""

    check: int
    window_s: float
    present_if: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Audit:
    """A fact for quality review. `run_id` is set while a procedure runs."""

    kind: str
    run_id: str | None = None
    procedure: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


Command = (
    Play | StopPlayback | StartTimer | CancelTimer | HangUpCall | RouteToQueue | SetVolume
    | StartMoh | StopMoh | Record | StopRecording | ConfirmCallerAbsent | Audit
)
