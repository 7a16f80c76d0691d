"""The line-watch evaluation set: labelled caller audio, generated at run time, reproducibly.

Speech comes from espeak-ng (Mandarin `cmn` and `cmn-latn-pinyin`, English `en-us` and
`en-gb`, male and female variants, 130-200 words per minute, varied sentences); noise from
seeded numpy (white, pink, brown, babble of six overlapping espeak talkers, street: 50 Hz mains
hum with harmonics over low-passed traffic rumble, line hiss, comfort noise). Each condition is
mixed at its levels, sent through a codec (G.711 µ-law or A-law, GSM 06.10 through sox, or 16 kHz
signed linear), then through the network (20 ms frames lost and filled with silence, repeated,
or dropped; jitter reorders frames), and labelled with the class the PRODUCT should choose, per
the labelling policy of docs/line_watch.md (`expected_kind`).

Used by tests/unit/test_audio_classifier.py (a fast subset) and
benchmarks/bench_line_watch_eval.py (the full set). espeak-ng renders are cached on disk
outside the repository (`$CTI_AUDIO_EVAL_CACHE`, default ~/.cache/cti-audio-eval); nothing
large is committed.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import shutil
import subprocess
import tempfile
import wave
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cti.domain.audio_classifier import AudioClassifier, ClassifierSettings, WindowFeatures
from tests.e2e.media import alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear

Float = npt.NDArray[np.float64]
Pcm = npt.NDArray[np.int16]

KINDS = ("silent", "quiet", "noisy", "normal")
FRAME_MS = 20

# --- the labelling policy (docs/line_watch.md) -----------------------------------------------

NORMAL_DBFS = -20.0  # a normal talker: active speech RMS
# Speech at most this far below a normal talker is normal, 15 dB and more below is quiet.
NORMAL_RANGE_DB = 10.0
# Noise at or above this level is loud (the agent hears it); below it, it is line hiss.
LOUD_NOISE_DBFS = -42.5
# Speech at most this far above loud noise is drowned in it: a noisy line.
NOISY_SNR_DB = 5.0
# A window is a speech window when at least this share of its frames carry the caller's speech.
SPEECH_SHARE = 0.2


def expected_kind(speech_dbfs: float | None, noise_dbfs: float | None) -> str:
    """The class the product should choose for a window: the caller's speech at `speech_dbfs`
    (active speech RMS, None: not speaking) over noise at `noise_dbfs` (RMS, None: none)."""
    loud_noise = noise_dbfs is not None and noise_dbfs >= LOUD_NOISE_DBFS
    if speech_dbfs is None:
        return "noisy" if loud_noise else "silent"
    if loud_noise and noise_dbfs is not None and speech_dbfs - noise_dbfs <= NOISY_SNR_DB:
        return "noisy"
    return "normal" if speech_dbfs >= NORMAL_DBFS - NORMAL_RANGE_DB else "quiet"


# --- voices and sentences --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Voice:
    espeak: str  # espeak-ng voice, with a variant (+f2: female)
    text: str  # "zh" (characters), "pinyin" (tone numbers), "en"
    wpm: int


VOICES = (
    Voice("cmn", "zh", 150),
    Voice("cmn+f2", "zh", 175),
    Voice("cmn-latn-pinyin+m3", "pinyin", 130),
    Voice("cmn-latn-pinyin+f4", "pinyin", 200),
    Voice("en-us", "en", 160),
    Voice("en-us+f3", "en", 190),
    Voice("en-gb+m3", "en", 140),
    Voice("en-gb+f2", "en", 200),
)

SENTENCES = {
    "zh": (
        "您好,我想查询一下我的账单,上个月的费用好像不太对。",
        "我的宽带从昨天晚上开始就一直连不上。",
        "请帮我把套餐改成每个月五十元的那个。",
        "我上周寄出的快递到现在还没有收到。",
        "麻烦你再说一遍,我这边信号不太好。",
        "我想开通国际漫游,下个星期要出差。",
    ),
    "pinyin": (
        "ni3 hao3, wo3 xiang3 cha2 xun2 yi1 xia4 wo3 de zhang4 dan1.",
        "wo3 de dian4 hua4 zui4 jin4 zong3 shi4 diao4 xian4.",
        "qing3 wen4 ni3 men2 de ying2 ye4 ting1 ji3 dian3 kai1 men2?",
        "wo3 yi3 jing1 deng3 le5 hen3 jiu3 le5, qing3 kuai4 yi1 dian3.",
        "zhe4 ge4 yue4 de fei4 yong4 bi3 shang4 ge4 yue4 duo1 le5 hen3 duo1.",
    ),
    "en": (
        "Hello, I would like to check my bill, the amount last month looks wrong to me.",
        "My internet connection has been down since yesterday evening.",
        "Could you please change my plan to the cheaper one?",
        "I sent a parcel last week and it still has not arrived.",
        "Sorry, could you say that again, the line is not very good here.",
        "I need to activate roaming because I am travelling next week.",
        "Yes, my account number is four five six, seven eight nine.",
    ),
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (scripts/install installs it)")
    return path


def _cache_dir() -> Path | None:
    root = os.environ.get("CTI_AUDIO_EVAL_CACHE") or str(Path.home() / ".cache" / "cti-audio-eval")
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path


@functools.lru_cache(maxsize=512)
def utterance(voice: Voice, text: str, rate: int) -> Float:
    """One sentence spoken by `voice`, at `rate` Hz, trimmed, as floats in [-1, 1]."""
    key = hashlib.sha256(f"v1|{voice}|{text}|{rate}".encode()).hexdigest()[:24]
    cache = _cache_dir()
    cached = cache / f"{key}.npy" if cache else None
    if cached is not None and cached.exists():
        pcm = np.load(cached)
    else:
        with tempfile.TemporaryDirectory(prefix="cti-eval-") as tmp:
            raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
            subprocess.run([_tool("espeak-ng"), "-v", voice.espeak, "-s", str(voice.wpm),
                            "-w", str(raw), text], check=True, capture_output=True)
            subprocess.run([_tool("sox"), str(raw), "-r", str(rate), "-c", "1", "-b", "16",
                            str(out)], check=True, capture_output=True)
            with wave.open(str(out)) as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").copy()
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 100)
        pcm = pcm[loud[0] : loud[-1] + 1] if loud.size else pcm[:0]
        if cached is not None:
            tmp_path = cached.with_suffix(".tmp.npy")
            np.save(tmp_path, pcm)
            tmp_path.replace(cached)
    return pcm.astype(np.float64) / 32768.0


def talker(voice: Voice, seconds: float, rate: int, rng: np.random.Generator,
           gap: tuple[float, float] = (0.15, 0.5)) -> Float:
    """A caller speaking for `seconds`: sentences in random order, short pauses between."""
    parts: list[Float] = []
    total = 0
    sentences = SENTENCES[voice.text]
    order = list(rng.permutation(len(sentences)))
    while total < seconds * rate:
        if not order:
            order = list(rng.permutation(len(sentences)))
        parts.append(utterance(voice, sentences[order.pop()], rate))
        parts.append(np.zeros(int(rng.uniform(*gap) * rate)))
        total += parts[-1].size + parts[-2].size
    offset = int(rng.uniform(0, 0.3) * rate)  # start somewhere in the first sentence
    return np.concatenate(parts)[offset : offset + int(seconds * rate)]


def frame_energies(x: Float, rate: int) -> Float:
    n = rate * FRAME_MS // 1000
    frames = x[: x.size // n * n].reshape(-1, n)
    return np.asarray(np.mean(frames * frames, axis=1), dtype=np.float64)


def speech_activity(x: Float, rate: int) -> npt.NDArray[np.bool_]:
    """Per 20 ms frame: carries speech (within 35 dB of the talker's loud frames)."""
    e = frame_energies(x, rate)
    if not np.any(e > 0):
        return np.zeros(e.size, dtype=np.bool_)
    top = float(np.percentile(e[e > 0], 95))
    return np.asarray(e > top * 10 ** (-35 / 10), dtype=np.bool_)


def active_rms(x: Float, rate: int) -> float:
    """Active speech level (RMS over the frames that carry speech, as ITU-T P.56 means it)."""
    e = frame_energies(x, rate)
    active = speech_activity(x, rate)
    return float(np.sqrt(np.mean(e[active]))) if np.any(active) else 0.0


def at_dbfs(x: Float, dbfs: float, level: float) -> Float:
    """`x` (whose level is `level`, linear RMS) scaled to `dbfs`."""
    return x * (10 ** (dbfs / 20) / level) if level > 0 else x


def rms(x: Float) -> float:
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


# --- noise -----------------------------------------------------------------------------------

NOISES = ("white", "pink", "brown", "babble", "street")
LINE_NOISES = ("hiss", "comfort")
BANK_SECONDS = 30.0


def _shaped(n: int, rate: int, rng: np.random.Generator, gain: Callable[[Float], Float]) -> Float:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    out = np.fft.irfft(spec * gain(f), n)
    return out / rms(out)


def _pink_gain(f: Float) -> Float:
    return np.where(f < 20, 0.0, 1 / np.sqrt(np.maximum(f, 20)))


def _brown_gain(f: Float) -> Float:
    return np.where(f < 20, 0.0, 1 / np.maximum(f, 20))


def _traffic_gain(f: Float) -> Float:
    # rumble: 1/f above 30 Hz, low-passed (4th order) around 700 Hz
    return np.where(f < 30, 0.0, 1 / np.maximum(f, 30)) / (1 + (f / 700) ** 4)


def _comfort_gain(f: Float) -> Float:
    return 1 / np.sqrt(1 + (f / 1500) ** 2)  # a gently sloping hiss, as CNG spectra are


def _hum(n: int, rate: int, rng: np.random.Generator) -> Float:
    t = np.arange(n) / rate
    out = np.zeros(n)
    for h in range(1, 10):  # 50 Hz mains and its harmonics, odd ones stronger
        amp = (1.0 if h % 2 else 0.4) / h
        out += amp * np.sin(2 * np.pi * 50 * h * t + rng.uniform(0, 2 * np.pi))
    return out / rms(out)


def _babble(n: int, rate: int, rng: np.random.Generator, talkers: int = 6) -> Float:
    out = np.zeros(n)
    for i in range(talkers):
        voice = VOICES[(i * 3 + int(rng.integers(len(VOICES)))) % len(VOICES)]
        x = talker(voice, n / rate + 1, rate, rng, gap=(0.05, 0.25))[:n]
        x = np.roll(np.pad(x, (0, n - x.size)), int(rng.integers(n)))
        out += x / max(active_rms(x, rate), 1e-9)
    return out / rms(out)


@functools.lru_cache(maxsize=64)
def noise_bank(kind: str, rate: int, seed: int) -> Float:
    """`BANK_SECONDS` of a noise at RMS 1 (0 dBFS); conditions take random stretches of it."""
    rng = np.random.default_rng([seed, rate, *kind.encode()])
    n = int(BANK_SECONDS * rate)
    if kind in ("white", "hiss"):
        return rng.standard_normal(n)
    if kind == "pink":
        return _shaped(n, rate, rng, _pink_gain)
    if kind == "brown":
        return _shaped(n, rate, rng, _brown_gain)
    if kind == "babble":
        return _babble(n, rate, rng)
    if kind == "street":
        traffic = _shaped(n, rate, rng, _traffic_gain)
        t = np.arange(n) / rate
        cars = np.full(n, 0.4)  # vehicles passing: a swell every few seconds
        for at in np.cumsum(rng.uniform(2.0, 6.0, int(BANK_SECONDS / 2))):
            cars += rng.uniform(0.5, 1.5) * np.exp(-0.5 * ((t - at) / rng.uniform(0.7, 1.5)) ** 2)
        out = traffic * cars + 0.5 * _hum(n, rate, rng)
        return out / rms(out)
    if kind == "comfort":
        out = _shaped(n, rate, rng, _comfort_gain)
        # comfort noise follows SID updates: its level steps a little every 100-300 ms
        steps = np.cumsum(rng.integers(int(0.1 * rate), int(0.3 * rate), n // (rate // 10)))
        steps = steps[steps < n]
        gains = 10 ** (rng.uniform(-1.5, 1.5, steps.size + 1) / 20)
        out *= gains[np.searchsorted(steps, np.arange(n), side="right")]
        return out / rms(out)
    raise ValueError(f"unknown noise {kind!r}")


def noise(kind: str, n: int, rate: int, rng: np.random.Generator, bank_seed: int = 0) -> Float:
    bank = noise_bank(kind, rate, bank_seed)
    start = int(rng.integers(0, bank.size - n))
    return bank[start : start + n]


# --- codecs and the network -------------------------------------------------------------------

CODECS = ("pcmu", "pcma", "gsm", "slin16")
LOSSES = ("none", "zero1", "repeat3", "zero5_jitter", "drop5")


def codec_rate(codec: str) -> int:
    return 16000 if codec == "slin16" else 8000


def to_pcm(x: Float) -> Pcm:
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


def gsm_round_trip(pcms: Sequence[Pcm]) -> list[Pcm]:
    """GSM 06.10 full rate, encoded and decoded by sox, in one pipe for many clips (each is
    padded to whole 20 ms frames, so the codec's frames do not straddle two clips)."""
    if not pcms:
        return []
    lengths = [p.size for p in pcms]
    padded = [np.pad(p, (0, -p.size % 160)) for p in pcms]
    raw = np.concatenate(padded).astype("<i2").tobytes()
    fmt = ["-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1"]
    enc = subprocess.run([_tool("sox"), *fmt, "-", "-t", "gsm", "-"], input=raw,
                         check=True, capture_output=True).stdout
    dec = subprocess.run([_tool("sox"), "-t", "gsm", "-r", "8000", "-", *fmt, "-"], input=enc,
                         check=True, capture_output=True).stdout
    out = np.frombuffer(dec, "<i2").astype(np.int16)
    result, at = [], 0
    for p, n in zip(padded, lengths, strict=True):
        result.append(out[at : at + n].copy())
        at += p.size
    return result


def g711(pcm: Pcm, codec: str) -> Pcm:
    if codec == "pcmu":
        return ulaw_to_linear(linear_to_ulaw(pcm))
    if codec == "pcma":
        return alaw_to_linear(linear_to_alaw(pcm))
    return pcm


def network(pcm: Pcm, speech: npt.NDArray[np.bool_], rate: int, loss: str,
            rng: np.random.Generator) -> tuple[Pcm, npt.NDArray[np.bool_]]:
    """20 ms frames lost (`zeroN`: filled with silence, `repeatN`: the last frame repeated as
    packet-loss concealment, `dropN`: gone, the stream shorter) in bursts of 1-2, and with
    `_jitter`, late frames played out of order. `speech` (per frame) follows the audio."""
    n = rate * FRAME_MS // 1000
    frames = pcm[: pcm.size // n * n].reshape(-1, n).copy()
    mask = speech[: frames.shape[0]].copy()
    if loss == "none":
        return frames.reshape(-1), mask
    base = loss.split("_")[0]
    mode, percent = base.rstrip("0123456789"), int(base.lstrip("abcdefghijklmnopqrstuvwxyz"))
    lost = np.zeros(frames.shape[0], dtype=np.bool_)
    starts = np.flatnonzero(rng.random(frames.shape[0]) < percent / 100 / 1.3)
    lost[starts] = True
    burst = starts[rng.random(starts.size) < 0.3] + 1
    lost[burst[burst < lost.size]] = True
    lost[0] = False
    if "jitter" in loss:  # a late frame swaps places with the next one
        for i in np.flatnonzero(rng.random(frames.shape[0] - 1) < 0.02):
            frames[[i, i + 1]] = frames[[i + 1, i]]
            mask[[i, i + 1]] = mask[[i + 1, i]]
    if mode == "zero":
        frames[lost] = 0
        mask[lost] = False
    elif mode == "repeat":
        for i in np.flatnonzero(lost):
            frames[i] = frames[i - 1]
            mask[i] = mask[i - 1]
    elif mode == "drop":
        frames, mask = frames[~lost], mask[~lost]
    else:
        raise ValueError(f"unknown loss {loss!r}")
    return frames.reshape(-1), mask


# --- conditions --------------------------------------------------------------------------------

SPEECH_DOWN_DB = (0, 5, 15, 25, 35, 40, 45)  # the caller's level below a normal talker
SNRS_DB = (20, 10, 5, 0)
LINE_NOISE_DBFS = -68.0  # speech over a line's own comfort noise, whatever its level
LOUD_NOISE_LEVELS = (-25.0, -35.0)
FAINT_LINE_LEVELS = {"hiss": (-50.0, -55.0, -60.0, -65.0, -70.0), "comfort": (-55.0, -65.0, -70.0)}
FAINT_NOISES = ("pink", "brown", "street")  # at -55 dBFS: far-away rumble, line noise
CLIP_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Condition:
    """One line condition: the caller's speech (`down_db` below normal; None: not speaking),
    a noise (`snr_db` under the speech, or at `noise_dbfs`), a codec and a network."""

    down_db: float | None
    noise: str | None  # NOISES, LINE_NOISES, "line" (comfort noise at LINE_NOISE_DBFS) or None
    snr_db: float | None
    noise_dbfs: float | None
    codec: str
    loss: str
    voice: Voice
    seed: int
    seconds: float = CLIP_SECONDS

    @property
    def speech_dbfs(self) -> float | None:
        return None if self.down_db is None else NORMAL_DBFS - self.down_db

    @property
    def noise_level(self) -> float | None:
        if self.noise is None:
            return None
        if self.noise_dbfs is not None:
            return self.noise_dbfs
        if self.noise == "line":
            return LINE_NOISE_DBFS
        assert self.speech_dbfs is not None
        assert self.snr_db is not None
        return self.speech_dbfs - self.snr_db

    @property
    def present(self) -> bool:
        """The caller is there and speaking."""
        return self.down_db is not None

    @property
    def label(self) -> str:
        return expected_kind(self.speech_dbfs, self.noise_level)

    @property
    def group(self) -> str:
        """The condition group the tables report on."""
        if self.down_db is None:
            if self.noise is None:
                return "digital silence"
            if self.label == "noisy":
                return "loud noise alone"
            return "line hiss / comfort noise"
        level = ("normal" if self.down_db <= NORMAL_RANGE_DB else
                 "quiet -15..-25" if self.down_db <= 25 else "quiet -35..-45")
        if self.noise is None or self.noise == "line":
            return f"speech {level}, clean"
        if self.label == "noisy":
            return f"speech in {self.noise}, SNR<=5 (noisy)"
        assert self.snr_db is not None
        return f"speech {level}, {self.noise} SNR{'>=10' if self.snr_db >= 10 else '<=5 faint'}"

    @property
    def name(self) -> str:
        speech = "nobody" if self.down_db is None else f"speech-{self.down_db:g}dB"
        if self.noise is None:
            noise = "clean"
        elif self.snr_db is not None:
            noise = f"{self.noise}@snr{self.snr_db:g}"
        else:
            noise = f"{self.noise}@{self.noise_level:g}dBFS"
        return f"{speech}/{noise}/{self.codec}/{self.loss}/{self.voice.espeak}"


def speech_conditions(codecs: Iterable[str], losses: Iterable[str], seed: int = 0,
                      downs: Iterable[float] = SPEECH_DOWN_DB,
                      noises: Iterable[str | None] = (None, "line", *NOISES),
                      snrs: Iterable[float] = SNRS_DB) -> list[Condition]:
    out = []
    combos = itertools.product(list(downs), list(noises), list(codecs), list(losses))
    for i, (down, kind, codec, loss) in enumerate(combos):
        for snr in (list(snrs) if kind in NOISES else [None]):
            voice = VOICES[(i + len(out)) % len(VOICES)]
            out.append(Condition(down, kind, snr, None, codec, loss, voice, seed + len(out)))
    return out


def noise_conditions(codecs: Iterable[str], losses: Iterable[str], seed: int = 0,
                     loud: Iterable[str] = NOISES) -> list[Condition]:
    levels: list[tuple[str | None, float | None]] = [(None, None)]
    levels += [(k, lvl) for k in loud for lvl in LOUD_NOISE_LEVELS]
    levels += [(k, lvl) for k, lvls in FAINT_LINE_LEVELS.items() for lvl in lvls]
    levels += [(k, -55.0) for k in FAINT_NOISES]
    out = []
    for (kind, level), codec, loss in itertools.product(levels, codecs, losses):
        out.append(Condition(None, kind, None, level, codec, loss, VOICES[0], seed + 10_000 +
                             len(out)))
    return out


def quick_set(seed: int = 0, seconds: float = 6.0) -> list[Condition]:
    """A fast subset for the unit suite: every group, level and noise, a few SNRs, with the
    codecs and networks taken in turn (each condition through one of them)."""
    speech: list[tuple[float | None, str | None, float | None, float | None]] = []
    for down in (0, 15, 35, 40, 45):
        speech += [(down, None, None, None), (down, "line", None, None)]
        speech += [(down, k, snr, None) for k, snr in (
            ("white", 20), ("white", 5), ("white", 0), ("pink", 10), ("brown", 5),
            ("babble", 10), ("babble", 5), ("street", 20), ("street", 0))]
    alone: list[tuple[float | None, str | None, float | None, float | None]] = [
        (None, None, None, None), (None, "hiss", None, -50.0), (None, "hiss", None, -60.0),
        (None, "hiss", None, -70.0), (None, "comfort", None, -65.0), (None, "brown", None, -55.0),
        (None, "street", None, -55.0), (None, "white", None, -25.0), (None, "babble", None, -30.0),
        (None, "street", None, -35.0), (None, "pink", None, -35.0),
    ]
    out = []
    for i, (down, kind, snr, level) in enumerate(speech + alone):
        codec = CODECS[i % len(CODECS)]
        loss = LOSSES[i // len(CODECS) % len(LOSSES)]
        voice = VOICES[(5 * i + i // len(CODECS)) % len(VOICES)]
        out.append(Condition(down, kind, snr, level, codec, loss, voice, seed + i, seconds))
    return out


def full_set(seed: int = 0) -> list[Condition]:
    """Every speech level x noise x SNR, the noises alone, line hiss and comfort noise, digital
    silence; each through every codec and network."""
    return speech_conditions(CODECS, LOSSES, seed) + noise_conditions(CODECS, LOSSES, seed)


# --- rendering -------------------------------------------------------------------------------


@dataclass(slots=True)
class Clip:
    condition: Condition
    rate: int
    pcm: bytes  # 16-bit little-endian mono, as the tap delivers it after decoding
    speech: npt.NDArray[np.bool_]  # per 20 ms frame: the caller's speech is in it

    def truth(self, window_ms: int) -> list[str]:
        """The expected class of each window the classifier will return."""
        c = self.condition
        per = max(1, window_ms // FRAME_MS)
        frames = len(self.pcm) // (self.rate * FRAME_MS // 1000 * 2)
        out = []
        for w in range(frames // per):
            share = float(np.mean(self.speech[w * per : (w + 1) * per])) if c.present else 0.0
            speaking = c.speech_dbfs if share >= SPEECH_SHARE else None
            out.append(expected_kind(speaking, c.noise_level))
        return out


def _mix(c: Condition) -> tuple[Pcm, npt.NDArray[np.bool_]]:
    rate = codec_rate(c.codec)
    rng = np.random.default_rng(c.seed)
    n = int(c.seconds * rate)
    x = np.zeros(n)
    speech = np.zeros(n // (rate * FRAME_MS // 1000), dtype=np.bool_)
    if c.speech_dbfs is not None:
        s = talker(c.voice, c.seconds, rate, rng)
        s = np.pad(s, (0, n - s.size))
        speech = speech_activity(s, rate)
        x += at_dbfs(s, c.speech_dbfs, active_rms(s, rate))
    level = c.noise_level
    if c.noise is not None and level is not None:
        kind = "comfort" if c.noise == "line" else c.noise
        x += noise(kind, n, rate, rng) * 10 ** (level / 20)
    return to_pcm(x), speech


def render(conditions: Sequence[Condition]) -> list[Clip]:
    """The clips of `conditions`, in order (GSM clips go through sox together)."""
    mixed = [_mix(c) for c in conditions]
    gsm_idx = [i for i, c in enumerate(conditions) if c.codec == "gsm"]
    coded = [g711(pcm, c.codec) for c, (pcm, _) in zip(conditions, mixed, strict=True)]
    for start in range(0, len(gsm_idx), 200):
        chunk = gsm_idx[start : start + 200]
        for i, pcm in zip(chunk, gsm_round_trip([mixed[i][0] for i in chunk]), strict=True):
            coded[i] = pcm
    clips = []
    for c, pcm, (_, speech) in zip(conditions, coded, mixed, strict=True):
        rng = np.random.default_rng([c.seed, 1])
        out, mask = network(pcm, speech, codec_rate(c.codec), c.loss, rng)
        clips.append(Clip(c, codec_rate(c.codec), out.astype("<i2").tobytes(), mask))
    return clips


# --- scoring ---------------------------------------------------------------------------------

# Silence this long on a present caller starts the silent-call procedure (detection
# .silence_seconds), whose end is a hang-up: the classifier must never get there.
HANGUP_RISK_SECONDS = 5.0


@dataclass(slots=True)
class Scored:
    clip: Clip
    truth: list[str]
    kinds: list[str]
    features: list[WindowFeatures] = field(default_factory=list)

    @property
    def longest_silent_run(self) -> int:
        best = run = 0
        for kind in self.kinds:
            run = run + 1 if kind == "silent" else 0
            best = max(best, run)
        return best


def score(clips: Iterable[Clip], settings: ClassifierSettings | None = None,
          window_ms: int = 1000) -> list[Scored]:
    """Each clip through a fresh classifier (one watched call), window by window."""
    out = []
    for clip in clips:
        windows = AudioClassifier(settings or ClassifierSettings(), clip.rate, window_ms).feed(
            clip.pcm
        )
        out.append(Scored(clip, clip.truth(window_ms), [w.kind for w in windows], windows))
    return out


def confusion(scored: Iterable[Scored]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for s in scored:
        out.update(zip(s.truth, s.kinds, strict=False))
    return out


def accuracy(matrix: Counter[tuple[str, str]]) -> float:
    total = sum(matrix.values())
    return sum(matrix[(k, k)] for k in KINDS) / total if total else 1.0


def hangup_risks(scored: Iterable[Scored], window_ms: int) -> list[Scored]:
    """Present callers whose windows were silent long enough to start the silent-call
    procedure (`HANGUP_RISK_SECONDS` in a row)."""
    limit = max(1, round(HANGUP_RISK_SECONDS * 1000 / window_ms))
    return [s for s in scored if s.clip.condition.present and s.longest_silent_run >= limit]
