"""Classify the caller's audio, window by window: silent / quiet / noisy / normal speech.

Pure computation on 20 ms frames of 16-bit signed little-endian mono PCM at 8 or 16 kHz:
per frame the level (dBFS) and voice activity (webrtcvad); per window the speech level (90th
percentile of frame levels), the noise floor (10th percentile), their difference as the
signal-to-noise estimate, and the voiced fraction.

  silent  nothing above the silence level, or a flat faint hiss below `noise_dbfs` (a line's
          own hiss masks no voice: the caller is silent)
  noisy   sound whose level hardly varies (SNR below `min_snr_db`) at or above `noise_dbfs`:
          noise, or speech drowned in it; or loud varying sound webrtcvad does not call voice
  quiet   a speech-like level contour (syllables over a floor) below `quiet_dbfs`
  normal  a speech-like contour at or above `quiet_dbfs`, voiced per webrtcvad

Speech rises and falls syllable by syllable, noise does not: the 90th-10th percentile spread
separates them where webrtcvad cannot (it calls loud white noise voice and misses faint speech).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import webrtcvad
from pydantic import BaseModel, ConfigDict, Field

from cti.domain.ivr.events import AudioKind

FRAME_MS = 20
SAMPLE_RATES = (8000, 16000)
FLOOR_DBFS = -100.0


class ClassifierSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    silence_dbfs: float = Field(default=-55.0, le=0)
    # Flat noise below this is line hiss, not a noisy line: 30 dB under normal speech (-20 dBFS
    # RMS) masks nothing. A silent caller on a hissy line (-50 dBFS) is a silent call.
    noise_dbfs: float = Field(default=-40.0, le=0)
    quiet_dbfs: float = Field(default=-32.0, le=0)
    min_snr_db: float = Field(default=12.0, ge=0)
    min_voiced_fraction: float = Field(default=0.3, ge=0, le=1)
    vad_mode: int = Field(default=3, ge=0, le=3)


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    kind: AudioKind
    level_dbfs: float  # speech level: 90th percentile of frame levels
    floor_dbfs: float  # noise floor: 10th percentile
    snr_db: float
    voiced_fraction: float
    frames: int


def frame_bytes(sample_rate: int) -> int:
    return sample_rate * FRAME_MS // 1000 * 2


def classify_features(
    levels: npt.NDArray[np.float64], voiced: npt.NDArray[np.bool_], settings: ClassifierSettings
) -> WindowFeatures:
    level = float(np.percentile(levels, 90))
    floor = float(np.percentile(levels, 10))
    snr = level - floor
    voiced_fraction = float(np.mean(voiced)) if voiced.size else 0.0
    kind: AudioKind
    if level < settings.silence_dbfs:
        kind = "silent"
    elif snr < settings.min_snr_db:
        # a flat level: noise, or speech drowned in it; or, faint, the line's own hiss
        kind = "noisy" if level >= settings.noise_dbfs else "silent"
    elif level < settings.quiet_dbfs:
        kind = "quiet"  # webrtcvad misses faint speech, so the level contour decides here
    elif voiced_fraction >= settings.min_voiced_fraction:
        kind = "normal"
    else:
        kind = "noisy"  # loud and fluctuating but not voice (clicks, clatter)
    return WindowFeatures(kind, level, floor, snr, voiced_fraction, int(levels.size))


class AudioClassifier:
    """Feed PCM in any chunks; every `window_ms` it returns the window's features and class.

    A window is computed in one go (frame levels vectorised; webrtcvad only when the window is
    not silent): with a few hundred calls tapped, per-packet work would compete with the
    procedures' timers on the same event loop.
    """

    def __init__(self, settings: ClassifierSettings, sample_rate: int, window_ms: int) -> None:
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample rate {sample_rate} not supported (8000 or 16000)")
        self.settings = settings
        self.sample_rate = sample_rate
        self.frame_size = frame_bytes(sample_rate)
        self.frames_per_window = max(1, window_ms // FRAME_MS)
        self.window_bytes = self.frames_per_window * self.frame_size
        self._vad = webrtcvad.Vad(settings.vad_mode)
        self._pending = bytearray()

    def feed(self, pcm: bytes) -> list[WindowFeatures]:
        """Any amount of PCM; returns the windows completed by it (usually none or one)."""
        self._pending += pcm
        out: list[WindowFeatures] = []
        while len(self._pending) >= self.window_bytes:
            window = bytes(self._pending[: self.window_bytes])
            del self._pending[: self.window_bytes]
            out.append(self._window(window))
        return out

    def _window(self, window: bytes) -> WindowFeatures:
        frames = np.frombuffer(window, dtype="<i2").astype(np.float64)
        frames = frames.reshape(self.frames_per_window, -1)
        rms = np.sqrt(np.mean(frames * frames, axis=1))
        with np.errstate(divide="ignore"):
            levels = np.maximum(FLOOR_DBFS, 20.0 * np.log10(rms / 32768.0))
        if float(np.percentile(levels, 90)) < self.settings.silence_dbfs:
            voiced = np.zeros(self.frames_per_window, dtype=np.bool_)  # nothing to ask about
        else:
            size = self.frame_size
            voiced = np.array(
                [self._vad.is_speech(window[i : i + size], self.sample_rate)
                 for i in range(0, len(window), size)],
                dtype=np.bool_,
            )
        return classify_features(levels, voiced, self.settings)
