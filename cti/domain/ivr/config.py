"""Tunables of the procedures and of the detection that starts them (settings: `procedures`,
`detection`). The waits fixed by the training manual (5 s) are not tunables; see procedures.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cti.domain.audio_classifier import ClassifierSettings


class ProcedureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Row 5b: "wait 3-5 s (default 5)" between the change-phone phrase and the hang-up.
    quiet_hangup_seconds: float = Field(default=5.0, ge=3.0, le=5.0)
    # Row 5b: how long to listen, after asking to speak louder, before judging "still unclear".
    quiet_recheck_seconds: float = Field(default=8.0, gt=0, le=30)
    # Row 9: one step of the agent's volume as the caller hears it (Asterisk VOLUME units).
    volume_step: int = Field(default=3, ge=1, le=10)
    moh_class: str | None = None


class DetectionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_start: bool = True
    # Silence after the greeting (the caller has made no sound at all) that starts row 4.
    silence_seconds: float = Field(default=5.0, gt=0, le=60)
    # Length of one classified window of caller audio, and how many in a row make "consistently".
    window_ms: int = Field(default=1000, ge=200, le=5000)
    consecutive_windows: int = Field(default=3, ge=1, le=20)
    # How often one call may have the same procedure started automatically.
    max_auto_starts: int = Field(default=1, ge=1, le=10)
    # TALK_DETECT(set)=silence_ms,threshold on the caller's channel.
    talk_detect_silence_ms: int = Field(default=500, ge=100)
    talk_detect_threshold: int = Field(default=256, ge=1)
    # Before any procedure's hang-up, the caller audio of the last this-many seconds is judged
    # again (docs/no_dead_air.md): a sign of the caller there cancels the hang-up.
    presence_window_seconds: float = Field(default=3.0, ge=0.5, le=10)
    # The engine's bound on the driver's answer to that check; past it the hang-up goes ahead
    # (recorded as unverified). The runner answers at once from what it already has.
    presence_answer_seconds: float = Field(default=0.5, gt=0, le=2)
    classifier: ClassifierSettings = ClassifierSettings()
    # The caller-audio tap's RTP format. "slin" (8 kHz signed linear) is what the snoop
    # gives for a telephone caller: no resampling or transcoding in Asterisk and half the
    # classifier's work; the classifier is calibrated at 8 kHz (G.711 is its reference).
    # "slin16" resamples every 20 ms frame in Asterisk, for wideband callers only.
    tap_format: Literal["slin", "slin16"] = "slin"
    # While the caller is in the IVR (no agent, no queue), the tap's bridge holds the caller's
    # own channel and the externalMedia channel (in the caller's G.711): two channels and no
    # transcoding instead of a snoop's three (docs/line_watch.md, "The tap"). Off: the snoop
    # always. The snoop (and tap_format) is used wherever the caller is in another bridge.
    tap_joins_caller: bool = True
