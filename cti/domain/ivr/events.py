"""Events into the IVR engine: what happened on the call, as plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

AudioKind = Literal["silent", "quiet", "noisy", "normal"]
StartedBy = Literal["auto", "agent"]


@dataclass(frozen=True, slots=True)
class Answered:
    at: datetime  # timezone-aware; business hours are judged from it


@dataclass(frozen=True, slots=True)
class PromptFinished:
    playback_id: str
    # When the PBX says the prompt's audio ended (its event's own time stamp), if known: the
    # wait after a prompt is timed from there, not from when the event reached the service.
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    pass


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class AudioClassified:
    """One analysis window of the caller's audio, classified (see cti.domain.audio_classifier),
    with the features that decided, for the procedure audit to explain what it did."""

    kind: AudioKind
    level_dbfs: float = -100.0
    snr_db: float = 0.0
    floor_dbfs: float = -100.0
    voicing: float = 0.0  # pitch strength, 0..1
    flatness: float = 1.0  # spectral flatness against the floor's spectrum (noise ~0.55)
    modulation_db: float = 0.0  # syllabic (2-8 Hz) modulation of the level

    def detail(self) -> dict[str, float | str]:
        """The window's class and features, rounded: what an audit entry records."""
        return {
            "kind": self.kind, "level_dbfs": round(self.level_dbfs, 1),
            "floor_dbfs": round(self.floor_dbfs, 1), "snr_db": round(self.snr_db, 1),
            "voicing": round(self.voicing, 2), "flatness": round(self.flatness, 2),
            "modulation_db": round(self.modulation_db, 1),
        }


@dataclass(frozen=True, slots=True)
class TimerFired:
    gen: int


@dataclass(frozen=True, slots=True)
class HangUp:
    cause: str = "caller"


@dataclass(frozen=True, slots=True)
class RecordingEnded:
    """A recording started by a `record` node is over (finished, or it failed to start)."""

    name: str
    duration_s: float | None = None
    failed: bool = False
    cause: str = ""


@dataclass(frozen=True, slots=True)
class AgentCommand:
    """From the agent's page: hangup, resume (end hold), next (dialect goes on), end."""

    command: str
    agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class StartProcedure:
    name: str
    started_by: StartedBy = "agent"
    agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class SwitchFlow:
    """Continue the call in another main flow (e.g. the agent answered: `agent_greeting`)."""

    flow: str
    # Slot values to use from now on (e.g. the answering agent's id for the greeting).
    slots: Mapping[str, Mapping[str, str]] | None = None


@dataclass(frozen=True, slots=True)
class CallerPresence:
    """The driver's answer to `ConfirmCallerAbsent(check)`: whether the caller's recent audio
    shows them there. `known` is False when the driver had no recent audio to judge by (no
    audio tap): the hang-up goes ahead, recorded as unverified. `evidence` is what was found
    (kept in the audit)."""

    check: int
    present: bool
    known: bool = True
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentLink:
    """The caller is (connected) or is no longer bridged with a person: an agent, or the party
    of a transfer. With one, a procedure that ends early leaves the caller talking to them."""

    connected: bool


Event = (
    Answered | PromptFinished | Dtmf | SpeechStarted | SpeechStopped | AudioClassified
    | TimerFired | HangUp | AgentCommand | StartProcedure | SwitchFlow | RecordingEnded
    | CallerPresence | AgentLink
)
