"""The phrase library: standard phrases by stable id, their text per language, template slots,
and the sound file names each phrase is played from.

Pure: built from already-parsed data (see cti.features.phrases.library for loading the YAML files).
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cti.domain.forbidden import ForbiddenList
from cti.platform.errors import CtiError

SLOTS = ("company", "agent_id", "surname", "title", "position", "minutes", "number")
# spoken character by character from per-character files (a phone number: digit by digit)
DIGIT_SLOTS = frozenset({"agent_id", "number"})
# Spoken as numbers ("twelve", not "one two"): one file per value, like surnames.
NUMBER_SLOTS = frozenset({"position", "minutes"})
_NUMBER = re.compile(r"[0-9]+")


class UnknownPhrase(CtiError):
    error_id = "unknown_phrase"
    http_status = 404


class PhraseError(CtiError):
    """A phrase cannot be said as asked (missing slot, unknown language, forbidden result)."""

    error_id = "phrase_error"
    http_status = 422


class ForbiddenPhraseRefused(PhraseError):
    """The filled phrase would say a forbidden phrase (e.g. through a slot value): refused, and
    recorded as a departure from the script where a call was to hear it."""

    error_id = "forbidden_phrase"


@dataclass(frozen=True, slots=True)
class Phrase:
    id: str
    text: Mapping[str, str]  # language -> template text
    row: str | None = None  # the standard phrase's row in the training manual's table
    situation: str = ""

    def slots(self, lang: str) -> tuple[str, ...]:
        return tuple(
            name for _, name, _, _ in string.Formatter().parse(self.text[lang]) if name is not None
        )


@dataclass(frozen=True, slots=True)
class Part:
    """A piece of a templated phrase: literal text, or a slot filled at call time."""

    kind: Literal["text", "slot"]
    value: str  # the literal text, or the slot name


@dataclass(frozen=True, slots=True)
class RenderItem:
    """One sound file to produce: its name (no extension), language and the text to speak."""

    file: str
    lang: str
    text: str


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def slot_value_file(slot: str, lang: str, value: str) -> str:
    slug = value.lower() if re.fullmatch(r"[A-Za-z0-9]+", value) else hashlib.sha1(
        value.encode("utf-8")
    ).hexdigest()[:10]
    return f"slot_{slot}__{lang}__{slug}"


def char_file(lang: str, ch: str) -> str:
    return f"char__{lang}__{ch.lower()}"


@dataclass
class PhraseLibrary:
    phrases: Mapping[str, Phrase]
    languages: Sequence[str]
    forbidden: ForbiddenList
    slot_values: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)

    def get(self, phrase_id: str) -> Phrase:
        try:
            return self.phrases[phrase_id]
        except KeyError:
            raise UnknownPhrase(f"no phrase {phrase_id!r} in the phrase library") from None

    def __contains__(self, phrase_id: object) -> bool:
        return phrase_id in self.phrases

    def _template(self, phrase_id: str, lang: str) -> str:
        phrase = self.get(phrase_id)
        if lang not in phrase.text:
            raise PhraseError(f"phrase {phrase_id!r} has no text in language {lang!r}")
        return phrase.text[lang]

    def fill(self, phrase_id: str, lang: str, slots: Mapping[str, str] | None = None) -> str:
        """The text as the caller hears it; refuses missing slots and forbidden results."""
        template = self._template(phrase_id, lang)
        values = dict(slots or {})
        needed = self.get(phrase_id).slots(lang)
        missing = [s for s in needed if not values.get(s)]
        if missing:
            raise PhraseError(f"phrase {phrase_id!r} ({lang}) needs slot(s) {', '.join(missing)}")
        bad = [s for s in needed if s in NUMBER_SLOTS and not _NUMBER.fullmatch(values[s])]
        if bad:
            raise PhraseError(f"phrase {phrase_id!r}: slot(s) {', '.join(bad)} take a number")
        text = template.format_map(values)
        violation = self.forbidden.check(text, f"prompt {phrase_id} ({lang})")
        if violation:
            raise ForbiddenPhraseRefused(violation.message())
        return text

    def parts(self, phrase_id: str, lang: str) -> list[Part]:
        out: list[Part] = []
        for literal, name, _, _ in string.Formatter().parse(self._template(phrase_id, lang)):
            if literal:
                out.append(Part("text", literal))
            if name is not None:
                out.append(Part("slot", name))
        return out

    def media_files(
        self, phrase_id: str, lang: str, slots: Mapping[str, str] | None = None
    ) -> list[str]:
        """Sound file names (no extension) that, played in order, say the filled phrase."""
        self.fill(phrase_id, lang, slots)  # validates slots and the forbidden list
        values = dict(slots or {})
        parts = self.parts(phrase_id, lang)
        if all(p.kind == "text" for p in parts):
            return [f"{phrase_id}__{lang}"]
        files: list[str] = []
        for index, part in enumerate(parts):
            if part.kind == "text":
                if _speakable(part.value):
                    files.append(f"{phrase_id}__{lang}__p{index}")
            elif part.value in DIGIT_SLOTS:
                files.extend(char_file(lang, ch) for ch in values[part.value] if ch.isalnum())
            else:
                files.append(slot_value_file(part.value, lang, values[part.value]))
        return files

    def render_plan(
        self, extra_slot_values: Mapping[str, Mapping[str, Sequence[str]]] | None = None
    ) -> list[RenderItem]:
        """Every sound file the library needs: whole phrases, literal parts, slot values."""
        items: dict[str, RenderItem] = {}

        def add(item: RenderItem) -> None:
            items.setdefault(item.file, item)

        for phrase in self.phrases.values():
            for lang in self.languages:
                parts = self.parts(phrase.id, lang)
                if all(p.kind == "text" for p in parts):
                    add(RenderItem(f"{phrase.id}__{lang}", lang, phrase.text[lang]))
                    continue
                for index, part in enumerate(parts):
                    if part.kind == "text" and _speakable(part.value):
                        add(RenderItem(f"{phrase.id}__{lang}__p{index}", lang, part.value))
        for lang in self.languages:
            for ch in string.digits + string.ascii_lowercase:
                add(RenderItem(char_file(lang, ch), lang, ch))
        merged: dict[str, dict[str, list[str]]] = {}
        for source in (self.slot_values, extra_slot_values or {}):
            for slot, per_lang in source.items():
                for lang, values in per_lang.items():
                    merged.setdefault(slot, {}).setdefault(lang, []).extend(values)
        for slot, per_lang in merged.items():
            for lang, values in per_lang.items():
                for value in values:
                    self.forbidden_check_value(slot, lang, value)
                    add(RenderItem(slot_value_file(slot, lang, value), lang, value))
        return list(items.values())

    def forbidden_check_value(self, slot: str, lang: str, value: str) -> None:
        violation = self.forbidden.check(value, f"slot {slot} ({lang})")
        if violation:
            raise ForbiddenPhraseRefused(violation.message())
