"""The generated audio set for the detector: espeak-ng speech, numpy noise, seeded.

Cases: silent (digital silence, faint hiss), normal speech, speech attenuated by 30 dB
(quiet), loud noise, speech under loud noise (noisy). PCM 16-bit mono at `rate`.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

SENTENCES = {
    "zh": "您好,我想查询一下我的账单,上个月的费用好像不太对。",
    "en": "Hello, I would like to check my bill, the amount last month looks wrong to me.",
}
VOICES = {"zh": "cmn", "en": "en-us"}


def speech(lang: str, rate: int) -> np.ndarray:  # type: ignore[type-arg]
    """espeak-ng speech as float samples in [-1, 1], peak-normalised to -3 dBFS."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", VOICES[lang], "-w", str(raw), SENTENCES[lang]],
                       check=True, capture_output=True)
        subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out),
                        "norm", "-3"], check=True, capture_output=True)
        with wave.open(str(out)) as w:
            data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return data.astype(np.float64) / 32768.0


def white(seconds: float, rate: int, dbfs: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(int(seconds * rate)) * (10 ** (dbfs / 20))


def to_pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def cases(rate: int, seed: int = 7) -> dict[str, tuple[str, bytes]]:
    """name -> (expected class, PCM)."""
    out: dict[str, tuple[str, bytes]] = {}
    for i, lang in enumerate(SENTENCES):
        s = speech(lang, rate)
        n = len(s)
        out[f"speech_{lang}"] = ("normal", to_pcm(s + white(n / rate, rate, -70, seed + i)))
        faint = s * 10 ** (-30 / 20)  # the same speech, 30 dB down
        out[f"quiet_{lang}"] = ("quiet", to_pcm(faint + white(n / rate, rate, -75, seed + i)))
        drowned = s * 0.3 + white(n / rate, rate, -12, seed + 10 + i)
        out[f"speech_in_noise_{lang}"] = ("noisy", to_pcm(drowned))
    out["digital_silence"] = ("silent", bytes(2 * rate * 4))
    out["faint_hiss"] = ("silent", to_pcm(white(4, rate, -65, seed + 20)))
    out["loud_noise"] = ("noisy", to_pcm(white(4, rate, -15, seed + 21)))
    out["moderate_noise"] = ("noisy", to_pcm(white(4, rate, -30, seed + 22)))
    return out
