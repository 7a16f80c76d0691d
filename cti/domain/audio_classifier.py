"""Classify the caller's audio, window by window: silent / quiet / noisy / normal speech.

Pure computation on 20 ms frames of 16-bit signed little-endian mono PCM at 8 or 16 kHz (the
tap's G.711 or GSM after decoding, or slin16). Whether the caller speaks is decided by more than
the level, each measure taken against the line's own noise floor, so that very quiet speech
(down to about -65 dBFS, 45 dB under a normal talker) is speech while line hiss, comfort noise
and digital silence are silence (docs/line_watch.md):

  voicing     pitch strength: the normalised autocorrelation peak at 60-400 Hz periods of the
              frame's spectrum whitened (divided by its own smoothed envelope) within
              250-3500 Hz, so coloured noise, rumble and hum do not look periodic; the 80th
              percentile over the frames that stand 3 dB over the floor
  flatness    spectral flatness of those frames against the floor's own spectrum: noise is flat
              against itself whatever its colour, speech is not (harmonics, formants)
  modulation  the 2-8 Hz (syllabic) part of the in-band level envelope over the floor, in dB:
              speech rises and falls syllable by syllable; hiss, hum and rumble do not
  level       the window's level: the loud third of its frames (dBFS)
  floor       the noise floor: the mean power of the quietest 30 % of the last 5 s of frames
              (a stretch of continuous speech keeps the floor of the pauses before it); a pause
              of digital zero (60 ms or more) counts as -90 dBFS
  snr         the speech's own power (the frames 3 dB over the floor, less the floor) over it;
              floor + snr is the speech level
  floor spread  how far the quietest 30 % of frames spread (dB): a noise floor is steady, the
              quiet ends of syllables are not (the floor is not yet known)

Decision, per window:
  speech  syllabic modulation with voicing or a non-flat spectrum behind it; right after a
          window with speech, the same on weaker evidence
  noisy   speech less than `min_snr_db` over a loud, steady floor (noise as loud as the voice),
          or no speech and a loud level (noise alone)
  quiet   speech whose level is under `quiet_dbfs`
  normal  speech at or above it
  silent  no speech and a faint level: digital silence, line hiss, comfort noise

Lost packets (frames of digital zero: silence filled in for them; or a codec's idle pattern)
carry nothing: they are left out of every measure and the envelope holds its last value across
them; a repeated frame (packet-loss concealment) is measured as any other. Cost: one FFT per
20 ms frame and one inverse FFT (the autocorrelation), vectorised over the window; the per-packet
work is a copy (benchmarks/bench_line_watch_eval.py measures it per watched call).
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from cti.domain.ivr.events import AudioKind

Floats = npt.NDArray[np.float64]

FRAME_MS = 20
SAMPLE_RATES = (8000, 16000)
FLOOR_DBFS = -100.0
BAND_HZ = (250.0, 3500.0)  # where telephone speech is, through every codec we take
PITCH_HZ = (60.0, 400.0)
MODULATION_HZ = (2.0, 8.0)
HISTORY_MS = 5000  # the floor and the speech level are judged over this much of the past
EMPTY_PEAK = 8.5 / 32768.0  # a frame whose samples all lie within ±8 carries nothing
PAUSE_FRAMES = 3  # empty frames in a row: a pause on a digitally silent line, not a lost packet
PAUSE_POWER = 1e-9  # -90 dBFS: the floor of such a line
ENVELOPE_FRAMES = 64  # the modulation spectrum looks at the last 1.28 s at least
QUIET_SHARE = 0.3  # the floor: the quietest 30 % of the frames
_TINY = 1e-12  # -120 dBFS, in power
_NOTHING = np.zeros(0)


class ClassifierSettings(BaseModel):
    """Calibrated on the evaluation set (tests/audio_eval.py; docs/line_watch.md) for 8 kHz
    G.711 µ-law and A-law, GSM 06.10 and 16 kHz linear, with up to 5 % of packets lost."""

    model_config = ConfigDict(extra="forbid")

    # Below this (the loud third of the window's frames, dBFS) there is nothing to analyse.
    silence_dbfs: float = Field(default=-78.0, le=0)
    # Noise at or above this level is loud: alone, a noisy line; under speech, it makes the line
    # noisy when the speech hardly stands above it. Fainter noise is the line's hiss, which masks
    # no voice (the labelling policy puts the line at -42.5 dBFS).
    noise_dbfs: float = Field(default=-43.0, le=0)
    # Speech whose level (active speech over the last seconds, the floor taken out) is under
    # this is quiet: a normal talker is about -20 dBFS; 10 dB under is normal, 15 dB quiet.
    quiet_dbfs: float = Field(default=-29.0, le=0)
    # Speech less than this many dB over a loud floor is drowned in it: a noisy line (the
    # policy: 5 dB or less is noisy, 10 dB or more is not).
    min_snr_db: float = Field(default=9.5, ge=0)
    # A floor whose quiet frames spread wider than this (dB) is the quiet ends of speech, not
    # noise (no pause heard yet): it makes no line noisy.
    max_floor_spread_db: float = Field(default=9.0, ge=0)
    # Speech present: syllabic modulation at least this (dB) ...
    min_modulation_db: float = Field(default=1.0, ge=0)
    # ... with a pitch strength at least this,
    min_voicing: float = Field(default=0.33, ge=0, le=1)
    # ... or a spectrum at most this flat against the floor's (noise: about 0.55);
    max_flatness: float = Field(default=0.40, ge=0, le=1)
    # right after a window with speech, the same with these (speech goes on more easily than it
    # starts: a word lost in noise does not end the caller's turn).
    hold_modulation_db: float = Field(default=0.6, ge=0)
    hold_voicing: float = Field(default=0.30, ge=0, le=1)
    hold_flatness: float = Field(default=0.46, ge=0, le=1)
    # A frame is clearly voiced at this pitch strength (reported: the voiced fraction).
    voiced_frame: float = Field(default=0.5, ge=0, le=1)


@dataclass(frozen=True, slots=True)
class Measures:
    """What one window measured (see the module's docstring)."""

    level_dbfs: float = FLOOR_DBFS
    floor_dbfs: float = FLOOR_DBFS
    snr_db: float = 0.0
    floor_spread_db: float = 0.0
    voicing: float = 0.0
    flatness: float = 1.0
    modulation_db: float = 0.0
    voiced_fraction: float = 0.0
    frames: int = 0


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    kind: AudioKind
    level_dbfs: float  # the window's level: the loud third of its frames
    floor_dbfs: float  # the noise floor: the quietest 30 % of the last seconds' frames
    snr_db: float  # the speech's own power over the floor (0: nothing stands above it)
    voiced_fraction: float  # share of the window's frames clearly voiced, over the floor
    frames: int
    voicing: float = 0.0  # pitch strength of the frames over the floor
    flatness: float = 1.0  # spectral flatness against the floor's spectrum (noise ~0.55)
    modulation_db: float = 0.0  # syllabic (2-8 Hz) modulation of the level over the floor
    floor_spread_db: float = 0.0
    speech: bool = False  # whether speech was found in the window

    @property
    def speech_dbfs(self) -> float:
        """The speech level: active speech over the last seconds, the floor taken out."""
        return self.floor_dbfs + self.snr_db


def frame_bytes(sample_rate: int) -> int:
    return sample_rate * FRAME_MS // 1000 * 2


def db(power: float) -> float:
    return max(FLOOR_DBFS, 10.0 * float(np.log10(max(power, _TINY))))


def classify_features(
    m: Measures, settings: ClassifierSettings, *, speaking: bool = False
) -> WindowFeatures:
    """The decision from a window's measures (pure: tested and explained on its own).
    `speaking`: the window before had speech."""
    s = settings
    # Modulation is required: a steady tone or hum is as periodic as a vowel, never syllabic.
    speech = m.level_dbfs >= s.silence_dbfs and (
        (m.modulation_db >= s.min_modulation_db
            and (m.voicing >= s.min_voicing or m.flatness <= s.max_flatness))
        or (speaking and m.modulation_db >= s.hold_modulation_db
            and (m.voicing >= s.hold_voicing or m.flatness <= s.hold_flatness))
    )
    loud_floor = m.floor_dbfs >= s.noise_dbfs and m.floor_spread_db <= s.max_floor_spread_db
    kind: AudioKind
    if not speech:
        kind = "noisy" if m.level_dbfs >= s.noise_dbfs else "silent"
    elif m.snr_db < s.min_snr_db and loud_floor:
        kind = "noisy"  # the voice hardly stands above loud noise
    elif m.floor_dbfs + m.snr_db < s.quiet_dbfs:
        kind = "quiet"
    else:
        kind = "normal"
    return WindowFeatures(
        kind, m.level_dbfs, m.floor_dbfs, m.snr_db, m.voiced_fraction, m.frames, m.voicing,
        m.flatness, m.modulation_db, m.floor_spread_db, speech,
    )


class _Analysis:
    """What does not change during a call: FFT size, band, taper, lag range."""

    def __init__(self, rate: int) -> None:
        self.frame = rate * FRAME_MS // 1000
        self.nfft = 512 if rate == 8000 else 1024  # 15.6 Hz bins; room for 40 ms + max lag
        self.hann = np.hanning(2 * self.frame)
        freqs = np.fft.rfftfreq(self.nfft, 1.0 / rate)
        band = np.flatnonzero((freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1]))
        self.lo, self.hi = int(band[0]), int(band[-1]) + 1
        # in-band power of a frame from its spectrum: Parseval, with the taper's energy
        self.power_scale = 2.0 / (self.nfft * float(np.sum(self.hann**2)))
        self.lags = np.arange(int(rate / PITCH_HZ[1]), int(rate / PITCH_HZ[0]) + 1)
        taper_ac = np.fft.irfft(np.abs(np.fft.rfft(self.hann, self.nfft)) ** 2, self.nfft)
        self.taper_ac = taper_ac[self.lags] / taper_ac[0]  # the taper's own autocorrelation
        self.smooth = 16  # whitening: the envelope is the spectrum averaged over ±250 Hz


class AudioClassifier:
    """Feed PCM in any chunks; every `window_ms` it returns the window's features and class.

    One per watched call: the floor, the speech level and the level envelope carry over from
    window to window.
    """

    def __init__(self, settings: ClassifierSettings, sample_rate: int, window_ms: int) -> None:
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample rate {sample_rate} not supported (8000 or 16000)")
        self.settings = settings
        self.sample_rate = sample_rate
        self.frame_size = frame_bytes(sample_rate)
        self.frames_per_window = max(1, window_ms // FRAME_MS)
        self.window_bytes = self.frames_per_window * self.frame_size
        self._a = _Analysis(sample_rate)
        self._pending = bytearray()
        self._last_frame = np.zeros(self._a.frame)
        # the last seconds of frame powers (broadband and in-band)
        self._keep = max(HISTORY_MS // FRAME_MS, self.frames_per_window)
        self._powers = np.zeros(0)
        self._band_powers = np.zeros(0)
        windows = max(1, -(-HISTORY_MS // (self.frames_per_window * FRAME_MS)))
        self._spectrum_floors: deque[Floats] = deque(maxlen=windows)
        self._envelope = np.zeros(0)
        self._last_env = 0.0
        self._speaking = False
        self._empty_run = 0
        # Digital silence (a silent caller, a line muted): a window of zero bytes moves the
        # history on without decoding it, and once every kept frame is a pause the measures
        # repeat (the same history in, the same measures out), so they are kept.
        self._zero = bytes(self.window_bytes)
        self._zero_frame = np.zeros(self._a.frame)
        self._steady: Measures | None = None

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
        measures = self._measure(window)
        out = classify_features(measures, self.settings, speaking=self._speaking)
        self._speaking = out.speech
        return out

    def _measure(self, window: bytes) -> Measures:
        """One window's measures; the floor, envelope and history move on by it."""
        if window == self._zero and self.settings.silence_dbfs > FLOOR_DBFS:
            return self._measure_zero()
        self._steady = None
        a, s = self._a, self.settings
        n = self.frames_per_window
        frames = np.frombuffer(window, dtype="<i2").astype(np.float64) / 32768.0
        frames = frames.reshape(n, a.frame)
        previous = np.vstack([self._last_frame[None, :], frames[:-1]])
        self._last_frame = frames[-1].copy()
        # Nothing in it: digital zero (a lost packet filled with silence, or a digitally silent
        # line between words) or a codec's idle pattern (A-law's ±8).
        valid = np.max(np.abs(frames), axis=1) > EMPTY_PEAK
        pause = self._pause_frames(~valid)
        power = np.mean(frames * frames, axis=1)[valid]
        level = db(float(np.mean(_loud_third(power)))) if power.size else FLOOR_DBFS
        if level < s.silence_dbfs:
            self._remember(power, power, pause)
            self._hold_envelope(n)
            return self._floor_measures(level, n, with_snr=False)

        # 40 ms analysis frames (the previous 20 ms and this one), tapered, one FFT each
        spec = np.fft.rfft(np.hstack([previous[valid], frames[valid]]) * a.hann, a.nfft)
        psd = spec.real**2 + spec.imag**2
        band = psd[:, a.lo : a.hi]
        band_power = np.sum(band, axis=1) * a.power_scale + _TINY
        self._remember(power, band_power, pause)
        band_floor = _floor(self._band_powers)
        per_bin = np.partition(band, band.shape[0] // 5, axis=0)[band.shape[0] // 5]
        self._spectrum_floors.append(np.maximum(_smooth_bins(per_bin, 2), _TINY))
        spectrum_floor = np.minimum.reduce(list(self._spectrum_floors))

        over = band_power >= 2.0 * band_floor  # the frames 3 dB or more over the floor
        # Pitch of those frames only (each frame's is its own): a steady line's hiss has few
        # of them, and the whitening and inverse FFT of every frame were half of a window's cost.
        pitch = _pitch_strength(psd[over], a) if np.any(over) else np.zeros(0)
        voicing = float(np.percentile(pitch, 80)) if pitch.size else 0.0
        voiced = float(np.sum(pitch >= s.voiced_frame)) / n
        flatness = _flatness(band[over], spectrum_floor) if np.any(over) else 1.0

        env = np.full(n, np.nan)
        env[valid] = np.maximum(10.0 * np.log10(band_power / band_floor), 0.0)
        modulation = self._modulation(env)
        base = self._floor_measures(level, n, with_snr=True)
        return Measures(level, base.floor_dbfs, base.snr_db, base.floor_spread_db, voicing,
                        flatness, modulation, voiced, n)

    def _measure_zero(self) -> Measures:
        """A window of digital zero, as `_measure` takes it (every frame empty, nothing to
        analyse) without decoding it."""
        n = self.frames_per_window
        self._last_frame = self._zero_frame
        run = self._empty_run + n
        self._empty_run = run
        if self._steady is not None:
            return self._steady
        # every frame empty: all of them lie in a pause once the run reaches PAUSE_FRAMES
        # within the window (_pause_frames), none if it does not
        pause = n if run >= PAUSE_FRAMES else 0
        self._remember(_NOTHING, _NOTHING, pause)
        self._hold_envelope(n)
        measures = self._floor_measures(FLOOR_DBFS, n, with_snr=False)
        if (self._powers.size == self._keep and np.all(self._powers == PAUSE_POWER)
                and np.all(self._band_powers == PAUSE_POWER)
                and self._envelope.size == ENVELOPE_FRAMES
                and np.all(self._envelope == self._last_env)):
            self._steady = measures  # the next zero windows leave all of it as it is
        return measures

    # -- the floor and the envelope ---------------------------------------------------------

    def _floor_measures(self, level: float, n: int, *, with_snr: bool) -> Measures:
        if not self._powers.size:
            return Measures(level, frames=n)
        floor = _floor(self._powers)
        snr = 0.0
        if with_snr:
            loud = self._powers[self._powers >= 2.0 * floor]
            speech = float(np.mean(loud)) - floor if loud.size else 0.0
            snr = db(speech) - db(floor) if speech > 0 else 0.0
        k = max(1, int(self._powers.size * QUIET_SHARE))
        quiet = np.partition(self._powers, [k // 6, k - 1])
        spread = db(float(quiet[k - 1])) - db(float(quiet[k // 6]))
        return Measures(level, db(floor), snr, spread, frames=n)

    def _remember(self, power: Floats, band_power: Floats, pause: int) -> None:
        silent = np.full(pause, PAUSE_POWER)
        self._powers = np.concatenate([self._powers, power, silent])[-self._keep :]
        self._band_powers = np.concatenate([self._band_powers, band_power, silent])[
            -self._keep :
        ]

    def _pause_frames(self, empty: npt.NDArray[np.bool_]) -> int:
        """How many of the window's empty frames lie in runs of `PAUSE_FRAMES` or more (a run
        may have begun in the window before)."""
        count, run, here = 0, self._empty_run, 0
        for is_empty in empty.tolist():
            run, here = (run + 1, here + 1) if is_empty else (0, 0)
            if run == PAUSE_FRAMES:
                count += here  # the run's frames in this window so far
            elif run > PAUSE_FRAMES:
                count += 1
        self._empty_run = run
        return count

    def _hold_envelope(self, n: int) -> None:
        held = np.full(n, self._last_env)
        self._envelope = np.concatenate([self._envelope, held])[-ENVELOPE_FRAMES:]

    def _modulation(self, env: Floats) -> float:
        """RMS (dB) of the envelope's 2-8 Hz part over the last frames (lost ones held)."""
        known = ~np.isnan(env)
        held = np.maximum.accumulate(np.where(known, np.arange(env.size), -1))
        filled = np.where(held >= 0, env[np.maximum(held, 0)], self._last_env)
        self._last_env = float(filled[-1])
        keep = max(ENVELOPE_FRAMES, filled.size)
        self._envelope = np.concatenate([self._envelope, filled])[-keep:]
        e = self._envelope - np.mean(self._envelope)
        taper, syllabic, taper_energy = _envelope_analysis(e.size)
        spectrum = np.abs(np.fft.rfft(e * taper)) ** 2
        return float(np.sqrt(2.0 * np.sum(spectrum[syllabic]) / taper_energy / e.size))


@functools.lru_cache(maxsize=8)
def _envelope_analysis(size: int) -> tuple[Floats, npt.NDArray[np.bool_], float]:
    """The envelope's taper, its 2-8 Hz bins and the taper's energy, for `size` frames (the
    same every window: made once, not once a window of every call)."""
    taper = np.hanning(size)
    freqs = np.fft.rfftfreq(size, FRAME_MS / 1000.0)
    syllabic = (freqs >= MODULATION_HZ[0]) & (freqs <= MODULATION_HZ[1])
    return taper, syllabic, float(np.sum(taper**2))


def _floor(powers: Floats) -> float:
    """The noise floor: the mean power of the quietest 30 % of the frames."""
    k = max(1, int(powers.size * QUIET_SHARE))
    return max(float(np.mean(np.partition(powers, k - 1)[:k])), _TINY)


def _loud_third(power: Floats) -> Floats:
    k = max(1, power.size // 3)
    return np.partition(power, power.size - k)[power.size - k :]


def _smooth_bins(x: Floats, k: int) -> Floats:
    c = np.cumsum(np.concatenate([[0.0], np.pad(x, k, mode="edge")]))
    return np.asarray((c[2 * k + 1 :] - c[: -2 * k - 1]) / (2 * k + 1), dtype=np.float64)


def _pitch_strength(psd: Floats, a: _Analysis) -> Floats:
    """Per frame: the highest normalised autocorrelation at 60-400 Hz periods of the spectrum
    whitened within the band (the autocorrelation is the inverse FFT of the power spectrum;
    dividing by the taper's own autocorrelation undoes its fall with the lag)."""
    k = a.smooth
    c = np.cumsum(np.pad(psd, ((0, 0), (k + 1, k)), mode="edge"), axis=1)
    envelope = (c[:, 2 * k + 1 :] - c[:, : -2 * k - 1]) / (2 * k + 1)
    white = np.zeros_like(psd)
    white[:, a.lo : a.hi] = psd[:, a.lo : a.hi] / (envelope[:, a.lo : a.hi] + _TINY)
    ac = np.fft.irfft(white, a.nfft)
    peaks = ac[:, a.lags] / (ac[:, :1] + _TINY) / a.taper_ac
    return np.asarray(np.clip(np.max(peaks, axis=1), 0.0, 1.0), dtype=np.float64)


def _flatness(band: Floats, floor: Floats) -> float:
    """Median over frames of the spectral flatness of the frame against the floor spectrum:
    geometric over arithmetic mean of their ratio (about 0.55 for noise, whatever its colour)."""
    ratio = band / floor + _TINY
    geometric = np.exp(np.mean(np.log(ratio), axis=1))
    return float(np.median(geometric / np.mean(ratio, axis=1)))
