"""The whole phrase library as the caller hears it (docs/prompts.md): every phrase in both
languages rendered as `cti phrases render` renders it (into its cache, scripts_lib/audio), filled
with every value the library renders in advance, the settings' company names and agent ids;
each prompt within 1.3x a person's time, the Mandarin greeting within 6 s, no silence at
either end of any sound file, one loudness, the telephone band, and espeak-ng's phonemes
covering every syllable of the text."""

from __future__ import annotations

import fcntl
import re
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from cti.domain.phrases import PhraseLibrary
from cti.features.phrases.library import load_phrase_library
from cti.platform.audio.pace import (
    GREETING_MAX_S,
    MAX_RATIO,
    PromptTiming,
    en_number_words,
    pauses,
    person_seconds,
    prompt_timings,
    units,
    zh_number,
)
from cti.platform.audio.render import (
    ACTIVE_LEVEL_DBFS,
    PEAK_CEILING_DBFS,
    SILENCE_DBFS,
    active_level,
    espeak_args,
    render_all,
)
from cti.platform.settings import REPO_ROOT, CompanySettings

PHRASES_DIR = REPO_ROOT / "scripts_lib"
COMPANY = CompanySettings()
AGENT_IDS = ["1001", COMPANY.default_agent_id]
NUMBERS = ["+8613800000702"]  # a caller's number, said digit by digit (queue call-backs)
EDGE_SILENCE_S = 0.020


@pytest.fixture(scope="module")
def library() -> PhraseLibrary:
    return load_phrase_library(PHRASES_DIR)


@pytest.fixture(scope="module")
def rendered(library: PhraseLibrary) -> Path:
    """Every sound file of the library (~270 files), as `cti phrases render` leaves them in
    scripts_lib/audio/rendered: rendered there unless its manifest says a file is already made
    from the same text and render settings. One cache for every pytest-xdist worker (under a
    lock) and for the e2e tests, which install the same files: rendered once, not per worker
    and again for the e2e tests."""
    plan = library.render_plan({"company": {"zh": [COMPANY.name], "en": [COMPANY.name_en]}})
    audio = PHRASES_DIR / "audio"
    (audio / "rendered").mkdir(parents=True, exist_ok=True)
    with (audio / "rendered" / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        render_all(plan, audio)
    return audio / "rendered"


@pytest.fixture(scope="module")
def timings(library: PhraseLibrary, rendered: Path) -> list[PromptTiming]:
    values: dict[str, dict[str, list[str]]] = {
        slot: {lang: list(v) for lang, v in per_lang.items()}
        for slot, per_lang in library.slot_values.items()
    }
    values["company"] = {"zh": [COMPANY.name], "en": [COMPANY.name_en]}
    values["agent_id"] = {"zh": AGENT_IDS, "en": AGENT_IDS}
    values["number"] = {"zh": NUMBERS, "en": NUMBERS}
    return prompt_timings(library, rendered, values)


def read(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2), path.name
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float) / 32768


# ----- pace --------------------------------------------------------------------------------------


def test_every_prompt_within_1_3_times_a_persons_time(timings: list[PromptTiming]) -> None:
    assert {t.phrase for t in timings} >= {"greeting_answer", "silent_call_goodbye", "menu_main"}
    slow = [f"{t.phrase} ({t.lang}) {t.seconds:.2f} s, a person {t.person_seconds:.2f} s: "
            f"{t.ratio:.2f}x  {t.text}" for t in timings if t.ratio > MAX_RATIO]
    assert not slow, "slower than 1.3x a person:\n" + "\n".join(slow)


def test_the_mandarin_greeting_is_said_within_6_s(timings: list[PromptTiming]) -> None:
    greetings = [t for t in timings if t.phrase == "greeting_answer"]
    assert {t.lang for t in greetings} == {"zh", "en"}
    for t in greetings:
        assert t.seconds <= MAX_RATIO * t.person_seconds, t
        if t.lang == "zh":
            assert t.seconds <= GREETING_MAX_S, f"{t.seconds:.2f} s: {t.text}"


def test_nothing_is_rushed_past_a_person_either(timings: list[PromptTiming]) -> None:
    """Faster than a person only where docs/prompts.md says so (the greeting's routine pace)."""
    rushed = [f"{t.phrase} ({t.lang}) {t.ratio:.2f}x" for t in timings
              if t.ratio < 0.45 or (t.ratio < 0.55 and t.phrase != "greeting_answer")]
    assert not rushed, rushed


# ----- the sound files ---------------------------------------------------------------------------


def test_no_silence_at_either_end_of_any_sound_file(rendered: Path) -> None:
    """The first audible sample (30 dB below the speech's level or louder) is within the first
    20-ms frame, the last within the last one: the procedures' waits are silence on the line."""
    files = sorted(rendered.glob("*.wav"))
    assert len(files) > 250
    bad = []
    for path in files:
        x = read(path)
        audible = np.flatnonzero(np.abs(x) >= 10 ** (SILENCE_DBFS / 20))
        assert audible.size, path.name
        lead, trail = audible[0] / 8000, (len(x) - 1 - audible[-1]) / 8000
        if lead > EDGE_SILENCE_S or trail > EDGE_SILENCE_S:
            bad.append(f"{path.name}: {lead * 1000:.1f} ms before, {trail * 1000:.1f} ms after")
    assert not bad, bad


def test_one_loudness_no_clipping_telephone_band(rendered: Path) -> None:
    for path in sorted(rendered.glob("*.wav")):
        x = read(path)
        assert abs(active_level(x) - ACTIVE_LEVEL_DBFS) <= 1.0, path.name
        assert 20 * np.log10(np.abs(x).max()) <= PEAK_CEILING_DBFS, path.name
        power = np.abs(np.fft.rfft(x)) ** 2
        freq = np.fft.rfftfreq(len(x), 1 / 8000)
        assert 10 * np.log10(power[freq > 3600].sum() / power.sum()) < -18, path.name
        assert 10 * np.log10(power[freq < 100].sum() / power.sum()) < -15, path.name


# ----- intelligibility: espeak-ng's phonemes cover the text ------------------------------------

_TONE = re.compile(r"(?<![0-9])[1-5]{2,3}(?![0-9])")  # one Mandarin syllable: its tone contour


def phonemes(text: str, lang: str) -> str:
    out = subprocess.run(["espeak-ng", "-x", "-q", *espeak_args(text, lang)],
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_espeak_says_every_syllable_of_every_phrase(library: PhraseLibrary) -> None:
    """Every Mandarin syllable of the text is a toned syllable in espeak-ng's phonemes (none
    dropped or read as pinyin letters); the English has (nearly) a word each (espeak-ng joins
    some unstressed words: "in the"); no Han character is read as "Chinese letter"."""
    slots = {"zh": {"company": COMPANY.name, "agent_id": "1 0 0 1", "surname": "王",
                    "title": "先生", "position": "12", "minutes": "5",
                    "number": "1 3 8 0 0 1 3 8 0 0 0"},
             "en": {"company": COMPANY.name_en, "agent_id": "1 0 0 1", "surname": "Wang",
                    "title": "Mr.", "position": "12", "minutes": "5",
                    "number": "1 3 8 0 0 1 3 8 0 0 0"}}
    for phrase in library.phrases.values():
        for lang in library.languages:
            text = library.fill(phrase.id, lang, {k: slots[lang][k] for k in phrase.slots(lang)})
            said = phonemes(text, lang)
            syllables, words = units(text, lang)
            assert len(_TONE.findall(said)) == syllables, (phrase.id, lang, said)
            assert "tS'aIni:z" not in said, (phrase.id, lang, said)
            assert "(en)" not in said, (phrase.id, lang, said)  # a voice's fallback to another
            assert "(zh)" not in said, (phrase.id, lang, said)
            english = [w for w in said.replace("_|", " ").split() if not _TONE.search(w)]
            assert words * 0.8 <= len(english) <= words, (phrase.id, lang, said)


# ----- the yardstick -----------------------------------------------------------------------------


def test_numbers_count_as_they_are_said() -> None:
    assert [zh_number(n) for n in (1, 10, 12, 20, 21, 105, 115, 1001)] == [
        "一", "十", "十二", "二十", "二十一", "一百零五", "一百一十五", "一千零一"]
    assert [en_number_words(n) for n in (1, 12, 20, 21, 100, 105, 1001)] == [1, 1, 1, 2, 2, 3, 3]
    assert units("您目前排在第12位。", "zh") == (9, 0)
    assert units("You are number 12 in the queue.", "en") == (0, 7)
    assert units("客服代表1 0 0 1很高兴", "zh") == (11, 0)  # an agent id: digit by digit
    assert units("中文服务请按1。For English, press 2.", "en") == (7, 4)  # each in its voice


def test_pauses_at_commas_and_inside_sentence_ends() -> None:
    assert pauses("您好,请问有什么可以帮助您?") == pytest.approx(0.20)
    assert pauses("感谢您的来电,再见!") == pytest.approx(0.20)  # the last one is not heard
    text = "Hello, we are closed now. Our hours are 9 a.m. to 6 p.m. To call back, press 1."
    assert pauses(text) == pytest.approx(2 * 0.20 + 2 * 0.35)  # "a.m. to": no sentence end
    # 12 syllables at 4.75/s, one comma
    assert person_seconds("您好,请问有什么可以帮助您?", "zh") == pytest.approx(12 / 4.75 + 0.2)
