"""How long a person takes to say a prompt: the yardstick the rendered prompts are held to
(docs/prompts.md, tests/unit/test_prompt_pace.py).

A person's time = syllables / Mandarin rate + words / English rate + a pause at each comma and
each sentence end inside the text. Each run of the text counts in the language whose voice
says it (render.runs), so digits in a Mandarin run are Mandarin syllables ("按1": àn yī) and in
an English run English words. Numbers count as they are said ("12": 十二, two syllables;
"twelve", one word); a value spelled out character by character (an agent id) is passed with
its characters separated ("1 0 0 1").
"""

from __future__ import annotations

import itertools
import re
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cti.domain.phrases import DIGIT_SLOTS, PhraseLibrary
from cti.platform.audio.render import runs

# What the rendered prompts are held to (tests/unit/test_prompt_pace.py, `cti phrases timings`).
MAX_RATIO = 1.3
GREETING = "greeting_answer"  # docs/phrases.md#row-1
GREETING_MAX_S = 6.0  # in Mandarin, as an agent says it on every call (~5 s)

ZH_SYLLABLES_PER_S = 4.75  # service speech, between pauses
EN_WORDS_PER_S = 160 / 60  # 160 words per minute
COMMA_S = 0.20
SENTENCE_S = 0.35

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_NUMBER = re.compile(r"[0-9]+")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_COMMA = re.compile(r"[,，、;；:：](?!$)")
# A sentence ends at 。！？ or at . ! ? before a space and a capital ("9 a.m. to" goes on).
_SENTENCE = re.compile(r"[。！？](?=.)|[.!?](?=\s+[^a-z\s])")


def zh_number(n: int) -> str:
    """A number as it is said in Mandarin: 12 十二, 20 二十, 105 一百零五, 1001 一千零一;
    from 10000 on, digit by digit."""
    digits = "零一二三四五六七八九"
    text = str(n)
    if n >= 10000:
        return "".join(digits[int(d)] for d in text)
    out, zero = "", False
    for i, d in enumerate(text):
        place = len(text) - 1 - i
        if d == "0":
            zero = bool(out)
            continue
        if zero:
            out += "零"
            zero = False
        out += digits[int(d)] + ("", "十", "百", "千")[place]
    if 10 <= n < 20:
        out = out[1:]  # 十二, not 一十二
    return out or "零"


def en_number_words(n: int) -> int:
    """Words of a number said in English: 12 twelve, 21 twenty-one (two), 105 one hundred
    five (three)."""
    if n < 21 or (n < 100 and n % 10 == 0):
        return 1
    if n < 100:
        return 2
    if n < 10000:  # "one hundred ...", "one thousand ..."
        rest = n % (100 if n < 1000 else 1000)
        return 2 + (en_number_words(rest) if rest else 0)
    return len(str(n))  # read digit by digit


def units(text: str, lang: str) -> tuple[int, int]:
    """(Mandarin syllables, English words) of a text as its voices say it."""
    syllables = words = 0
    for run_lang, part in runs(text, lang):
        numbers = [int(m) for m in _NUMBER.findall(part)]
        if run_lang == "zh":
            syllables += len(_HAN.findall(part)) + sum(len(zh_number(n)) for n in numbers)
        else:
            words += len(_WORD.findall(part)) + sum(map(en_number_words, numbers))
    return syllables, words


def pauses(text: str) -> float:
    """The pauses a person makes inside the text (the one at its very end is not heard)."""
    text = text.strip()
    return COMMA_S * len(_COMMA.findall(text)) + SENTENCE_S * len(_SENTENCE.findall(text))


def person_seconds(text: str, lang: str) -> float:
    syllables, words = units(text, lang)
    return syllables / ZH_SYLLABLES_PER_S + words / EN_WORDS_PER_S + pauses(text)


# ----- a library's prompts as the caller hears them ----------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptTiming:
    phrase: str
    lang: str
    text: str  # as filled
    seconds: float  # its sound files played one after the other
    person_seconds: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.person_seconds


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return float(w.getnframes() / w.getframerate())


def _spelled(library: PhraseLibrary, phrase_id: str, lang: str, slots: Mapping[str, str]) -> str:
    """The filled text with each spelled slot's characters apart ("1 0 0 1"), as it is said."""
    spaced = {k: " ".join(v) if k in DIGIT_SLOTS else v for k, v in slots.items()}
    return library.fill(phrase_id, lang, spaced)


def prompt_timings(
    library: PhraseLibrary,
    rendered_dir: Path,
    slot_values: Mapping[str, Mapping[str, Sequence[str]]],
) -> list[PromptTiming]:
    """Every phrase in every language, filled with every combination of the given slot values
    (slot -> language -> values), timed from the rendered files it is played from."""
    out: list[PromptTiming] = []
    for phrase in library.phrases.values():
        for lang in library.languages:
            names = sorted(set(phrase.slots(lang)))
            choices = [list(slot_values[name][lang]) for name in names]
            for combo in itertools.product(*choices):
                slots = dict(zip(names, combo, strict=True))
                files = library.media_files(phrase.id, lang, slots)
                seconds = sum(wav_seconds(rendered_dir / f"{name}.wav") for name in files)
                spoken = _spelled(library, phrase.id, lang, slots)
                out.append(PromptTiming(phrase.id, lang, library.fill(phrase.id, lang, slots),
                                        seconds, person_seconds(spoken, lang)))
    return out
