"""The never-say list and the matcher that finds a forbidden phrase in any text.

Matching ignores case, whitespace and punctuation (half- or full-width), so "喂 , 大声一点儿"
and "HEY louder" are caught; English words match on word boundaries ("they louder" is not
"hey louder").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ForbiddenPhrase:
    text: str
    origin: str  # "standard (row 5a)" or "custom"


@dataclass(frozen=True, slots=True)
class Violation:
    """A forbidden phrase found in a text, with where the text came from."""

    source: str  # "file:line" or a description such as "prompt greeting_answer (zh)"
    phrase: str  # the forbidden phrase as listed
    found: str  # the text it was found in

    def message(self) -> str:
        return f"{self.source}: forbidden phrase {self.phrase!r} in {self.found!r}"


_GAP = r"[\W_]*"


def _tokens(text: str) -> list[str]:
    """Words of ASCII letters/digits, and every other letter/number character on its own."""
    tokens: list[str] = []
    word = ""
    for ch in unicodedata.normalize("NFKC", text).casefold():
        if ch.isascii() and (ch.isalnum() or ch == "'"):
            word += ch
            continue
        if word:
            tokens.append(word)
            word = ""
        if unicodedata.category(ch)[0] in "LN":
            tokens.append(ch)
    if word:
        tokens.append(word)
    return [t for t in (t.strip("'") for t in tokens) if t]


def _pattern(phrase: str) -> re.Pattern[str]:
    tokens = _tokens(phrase)
    if not tokens:
        raise ValueError(f"forbidden phrase {phrase!r} has no letters")
    parts = []
    for tok in tokens:
        piece = re.escape(tok).replace("'", _GAP)
        if tok.isascii():
            piece = rf"\b{piece}\b"
        parts.append(piece)
    return re.compile(_GAP.join(parts))


class ForbiddenList:
    def __init__(self, phrases: Iterable[ForbiddenPhrase]) -> None:
        self.phrases = tuple(phrases)
        self._patterns = [(p, _pattern(p.text)) for p in self.phrases]

    def find(self, text: str) -> ForbiddenPhrase | None:
        """The first forbidden phrase contained in `text`, or None."""
        normalized = unicodedata.normalize("NFKC", text).casefold()
        for phrase, pattern in self._patterns:
            if pattern.search(normalized):
                return phrase
        return None

    def check(self, text: str, source: str) -> Violation | None:
        hit = self.find(text)
        return Violation(source, hit.text, text) if hit else None
