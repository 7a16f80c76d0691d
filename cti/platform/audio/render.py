"""Render the phrase library to sound files Asterisk plays as `sound:custom/<file>`.

espeak-ng speaks the text at a natural pace (see docs/prompts.md): Mandarin with the
`cmn-latn-pinyin` voice, English with `en-us`, each run of the other script inside a text in
the other voice (SSML). sox band-limits it for the telephone (gentle high-pass and low-pass,
`rate -v` to 8 kHz); then the samples are trimmed to the first and last audible sample (the
waits of the procedures are what the caller hears, so a prompt carries no silence of its own)
and set to an active speech level of -20 dBFS with peaks below -1 dBFS. A file in
scripts_lib/audio/recorded/<file>.wav replaces the rendered one and goes through the same chain
from sox on. Only changed items are rendered again (a manifest keeps each file's text hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
import wave
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt

from cti.domain.phrases import RenderItem
from cti.platform.errors import CtiError

Samples = npt.NDArray[np.float64]

# Mandarin: `cmn` of espeak-ng 1.51 (Debian 12) reads most characters as pinyin with tone
# numbers in its English voice ("nin two hao three"); `cmn-latn-pinyin` speaks them in Mandarin
# but would read Latin words as pinyin too, so those go to the English voice (SSML, below); and
# the English voice says "Chinese letter" for a Han character, so Han runs in an English text
# go to the Mandarin voice.
VOICES = {"zh": "cmn-latn-pinyin", "en": "en-us"}
_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z0-9 .,'!?&-]*[A-Za-z.!?]|[A-Za-z]")
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
_HAN_RUN = re.compile(rf"[{_HAN}][{_HAN}0-9\u3000-\u303f\uff01-\uff5e,!?;:]*")
# Inside Mandarin, ASCII punctuation glued to a character is no clause boundary for espeak-ng
# (no pause, no phrase-final tone); the full-width forms are.
_TO_FULL_WIDTH = {",": "，", "!": "！", "?": "？", ";": "；", ":": "：", ".": "。"}
_ZH_ASCII_PUNCT = re.compile(r"[,!?;:]|\.(?![0-9])")
_CLAUSE_END = {"zh": re.compile(r"[，、；：]"), "en": re.compile(r"[,;:](?=\s)")}
_SENTENCE_END = {"zh": re.compile(r"[。！？]"), "en": re.compile(r"[.!?](?=\s+[A-Z]|\s*$)")}


@dataclass(frozen=True, slots=True)
class Pace:
    """How one language is spoken: espeak-ng's speed `-s` (its own words-per-minute scale,
    not comparable across languages) and the pauses added to espeak-ng's own at a comma and at
    the end of a sentence."""

    speed: int
    comma_ms: int
    stop_ms: int


# Tuned against a person's time (docs/prompts.md, cti/platform/audio/pace.py): over the library,
# pauses included, Mandarin 4.8 syllables/s and English 166 words per minute. The pauses add
# to espeak-ng's own clause pauses (~70 ms at these speeds).
PACE = {"zh": Pace(speed=235, comma_ms=110, stop_ms=220),
        "en": Pace(speed=148, comma_ms=60, stop_ms=160)}
# The agent's greeting (docs/phrases.md#row-1) is said at an agent's routine pace, as agents
# say it on every call (~5 s in Mandarin): its own words only; the company name and the agent
# id's characters (files of their own) keep the ordinary pace, so the id stays clear.
BRISK = {"zh": Pace(speed=340, comma_ms=40, stop_ms=80),
         "en": Pace(speed=220, comma_ms=30, stop_ms=80)}
BRISK_FILES = re.compile(r"^greeting_answer__")
# Pitch range (SSML prosody range, % of the voice's own). espeak-ng's Mandarin tones span only
# ~4 semitones (5th-95th percentile of F0 over a prompt; natural speech and the neural voice
# evaluated in docs/prompts.md: 10-12): doubled, ~8, the tones are told apart more easily.
PITCH_RANGE = {"zh": 200, "en": 100}

SAMPLE_RATE = 8000
# Telephone band: gentle (2-pole) high-pass and low-pass; `rate -v` is sox's steepest
# anti-aliasing filter for the step down to 8 kHz.
BAND = ["highpass", "150", "lowpass", "3400", "rate", "-v", str(SAMPLE_RATE)]
ACTIVE_LEVEL_DBFS = -20.0
PEAK_CEILING_DBFS = -1.0
# Audible: a sample at most 30 dB below the speech's active level. Trimming keeps everything
# from the first such sample to the last, plus EDGE_MS on either side faded in and out.
SILENCE_DBFS = ACTIVE_LEVEL_DBFS - 30.0
EDGE_MS = 2
LIMIT_MS = 2
# A faint lead-in before a loud onset is not heard: a sound is masked by a much louder one that
# follows it within ~30 ms (backward masking). espeak-ng puts ~22 ms of noise at -46 dBFS before
# the burst of a stop (the d of 对, the first sound of every "对不起" prompt); a caller hears the
# prompt start at the burst, so a wait ending on it was heard 22 ms long (issue 12). Cut: a
# lead-in of at most LEAD_IN_MS, before the first frame within ONSET_DB of the active level,
# when the next LEAD_IN_MS hold a frame MASKED_DB louder than the lead-in. A longer faint start
# (the s of "Sorry", ~90 ms) is a consonant the caller hears, and stays.
LEAD_IN_MS = 30
ONSET_DB = 20.0
MASKED_DB = 25.0
RENDER_VERSION = "4"


class RenderError(CtiError):
    error_id = "render_failed"


@dataclass(frozen=True, slots=True)
class RenderResult:
    rendered: int
    reused: int
    recorded: int
    files: int


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RenderError(f"{name} not found on PATH (apt-get install {name})")
    return path


def _run(args: Sequence[str]) -> bytes:
    proc = subprocess.run(list(args), capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[:300]
        raise RenderError(f"{' '.join(args[:3])} ... failed: {err}")
    return proc.stdout


# ----- the text: which voice says what, at which pace ------------------------------------------


def paces_for(file: str) -> Mapping[str, Pace]:
    return BRISK if BRISK_FILES.match(file) else PACE


def runs(text: str, lang: str) -> list[tuple[str, str]]:
    """The text cut into (language, text) runs, each said by that language's voice."""
    if lang not in VOICES:
        raise RenderError(f"no espeak-ng voice for language {lang!r}")
    other, pattern = ("en", _LATIN_RUN) if lang == "zh" else ("zh", _HAN_RUN)
    out: list[tuple[str, str]] = []
    last = 0
    for m in pattern.finditer(text):
        out += [(lang, text[last:m.start()]), (other, m.group())]
        last = m.end()
    out.append((lang, text[last:]))
    return [(run_lang, part) for run_lang, part in out if part.strip()]


def _with_pauses(text: str, lang: str, pace: Pace, *, last: bool) -> str:
    """Escaped SSML text of one run: full-width punctuation in Mandarin, a break after each
    clause and sentence end but the prompt's last (the end of the prompt is trimmed anyway)."""
    if lang == "zh":
        text = _ZH_ASCII_PUNCT.sub(lambda m: _TO_FULL_WIDTH[m.group()], text)
    out, done = [], 0
    marks = sorted([(m.end(), pace.comma_ms) for m in _CLAUSE_END[lang].finditer(text)]
                   + [(m.end(), pace.stop_ms) for m in _SENTENCE_END[lang].finditer(text)])
    for end, ms in marks:
        out.append(escape(text[done:end]))
        if (text[end:].strip() or not last) and ms > 0:
            out.append(f'<break time="{ms}ms"/>')
        done = end
    out.append(escape(text[done:]))
    return "".join(out)


def espeak_args(text: str, lang: str, paces: Mapping[str, Pace] = PACE) -> list[str]:
    """espeak-ng's arguments (after the program name, before `-w FILE`) that say `text`;
    the SSML document is the last one."""
    main = paces[lang]
    parts = []
    # Every run in its own voice element: after a closing </voice> espeak-ng falls back to
    # plain `cmn`, not the voice it was started with. Each language keeps its own pace.
    cut = runs(text, lang)
    for index, (run_lang, part) in enumerate(cut):
        run_pace = paces[run_lang]
        body = _with_pauses(part, run_lang, run_pace, last=index == len(cut) - 1)
        prosody = []
        if run_pace.speed != main.speed:
            prosody.append(f'rate="{round(100 * run_pace.speed / main.speed)}%"')
        if PITCH_RANGE[run_lang] != 100:
            prosody.append(f'range="{PITCH_RANGE[run_lang]}%"')
        if prosody:
            body = f'<prosody {" ".join(prosody)}>{body}</prosody>'
        parts.append(f'<voice name="{VOICES[run_lang]}">{body}</voice>')
    ssml = f"<speak>{''.join(parts)}</speak>"
    return ["-m", "-z", "-v", VOICES[lang], "-s", str(main.speed), ssml]


# ----- the sound: telephone band, trimmed, levelled ----------------------------------------------


def read_band_limited(source: Path) -> Samples:
    """Any audio sox reads -> mono float samples at 8 kHz in the telephone band."""
    raw = _run([_tool("sox"), str(source), "-t", "raw", "-e", "floating-point", "-b", "32",
                "-c", "1", "-", *BAND])
    return np.frombuffer(raw, "<f4").astype(np.float64)


def active_level(x: Samples, rate: int = SAMPLE_RATE) -> float:
    """Active speech level in dBFS, after ITU-T P.56 method B on 10-ms frames: the level over
    the frames whose envelope (with a 200-ms hang-over) is above a threshold, the threshold
    being where that level is 15.9 dB above it."""
    frame = rate // 100
    n = len(x) // frame
    if n == 0:
        return -np.inf
    energy = (x[: n * frame].reshape(n, frame) ** 2).sum(axis=1)
    envelope = np.sqrt(energy / frame)
    hang = 20
    held = np.lib.stride_tricks.sliding_window_view(
        np.concatenate([np.zeros(hang), envelope]), hang + 1).max(axis=1)
    previous: tuple[float, float] | None = None
    for threshold_db in np.arange(-100.0, 1.0, 1.0):
        active = held >= 10 ** (threshold_db / 20)
        if not active.any():
            break
        level = 10 * np.log10(energy[active].sum() / (active.sum() * frame) + 1e-30)
        margin = level - threshold_db
        if margin <= 15.9:
            if previous is None:
                return float(level)
            prev_level, prev_margin = previous
            w = (prev_margin - 15.9) / (prev_margin - margin)
            return float(prev_level + w * (level - prev_level))
        previous = (float(level), float(margin))
    return float(previous[0]) if previous else -np.inf


def trim_bounds(x: Samples, silence_dbfs: float, rate: int = SAMPLE_RATE) -> tuple[int, int]:
    """[start, end) from EDGE_MS before the first audible sample to EDGE_MS after the last."""
    audible = np.flatnonzero(np.abs(x) >= 10 ** (silence_dbfs / 20))
    if audible.size == 0:
        return 0, 0
    edge = rate * EDGE_MS // 1000
    return max(int(audible[0]) - edge, 0), min(int(audible[-1]) + 1 + edge, len(x))


def masked_lead_in(x: Samples, level_dbfs: float, rate: int = SAMPLE_RATE) -> int:
    """How many samples at the start are a lead-in masked by the onset after it (0: none)."""
    frame = rate * 25 // 10000  # 2.5 ms
    n = min(len(x), rate * 2 * LEAD_IN_MS // 1000) // frame
    if n == 0:
        return 0
    power = (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    db = 10 * np.log10(power + 1e-30)
    loud = np.flatnonzero(db >= level_dbfs - ONSET_DB)
    if loud.size == 0:
        return 0
    onset = int(loud[0])
    if onset == 0 or onset * frame > rate * LEAD_IN_MS // 1000:
        return 0
    lead_in = 10 * np.log10(power[:onset].mean() + 1e-30)
    after = db[onset: onset + rate * LEAD_IN_MS // 1000 // frame].max()
    if after - lead_in < MASKED_DB:
        return 0
    return max(onset * frame - rate * EDGE_MS // 1000, 0)


def limit(x: Samples, ceiling_dbfs: float, rate: int = SAMPLE_RATE) -> Samples:
    """A look-ahead peak limiter: the gain each sample needs to stay under the ceiling, held
    over LIMIT_MS either side and smoothed over as long (so it is never above what any sample
    needs, and has no step): a few plosive peaks come down, the rest is untouched."""
    ceiling = 10 ** (ceiling_dbfs / 20)
    need = np.minimum(1.0, ceiling / np.maximum(np.abs(x), 1e-12))
    if need.min() >= 1.0:
        return x
    half = rate * LIMIT_MS // 1000
    padded = np.pad(need, half, constant_values=1.0)
    held = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1).min(axis=1)
    smooth = np.convolve(np.pad(held, half, constant_values=1.0),
                         np.full(2 * half + 1, 1 / (2 * half + 1)), mode="valid")
    limited: Samples = x * np.minimum(smooth, held)
    return limited


def finish(x: Samples, rate: int = SAMPLE_RATE) -> Samples:
    """Trimmed to the audible part (30 dB below the active level), set to the active level
    with peaks limited below the ceiling, a masked lead-in cut (see LEAD_IN_MS), the edges
    faded over EDGE_MS (no click where a quiet tail is cut)."""
    level = active_level(x, rate)
    if not np.isfinite(level):
        return x[:0]
    start, end = trim_bounds(x, level + SILENCE_DBFS - ACTIVE_LEVEL_DBFS, rate)
    x = x[start:end]
    gain = 10 ** ((ACTIVE_LEVEL_DBFS - active_level(x, rate)) / 20)
    x = limit(x * gain, PEAK_CEILING_DBFS - 0.1, rate)
    x = x[masked_lead_in(x, ACTIVE_LEVEL_DBFS, rate):]
    edge = min(rate * EDGE_MS // 1000, len(x) // 2)
    if edge:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)
        x[:edge] *= ramp
        x[-edge:] *= ramp[::-1]
    return x


def write_wav(x: Samples, target: Path, rate: int = SAMPLE_RATE) -> None:
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own, then one rename: a PBX (or another process rendering the same prompt
    # into a shared sounds folder) sees the old file or the whole new one, never half of it.
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.wav")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    tmp.replace(target)


def convert_and_trim(source: Path, target: Path) -> None:
    """Any audio sox reads -> 8 kHz 16-bit mono WAV, telephone band, levelled, trimmed."""
    write_wav(finish(read_band_limited(source)), target)


def speak(item: RenderItem, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        args = espeak_args(item.text, item.lang, paces_for(item.file))
        _run([_tool("espeak-ng"), *args[:-1], "-w", str(raw), args[-1]])
        convert_and_trim(raw, target)


# ----- the library -------------------------------------------------------------------------------


def _settings_hash() -> str:
    return repr((RENDER_VERSION, VOICES, PACE, BRISK, PITCH_RANGE, BAND, ACTIVE_LEVEL_DBFS,
                 PEAK_CEILING_DBFS, SILENCE_DBFS, EDGE_MS, LIMIT_MS))


def _key(item: RenderItem, recorded: Path | None) -> str:
    h = hashlib.sha1(f"{_settings_hash()}|{item.file}|{item.lang}|{item.text}".encode())
    if recorded is not None:
        h.update(recorded.read_bytes())
    return h.hexdigest()


def render_all(
    items: Sequence[RenderItem], audio_dir: Path, *, workers: int = 4, force: bool = False
) -> RenderResult:
    """Render into audio_dir/rendered/<file>.wav; recorded/<file>.wav overrides."""
    out_dir = audio_dir / "rendered"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    manifest: dict[str, str] = {}
    if manifest_path.exists() and not force:
        try:
            loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # a damaged cache: render everything again
            loaded = {}
        manifest = loaded if isinstance(loaded, dict) else {}
    todo: list[tuple[RenderItem, Path | None, str]] = []
    reused = recorded_count = 0
    for item in items:
        recorded = audio_dir / "recorded" / f"{item.file}.wav"
        rec = recorded if recorded.exists() else None
        recorded_count += rec is not None
        key = _key(item, rec)
        if manifest.get(item.file) == key and (out_dir / f"{item.file}.wav").exists():
            reused += 1
            continue
        todo.append((item, rec, key))

    # The same words in the same voice and pace are rendered once ("8" is a position, a
    # number of minutes and a character of agent ids), then copied.
    same: dict[tuple[str, str, str], list[tuple[RenderItem, str]]] = {}
    jobs: list[tuple[RenderItem, Path | None, str]] = []
    for item, rec, key in todo:
        if rec is not None:
            jobs.append((item, rec, key))
            continue
        group = same.setdefault((item.lang, item.text, repr(paces_for(item.file))), [])
        if not group:
            jobs.append((item, rec, key))
        group.append((item, key))

    def work(job: tuple[RenderItem, Path | None, str]) -> list[tuple[str, str]]:
        item, rec, key = job
        target = out_dir / f"{item.file}.wav"
        if rec is not None:
            convert_and_trim(rec, target)
            return [(item.file, key)]
        speak(item, target)
        done = []
        for other, other_key in same[(item.lang, item.text, repr(paces_for(item.file)))]:
            if other.file != item.file:
                shutil.copyfile(target, out_dir / f"{other.file}.wav")
            done.append((other.file, other_key))
        return done

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done in pool.map(work, jobs):
            manifest.update(done)
    manifest_path.write_text(json.dumps(manifest, indent=0, sort_keys=True), encoding="utf-8")
    return RenderResult(len(todo), reused, recorded_count, len(items))


def install(audio_dir: Path, sounds_dir: Path) -> int:
    """Copy the rendered files where the PBX plays `sound:custom/<file>` from."""
    sounds_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for wav in sorted((audio_dir / "rendered").glob("*.wav")):
        if wav.name.startswith("."):  # another process's file being written
            continue
        tmp = sounds_dir / f".{wav.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.wav"
        shutil.copy2(wav, tmp)
        tmp.replace(sounds_dir / wav.name)  # whole or not at all, as in write_wav
        count += 1
    return count


def render_text(text: str, lang: str, target: Path) -> None:
    """Speak one text into `target` (8 kHz WAV, trimmed): for values not rendered in advance."""
    speak(RenderItem(target.stem, lang, text), target)
